"""Per-camera health: state, rates, ages and counters, as snapshots and Prometheus metrics.

The reader thread is the only writer of a :class:`CameraHealth` (plain attribute updates, cheap
enough for every packet); any thread may take a :meth:`CameraHealth.snapshot`. Prometheus metrics
are produced at scrape time by :class:`HealthCollector` from the same snapshots and registered into
a registry the caller passes in, so nothing touches prometheus-client's global registry.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from enum import StrEnum
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry


class CameraState(StrEnum):
    CONNECTING = "connecting"
    STREAMING = "streaming"
    BACKOFF = "backoff"  # waiting to reconnect after an error; ``reason`` says which
    FAILED = "failed"  # gave up (retries exhausted); ``reason`` says why
    STOPPED = "stopped"  # stopped on purpose, or a file reached its end


class RateMeter:
    """Events per second over the last ``window_s`` seconds, updated from one thread."""

    __slots__ = ("count", "_marks", "_next_mark", "_window_s")

    def __init__(self, window_s: float = 5.0) -> None:
        self.count = 0
        self._marks: deque[tuple[float, int]] = deque()
        self._next_mark = 0.0
        self._window_s = window_s

    def tick(self, now: float) -> None:
        self.count += 1
        if now >= self._next_mark:  # one mark a second keeps the per-event cost tiny
            self._marks.append((now, self.count))
            self._next_mark = now + 1.0
            while len(self._marks) > 2 and now - self._marks[1][0] > self._window_s:
                self._marks.popleft()

    def rate(self, now: float) -> float:
        """Average rate since the oldest mark inside the window; 0 when nothing happened in it."""
        for t0, c0 in list(self._marks):
            if now - t0 <= self._window_s:
                elapsed = now - t0
                return (self.count - c0) / elapsed if elapsed >= 0.5 else 0.0
        return 0.0


class CameraHealth:
    """Health of one camera, written by its reader thread."""

    def __init__(self, camera_id: str) -> None:
        self.camera_id = camera_id
        self.state = CameraState.CONNECTING
        self.reason: str | None = None
        self.since = time.time()
        self.input = RateMeter()
        self.analysed = RateMeter()
        self.last_frame_ts: float | None = None
        self.reconnects = 0
        self.decode_errors = 0
        self.bytes_in = 0
        self.keyframes = 0
        self.codec: str | None = None
        self.resolution_wh: tuple[int, int] | None = None
        self.nominal_fps: float | None = None
        self.next_retry_ts: float | None = None

    def set_state(self, state: CameraState, reason: str | None = None, *, retry_in_s: float | None = None) -> None:
        if state is not self.state or reason != self.reason:
            self.since = time.time()
        self.state = state
        self.reason = reason
        self.next_retry_ts = time.time() + retry_in_s if retry_in_s is not None else None

    def on_frame(self, now: float, *, keyframe: bool) -> None:
        self.input.tick(now)
        self.last_frame_ts = now
        if keyframe:
            self.keyframes += 1

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        age = None if self.last_frame_ts is None else max(0.0, now - self.last_frame_ts)
        return {
            "camera_id": self.camera_id,
            "state": str(self.state),
            "reason": self.reason,
            "state_since": self.since,
            "next_retry_ts": self.next_retry_ts,
            "input_fps": round(self.input.rate(now), 2),
            "analysed_fps": round(self.analysed.rate(now), 2),
            "frames_in": self.input.count,
            "frames_analysed": self.analysed.count,
            "keyframes": self.keyframes,
            "last_frame_age_s": None if age is None else round(age, 3),
            "reconnects": self.reconnects,
            "decode_errors": self.decode_errors,
            "bytes_in": self.bytes_in,
            "codec": self.codec,
            "resolution_wh": list(self.resolution_wh) if self.resolution_wh else None,
            "nominal_fps": self.nominal_fps,
        }


class HealthRegistry:
    """The health objects of the cameras one process runs."""

    def __init__(self) -> None:
        self._cameras: dict[str, CameraHealth] = {}
        self._lock = threading.Lock()
        self._collectors: list[Collector] = []

    def attach_metrics(self, collector: Collector) -> None:
        """Metrics another part of the process keeps about these cameras (the worker's event outbox):
        scraped along with the cameras' own by :class:`HealthCollector`."""
        with self._lock:
            self._collectors.append(collector)

    def attached_metrics(self) -> list[Collector]:
        with self._lock:
            return list(self._collectors)

    def get(self, camera_id: str) -> CameraHealth:
        with self._lock:
            health = self._cameras.get(camera_id)
            if health is None:
                health = self._cameras[camera_id] = CameraHealth(camera_id)
            return health

    def fresh(self, camera_id: str) -> CameraHealth:
        """A new health object for ``camera_id`` replacing the old one (a restarted reader must not
        share it with the stopping reader, whose last words would overwrite the new state)."""
        health = CameraHealth(camera_id)
        with self._lock:
            self._cameras[camera_id] = health
        return health

    def remove(self, camera_id: str) -> None:
        with self._lock:
            self._cameras.pop(camera_id, None)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        now = time.time()
        with self._lock:
            cameras = list(self._cameras.values())
        return {h.camera_id: h.snapshot(now) for h in cameras}


class HealthCollector(Collector):
    """Prometheus view of a :class:`HealthRegistry`, computed at scrape time."""

    def __init__(self, health: HealthRegistry) -> None:
        self._health = health

    def register(self, registry: CollectorRegistry) -> HealthCollector:
        registry.register(self)
        return self

    def collect(self) -> Iterator[Metric]:
        snaps = self._health.snapshot()
        labels = ["camera"]
        state = GaugeMetricFamily(
            "gridpatrol_camera_state", "1 for the camera's current ingest state", labels=["camera", "state"]
        )
        gauges = {
            "input_fps": GaugeMetricFamily("gridpatrol_camera_input_fps", "Decoded frames per second", labels=labels),
            "analysed_fps": GaugeMetricFamily(
                "gridpatrol_camera_analysed_fps", "Frames per second handed to analysis", labels=labels
            ),
            "last_frame_age_s": GaugeMetricFamily(
                "gridpatrol_camera_last_frame_age_seconds", "Seconds since the last decoded frame", labels=labels
            ),
        }
        counters = {
            "frames_in": CounterMetricFamily("gridpatrol_camera_frames", "Decoded frames", labels=labels),
            "frames_analysed": CounterMetricFamily(
                "gridpatrol_camera_analysed_frames", "Frames handed to analysis", labels=labels
            ),
            "reconnects": CounterMetricFamily("gridpatrol_camera_reconnects", "Reconnect attempts", labels=labels),
            "decode_errors": CounterMetricFamily(
                "gridpatrol_camera_decode_errors", "Packets the decoder rejected", labels=labels
            ),
            "bytes_in": CounterMetricFamily("gridpatrol_camera_received_bytes", "Compressed bytes read", labels=labels),
        }
        for camera_id, snap in snaps.items():
            for st in CameraState:
                state.add_metric([camera_id, str(st)], 1.0 if snap["state"] == st else 0.0)
            for key, fam in gauges.items():
                value = snap[key]
                if value is not None:
                    fam.add_metric([camera_id], float(value))
            for key, cfam in counters.items():
                cfam.add_metric([camera_id], float(snap[key]))
        yield state
        yield from gauges.values()
        yield from counters.values()
        for collector in self._health.attached_metrics():
            yield from collector.collect()
