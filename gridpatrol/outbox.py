"""The worker's outbox: rule events wait here for the bus, so that the frame thread never waits on it.

The frame thread only appends (a short lock, O(1) per event); a publisher thread sends the events in
batches, oldest first, and retries with backoff while the bus is down. One FIFO keeps the order of
each camera zone's episode (``started`` → ``updated``… → ``ended``). A failed batch is sent again
whole (Redis may have taken part of it): consumers already dedupe by ``event_id``.

Bounds (issue 9): at ``soft_limit`` events the oldest queued ``updated`` is dropped to make room: a
lost ``updated`` only thins an episode's history, a lost ``started`` or ``ended`` would leave a ticket
without its episode or never ending it. When the outbox holds nothing but ``started``/``ended`` it
grows past the soft bound (logged as an error) up to ``hard_limit``; past that a new event is dropped
and counted as a lost lifecycle event (logged as critical). Every drop is counted, per camera too,
and shown in the health the worker posts and in Prometheus.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from models.bus.messages import RULE_EVENTS, EventClip, RuleEvent
from models.bus.protocol import Bus
from models.errors import BusError

logger = logging.getLogger(__name__)

SOFT_LIMIT = 10_000
HARD_LIMIT = 50_000  # ~50 MB of small messages at worst
BATCH = 500

OutboxState = Literal["ok", "retrying", "full", "overflow"]


class _Throttled:
    """Log one message per ``every_s`` seconds at most, with how many were held back."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self._next = 0.0
        self._held = 0

    def ready(self) -> int | None:
        """The number of messages held back since the last one, or None while still quiet."""
        now = time.monotonic()
        if now < self._next:
            self._held += 1
            return None
        held, self._held, self._next = self._held, 0, now + self.every_s
        return held


