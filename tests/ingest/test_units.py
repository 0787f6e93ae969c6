"""Pure pieces of ingest: URL redaction, sampling schedule, hand-off queues, backoff, metrics."""

from __future__ import annotations

import queue
import random

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from ingest.handoff import CameraSlots, EndOfStream, LatestFrameQueue, SampledFrame
from ingest.health import CameraState, HealthCollector, HealthRegistry
from ingest.reader import StreamOptions, backoff_delay
from ingest.sampling import Sampler, SamplingOptions, scaled_size
from ingest.urls import is_live, scrub
from models.secrets import redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("rtsp://admin:s3cret@10.0.0.5:554/Streaming/101", "rtsp://***@10.0.0.5:554/Streaming/101"),
        ("rtsp://cam.local/live?user=admin&password=s3cret&ch=1", "rtsp://cam.local/live?user=***&password=***&ch=1"),
        ("http://u:p@[::1]:8080/video.mjpg?token=abc", "http://***@[::1]:8080/video.mjpg?token=***"),
        ("rtsp://127.0.0.1:8554/cam", "rtsp://127.0.0.1:8554/cam"),
        ("/var/clips/a.mp4", "/var/clips/a.mp4"),
        ("rtsp://weird:pa@ss@host/x", "rtsp://***@host/x"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_scrub_removes_credentials_from_messages() -> None:
    url = "rtsp://admin:s3cret@127.0.0.1:1/x"
    text = scrub(f"Connection refused: '{url}' (also rtsp://other:pw@h/y)", url)
    assert "s3cret" not in text and "pw@" not in text


def test_is_live() -> None:
    assert is_live("rtsp://h/x") and is_live("https://h/x.mp4")
    assert not is_live("/tmp/a.mp4") and not is_live("file:///tmp/a.mp4")


def test_sampler_keeps_the_rate_on_stream_time() -> None:
    sampler = Sampler(SamplingOptions(analysis_fps=2.0))
    taken = [i / 25 for i in range(250) if sampler.due(i / 25, 1000.0)]
    assert len(taken) == 20  # 10 s at 25 fps -> 2 fps
    gaps = np.diff(taken)
    assert gaps.min() >= 0.47 and gaps.max() <= 0.53


def test_sampler_resyncs_after_a_jump_and_switches_clocks() -> None:
    sampler = Sampler(SamplingOptions(analysis_fps=2.0))
    assert sampler.due(None, 1000.0)  # RTSP: the first frame has no pts yet
    assert not sampler.due(0.04, 1000.04)  # the stream clock takes over without a double take
    assert sampler.due(0.52, 1000.5)
    assert sampler.due(500.0, 1001.0)  # timestamps jumped (camera restarted): resync at once
    assert not sampler.due(500.2, 1001.2)


def test_sampler_every_frame_when_rate_is_zero() -> None:
    sampler = Sampler(SamplingOptions(analysis_fps=0))
    assert all(sampler.due(i / 25, 0.0) for i in range(10))


@pytest.mark.parametrize(
    ("wh", "target", "expected"),
    [((1920, 1080), 640, (640, 360)), ((320, 180), 640, (320, 180)), ((704, 576), 640, (640, 524)),
     ((640, 360), None, (640, 360))],
)
def test_scaled_size(wh: tuple[int, int], target: int | None, expected: tuple[int, int]) -> None:
    assert scaled_size(*wh, target) == expected


def _frame(camera_id: str, seq: int) -> SampledFrame:
    return SampledFrame(camera_id, np.zeros((2, 2, 3), np.uint8), 0.0, None, False, seq)


def test_latest_frame_queue_drops_oldest_keeps_sentinel() -> None:
    q = LatestFrameQueue(2)
    for seq in range(5):
        q.put(_frame("a", seq))
    q.put(EndOfStream("a", "eof"))
    q.put(_frame("a", 9))  # a straggler after the sentinel still cannot push the sentinel out
    got = [q.get(0) for _ in range(q.qsize())]
    assert [g.seq for g in got if isinstance(g, SampledFrame)] == [4, 9]
    assert any(isinstance(g, EndOfStream) for g in got)
    assert q.dropped == 4
    with pytest.raises(queue.Empty):
        q.get(timeout=0.01)


def test_camera_slots_latest_per_camera_first_ready_first_served() -> None:
    slots = CameraSlots()
    slots.put(_frame("a", 1))
    slots.put(_frame("b", 1))
    slots.put(_frame("a", 2))  # replaces a's frame, a keeps its place in line
    first, second = slots.get(0), slots.get(0)
    assert (first.camera_id, first.seq) == ("a", 2) and isinstance(first, SampledFrame)
    assert second.camera_id == "b"
    assert slots.dropped == 1
    slots.put(EndOfStream("c", "stopped"))
    slots.put(_frame("c", 5))
    assert isinstance(slots.get(0), EndOfStream)
    with pytest.raises(queue.Empty):
        slots.get(timeout=0.01)


def test_backoff_grows_with_jitter_and_caps() -> None:
    opts = StreamOptions(backoff_initial_s=0.5, backoff_max_s=8.0)
    rng = random.Random(1)
    delays = [backoff_delay(n, opts, rng) for n in range(10)]
    assert 0.375 <= delays[0] <= 0.625
    assert all(d <= 8.0 * 1.25 for d in delays)
    assert delays[5] >= 8.0 * 0.75
    assert len({round(d, 6) for d in delays[6:]}) > 1  # jitter: not in lockstep


def test_health_snapshot_and_prometheus_on_own_registry() -> None:
    health = HealthRegistry()
    cam = health.get("cam-1")
    for i in range(20):
        cam.on_frame(100.0 + i * 0.04, keyframe=i % 10 == 0)
    cam.bytes_in = 1234
    cam.set_state(CameraState.BACKOFF, "refused", retry_in_s=1.0)
    snap = health.snapshot()["cam-1"]
    assert snap["state"] == "backoff" and snap["reason"] == "refused"
    assert snap["frames_in"] == 20 and snap["keyframes"] == 2
    registry = CollectorRegistry()
    HealthCollector(health).register(registry)
    text = generate_latest(registry).decode()
    assert 'gridpatrol_camera_state{camera="cam-1",state="backoff"} 1.0' in text
    assert 'gridpatrol_camera_received_bytes_total{camera="cam-1"} 1234.0' in text
    assert registry.get_sample_value("gridpatrol_camera_frames_total", {"camera": "cam-1"}) == 20


def test_camera_slots_get_many_takes_a_bounded_batch_in_ready_order() -> None:
    slots = CameraSlots()
    for camera_id in "abc":
        slots.put(_frame(camera_id, 1))
    assert [i.camera_id for i in slots.get_many(2, timeout=0)] == ["a", "b"]
    assert [i.camera_id for i in slots.get_many(2, timeout=0)] == ["c"]
    assert not slots.has_newer("a")
    slots.put(_frame("a", 2))
    assert slots.has_newer("a")
    assert [i.seq for i in slots.get_many(timeout=0)] == [2]  # None: everything ready
    with pytest.raises(queue.Empty):
        slots.get_many(2, timeout=0.01)
