"""The closed loop end to end: a camera served by GStreamer's rtsp-server shows a cart left in a fire
lane; it is registered with the CLI, its zones set with the CLI, and GridPatrol opens a ticket for
that grid's leader with an annotated evidence image. The leader sees it; the other grid's leader does
not. What is asserted is states and their order (the worker streamed, then the ticket was opened and
dispatched with its evidence), not how many seconds it took: the delay from the cart's arrival to a
readable ticket is measured by ``bench/bench_slice.py``.

- SQLite: ``gridpatrol serve`` alone (embedded: in-process bus, worker and ticketer inside).
- PostgreSQL: ``gridpatrol worker`` + ``gridpatrol ticketer`` + ``gridpatrol serve --no-worker
  --no-ticketer`` as separate processes over Redis.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from gridpatrol.democlip import LeftObject, write_clip, zones_document
from tests.models.test_bus import REDIS_URL, redis_available
from tests.support import sample
from tests.support.procs import background, free_port, run_cli, serving
from tests.support.require import require
from tests.support.rtsp_server import Clip, RtspServer, gstreamer_available

DWELL_S = 5.0
ARRIVES_S = 8.0
STREAMING = re.compile(r"^\S+ \S+ INFO ingest\.reader: (\d+): streaming ", re.M)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("slice")
    return write_clip(folder / "fire-lane.mp4", seconds=45, fps=10, left=LeftObject(ARRIVES_S, 45.0))


def streamed_cameras(log: Path) -> list[int]:
    """The camera ids the worker logged it started streaming, in order."""
    return [int(m.group(1)) for m in STREAMING.finditer(log.read_text(errors="replace"))]


def test_left_object_becomes_the_leaders_ticket(db_url: str, clip: Path, tmp_path: Path) -> None:
    require(gstreamer_available(), "GStreamer rtsp-server for /usr/bin/python3 (gir1.2-gst-rtsp-server-1.0)")
    distributed = not db_url.startswith("sqlite")
    if distributed:
        require(redis_available(), "Redis on 127.0.0.1:6379")
    data = tmp_path / "var"
    env = {
        "GRIDPATROL_DATA_DIR": str(data),
        "GRIDPATROL_DATABASE_URL": db_url.replace("postgresql+psycopg://", "postgresql://"),
        "GRIDPATROL_SECRET_KEY": "slice-secret-key-with-at-least-32-characters",
        "GRIDPATROL_ANALYSIS_FPS": "4",
    }
    if distributed:
        env |= {"GRIDPATROL_REDIS_URL": REDIS_URL, "GRIDPATROL_BUS_NAMESPACE": f"slice-{uuid.uuid4().hex[:8]}:"}

    with ExitStack() as stack:
        server = stack.enter_context(RtspServer({"/fire-lane": Clip(str(clip))}))
        grids, _ = sample.write_files(tmp_path)
        lon, lat = sample.point_in("G1")
        cams = tmp_path / "cams.csv"
        cams.write_text(f"name,url,lon,lat\n消防通道-1,{server.url('/fire-lane')},{lon},{lat}\n", encoding="utf-8")
        zones = tmp_path / "zones.json"
        zones.write_text(json.dumps(zones_document(dwell_s=DWELL_S), ensure_ascii=False), encoding="utf-8")
        for args in (
            ["grids", "import", str(grids)],
            ["cameras", "import", str(cams)],
            ["zones", "set", "消防通道-1", str(zones)],
            ["users", "add", "leader-g1", "--role", "grid_leader", "--grid", "G1", "--password", sample.PASSWORD],
            ["users", "add", "leader-g3", "--role", "grid_leader", "--grid", "G3", "--password", sample.PASSWORD],
        ):
            result = run_cli(args, env)
            assert result.returncode == 0, result.stderr

        port = free_port()
        worker_log = data / f"serve-{port}.log"
        if distributed:
            worker_log = tmp_path / "worker.log"
            stack.enter_context(background(["ticketer"], env, tmp_path / "ticketer.log"))
            stack.enter_context(background(["worker"], env, worker_log))
            base = stack.enter_context(serving(["serve", "--port", str(port), "--no-worker", "--no-ticketer"], env, port=port))
        else:
            base = stack.enter_context(serving(["serve", "--port", str(port)], env, port=port))

        def login(user: str) -> dict[str, str]:
            r = httpx.post(f"{base}/api/auth/token", data={"username": user, "password": sample.PASSWORD})
            assert r.status_code == 200, r.text
            return {"Authorization": f"Bearer {r.json()['access_token']}"}

        g1, g3 = login("leader-g1"), login("leader-g3")
        # a safety bound for a loaded machine (the clip is 45 s; the cart stands from 8 s): not the assertion
        deadline = time.monotonic() + 120
        tickets: list[dict] = []
        while not tickets:
            assert time.monotonic() < deadline, "no ticket yet:\n" + worker_log.read_text(errors="replace")[-3000:]
            time.sleep(0.25)
            tickets = httpx.get(f"{base}/api/tickets", headers=g1).json()["items"]

        assert len(tickets) == 1, tickets  # one episode, one ticket: no flood
        t = tickets[0]
        # the worker streamed this camera before the ticket was opened (the log is written first)
        assert t["camera_id"] in streamed_cameras(worker_log), "the worker never logged that it was streaming"
        assert (t["category"], t["grid_code"], t["state"], t["assignee"], t["rule"]) == (
            "fire_lane_blockage",
            "G1",
            "dispatched",
            "leader-g1",
            "fire_lane_blockage",
        )
        assert httpx.get(f"{base}/api/tickets", headers=g3).json()["items"] == []
        assert httpx.get(f"{base}/api/tickets/{t['id']}", headers=g3).status_code == 404
        image = httpx.get(f"{base}{t['evidence_url']}", headers=g1)
        assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
        picture = cv2.imdecode(np.frombuffer(image.content, np.uint8), cv2.IMREAD_COLOR)
        assert picture is not None and picture.shape[1] >= 320
        assert httpx.get(f"{base}{t['evidence_url']}", headers=g3).status_code == 404

        # the camera's stream health, as the worker posts it, through the same access check
        health = httpx.get(f"{base}/api/cameras/{t['camera_id']}/health", headers=g1).json()
        assert health["state"] == "streaming", health
        # counts, not the wall-clock input_fps: frames were decoded and some were analysed
        assert health["frames_in"] > 0 and health["frames_analysed"] > 0
        assert health["resolution_wh"] == [640, 360] and health["codec"] == "h264"
        assert health["worker"].startswith("worker-")
        assert httpx.get(f"{base}/api/cameras/{t['camera_id']}/health", headers=g3).status_code == 404
        if not distributed:
            metrics = httpx.get(f"{base}/metrics").text
            assert f'gridpatrol_camera_received_bytes_total{{camera="{t["camera_id"]}"}}' in metrics
            assert "rtsp://" not in metrics