class EventOutbox:
    """Bounded FIFO of rule events between the frame thread and the publisher thread."""

    def __init__(self, *, soft_limit: int = SOFT_LIMIT, hard_limit: int = HARD_LIMIT, log_every_s: float = 10.0) -> None:
        if not 1 <= soft_limit <= hard_limit:
            raise ValueError("need 1 <= soft_limit <= hard_limit")
        self.soft_limit, self.hard_limit = soft_limit, hard_limit
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._seq = 0
        self._entries: OrderedDict[int, RuleEvent] = OrderedDict()
        self._updated: deque[int] = deque()  # sequence numbers of queued `updated`, oldest first (may be stale)
        self._inflight: list[RuleEvent] = []  # taken by the publisher, not yet acknowledged by the bus
        self._depth_by_camera: dict[str, int] = {}
        self._dropped_by_camera: dict[str, int] = {}
        self.enqueued = 0
        self.published = 0
        self.dropped_updated = 0
        self.dropped_lifecycle = 0
        self.publish_failures = 0
        self.failing = False
        self._drop_log = _Throttled(log_every_s)
        self._overflow_log = _Throttled(log_every_s)

    # --- the frame thread ----------------------------------------------------------------------------
    def put(self, messages: Sequence[RuleEvent | EventClip]) -> None:
        """Queue ``messages`` in order; never blocks on the bus, never raises for a full outbox. An
        :class:`EventClip` (type ``clip``) counts like a lifecycle event: never dropped for room."""
        notes: list[tuple[str, RuleEvent]] = []
        with self._lock:
            for m in messages:
                note = self._put_one(m)
                if note is not None:
                    notes.append((note, m))
            depth = len(self._entries) + len(self._inflight)
            dropped, lost = self.dropped_updated, self.dropped_lifecycle
            self._ready.set()
        for note, m in notes:  # log outside the lock, and at most every few seconds per kind
            self._log(note, m, depth=depth, dropped=dropped, lost=lost)

    def _put_one(self, m: RuleEvent) -> str | None:
        note = None
        if len(self._entries) + len(self._inflight) >= self.soft_limit:
            if self._drop_oldest_updated():
                note = "dropped"
            elif m.type == "updated":
                self._count_drop(m, lifecycle=False)  # the only droppable `updated` is this one
                return "dropped"
            elif len(self._entries) + len(self._inflight) >= self.hard_limit:
                self._count_drop(m, lifecycle=True)
                return "lost"
            else:
                note = "overflow"
        self._seq += 1
        self._entries[self._seq] = m
        if m.type == "updated":
            self._updated.append(self._seq)
        cam = str(m.camera_id)
        self._depth_by_camera[cam] = self._depth_by_camera.get(cam, 0) + 1
        self.enqueued += 1
        return note

    def _drop_oldest_updated(self) -> bool:
        while self._updated:
            seq = self._updated.popleft()
            m = self._entries.pop(seq, None)
            if m is not None:  # None: already taken by the publisher
                self._forget(m)
                self._count_drop(m, lifecycle=False)
                return True
        return False

    def _count_drop(self, m: RuleEvent, *, lifecycle: bool) -> None:
        cam = str(m.camera_id)
        self._dropped_by_camera[cam] = self._dropped_by_camera.get(cam, 0) + 1
        if lifecycle:
            self.dropped_lifecycle += 1
        else:
            self.dropped_updated += 1

    def _forget(self, m: RuleEvent) -> None:
        cam = str(m.camera_id)
        left = self._depth_by_camera.get(cam, 0) - 1
        if left > 0:
            self._depth_by_camera[cam] = left
        else:
            self._depth_by_camera.pop(cam, None)

    def _log(self, note: str, m: RuleEvent, *, depth: int, dropped: int, lost: int) -> None:
        if note == "dropped":
            held = self._drop_log.ready()
            if held is not None:
                logger.warning(
                    "camera %s: event outbox full (%d events, bound %d): dropping the oldest 'updated' events;"
                    " %d dropped so far (%d more drops since the last message)",
                    m.camera_id, depth, self.soft_limit, dropped, held,
                )
            return
        held = self._overflow_log.ready()
        if held is None:
            return
        if note == "overflow":
            logger.error(
                "camera %s: event outbox holds only started/ended events and grows past its bound"
                " (%d events, soft bound %d, hard bound %d): the bus has been unavailable too long",
                m.camera_id, depth, self.soft_limit, self.hard_limit,
            )
        else:
            logger.critical(
                "camera %s: event outbox at its hard bound (%d events): %s event of zone %s LOST;"
                " %d started/ended events lost so far; tickets will miss episodes",
                m.camera_id, depth, m.type, getattr(m, "zone", "-"), lost,
            )

    # --- the publisher thread ------------------------------------------------------------------------
    def take(self, limit: int) -> list[RuleEvent]:
        """The next batch to publish: the unacknowledged one again after a failure, else the oldest events."""
        with self._lock:
            if not self._inflight:
                n = min(limit, len(self._entries))
                self._inflight = [self._entries.popitem(last=False)[1] for _ in range(n)]
            if not self._entries:
                self._ready.clear()
            return list(self._inflight)

    def ack(self) -> None:
        """The batch from :meth:`take` reached the bus."""
        with self._lock:
            for m in self._inflight:
                self._forget(m)
            self.published += len(self._inflight)
            self._inflight = []
            self.failing = False

    def failed(self) -> None:
        with self._lock:
            self.publish_failures += 1
            self.failing = True

    def wait(self, timeout: float) -> bool:
        """Wait until events are queued (True) or ``timeout`` passes."""
        return self._ready.wait(timeout)

    # --- health --------------------------------------------------------------------------------------
    def __len__(self) -> int:
        with self._lock:
            return len(self._entries) + len(self._inflight)

    def state(self) -> OutboxState:
        with self._lock:
            return self._state()

    def _state(self) -> OutboxState:
        depth = len(self._entries) + len(self._inflight)
        if depth > self.soft_limit:
            return "overflow"
        if depth >= self.soft_limit:
            return "full"
        return "retrying" if self.failing else "ok"

    def camera_health(self, camera_id: str) -> dict[str, Any]:
        """The outbox fields of a camera's posted health (``outbox_state`` is the worker's)."""
        with self._lock:
            return {
                "outbox_depth": self._depth_by_camera.get(camera_id, 0),
                "outbox_dropped": self._dropped_by_camera.get(camera_id, 0),
                "outbox_state": self._state(),
            }

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "depth": len(self._entries) + len(self._inflight),
                "state": self._state(),
                "enqueued": self.enqueued,
                "published": self.published,
                "dropped_updated": self.dropped_updated,
                "dropped_lifecycle": self.dropped_lifecycle,
                "publish_failures": self.publish_failures,
                "depth_by_camera": dict(self._depth_by_camera),
                "dropped_by_camera": dict(self._dropped_by_camera),
            }


