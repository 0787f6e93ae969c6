"""Fixtures for ingest tests: generated clips (once per session) and GStreamer RTSP servers."""

from __future__ import annotations

import shutil
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from tests.support.require import require
from tests.support.rtsp_server import Mount, RtspServer, gstreamer_available, make_clip


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small H.264 clips: 320x180 @ 25 fps, GOP 25 (a keyframe a second), 8 s, as .mp4 and .ts."""
    require(shutil.which("ffmpeg") is not None, "ffmpeg (Debian package ffmpeg)")
    folder = tmp_path_factory.mktemp("clips")
    return {
        "mp4": make_clip(folder / "c180.mp4", width=320, height=180, fps=25, seconds=8, gop=25),
        "ts": make_clip(folder / "c180.ts", width=320, height=180, fps=25, seconds=8, gop=25),
    }


@pytest.fixture(scope="session")
def gstreamer() -> None:
    require(gstreamer_available(), "GStreamer rtsp-server for /usr/bin/python3 (gir1.2-gst-rtsp-server-1.0)")


@pytest.fixture
def rtsp_server(gstreamer: None) -> Iterator[Callable[..., RtspServer]]:
    """Factory: ``rtsp_server({"/path": Synthetic(...)}, credentials=...)`` started; all stopped after."""
    servers: list[RtspServer] = []

    def start(mounts: Mapping[str, Mount], **kwargs: object) -> RtspServer:
        server = RtspServer(mounts, **kwargs)  # type: ignore[arg-type]
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A local TCP port that accepts connections (kernel backlog) and never answers a byte."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield int(sock.getsockname()[1])
    sock.close()


@pytest.fixture
def refused_port() -> int:
    """A local TCP port with nobody listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def garbage_port() -> Iterator[int]:
    """A local TCP port that answers every connection with bytes that are not RTSP, then hangs up."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            with conn:
                try:
                    conn.recv(4096)
                    conn.sendall(b"\x00\xffSSH-2.0-not-a-camera\r\n" * 64)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(sock.getsockname()[1])
    done.set()
    thread.join(2)
    sock.close()
