"""Main stream and sub-stream: a camera served by a real RTSP server at 640x360 (main) and 320x180 (sub)
is analysed on the sub-stream at the sub resolution by default, its zones (normalised coordinates) still
matching the picture; an operator's switch to the main stream through the API reaches the running worker
over the bus and takes effect without a restart; health says which stream is analysed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.settings import ApiSettings
from detectors.backends import ClassicConfig, Detector
from detectors.backends.base import FrameInput
from detectors.detections import Detections
from gridpatrol.worker import Worker
from ingest.leases import MemoryLeaseStore
from ingest.settings import IngestSettings
from models.bus.health_board import MemoryHealthBoard
from models.bus.memory import MemoryBus
from models.bus.messages import RULE_EVENTS, RuleEvent
from models.db.engine import make_engine, make_session_factory, transaction
from models.db.tables import Camera
from models.evidence.store import FileEvidenceStore
from models.grid.zones import save_zones
from models.tickets.categories import TicketSettings
from models.tickets.desk import TicketDesk
from tests.conftest import TEST_SECRET, seed
from tests.support import sample
from tests.support.databases import sqlite_copy
from tests.support.rtsp_server import RtspServer, Synthetic

CAM = 1
# videotestsrc's SMPTE bars: the top-left bar is 100% white, x 0..1/7, y 0..2/3 of the picture. Its
# bottom-centre anchor (0.07, 0.67) lies in "bar"; no bright blob's anchor lies in "right".
BAR = [[0.0, 0.3], [0.25, 0.3], [0.25, 0.8], [0.0, 0.8]]
RIGHT = [[0.5, 0.0], [1.0, 0.0], [1.0, 0.6], [0.5, 0.6]]
RULE: dict[str, Any] = {
    "kind": "crowd_area",
    "min_people": 1,
    "dwell_s": 0,
    "clear_s": 0,
    "update_every_s": 3600,
}


class BrightBlobDetector(Detector):
    """Sees a "person" in every large white blob, in the pixels of the frame it is given (whatever its
    size); the tracker, zones and rules downstream are the worker's own. Records the frame sizes."""

    class_names = ("person",)

    def __init__(self) -> None:
        self.sizes: list[tuple[int, int]] = []
        self._lock = threading.Lock()

    def detect_batch(self, frames: Sequence[FrameInput]) -> list[Detections]:
        out = []
        for f in frames:
            h, w = f.frame_bgr.shape[:2]
            with self._lock:
                self.sizes.append((w, h))
            bright = (f.frame_bgr.min(axis=2) > 200).astype(np.uint8)
            n, _, stats, _ = cv2.connectedComponentsWithStats(bright)
            boxes = [(x, y, x + bw, y + bh) for x, y, bw, bh, area in stats[1:n] if area >= 0.02 * w * h]
            out.append(
                Detections(
                    np.array(boxes, np.float32).reshape(-1, 4),
                    [0.9] * len(boxes),
                    [0] * len(boxes),
                    self.class_names,
                )
            )
        return out

    def seen(self) -> set[tuple[int, int]]:
        with self._lock:
            return set(self.sizes)


def wait_for(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return bool(cond())


@pytest.fixture
def factory(_sqlite_template: Path, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(sqlite_copy(_sqlite_template, tmp_path))
    f = make_session_factory(engine)
    seed(f, tmp_path)
    yield f
    engine.dispose()


def test_sub_stream_is_analysed_at_its_resolution_and_a_switch_needs_no_restart(
    rtsp_server: Callable[..., RtspServer], factory: sessionmaker[Session], tmp_path: Path
) -> None:
    server = rtsp_server({
        "/main": Synthetic(width=640, height=360, gop=25, pattern="smpte"),
        "/sub": Synthetic(width=320, height=180, gop=25, pattern="smpte"),
    })  # fmt: skip
    with transaction(factory) as session:
        session.execute(update(Camera).where(Camera.id != CAM).values(enabled=False))
        session.execute(
            update(Camera).where(Camera.id == CAM).values(url=server.url("/main"), sub_url=server.url("/sub"))
        )
        zones = [{"name": "bar", "polygon": BAR, **RULE}, {"name": "right", "polygon": RIGHT, **RULE}]
        save_zones(session, CAM, {"zones": zones}, author=None)
    bus = MemoryBus()
    board = MemoryHealthBoard()
    detector = BrightBlobDetector()
    worker = Worker(
        worker_id="w-sub",
        session_factory=factory,
        bus=bus,
        leases=MemoryLeaseStore(),
        evidence=FileEvidenceStore(tmp_path / "evidence"),
        backend=ClassicConfig(),
        ingest=IngestSettings(analysis_fps=4.0, analysis_width=640),  # 640: the main stream is not downscaled
        detector=detector,
        poll_s=3600,  # no polling: the change must come over the bus
        health_board=board,
    )
    events: list[RuleEvent] = []

    def started(zone: str) -> int:
        for d in bus.consume(RULE_EVENTS, group="test", consumer="t", block_ms=0):
            if isinstance(d.message, RuleEvent):  # event clips travel on the same topic
                events.append(d.message)
        return sum(1 for e in events if e.zone == zone and e.type == "started")

    app = create_app(
        ApiSettings(secret_key=TEST_SECRET), session_factory=factory,
        desk=TicketDesk(TicketSettings(), evidence=FileEvidenceStore(tmp_path / "evidence")), bus=bus,
        health_board=board,
    )  # fmt: skip
    worker.start()
    try:
        with TestClient(app) as client:
            token = client.post("/api/auth/token", data={"username": "admin1", "password": sample.PASSWORD})
            headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
            assert client.get(f"/api/cameras/{CAM}", headers=headers).json()["analysed_stream"] == "sub"
            # auto: the sub-stream, at its own resolution (never upscaled to the analysis width)
            assert wait_for(lambda: started("bar") >= 1, 60), (events, detector.seen())
            assert detector.seen() == {(320, 180)}
            health = worker.health()[str(CAM)]
            assert (health["stream"], health["resolution_wh"]) == ("sub", [320, 180])

            resp = client.patch(f"/api/cameras/{CAM}", json={"analysis_stream": "main"}, headers=headers)
            assert resp.status_code == 200, resp.text
            assert (resp.json()["analysis_stream"], resp.json()["analysed_stream"]) == ("main", "main")
            # the same worker, the same zones: now on the main stream's pixels
            assert wait_for(lambda: (640, 360) in detector.seen() and started("bar") >= 2, 60), (
                events,
                detector.seen(),
            )
            health = worker.health()[str(CAM)]
            assert (health["stream"], health["resolution_wh"]) == ("main", [640, 360])
            # what the API shows (the worker posts its health every 2 s)
            posted = lambda: client.get(f"/api/cameras/{CAM}/health", headers=headers).json()  # noqa: E731
            assert wait_for(lambda: posted().get("resolution_wh") == [640, 360], 30), posted()
            assert posted()["stream"] == "main"
            assert started("right") == 0
            assert {e.zone for e in events} == {"bar"}
    finally:
        worker.stop()
