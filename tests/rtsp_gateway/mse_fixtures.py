"""Fixtures for the browser live view: GStreamer's rtsp-server as an H.264 and an H.265 camera, the
real media hub in front of them, and the API app serving ``/api/cameras/{id}/live`` over a seeded
SQLite database.

The H.265 camera needs a launch line the shared ``tests.support.rtsp_server`` does not know; this module
runs that script's server half with one more mount kind (a raw GStreamer launch line).

Import them from a test module::

    from tests.rtsp_gateway.mse_fixtures import live_cameras, live_stack  # noqa: F401
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.settings import ApiSettings
from models.bus.memory import MemoryBus
from models.db.engine import make_engine, make_session_factory
from models.db.tables import Camera
from rtsp_gateway.hub import HubSettings, MediaHub
from rtsp_gateway.media import NoSuchStream, StreamKind
from rtsp_gateway.mse import LiveViewServer
from tests.conftest import TEST_SECRET, seed
from tests.support import sample
from tests.support.databases import sqlite_copy
from tests.support.rtsp_server import SYSTEM_PYTHON, free_port, gstreamer_available

REPO = Path(__file__).resolve().parents[2]
H264_LAUNCH = (
    "( videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=180,framerate=25/1 ! "
    "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 bframes=0 bitrate=500 ! "
    "h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )"
)
H265_LAUNCH = (
    "( videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=180,framerate=25/1 ! "
    "x265enc tune=zerolatency speed-preset=ultrafast key-int-max=25 bitrate=500 ! "
    "h265parse ! rtph265pay name=pay0 pt=96 config-interval=1 )"
)
#: runs tests/support/rtsp_server.py's server half with a "launch" mount kind (a raw launch line)
_SERVER_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
from tests.support import rtsp_server as rs
plain = rs._launch_line
rs._launch_line = lambda mount, udp: mount["launch"] if mount["kind"] == "launch" else plain(mount, udp)
rs._serve(json.loads(sys.argv[2]))
"""


class LaunchServer:
    """GStreamer rtsp-server with ``{path: launch line}`` mounts, in a subprocess on 127.0.0.1."""

    def __init__(self, mounts: dict[str, str]) -> None:
        self.port = free_port()
        spec = {
            "port": self.port,
            "mounts": {p: {"kind": "launch", "launch": line} for p, line in mounts.items()},
        }
        self._proc = subprocess.Popen(
            [SYSTEM_PYTHON, "-c", _SERVER_SCRIPT, str(REPO), json.dumps(spec)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()
        if not line.startswith("READY"):
            self.stop()
            raise RuntimeError(f"rtsp server did not start: {line!r}")

    def url(self, path: str) -> str:
        return f"rtsp://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        if self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait(timeout=5)
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture(scope="module")
def live_cameras() -> Iterator[LaunchServer]:
    """An H.264 camera at ``/h264`` and an H.265 camera at ``/h265`` (320x180, 25 fps, GOP 1 s)."""
    from tests.support.require import require

    require(gstreamer_available(), "GStreamer rtsp-server for /usr/bin/python3 (gir1.2-gst-rtsp-server-1.0)")
    server = LaunchServer({"/h264": H264_LAUNCH, "/h265": H265_LAUNCH})
    yield server
    server.stop()


@dataclass
class LiveStack:
    client: TestClient
    hub: MediaHub
    live: LiveViewServer
    factory: sessionmaker[Session]
    bus: MemoryBus
    #: camera name → id (cam-g1-a plays H.264, cam-g1-b H.265; leader-g1 sees both, leader-g3 neither)
    cameras: dict[str, int]
    headers: Callable[[str], dict[str, str]]

    def token(self, username: str) -> str:
        return self.headers(username)["Authorization"].removeprefix("Bearer ")


@pytest.fixture(scope="module")
def live_stack(
    live_cameras: LaunchServer, tmp_path_factory: pytest.TempPathFactory, _sqlite_template: Path
) -> Iterator[LiveStack]:
    """One app, hub and database for a test module (seeding hashes every sample user's password)."""
    tmp_path = tmp_path_factory.mktemp("live")
    factory = make_session_factory(make_engine(sqlite_copy(_sqlite_template, tmp_path)))
    seed(factory, tmp_path)
    with factory() as session:
        cameras = {c.name: c.id for c in session.scalars(select(Camera))}
    paths = {cameras["cam-g1-a"]: "/h264", cameras["cam-g1-b"]: "/h265"}

    async def resolve(camera_id: int, stream: StreamKind) -> str:
        if camera_id not in paths or stream != "main":
            raise NoSuchStream(f"camera {camera_id} has no {stream} stream")
        return live_cameras.url(paths[camera_id])

    hub = MediaHub(resolve, settings=HubSettings(linger_s=1.0))
    live = LiveViewServer(hub)
    bus = MemoryBus()
    app = create_app(
        ApiSettings(secret_key=TEST_SECRET, stream_recheck_s=2.0),
        session_factory=factory,
        bus=bus,
        live_video=live,
    )
    cache: dict[str, dict[str, str]] = {}
    with TestClient(app) as client:

        def headers(username: str) -> dict[str, str]:
            if username not in cache:
                r = client.post("/api/auth/token", data={"username": username, "password": sample.PASSWORD})
                assert r.status_code == 200, r.text
                cache[username] = {"Authorization": f"Bearer {r.json()['access_token']}"}
            return cache[username]

        yield LiveStack(client, hub, live, factory, bus, cameras, headers)
        client.portal.call(hub.close)  # type: ignore[union-attr]


def fmp4_frames(data: bytes) -> tuple[str, int, int]:
    """Decode a concatenated fMP4 stream with PyAV: (codec name, frames, width)."""
    import io

    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return stream.codec_context.name, frames, stream.codec_context.width
