"""Event clips from a real RTSP camera: the reader's packets, buffered and remuxed to MP4 without decoding."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable

import av
import pytest

from ingest.clips import ClipOptions, ClipRecorders, ClipResult
from ingest.reader import StreamOptions, StreamReader
from ingest.sampling import SamplingOptions
from tests.support.rtsp_server import RtspServer, Synthetic

FAST = StreamOptions(open_timeout_s=3.0, read_timeout_s=3.0, backoff_initial_s=0.2, backoff_max_s=1.0)
GOP_S = 1.0  # Synthetic(gop=25) at 25 fps
PRE_S, POST_S = 2.0, 3.0


def wait_for(pred: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def record_one(
    url: str, *, options: ClipOptions, warmup_s: float
) -> tuple[float, ClipResult, StreamReader, ClipRecorders]:
    clips = ClipRecorders(options).start()
    reader = StreamReader(
        "cam-clip",
        url,
        stream=FAST,
        sampling=SamplingOptions(analysis_fps=1.0),
        packet_sink=clips.sink_for("cam-clip"),
    ).start()
    done: list[ClipResult] = []
    finished = threading.Event()
    try:
        recorder = clips.sink_for("cam-clip")
        assert wait_for(lambda: recorder.buffered_s >= warmup_s, 20), "the ring buffer never filled"
        at = time.time()
        assert clips.request("cam-clip", at=at, on_done=lambda r: (done.append(r), finished.set()))
        assert finished.wait(20), "the clip was never finished"
    finally:
        reader.stop(5)
        clips.stop()
    return at, done[0], reader, clips


def decoded(data: bytes) -> tuple[str, str, list[float]]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        times = [float(f.time) for f in container.decode(stream) if f.time is not None]
        return stream.codec_context.name, stream.codec_tag, times


@pytest.mark.parametrize(("codec", "name", "tag"), [("h264", "h264", "avc1"), ("h265", "hevc", "hvc1")])
def test_a_clip_covers_pre_and_post_roll_and_decodes(
    rtsp_server: Callable[..., RtspServer], codec: str, name: str, tag: str
) -> None:
    server = rtsp_server({"/cam": Synthetic(width=320, height=180, gop=25, codec=codec)})
    at, result, _, clips = record_one(
        server.url("/cam"),
        options=ClipOptions(buffer_s=4.0, pre_s=PRE_S, post_s=POST_S),
        warmup_s=PRE_S + GOP_S,
    )
    assert result.data is not None, result.reason
    assert result.data[4:8] == b"ftyp"
    assert result.data.find(b"moov") < result.data.find(b"mdat")  # +faststart: playable while downloading
    got_name, got_tag, times = decoded(result.data)
    assert (got_name, got_tag) == (name, tag)
    assert len(times) >= 25 * (PRE_S + POST_S) * 0.8
    assert times[0] == 0.0
    # starts at the keyframe at or before the pre-roll, ends at the post-roll
    assert result.started_at is not None
    assert at - PRE_S - GOP_S - 0.3 <= result.started_at <= at - PRE_S + 0.3
    assert PRE_S + POST_S - 0.3 <= times[-1] <= PRE_S + POST_S + GOP_S + 0.3
    assert clips.writer.written == 1


def test_the_buffer_keeps_seconds_and_bytes_bounded(rtsp_server: Callable[..., RtspServer]) -> None:
    server = rtsp_server({"/cam": Synthetic(width=320, height=180, gop=25, bitrate_kbps=800)})
    clips = ClipRecorders(ClipOptions(buffer_s=1.5, buffer_bytes=40_000, pre_s=1.0, post_s=1.0)).start()
    reader = StreamReader(
        "cam-b", server.url("/cam"), stream=FAST, packet_sink=clips.sink_for("cam-b")
    ).start()
    recorder = clips.sink_for("cam-b")
    try:
        assert wait_for(lambda: reader.health.input.count >= 25 * 3, 20)
        seen = []
        for _ in range(10):
            seen.append((recorder.buffered_s, recorder.buffered_bytes))
            time.sleep(0.1)
    finally:
        reader.stop(5)
        clips.stop()
    assert len(seen) == 10
    assert all(s <= 1.5 + 0.1 for s, _ in seen)
    assert all(0 < b <= 40_000 for _, b in seen)


def test_a_camera_that_goes_away_ends_the_clip_with_what_it_has(
    rtsp_server: Callable[..., RtspServer],
) -> None:
    server = rtsp_server({"/cam": Synthetic(width=320, height=180, gop=25)})
    clips = ClipRecorders(ClipOptions(buffer_s=3.0, pre_s=1.0, post_s=30.0)).start()
    reader = StreamReader(
        "cam-g", server.url("/cam"), stream=FAST, packet_sink=clips.sink_for("cam-g")
    ).start()
    done: list[ClipResult] = []
    finished = threading.Event()
    try:
        assert wait_for(lambda: clips.sink_for("cam-g").buffered_s >= 2.0, 20)
        assert clips.request("cam-g", at=time.time(), on_done=lambda r: (done.append(r), finished.set()))
        time.sleep(1.0)
        server.stop()  # the reader times out, closes the connection: the clip is written short
        assert finished.wait(20)
    finally:
        reader.stop(5)
        clips.stop()
    assert done[0].data is not None
    _, _, times = decoded(done[0].data)
    assert 1.0 <= times[-1] < 30.0


def test_no_stream_no_clip() -> None:
    clips = ClipRecorders(ClipOptions()).start()
    try:
        clips.sink_for("cam-x")
        assert clips.request("cam-x", at=time.time(), on_done=lambda r: None) is False
        assert clips.request("cam-unknown", at=time.time(), on_done=lambda r: None) is False
    finally:
        clips.stop()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"pre_s": 20.0}, "must hold the pre-roll"),
        ({"buffer_s": 0}, "must be > 0"),
        ({"post_s": 0}, "post_s > 0"),
        ({"max_pending": 0}, "max_pending"),
    ],
)
def test_bad_options_are_refused(kwargs: dict[str, float], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        ClipOptions(**kwargs)  # type: ignore[arg-type]
