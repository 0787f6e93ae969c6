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
    """A simulated camera: a file read at its own clock is sampled at 2 fps of stream time and never
    delivered ahead of the wall clock (unpaced, the 8 s clip would be decoded in a blink, over and over).

    The one wall-clock comparison here is one-sided: a loaded machine can only make the reader *later*,
    never earlier, so it cannot turn flaky. How many frames a second it keeps up with is a benchmark
    figure (bench/bench_ingest.py)."""
    out = LatestFrameQueue(100)
    started_at = time.time()  # before the reader exists: its pace origin is later than this
    reader = StreamReader(
        "cam-sim", str(clips["mp4"]), stream=StreamOptions(loop=True, realtime=True),
        sampling=SamplingOptions(analysis_fps=2.0, analysis_width=64), output=out,
    ).start()  # fmt: skip
    try:
        deadline = time.monotonic() + 30  # a safety bound: 6 frames are 2.5 s of stream time
        while reader.health.analysed.count < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        reader.stop(5)
    frames = [f for f in drain(out) if isinstance(f, SampledFrame)]
    assert len(frames) >= 6
    timed = [f.stream_ts for f in frames if f.stream_ts is not None]
    first_pass = [t for t in timed if t <= 7.5]  # the clip is 8 s long; a loop would start again at 0
    gaps = [b - a for a, b in zip(first_pass, first_pass[1:], strict=False)]
    assert len(gaps) >= 5 and all(abs(g - 0.5) <= 0.045 for g in gaps), timed  # 2 fps of stream time
    assert first_pass[0] < 0.05  # from the clip's start
    for f in frames:
        if f.stream_ts is not None and f.stream_ts <= 7.5:
            # paced: a frame leaves the decoder no earlier than its stream time after the reader started
            assert f.capture_ts - started_at >= f.stream_ts - first_pass[0] - 0.05, (f.stream_ts, f.capture_ts)
    # counts: sampled on stream time, one analysed frame for every 12.5 decoded at 25 fps
    snap = reader.health.snapshot()
    n = snap["frames_analysed"]
    assert 11 * (n - 1) <= snap["frames_in"] <= 14 * (n + 1), snap
