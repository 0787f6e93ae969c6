"""Two ``gridpatrol ticketer`` processes on PostgreSQL and Redis, one camera no worker reports: each notice,
"offline" then "back online", reaches the webhook receiver exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import select

from models.bus.health_board import RedisHealthBoard
from models.db.engine import make_engine, make_session_factory
from models.db.tables import Camera
from tests.conftest import seed
from tests.models.test_bus import REDIS_URL, redis_available
from tests.support.databases import truncate_all
from tests.support.procs import GRIDPATROL
from tests.support.require import require


@pytest.fixture
def pg_url(_postgres_url: str | None) -> str:
    require(_postgres_url is not None, "PostgreSQL on 127.0.0.1:5432")
    require(redis_available(), "Redis on 127.0.0.1:6379")
    assert _postgres_url is not None
    truncate_all(_postgres_url)
    return _postgres_url


def wait_until(check: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.2)


def test_two_ticketers_announce_an_outage_once(pg_url: str, tmp_path: Path) -> None:
    engine = make_engine(pg_url)
    factory = make_session_factory(engine)
    seed(factory, tmp_path)
    with factory() as s:
        ids = {name: cid for name, cid in s.execute(select(Camera.name, Camera.id))}
    engine.dispose()
    received: list[tuple[str, dict[str, object]]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            received.append((self.headers["X-GridPatrol-Event"], body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ns = f"test-{uuid.uuid4().hex[:8]}:"
    board = RedisHealthBoard(REDIS_URL, namespace=ns)
    env = {
        **os.environ,
        "GRIDPATROL_DATABASE_URL": pg_url,
        "GRIDPATROL_REDIS_URL": REDIS_URL,
        "GRIDPATROL_BUS_NAMESPACE": ns,
        "GRIDPATROL_DATA_DIR": str(tmp_path / "var"),
        "GRIDPATROL_CAMERA_OFFLINE_NOTICE_S": "10",
        "GRIDPATROL_WEBHOOK_URLS": json.dumps([f"http://127.0.0.1:{server.server_address[1]}/hook"]),
        "GRIDPATROL_WEBHOOK_SECRET": "a-webhook-secret-for-this-test-only",
    }
    logs = [(tmp_path / f"ticketer{i}.log").open("wb") for i in range(2)]
    procs = [
        subprocess.Popen([GRIDPATROL, "ticketer"], env=env, stdout=log, stderr=subprocess.STDOUT)
        for log in logs
    ]
    up = {str(ids[n]): {"state": "streaming"} for n in ("cam-g1-a", "cam-g1-b", "cam-g2-a")}

    def worker_posts(*extra: str) -> Callable[[], bool]:
        def check() -> bool:
            board.publish("worker-test", {**up, **{str(ids[n]): {"state": "streaming"} for n in extra}})
            return False

        return check

    def posted(event: str) -> bool:
        return any(e == event for e, _ in received)

    try:
        # cam-g3-a: no worker reports it; the others stream
        post = worker_posts()
        wait_until(lambda: post() or posted("camera.offline"), timeout=60, what="the offline notice")
        post = worker_posts("cam-g3-a")
        wait_until(lambda: post() or posted("camera.online"), timeout=30, what="the back-online notice")
        time.sleep(4)  # a further look of both ticketers (every 2.5 s): nothing more may come
        assert all(p.poll() is None for p in procs)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
        server.shutdown()
        server.server_close()
    logs_text = "".join((tmp_path / f"ticketer{i}.log").read_text(errors="replace") for i in range(2))
    # besides the patrol reports' report_ready
    cameras = [(e, b) for e, b in received if e.startswith("camera.")]
    assert [e for e, _ in cameras] == ["camera.offline", "camera.online"], logs_text
    offline, online = (b for _, b in cameras)
    assert offline["camera"] == online["camera"] == "cam-g3-a" and offline["state"] == "unknown"
    assert float(online["duration_s"]) >= 10.0  # type: ignore[arg-type]