class OutboxPublisher:
    """The thread that drains an :class:`EventOutbox` to the bus, with exponential backoff on failure."""

    def __init__(
        self,
        outbox: EventOutbox,
        bus: Bus,
        *,
        name: str,
        batch: int = BATCH,
        backoff_s: tuple[float, float] = (0.2, 5.0),
    ) -> None:
        self.outbox, self.bus = outbox, bus
        self.batch = batch
        self.backoff_s = backoff_s
        self._closing = threading.Event()
        self._deadline = float("inf")
        self._fail_log = _Throttled(10.0)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> OutboxPublisher:
        self._thread.start()
        return self

    def stop(self, *, drain_s: float = 5.0) -> None:
        """Publish what is queued, giving up after ``drain_s`` of failures (what is left is logged)."""
        self._deadline = time.monotonic() + drain_s
        self._closing.set()
        if self._thread.is_alive():
            self._thread.join(timeout=drain_s + 35.0)  # + a publish already blocked on the socket timeout
        left = len(self.outbox)
        if left:
            logger.error("%s: stopped with %d events not published", self._thread.name, left)

    def _pause(self, delay: float) -> bool:
        """Wait before a retry; False when stopping and the drain time is spent."""
        if not self._closing.is_set():
            self._closing.wait(delay)
            return True
        left = self._deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(delay, left))
        return True

    def _run(self) -> None:
        delay = self.backoff_s[0]
        while True:
            batch = self.outbox.take(self.batch)
            if not batch:
                if self._closing.is_set():
                    return
                self.outbox.wait(0.5)
                continue
            try:
                self.bus.publish(RULE_EVENTS, batch)
            except BusError as err:
                self.outbox.failed()
                held = self._fail_log.ready()
                if held is not None:
                    logger.warning(
                        "%s: bus unavailable (%s); %d events wait, retrying (%d failures not logged)",
                        self._thread.name, err, len(self.outbox), held,
                    )
                if not self._pause(delay):
                    return
                delay = min(delay * 2, self.backoff_s[1])
                continue
            except Exception:  # a bug must not end publishing: log it, keep the batch, retry
                self.outbox.failed()
                logger.exception("%s: publishing failed", self._thread.name)
                if not self._pause(self.backoff_s[1]):
                    return
                continue
            self.outbox.ack()
            delay = self.backoff_s[0]


class OutboxCollector(Collector):
    """Prometheus view of a worker's outbox, computed at scrape time."""

    def __init__(self, outbox: EventOutbox, *, worker_id: str) -> None:
        self._outbox = outbox
        self._worker_id = worker_id

    def collect(self) -> Iterator[Metric]:
        s = self._outbox.stats()
        w = [self._worker_id]
        depth = GaugeMetricFamily("gridpatrol_worker_outbox_depth", "Rule events waiting for the bus", labels=["worker"])
        depth.add_metric(w, float(s["depth"]))
        bounds = GaugeMetricFamily(
            "gridpatrol_worker_outbox_bound", "Outbox bounds (soft: drop 'updated'; hard: lose lifecycle events)",
            labels=["worker", "bound"],
        )
        bounds.add_metric([*w, "soft"], float(self._outbox.soft_limit))
        bounds.add_metric([*w, "hard"], float(self._outbox.hard_limit))
        state = GaugeMetricFamily(
            "gridpatrol_worker_outbox_state", "1 for the outbox's current state", labels=["worker", "state"]
        )
        for st in ("ok", "retrying", "full", "overflow"):
            state.add_metric([*w, st], 1.0 if s["state"] == st else 0.0)
        published = CounterMetricFamily(
            "gridpatrol_worker_outbox_published_events", "Rule events the bus accepted", labels=["worker"]
        )
        published.add_metric(w, float(s["published"]))
        dropped = CounterMetricFamily(
            "gridpatrol_worker_outbox_dropped_events", "Rule events dropped because the outbox was full",
            labels=["worker", "type"],
        )
        dropped.add_metric([*w, "updated"], float(s["dropped_updated"]))
        dropped.add_metric([*w, "lifecycle"], float(s["dropped_lifecycle"]))
        failures = CounterMetricFamily(
            "gridpatrol_worker_outbox_publish_failures", "Batches the bus refused (retried)", labels=["worker"]
        )
        failures.add_metric(w, float(s["publish_failures"]))
        cam_depth = GaugeMetricFamily(
            "gridpatrol_camera_outbox_depth", "The camera's rule events waiting for the bus", labels=["camera"]
        )
        for cam, n in s["depth_by_camera"].items():
            cam_depth.add_metric([cam], float(n))
        cam_dropped = CounterMetricFamily(
            "gridpatrol_camera_outbox_dropped_events", "The camera's rule events dropped by a full outbox",
            labels=["camera"],
        )
        for cam, n in s["dropped_by_camera"].items():
            cam_dropped.add_metric([cam], float(n))
        yield from (depth, bounds, state, published, dropped, failures, cam_depth, cam_dropped)
