"""``GET /api/cameras/{id}/snapshot.jpg``: the newest frame the camera's worker published on the tile
board (asked for through the board's demand), scaled and drawn on as asked, 404 for a camera the
viewer may not see, 503 with the reason when no worker reads the camera; every look is audited.

The worker here is :class:`BoardFeeder`, the worker's own tile publisher fed with generated frames (the
board is the seam); tests/e2e/test_tiles_browser.py asks a real worker over a real RTSP camera.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.settings import ApiSettings
from api.tokens import issue_access_token
from models.bus.health_board import MemoryHealthBoard
from models.bus.memory import MemoryBus
from models.db.engine import make_engine, make_session_factory
from models.db.tables import AccessLog, User
from models.evidence.store import FileEvidenceStore
from models.live.board import MemoryTileBoard
from models.live.publisher import TilePublisher, tile_detections
from models.tickets.categories import TicketSettings
from models.tickets.desk import TicketDesk
from tests.conftest import TEST_SECRET
from tests.security.world import seed_world
from tests.support import sample
from tests.support.databases import postgres_available, postgres_database, sqlite_copy
from tests.support.require import require

#: the generated camera picture: grey, with a red "car" box at these pixels (640×360)
CAR = (64, 180, 256, 324)


def camera_frame(n: int) -> np.ndarray:
    img = np.full((360, 640, 3), 128, np.uint8)
    x1, y1, x2, y2 = CAR
    cv2.rectangle(img, (x1, y1), (x2, y2), (0, 0, 200), -1)
    cv2.putText(img, str(n), (400, 100), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
    return img


class BoardFeeder:
    """Stands in for a worker at the tile board: for the cameras it "reads", it posts health and, when
    someone wants a camera, publishes that camera's frames through the worker's own publisher."""

    def __init__(
        self, board: MemoryTileBoard, health: MemoryHealthBoard, camera_ids: list[int], *, fps: float = 10.0
    ) -> None:
        self.board, self.health, self.camera_ids = board, health, camera_ids
        self.publisher = TilePublisher(board, worker_id="feeder", fps=fps, alarm_fps=fps * 2)
        self.rules: dict[int, list[str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="board-feeder", daemon=True)
        self.frames = 0

    def __enter__(self) -> BoardFeeder:
        self.publisher.start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.publisher.stop()

    def _run(self) -> None:
        boxes = tile_detections(np.array([CAR], np.float32), np.array([0.93]), ["car"], frame_wh=(640, 360))
        while not self._stop.is_set():
            self.health.publish(
                "feeder", {str(c): {"state": "streaming", "frames_in": self.frames} for c in self.camera_ids}
            )
            self.publisher.refresh_demand(self.camera_ids, force=True)
            self.frames += 1
            for cid in self.camera_ids:
                rules = self.rules.get(cid, [])
                width = self.publisher.due(cid, alarm=bool(rules))
                if width is not None:
                    self.publisher.offer(
                        cid,
                        camera_frame(self.frames),
                        captured_at=time.time(),
                        width=width,
                        detections=boxes,
                        rules=rules,
                    )
            self._stop.wait(0.05)


@dataclass
class Live:
    client: TestClient
    factory: sessionmaker[Session]
    board: MemoryTileBoard
    health: MemoryHealthBoard
    bus: MemoryBus
    cameras: dict[str, int]


@dataclass
class LiveApp:
    app: FastAPI
    factory: sessionmaker[Session]
    board: MemoryTileBoard
    health: MemoryHealthBoard
    bus: MemoryBus
    cameras: dict[str, int]


@contextmanager
def live_app(request: pytest.FixtureRequest, directory: Path) -> Iterator[LiveApp]:
    """The sample tree (and a grant-free user ``grantee-x`` of G2) on the database kind of
    ``request.param``, behind an app with an in-process tile board and health board."""
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = sqlite_copy(request.getfixturevalue("_sqlite_template"), directory)
        else:
            require(postgres_available(), "PostgreSQL on 127.0.0.1:5432")
            url = stack.enter_context(postgres_database())
        engine = make_engine(url)
        stack.callback(engine.dispose)
        factory = make_session_factory(engine)
        cameras = seed_world(factory, directory)
        board, health, bus = MemoryTileBoard(), MemoryHealthBoard(), MemoryBus()
        desk = TicketDesk(TicketSettings(), evidence=FileEvidenceStore(directory / "evidence"))
        app = create_app(
            ApiSettings(secret_key=TEST_SECRET, stream_recheck_s=60.0),
            session_factory=factory,
            desk=desk,
            bus=bus,
            health_board=health,
            tile_board=board,
        )
        yield LiveApp(app, factory, board, health, bus, cameras)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """Seeded once per module and database kind (tests make their own changes on other cameras)."""
    with live_app(request, tmp_path_factory.mktemp("live")) as la, TestClient(la.app) as client:
        yield Live(client, la.factory, la.board, la.health, la.bus, la.cameras)


def login(client: TestClient, username: str, factory: sessionmaker[Session] | None = None) -> dict[str, str]:
    """Bearer headers for a user (a minted token when the factory is given: no password hashing)."""
    if factory is not None:
        with factory() as s:
            user = s.scalars(select(User).where(User.username == username)).one()
            return {"Authorization": f"Bearer {issue_access_token(user, secret=TEST_SECRET, ttl_s=3600)}"}
    r = client.post("/api/auth/token", data={"username": username, "password": sample.PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _audit(factory: sessionmaker[Session], camera_id: int, channel: str) -> list[tuple[str, str]]:
    with factory() as s:
        rows = s.scalars(
            select(AccessLog)
            .where(AccessLog.channel == channel, AccessLog.object_id == str(camera_id))
            .order_by(AccessLog.id)
        ).all()
        return [(r.action, r.username) for r in rows]


def _decode(content: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(content, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, "not a JPEG"
    return img


def test_the_leader_gets_the_newest_frame_scaled_and_uncached(live: Live) -> None:
    cam = live.cameras["cam-g1-a"]
    headers = login(live.client, "leader-g1", live.factory)
    with BoardFeeder(live.board, live.health, [cam]) as feeder:
        assert live.board.wanted([cam]) == {}  # nobody has asked: the worker encodes nothing
        r = live.client.get(f"/api/cameras/{cam}/snapshot.jpg?width=320", headers=headers)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/jpeg" and r.headers["cache-control"] == "no-store"
        assert _decode(r.content).shape == (180, 320, 3)
        assert feeder.publisher.encoded >= 1 and live.board.wanted([cam])  # the request raised the demand
        full = live.client.get(f"/api/cameras/{cam}/snapshot.jpg", headers=headers)
        assert _decode(full.content).shape == (360, 640, 3)  # never scaled up past the camera's own size
    assert ("view", "leader-g1") in _audit(live.factory, cam, "snapshot")


def test_another_grids_camera_is_404_and_audited(live: Live) -> None:
    cam = live.cameras["cam-g3-a"]
    with BoardFeeder(live.board, live.health, [cam]):
        r = live.client.get(
            f"/api/cameras/{cam}/snapshot.jpg", headers=login(live.client, "leader-g1", live.factory)
        )
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    assert _audit(live.factory, cam, "snapshot") == [("deny", "leader-g1")]
    assert live.board.wanted([cam]) == {}  # a refused look raises no demand


def test_a_camera_without_a_worker_is_503_with_the_reason(live: Live) -> None:
    cam = live.cameras["cam-g1-b"]
    r = live.client.get(
        f"/api/cameras/{cam}/snapshot.jpg", headers=login(live.client, "leader-g1", live.factory)
    )
    assert r.status_code == 503
    body = r.json()
    assert body["error"] == "unavailable" and "no worker" in body["detail"]
    live.health.publish("w", {str(cam): {"state": "backoff", "reason": "connection refused"}})
    r = live.client.get(
        f"/api/cameras/{cam}/snapshot.jpg", headers=login(live.client, "leader-g1", live.factory)
    )
    assert r.status_code == 503 and "backoff: connection refused" in r.json()["detail"]


def test_overlay_draws_zones_and_detections(live: Live) -> None:
    cam = live.cameras["cam-g1-a"]
    zone = {
        "name": "东侧消防通道",
        "kind": "fire_lane",
        "polygon": [[0.55, 0.5], [0.95, 0.5], [0.95, 0.95], [0.55, 0.95]],
    }
    r = live.client.put(
        f"/api/cameras/{cam}/zones",
        json={"zones": [zone]},
        headers=login(live.client, "operator1", live.factory),
    )
    assert r.status_code == 200, r.text
    headers = login(live.client, "leader-g1", live.factory)
    with BoardFeeder(live.board, live.health, [cam]):
        plain = _decode(live.client.get(f"/api/cameras/{cam}/snapshot.jpg", headers=headers).content)
        r = live.client.get(f"/api/cameras/{cam}/snapshot.jpg?overlay=zones,detections", headers=headers)
    assert r.status_code == 200, r.text
    drawn = _decode(r.content)
    assert drawn.shape == plain.shape
    inside_zone = (slice(200, 320), slice(380, 580))  # fire lanes are tinted red
    assert drawn[inside_zone][..., 2].mean() > plain[inside_zone][..., 2].mean() + 10
    x1, y1, x2, y2 = CAR  # the car's box outline is drawn in cyan (blue and green up)
    edge = drawn[y1 + 40 : y2 - 40, x1 - 1 : x1 + 2]
    assert edge[..., 1].mean() > plain[y1 + 40 : y2 - 40, x1 - 1 : x1 + 2][..., 1].mean() + 60


BAD_PARAMETERS = [
    ("width=10", "width"),
    ("width=abc", "width"),
    ("width=99999", "width"),
    ("overlay=faces", "overlay"),
    ("overlay=zones,x", "overlay"),
]


def test_bad_parameters_are_422_naming_the_field(live: Live) -> None:
    cam = live.cameras["cam-g1-a"]
    headers = login(live.client, "leader-g1", live.factory)
    got = {}
    for query, _field in BAD_PARAMETERS:
        r = live.client.get(f"/api/cameras/{cam}/snapshot.jpg?{query}", headers=headers)
        got[query] = (r.status_code, r.json().get("field"))
    assert got == {query: (422, field) for query, field in BAD_PARAMETERS}


def test_a_missing_cjk_font_is_a_clear_error() -> None:
    from models.evidence.drawing import FontMissing, find_cjk_font

    with pytest.raises(FontMissing, match="fonts-noto-cjk"):
        find_cjk_font(("/nonexistent/fonts/NotoSansCJK-*.ttc",))
    assert find_cjk_font().exists()  # Debian's fonts-noto-cjk on this machine (scripts/apt-packages.txt)
