"""Pytest fixtures around :mod:`tests.support.rtsp_server`, for any test package that needs cameras.

Use them from a ``conftest.py`` by importing them::

    from tests.support.rtsp_fixtures import clips, gstreamer, rtsp_server  # noqa: F401

* ``clips`` (session): ``{"mp4": Path, "ts": Path}``, 320x180 @ 25 fps, GOP 25 (a keyframe a
  second), 8 s, testsrc2 H.264 without B-frames, made once per session with ffmpeg;
* ``rtsp_server``: a factory ``rtsp_server({"/cam": Synthetic()}, credentials=("u", "p"))`` that
  returns a started :class:`~tests.support.rtsp_server.RtspServer`; all are stopped after the test.

Both ``require`` their real components (ffmpeg; GStreamer's rtsp-server for ``/usr/bin/python3``):
skipped on a developer machine without them, failed under ``CI=true``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from tests.support.require import require
from tests.support.rtsp_server import Mount, RtspServer, gstreamer_available, make_clip


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
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
    servers: list[RtspServer] = []

    def start(mounts: Mapping[str, Mount], **kwargs: object) -> RtspServer:
        server = RtspServer(mounts, **kwargs)  # type: ignore[arg-type]
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()
