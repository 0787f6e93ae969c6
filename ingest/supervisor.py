"""CameraSupervisor: runs the readers of the cameras this worker owns and hands their frames on.

The seam for ``gridpatrol/worker.py``::

    cfg = IngestSettings()                                   # ingest.settings, GRIDPATROL_* variables
    leases = RedisLeaseStore.from_url(redis_url, prefix=cfg.lease_prefix) if redis_url else MemoryLeaseStore()
    supervisor = CameraSupervisor(
        worker_id=f"{socket.gethostname()}-{os.getpid()}", leases=leases, on_frame=pipeline.submit,
        capacity=cfg.worker_capacity, lease_ttl_s=cfg.lease_ttl_s, stagger_s=cfg.connect_stagger_s,
    ).start()
    HealthCollector(supervisor.health).register(metrics_registry)       # Prometheus, scrape-time
    supervisor.set_cameras(                                              # the whole fleet, any time
        CameraSpec(c.id, c.rtsp_url, stream=cfg.stream_options(), sampling=cfg.sampling_options())
        for c in cameras)
    supervisor.upsert(spec); supervisor.remove("cam-1")                  # bus: camera added/changed/removed
    supervisor.owned(); supervisor.health_snapshot()                     # {camera_id: {state, fps, ...}}
    supervisor.latest_display("cam-1", width=480)                        # wall tile: (BGR, capture_ts)
    supervisor.stop()                                                    # stops readers, releases leases

``on_frame(camera_id, frame_bgr, capture_ts, stream_ts)`` is called from the supervisor's dispatcher
thread (one by default, so it need not be thread-safe), only for cameras whose lease is held;
``frame_bgr`` is a fresh ``uint8`` array (H, W, 3) at the analysis width that the callee may keep,
``capture_ts`` is ``time.time()`` when it was decoded and ``stream_ts`` its presentation time in
seconds (None when the source has none). Each camera keeps only its newest unhandled frame
(:class:`~ingest.handoff.CameraSlots`), so a slow ``on_frame`` drops frames
(``superseded_frames``) instead of building latency, and the decoders never wait for it.

Ownership: every ``lease_ttl_s / 3`` the control thread heartbeats, renews its leases (stopping the
readers of any it lost), and moves towards its fair share of the fleet (:func:`fair_share`,
water-filling over the live workers' capacities): it releases the excess (reader stopped first)
and claims free cameras, starting their readers a little apart (connect storms time cameras out). Frames are handed on only while the local
lease deadline (renewal time + TTL, minus a margin) has not passed, so a worker cut off from the
store stops analysing before anyone else can take the camera over.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ingest.handoff import CameraSlots, EndOfStream
from ingest.health import HealthRegistry
from ingest.leases import LeaseStore, LeaseStoreError
from ingest.reader import PacketSink, SourceOpener, StreamOptions, StreamReader
from ingest.sampling import SamplingOptions

logger = logging.getLogger(__name__)

OnFrame = Callable[[str, np.ndarray, float, float | None], None]

# A frame older than this is skipped when a newer one of its camera is already waiting. Only then:
# skipping on "newer exists" alone starves busy processes (200 readers share the GIL with the
# dispatcher, whose batches get interrupted; measured 1.3 instead of 1.8 fps per camera).
STALE_AFTER_S = 1.0



@dataclass(frozen=True, slots=True)
class CameraSpec:
    """A camera as ingest needs it: id, source URL and how to read and sample it. ``stream_name`` says
    which of the camera's streams ``url`` is (``main`` or ``sub``); health reports it as ``stream``."""

    camera_id: str
    url: str
    stream: StreamOptions = field(default_factory=StreamOptions)
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    stream_name: str = "main"


def fair_share(cameras: int, capacities: dict[str, int], worker_id: str) -> int:
    """How many of ``cameras`` ``worker_id`` should hold: water-filling over the workers' capacities.

    Small workers are filled first; the rest is split evenly (rounded up) among the others, so the
    fleet is covered whenever total capacity allows and nobody holds more than its capacity.
    """
    remaining, left = cameras, len(capacities)
    for cap in sorted(capacities.values()):
        if cap * left >= remaining:
            break
        remaining -= cap
        left -= 1
    if left == 0:  # every worker is full: each takes its capacity, the rest waits for more workers
        return capacities[worker_id]
    return min(capacities[worker_id], math.ceil(remaining / left))


