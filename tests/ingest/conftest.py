"""Fixtures for ingest tests: clips and RTSP servers (shared, see tests.support.rtsp_fixtures) and
local sockets that misbehave like broken cameras."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from tests.support.rtsp_fixtures import clips, gstreamer, rtsp_server  # noqa: F401 (fixtures)


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
