"""Evidence across machines that share no filesystem: a worker, a ticketer and the API run as separate
processes, each with a data directory of its own, over PostgreSQL and Redis with
``GRIDPATROL_EVIDENCE_STORE=database``. The worker's annotated evidence image of a cart in a fire lane
is served by the API to the grid's leader, and no data directory holds an evidence file."""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from sqlalchemy import func, select

from gridpatrol.democlip import LeftObject, write_clip, zones_document
from models.db.engine import make_engine
from models.db.tables import EvidenceBlob
from tests.models.test_bus import REDIS_URL, redis_available
from tests.support import sample
from tests.support.databases import truncate_all
from tests.support.procs import background, free_port, run_cli, serving
from tests.support.require import require
from tests.support.rtsp_server import Clip, RtspServer, gstreamer_available


def evidence_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and p.suffix in {".jpg", ".png", ".mp4"}]


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> str:
    """Machines without a shared filesystem share a PostgreSQL server (not a SQLite file)."""
    url: str | None = request.getfixturevalue("_postgres_url")
    require(url is not None, "PostgreSQL on 127.0.0.1:5432")
    assert url is not None
    truncate_all(url)
    return url


def test_the_api_serves_evidence_a_worker_wrote_elsewhere(pg_url: str, tmp_path: Path) -> None:
    require(gstreamer_available(), "GStreamer rtsp-server for /usr/bin/python3 (gir1.2-gst-rtsp-server-1.0)")
    require(redis_available(), "Redis on 127.0.0.1:6379")
    clip = write_clip(tmp_path / "fire-lane.mp4", seconds=40, fps=10, left=LeftObject(6.0, 40.0))
    common = {
        "GRIDPATROL_DATABASE_URL": pg_url.replace("postgresql+psycopg://", "postgresql://"),
        "GRIDPATROL_REDIS_URL": REDIS_URL,
        "GRIDPATROL_BUS_NAMESPACE": f"evidence-{uuid.uuid4().hex[:8]}:",
        "GRIDPATROL_SECRET_KEY": "evidence-secret-key-with-at-least-32-characters",
        "GRIDPATROL_CREDENTIALS_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="),
        "GRIDPATROL_EVIDENCE_STORE": "database",
        "GRIDPATROL_ANALYSIS_FPS": "4",
    }
    homes = {name: tmp_path / name for name in ("admin", "worker", "ticketer", "api")}

    def env(home: str) -> dict[str, str]:
        return {**common, "GRIDPATROL_DATA_DIR": str(homes[home])}

    with ExitStack() as stack:
        server = stack.enter_context(RtspServer({"/fire-lane": Clip(str(clip))}))
        grids, _ = sample.write_files(tmp_path)
        lon, lat = sample.point_in("G1")
        cams = tmp_path / "cams.csv"
        cams.write_text(f"name,url,lon,lat\n消防通道-1,{server.url('/fire-lane')},{lon},{lat}\n", encoding="utf-8")
        zones = tmp_path / "zones.json"
        zones.write_text(json.dumps(zones_document(dwell_s=4.0), ensure_ascii=False), encoding="utf-8")
        for args in (
            ["grids", "import", str(grids)],
            ["cameras", "import", str(cams)],
            ["zones", "set", "消防通道-1", str(zones)],
            ["users", "add", "leader-g1", "--role", "grid_leader", "--grid", "G1", "--password", sample.PASSWORD],
        ):
            result = run_cli(args, env("admin"))
            assert result.returncode == 0, result.stderr
        stack.enter_context(background(["ticketer"], env("ticketer"), tmp_path / "ticketer.log"))
        stack.enter_context(background(["worker"], env("worker"), tmp_path / "worker.log"))
        port = free_port()
        args = ["serve", "--port", str(port), "--no-worker", "--no-ticketer", "--no-gateway"]
        base = stack.enter_context(serving(args, env("api"), port=port))
        token = httpx.post(f"{base}/api/auth/token", data={"username": "leader-g1", "password": sample.PASSWORD})
        leader = {"Authorization": f"Bearer {token.json()['access_token']}"}

        deadline = time.monotonic() + 120  # a bound for a loaded machine, not the assertion
        tickets: list[dict] = []
        while not (tickets and tickets[0]["evidence_url"]):
            log = (tmp_path / "worker.log").read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, f"no ticket with evidence yet; worker log:\n{log}"
            time.sleep(0.5)
            tickets = httpx.get(f"{base}/api/tickets", headers=leader).json()["items"]
        image = httpx.get(f"{base}{tickets[0]['evidence_url']}", headers=leader)
        assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg", image.text[:200]
        picture = cv2.imdecode(np.frombuffer(image.content, np.uint8), cv2.IMREAD_COLOR)
        assert picture is not None and picture.shape[:2] == (360, 640)

    # the image crossed in the database: a row there, no file in any process's data directory
    engine = make_engine(common["GRIDPATROL_DATABASE_URL"])
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(EvidenceBlob)) >= 1
    engine.dispose()
    for home in homes.values():
        assert evidence_files(home) == [], home
