"""The same reader on other sources: RTSP over UDP, HTTP, files that loop at their own pace."""

from __future__ import annotations

import functools
import http.server
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ingest.handoff import EndOfStream, LatestFrameQueue, SampledFrame
from ingest.health import CameraState
from ingest.reader import StreamOptions, StreamReader
from ingest.sampling import SamplingOptions
from tests.support.rtsp_server import RtspServer, Synthetic


def drain(q: LatestFrameQueue) -> list[SampledFrame | EndOfStream]:
    items: list[SampledFrame | EndOfStream] = []
    while q.qsize():
        items.append(q.get(0))
    return items


@pytest.fixture
def http_clips(clips: dict[str, Path]) -> Iterator[str]:
    """The clips folder served over HTTP on loopback by Python's own (quiet) server."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(clips["mp4"].parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_source_through_the_same_reader(http_clips: str, clips: dict[str, Path]) -> None:
    out = LatestFrameQueue(100)
    # MPEG-TS: read front to back (an .mp4 with its index at the end makes FFmpeg seek, which
    # Python's http.server does not support)
    reader = StreamReader(
        "cam-http", f"{http_clips}/{clips['ts'].name}",
        stream=StreamOptions(reconnect_at_eof=False), sampling=SamplingOptions(analysis_fps=1.0), output=out,
    ).start()  # fmt: skip
    assert reader.join(15)
    items = drain(out)
    assert isinstance(items[-1], EndOfStream) and items[-1].reason == "eof"
    assert len([i for i in items if isinstance(i, SampledFrame)]) == 8  # 8 s at 1 fps of stream time
    assert reader.health.snapshot()["frames_in"] == 200


def test_http_not_found_is_classified(http_clips: str) -> None:
    reader = StreamReader("cam-http-404", f"{http_clips}/missing.mp4", stream=StreamOptions(max_retries=0)).start()
    assert reader.join(10)
    assert (reader.health.state, reader.health.reason) == (CameraState.FAILED, "not_found")


def test_rtsp_over_udp(rtsp_server: Callable[..., RtspServer]) -> None:
    server = rtsp_server({"/live": Synthetic(width=320, height=180)})
    reader = StreamReader("cam-udp", server.url("/live"), stream=StreamOptions(transport="udp")).start()
    try:
        deadline = time.monotonic() + 15
        while reader.health.input.count < 25 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert reader.health.input.count >= 25
        assert reader.health.state is CameraState.STREAMING
    finally:
        reader.stop(5)


def test_looping_file_paced_to_its_clock(clips: dict[str, Path]) -> None:
    """A simulated camera: a file looped at real time keeps 25 fps of input and its analysis rate."""
    reader = StreamReader(
        "cam-sim", str(clips["mp4"]), stream=StreamOptions(loop=True, realtime=True),
        sampling=SamplingOptions(analysis_fps=2.0, analysis_width=64), output=LatestFrameQueue(100),
    ).start()  # fmt: skip
    try:
        time.sleep(3.0)
        snap = reader.health.snapshot()
    finally:
        reader.stop(5)
    assert 60 <= snap["frames_in"] <= 90  # ~3 s x 25 fps, not thousands
    assert 5 <= snap["frames_analysed"] <= 8
