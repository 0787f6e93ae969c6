"""The reader against a real RTSP server (GStreamer rtsp-server) and real failure modes."""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ingest.handoff import EndOfStream, LatestFrameQueue, SampledFrame
from ingest.health import CameraState
from ingest.reader import StreamOptions, StreamReader
from ingest.sampling import SamplingOptions
from tests.support.rtsp_server import Clip, Loop, RtspServer, Synthetic

FAST = StreamOptions(open_timeout_s=2.0, read_timeout_s=2.0, backoff_initial_s=0.2, backoff_max_s=1.0)


def wait_for(pred: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def drain(q: LatestFrameQueue) -> list[SampledFrame | EndOfStream]:
    items: list[SampledFrame | EndOfStream] = []
    while True:
        try:
            items.append(q.get(0))
        except queue.Empty:
            return items


@pytest.mark.parametrize(("codec", "decoder"), [("h264", "h264"), ("h265", "hevc")])
def test_frames_arrive_at_the_configured_rate_and_size(
    rtsp_server: Callable[..., RtspServer], codec: str, decoder: str
) -> None:
    """The same reader, sampling and health for H.264 and H.265 (HEVC) cameras."""
    server = rtsp_server({"/live": Synthetic(width=640, height=360, gop=25, codec=codec)})
    out = LatestFrameQueue(100)
    reader = StreamReader(
        f"cam-rate-{codec}",
        server.url("/live"),
        stream=FAST,
        sampling=SamplingOptions(analysis_fps=2.0, analysis_width=320, display_fps=5.0),
        output=out,
    ).start()
    try:
        assert wait_for(lambda: reader.health.input.count >= 25 * 4, 15)
        tapped = reader.display.latest_bgr(160)
    finally:
        reader.stop(5)
    frames = [f for f in drain(out) if isinstance(f, SampledFrame)]
    timed = [f.stream_ts for f in frames if f.stream_ts is not None]
    gaps = np.diff(timed)
    assert len(timed) >= 7
    assert 0.45 <= float(np.median(gaps)) <= 0.55  # 2 fps of stream time
    assert all(g > 0 for g in gaps)  # in stream order
    assert [f.seq for f in frames] == list(range(1, len(frames) + 1))  # none lost on the way
    assert all(f.image_bgr.shape == (180, 320, 3) for f in frames)  # downscaled, aspect kept
    assert all(b >= a for a, b in zip([f.capture_ts for f in frames], [f.capture_ts for f in frames[1:]], strict=False))
    snap = reader.health.snapshot()
    assert snap["codec"] == decoder and snap["resolution_wh"] == [640, 360]
    assert snap["decode_errors"] == 0
    # counts, not wall-clock rates: one analysed frame per 0.5 s of a 25 fps stream is one in 12.5
    n = snap["frames_analysed"]
    assert n == len(frames)
    assert 11 * (n - 1) <= snap["frames_in"] <= 14 * (n + 1), snap
    assert tapped is not None and tapped[0].shape == (90, 160, 3)


def test_keyframe_only_mode_decodes_only_keyframes(rtsp_server: Callable[..., RtspServer], clips: dict[str, Path]) -> None:
    server = rtsp_server({"/clip": Clip(str(clips["mp4"]))})  # 8 s at 25 fps, GOP 25: 8 keyframes
    out = LatestFrameQueue(100)
    reader = StreamReader(
        "cam-key",
        server.url("/clip"),
        stream=StreamOptions(reconnect_at_eof=False, read_timeout_s=3.0),
        sampling=SamplingOptions(keyframes_only=True, analysis_fps=0),
        output=out,
    ).start()
    assert reader.join(20)
    items = drain(out)
    frames = [f for f in items if isinstance(f, SampledFrame)]
    assert isinstance(items[-1], EndOfStream) and items[-1].reason == "eof"
    snap = reader.health.snapshot()
    assert snap["frames_in"] == snap["keyframes"] == len(frames)
    assert 7 <= len(frames) <= 8  # RTSP may miss nothing but the very first packet's timing
    assert all(f.keyframe for f in frames)


def test_keyframe_only_mode_on_a_live_h265_camera(rtsp_server: Callable[..., RtspServer]) -> None:
    """HEVC keyframes (IDR/CRA) are recognised from the RTSP packets as H.264 ones are: one a GOP."""
    server = rtsp_server({"/h265": Synthetic(width=640, height=360, gop=25, codec="h265")})  # 1 keyframe/s
    out = LatestFrameQueue(100)
    reader = StreamReader(
        "cam-h265-key",
        server.url("/h265"),
        stream=FAST,
        sampling=SamplingOptions(keyframes_only=True, analysis_fps=0, analysis_width=320),
        output=out,
    ).start()
    try:
        assert wait_for(lambda: reader.health.analysed.count >= 4, 20)
    finally:
        reader.stop(5)
    frames = [f for f in drain(out) if isinstance(f, SampledFrame)]
    snap = reader.health.snapshot()
    assert snap["codec"] == "hevc" and snap["decode_errors"] == 0
    assert len(frames) >= 4 and all(f.keyframe for f in frames)
    assert snap["frames_in"] == snap["keyframes"] == snap["frames_analysed"]  # nothing but keyframes decoded
    timed = [f.stream_ts for f in frames if f.stream_ts is not None]
    assert float(np.median(np.diff(timed))) == pytest.approx(1.0, abs=0.045)  # GOP 25 at 25 fps
    assert all(f.image_bgr.shape == (180, 320, 3) for f in frames)


def test_keyframe_only_file_source_same_code(clips: dict[str, Path]) -> None:
    out = LatestFrameQueue(100)
    reader = StreamReader(
        "cam-file", str(clips["mp4"]), sampling=SamplingOptions(keyframes_only=True, analysis_fps=0), output=out
    ).start()
    assert reader.join(10)
    frames = [f for f in drain(out) if isinstance(f, SampledFrame)]
    assert [f.stream_ts for f in frames] == pytest.approx([float(s) for s in range(8)])
    assert reader.health.snapshot()["state"] == "stopped"


def test_server_restart_reconnects_by_itself(rtsp_server: Callable[..., RtspServer]) -> None:
    server = rtsp_server({"/live": Synthetic(width=320, height=180)})
    reader = StreamReader("cam-restart", server.url("/live"), stream=FAST).start()
    try:
        assert wait_for(lambda: reader.health.input.count > 10, 15)
        server.stop()
        # read timeout (2 s) plus FFmpeg's own detection; then backoff with a reason
        assert wait_for(lambda: reader.health.state in {CameraState.BACKOFF, CameraState.CONNECTING}, 20)
        assert wait_for(lambda: reader.health.reconnects >= 1, 10)
        # while it waits between tries the health says why (connecting again, it has no reason yet)
        reasons = {"timeout", "eof", "refused", "io_error", "invalid_data"}
        assert wait_for(lambda: reader.health.snapshot()["reason"] in reasons, 20), reader.health.snapshot()
        before = reader.health.input.count
        server.start()
        assert wait_for(lambda: reader.health.state is CameraState.STREAMING and reader.health.input.count > before + 10, 20)
    finally:
        reader.stop(5)
    assert reader.health.reconnects >= 1


@pytest.mark.parametrize(
    ("case", "reason"),
    [("wrong_path", "not_found"), ("refused_port", "refused"), ("silent_server", "timeout"),
     ("garbage_server", "invalid_data")],
)
def test_unreachable_sources_end_in_a_clear_state(
    case: str,
    reason: str,
    rtsp_server: Callable[..., RtspServer],
    refused_port: int,
    silent_port: int,
    garbage_port: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    urls = {
        "wrong_path": lambda: rtsp_server({"/live": Synthetic(width=320, height=180)}).url("/nope", user="admin", password="s3cret"),
        "refused_port": lambda: f"rtsp://admin:s3cret@127.0.0.1:{refused_port}/live",
        "silent_server": lambda: f"rtsp://admin:s3cret@127.0.0.1:{silent_port}/live",
        "garbage_server": lambda: f"rtsp://admin:s3cret@127.0.0.1:{garbage_port}/live",
    }
    caplog.set_level(logging.DEBUG, logger="ingest")
    keep_trying = StreamReader("cam-bad", urls[case](), stream=FAST).start()
    give_up = StreamReader("cam-bad-once", urls[case](), stream=StreamOptions(
        open_timeout_s=2.0, read_timeout_s=2.0, max_retries=0)).start()
    try:
        # the deadlines are safety bounds for a loaded machine, not what is tested: the state and reason are
        assert wait_for(lambda: keep_trying.health.state is CameraState.BACKOFF, 30)
        assert keep_trying.health.reason == reason
        assert give_up.join(30)
        snap = give_up.health.snapshot()
        assert (snap["state"], snap["reason"]) == ("failed", reason)
        assert give_up.errors and all("s3cret" not in e for e in give_up.errors)
    finally:
        keep_trying.stop(5)
        give_up.stop(5)
    assert "s3cret" not in caplog.text
    assert "***@" in caplog.text


def test_wrong_credentials_are_unauthorized_and_redacted(rtsp_server: Callable[..., RtspServer]) -> None:
    server = rtsp_server({"/live": Synthetic(width=320, height=180)}, credentials=("viewer", "good-pass"))
    bad = StreamReader("cam-auth", server.url("/live", user="viewer", password="bad-pass"),
                       stream=StreamOptions(max_retries=0, open_timeout_s=3.0)).start()
    good = StreamReader("cam-auth-ok", server.url("/live", user="viewer", password="good-pass"), stream=FAST).start()
    try:
        assert bad.join(10)
        assert (bad.health.state, bad.health.reason) == (CameraState.FAILED, "unauthorized")
        assert bad.errors and all("bad-pass" not in e for e in bad.errors)
        assert wait_for(lambda: good.health.input.count > 5, 15)
    finally:
        good.stop(5)


def test_many_cameras_keep_their_own_rates(rtsp_server: Callable[..., RtspServer], clips: dict[str, Path]) -> None:
    """Each reader samples the one shared stream at its own rate of *stream* time: the frames it hands
    over are 1/fps apart in presentation time (a keyframe-only reader: at most one a keyframe, 1 s here),
    however fast or slow the loaded machine decodes. Wall-clock rates: bench/bench_ingest.py."""
    server = rtsp_server({"/loop": Loop(str(clips["ts"]))})  # one shared stream, 25 fps, GOP 25: 1 keyframe/s
    plan = {"cam-a": (1.0, False), "cam-b": (2.0, False), "cam-c": (5.0, False), "cam-d": (2.0, False),
            "cam-e": (1.0, True), "cam-f": (4.0, True)}  # keyframe-only is capped by 1 keyframe/s
    enough = 6  # timed frames per camera: 5 gaps each (the very first RTSP frame may come without a pts)
    queues = {cid: LatestFrameQueue(200) for cid in plan}
    readers = [
        StreamReader(cid, server.url("/loop"), stream=FAST,
                     sampling=SamplingOptions(analysis_fps=fps, keyframes_only=key, analysis_width=160),
                     output=queues[cid]).start()
        for cid, (fps, key) in plan.items()
    ]
    try:
        # a safety bound (the slowest camera needs ~6 s of stream), not the assertion
        assert wait_for(lambda: all(r.health.analysed.count >= enough + 1 for r in readers), 60)
    finally:
        for r in readers:
            r.stop()
        for r in readers:
            r.join(5)
    for cid, (fps, key) in plan.items():
        frames = [f for f in drain(queues[cid]) if isinstance(f, SampledFrame)]
        timed = [f.stream_ts for f in frames if f.stream_ts is not None]
        assert len(timed) >= enough, (cid, len(timed))
        gaps = np.diff(timed)
        assert all(g > 0 for g in gaps), (cid, timed)  # in stream order
        period = max(1.0 / fps, 1.0) if key else 1.0 / fps
        # one frame (0.04 s at 25 fps) of slack: samples fall on frame boundaries
        assert abs(float(np.median(gaps)) - period) <= 0.045, (cid, period, gaps.tolist())
        assert all(f.keyframe for f in frames) or not key
    assert all(r.health.decode_errors == 0 for r in readers)