class CameraSupervisor:
    """Owns cameras through leases and runs one :class:`StreamReader` per owned camera."""

    def __init__(
        self,
        *,
        worker_id: str,
        leases: LeaseStore,
        on_frame: OnFrame,
        capacity: int = 100,
        lease_ttl_s: float = 10.0,
        health: HealthRegistry | None = None,
        stagger_s: float = 0.05,
        dispatchers: int = 1,
        openers: Mapping[str, SourceOpener] | None = None,
        packet_sinks: Callable[[str], PacketSink] | None = None,
    ) -> None:
        if capacity < 0 or lease_ttl_s <= 0 or dispatchers < 1:
            raise ValueError("need capacity >= 0, lease_ttl_s > 0, dispatchers >= 1")
        self.worker_id = worker_id
        self.capacity = capacity
        self.lease_ttl_s = lease_ttl_s
        self.health = health or HealthRegistry()
        self._leases = leases
        self._on_frame = on_frame
        self._stagger_s = stagger_s
        self._openers = openers  # URL scheme -> opener, for sources opened in-process (gb28181://)
        self._packet_sinks = packet_sinks  # camera id -> its event-clip buffer (ingest.clips), fed by its reader
        self._tick_s = lease_ttl_s / 3
        self._batch = None if dispatchers == 1 else 8  # several dispatchers share the ready frames
        self._specs: dict[str, CameraSpec] = {}
        self._readers: dict[str, StreamReader] = {}
        self._running: dict[str, CameraSpec] = {}  # the spec each running reader was started with
        self._deadlines: dict[str, float] = {}  # camera -> monotonic time our lease surely holds until
        self._slots = CameraSlots()
        self.unleased_frames = 0  # frames not handed on because the lease was not (or no longer) confirmed
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._control, name=f"ingest-supervisor-{worker_id}", daemon=True)]
        self._threads += [
            threading.Thread(target=self._dispatch, name=f"ingest-dispatch-{worker_id}-{i}", daemon=True)
            for i in range(dispatchers)
        ]

    # -- public API ---------------------------------------------------------------------------------
    def start(self) -> CameraSupervisor:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every reader, release the leases and leave the worker set."""
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)
        with self._lock:
            owned = list(self._readers)
            for camera_id in owned:
                self._stop_reader(camera_id)
            self._deadlines.clear()
        for camera_id in owned:
            self.health.remove(camera_id)
        try:
            self._leases.release(owned, self.worker_id)
            self._leases.leave(self.worker_id)
        except LeaseStoreError as err:
            logger.warning("%s: could not release leases on shutdown (they lapse at TTL): %s", self.worker_id, err)

    def set_cameras(self, specs: Iterable[CameraSpec]) -> None:
        """Replace the whole fleet; owned cameras that changed restart, removed ones stop."""
        with self._lock:
            self._specs = {s.camera_id: s for s in specs}
        self._wake.set()

    def upsert(self, spec: CameraSpec) -> None:
        with self._lock:
            self._specs[spec.camera_id] = spec
        self._wake.set()

    def remove(self, camera_id: str) -> None:
        with self._lock:
            self._specs.pop(camera_id, None)
        self._wake.set()

    @property
    def superseded_frames(self) -> int:
        """Frames replaced by a newer one of the same camera before ``on_frame`` took them."""
        return self._slots.dropped

    def owned(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._readers)

    def health_snapshot(self) -> dict[str, dict[str, Any]]:
        snaps = self.health.snapshot()
        with self._lock:
            running = {cid: spec.stream_name for cid, spec in self._running.items()}
        return {cid: {**snap, "worker_id": self.worker_id, "stream": running[cid]} for cid, snap in snaps.items() if cid in running}

    def latest_display(self, camera_id: str, width: int | None = None) -> tuple[np.ndarray, float] | None:
        """Newest frame of an owned camera for the wall, BGR at ``width``, with its capture time."""
        with self._lock:
            reader = self._readers.get(camera_id)
        return None if reader is None else reader.display.latest_bgr(width)

    # -- control thread -----------------------------------------------------------------------------
    def _control(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except LeaseStoreError as err:
                logger.warning("%s: lease store unavailable: %s", self.worker_id, err)
                self._fence()
            except Exception:  # top of a long-running loop: log, back off one tick, go on
                logger.exception("%s: supervisor tick failed", self.worker_id)
            self._wake.wait(self._tick_s)
            self._wake.clear()

    def _tick(self) -> None:
        ttl = self.lease_ttl_s
        self._leases.heartbeat(self.worker_id, ttl, capacity=self.capacity)
        started = time.monotonic()
        with self._lock:
            owned = list(self._readers)
        kept = self._leases.renew(owned, self.worker_id, ttl)
        deadline = started + ttl * 0.9
        with self._lock:
            for camera_id in owned:
                if camera_id in kept:
                    self._deadlines[camera_id] = deadline
                else:
                    logger.warning("%s: lease lost; stopping its reader", camera_id)
                    self._drop(camera_id, release=False)
            self._apply_changes()
            target = self._target()
            excess = sorted(self._readers)[target:]
        for camera_id in excess:
            logger.info("%s: handing over to balance the fleet (%s keeps %d)", camera_id, self.worker_id, target)
            with self._lock:
                self._drop(camera_id, release=True)
        self._claim_free(target)

    def _target(self) -> int:
        workers = self._leases.live_workers()
        workers[self.worker_id] = self.capacity
        return fair_share(len(self._specs), workers, self.worker_id)

    def _apply_changes(self) -> None:
        for camera_id in list(self._readers):
            spec = self._specs.get(camera_id)
            if spec is None:
                logger.info("%s: removed from the fleet", camera_id)
                self._drop(camera_id, release=True)
            elif spec != self._running.get(camera_id):
                logger.info("%s: configuration changed; restarting its reader (%s stream)", camera_id, spec.stream_name)
                self._stop_reader(camera_id)
                self._start_reader(spec)

    def _claim_free(self, target: int) -> None:
        with self._lock:
            wanted = target - len(self._readers)
            candidates = [c for c in sorted(self._specs) if c not in self._readers]
        if wanted <= 0 or not candidates:
            return
        # Start no more readers than fit in half a tick, so renewals are never late.
        budget = max(1, int(self._tick_s * 0.5 / self._stagger_s)) if self._stagger_s > 0 else wanted
        wanted = min(wanted, budget)
        owners = self._leases.owners(candidates)
        for camera_id in candidates:
            if wanted <= 0 or self._stop.is_set():
                return
            if owners.get(camera_id) is not None:
                continue
            claimed_at = time.monotonic()
            if not self._leases.claim(camera_id, self.worker_id, self.lease_ttl_s):
                continue
            with self._lock:
                spec = self._specs.get(camera_id)
                if spec is None:  # removed meanwhile
                    self._leases.release([camera_id], self.worker_id)
                    continue
                self._deadlines[camera_id] = claimed_at + self.lease_ttl_s * 0.9
                self._start_reader(spec)
            wanted -= 1
            if self._stagger_s > 0 and self._stop.wait(self._stagger_s):
                return

    def _fence(self) -> None:
        """Store unreachable: stop the readers whose lease may have lapsed by now."""
        now = time.monotonic()
        with self._lock:
            for camera_id in [c for c, d in self._deadlines.items() if d <= now]:
                logger.warning("%s: lease expired while the store was unreachable", camera_id)
                self._drop(camera_id, release=False)

    # -- readers ------------------------------------------------------------------------------------
    def _start_reader(self, spec: CameraSpec) -> None:
        reader = StreamReader(
            spec.camera_id,
            spec.url,
            stream=spec.stream,
            sampling=spec.sampling,
            health=self.health.fresh(spec.camera_id),
            output=self._slots,
            openers=self._openers,
            packet_sink=self._packet_sinks(spec.camera_id) if self._packet_sinks is not None else None,
        )
        self._readers[spec.camera_id] = reader
        self._running[spec.camera_id] = spec
        reader.start()
        logger.info("%s: reading %s (%s stream) on %s", spec.camera_id, reader.safe_url, spec.stream_name, self.worker_id)

    def _stop_reader(self, camera_id: str) -> None:
        reader = self._readers.pop(camera_id, None)
        self._running.pop(camera_id, None)
        if reader is not None:
            reader.stop()  # no join: a reader stuck in a read must not stall the control loop
        self._slots.discard(camera_id)

    def _drop(self, camera_id: str, *, release: bool) -> None:
        """Stop the reader first, then (optionally) release the lease: never two readers at once."""
        self._stop_reader(camera_id)
        self._deadlines.pop(camera_id, None)
        self.health.remove(camera_id)
        if release:
            self._leases.release([camera_id], self.worker_id)

    # -- dispatcher thread(s) -----------------------------------------------------------------------
    def _dispatch(self) -> None:
        while not self._stop.is_set():
            try:
                # all ready frames per wake-up: see CameraSlots.get_many (the GIL, many threads)
                items = self._slots.get_many(self._batch, timeout=0.25)
            except queue.Empty:
                continue
            for item in items:
                if isinstance(item, EndOfStream):
                    logger.info("%s: stream ended (%s)", item.camera_id, item.reason)
                    continue
                # dict.get is atomic under the GIL; the lock would cost a hand-off per frame
                if self._deadlines.get(item.camera_id, 0.0) <= time.monotonic():
                    self.unleased_frames += 1
                    continue
                if time.time() - item.capture_ts > STALE_AFTER_S and self._slots.has_newer(item.camera_id):
                    self._slots.dropped += 1  # a slow on_frame made this one stale: the newer one follows
                    continue  # lease not (or no longer) ours: never analyse a camera someone else may own
                try:
                    self._on_frame(item.camera_id, item.image_bgr, item.capture_ts, item.stream_ts)
                except Exception:  # a consumer bug must not stop the other cameras
                    logger.exception("%s: on_frame failed", item.camera_id)
