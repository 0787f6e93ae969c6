"""The zone editor's preview: edited zones run over a recorded clip (or the camera's live stream) with
the workers' pipeline answer when and where each rule fires, with the boxes, without saving anything;
bad zones are a 422 naming the zone; only those who configure the camera may preview. Saved versions
are listed with their author and can be restored as a new version."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.settings import ApiSettings
from detectors.backends import ClassicConfig
from gridpatrol.democlip import FIRE_LANE, LeftObject, write_clip
from gridpatrol.zone_preview import PreviewLimits, ZonePreviewService
from models.bus.memory import MemoryBus
from models.db.tables import AccessLog, Camera
from models.tickets.desk import TicketDesk
from tests.conftest import TEST_SECRET
from tests.support import sample
from tests.support.databases import sqlite_copy
from tests.support.rtsp_fixtures import gstreamer, rtsp_server  # noqa: F401 (fixtures)
from tests.support.rtsp_server import Clip, RtspServer

Headers = Callable[[str], dict[str, str]]
LANE = {
    "name": "消防通道",
    "kind": "fire_lane",
    "polygon": FIRE_LANE,
    "dwell_s": 5,
    "coverage": 0.05,
    "clear_s": 3,
}
ARRIVES_S, LEAVES_S = 6.0, 20.0


@pytest.fixture(scope="module")
def clips_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    write_clip(folder / "cart-in-lane.mp4", seconds=26, fps=5, left=LeftObject(ARRIVES_S, LEAVES_S))
    return folder


@pytest.fixture
def db_url(tmp_path: Path, _sqlite_template: Path) -> str:
    """SQLite only: the preview reads no tables of its own (zones saving runs on both in test_zones_api.py)."""
    return sqlite_copy(_sqlite_template, tmp_path)


@pytest.fixture
def app_client(seeded: sessionmaker[Session], desk: TicketDesk, clips_dir: Path) -> Iterator[TestClient]:
    previewer = ZonePreviewService(
        clips_dir=clips_dir,
        backend=ClassicConfig(),
        session_factory=seeded,
        limits=PreviewLimits(max_frames=200),
    )
    app = create_app(
        ApiSettings(secret_key=TEST_SECRET),
        session_factory=seeded,
        desk=desk,
        bus=MemoryBus(),
        zone_previewer=previewer,
    )
    with TestClient(app) as c:
        yield c


@pytest.fixture
def headers(app_client: TestClient) -> Headers:
    def make(username: str) -> dict[str, str]:
        r = app_client.post("/api/auth/token", data={"username": username, "password": sample.PASSWORD})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    return make


@pytest.fixture
def cams(seeded: sessionmaker[Session]) -> dict[str, int]:
    with seeded() as s:
        return {c.name: c.id for c in s.scalars(select(Camera))}


def preview(
    client: TestClient, cam: int, headers: dict[str, str], zones: list[dict], **source: object
) -> object:
    body = {
        "document": {"zones": zones},
        "source": source or {"kind": "clip", "clip": "cart-in-lane.mp4"},
        "fps": 2,
    }
    return client.post(f"/api/cameras/{cam}/zones/preview", headers=headers, json=body)


def test_preview_on_a_clip_shows_when_and_where_the_rule_fires(
    app_client: TestClient, headers: Headers, cams, seeded: sessionmaker[Session]
) -> None:
    op = headers("operator1")
    assert [c["name"] for c in app_client.get("/api/zones/clips", headers=op).json()] == ["cart-in-lane.mp4"]
    r = preview(app_client, cams["cam-g1-a"], op, [LANE])
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["frames"] > 40 and out["backend"] == "classic" and out["resolution_wh"] == [640, 360]
    assert [(e["type"], e["rule"], e["zone"]) for e in out["events"]] == [
        ("started", "fire_lane_blockage", "消防通道"),
        ("ended", "fire_lane_blockage", "消防通道"),
    ]
    started, ended = out["events"]
    assert ARRIVES_S + LANE["dwell_s"] <= started["t"] <= LEAVES_S and LEAVES_S <= ended["t"] <= LEAVES_S + 8
    assert started["boxes"], "the boxes that made the rule fire"
    (x0, y0), (x1, y1) = FIRE_LANE[0], FIRE_LANE[2]
    for box in started["boxes"]:
        bx1, by1, bx2, by2 = box["xyxy_norm"]
        assert x0 - 0.02 <= (bx1 + bx2) / 2 <= x1 + 0.02 and y0 - 0.02 <= by2 <= y1 + 0.02, box
    assert started["image"].startswith("data:image/jpeg;base64,")
    # a preview saves nothing, and it is a view of the camera's pictures: in the access log
    with seeded() as s:
        views = s.scalars(
            select(AccessLog).where(AccessLog.username == "operator1", AccessLog.action == "view")
        ).all()
    assert any(v.detail.get("preview") == "clip" and v.object_id == str(cams["cam-g1-a"]) for v in views)
    assert app_client.get(f"/api/cameras/{cams['cam-g1-a']}/zones", headers=op).json()["version"] == 0
    # a mask over the lane silences it
    mask = {"name": "屏蔽", "kind": "mask", "polygon": [[0.5, 0.5], [1.0, 0.5], [1.0, 1.0], [0.5, 1.0]]}
    r = preview(app_client, cams["cam-g1-a"], op, [LANE, mask])
    assert r.status_code == 200, r.text
    assert r.json()["frames"] > 40 and r.json()["events"] == []


BAD = [
    (
        {"zones": [{**LANE, "polygon": [[0.1, 0.1], [0.9, 0.9], [0.9, 0.1], [0.1, 0.9]]}]},
        None,
        422,
        "zone '消防通道'",
    ),
    ({"zones": [{**LANE, "dwell_s": -1}]}, None, 422, "dwell_s"),
    ({"zones": [LANE]}, {"kind": "clip", "clip": "../secret.mp4"}, 422, "clip"),
    ({"zones": [LANE]}, {"kind": "clip", "clip": "missing.mp4"}, 404, "missing.mp4"),
    ({"zones": [LANE]}, {"kind": "clip"}, 404, "clip"),
    ({"zones": [LANE]}, {"kind": "recent", "seconds": 600}, 422, "seconds"),
]


def test_bad_input_is_a_clear_4xx_and_only_configurers_preview(
    app_client: TestClient, headers: Headers, cams
) -> None:
    op = headers("operator1")
    for document, source, status, names in BAD:  # one app for the table: each row is a cheap refusal
        body = {"document": document, "source": source or {"kind": "clip", "clip": "cart-in-lane.mp4"}}
        r = app_client.post(f"/api/cameras/{cams['cam-g1-a']}/zones/preview", headers=op, json=body)
        assert (r.status_code, names in r.json()["detail"] + str(r.json()["field"])) == (status, True), (
            document,
            source,
            r.text,
        )
    assert preview(app_client, cams["cam-g1-a"], headers("leader-g1"), [LANE]).status_code == 403
    assert preview(app_client, cams["cam-g3-a"], headers("leader-g1"), [LANE]).status_code == 404
    assert app_client.get("/api/zones/clips", headers=headers("leader-g1")).status_code == 403


def test_versions_are_listed_and_restorable(app_client: TestClient, headers: Headers, cams) -> None:
    cam, op = cams["cam-g1-a"], headers("operator1")
    url = f"/api/cameras/{cam}/zones"
    assert app_client.put(url, headers=op, json={"zones": [LANE]}).status_code == 200
    assert (
        app_client.put(url, headers=headers("admin1"), json={"zones": [{**LANE, "dwell_s": 30}]}).status_code
        == 200
    )
    versions = app_client.get(f"{url}/versions", headers=headers("leader-g1")).json()
    assert [(v["version"], v["author"], v["zones"]) for v in versions] == [
        (2, "admin1", 1),
        (1, "operator1", 1),
    ]
    assert versions[1]["document"]["zones"][0]["dwell_s"] == 5
    r = app_client.post(f"{url}/restore", headers=op, json={"version": 1, "based_on": 2})
    assert r.status_code == 200, r.text
    assert (r.json()["version"], r.json()["author"], r.json()["zones"][0]["dwell_s"]) == (3, "operator1", 5)
    stale = app_client.post(f"{url}/restore", headers=op, json={"version": 2, "based_on": 2})
    assert stale.status_code == 409
    assert app_client.post(f"{url}/restore", headers=op, json={"version": 9}).status_code == 404
    assert (
        app_client.post(f"{url}/restore", headers=headers("leader-g1"), json={"version": 1}).status_code
        == 403
    )
    assert (
        app_client.get(
            f"/api/cameras/{cams['cam-g3-a']}/zones/versions", headers=headers("leader-g1")
        ).status_code
        == 404
    )


def test_preview_of_the_live_stream(
    app_client: TestClient,
    headers: Headers,
    cams,
    seeded,
    clips_dir: Path,
    rtsp_server: Callable[..., RtspServer],  # noqa: F811 (the fixture imported above)
) -> None:
    server = rtsp_server({"/lane": Clip(str(clips_dir / "cart-in-lane.mp4"))})
    with seeded() as s:
        s.execute(update(Camera).where(Camera.id == cams["cam-g1-a"]).values(url=server.url("/lane")))
        s.commit()
    r = preview(app_client, cams["cam-g1-a"], headers("operator1"), [LANE], kind="recent", seconds=3)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["source"]["kind"] == "recent" and out["frames"] >= 4 and out["resolution_wh"] == [640, 360]
