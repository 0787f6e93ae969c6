"""The ticketer: rule events from the bus become tickets; deadlines and video verification are swept.

At least once, end to end: a batch is committed, then acknowledged, then its notices are published.
A ticketer that dies between commit and ack leaves its entries pending; another ticketer (or this one
on restart) claims them after ``stale_ms`` and re-applies them, which changes nothing (idempotent).

A poison event (its handling raises something other than a database error) must not hold up the rest:
the batch is split until the bad event stands alone, the others are committed and acked, and the bad
one stays pending until its ``max_deliveries``-th delivery, when it goes to the bus's dead letters with
the error (``gridpatrol bus dead-letters`` lists and requeues them). Database errors are retried and
then left pending: an unreachable database is no reason to give up on good events.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import httpx
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from models.bus.messages import RULE_EVENTS, TICKET_NOTICES, EventClip, RuleEvent, TicketNotice
from models.bus.protocol import Bus, Delivery
from models.db.engine import transaction
from models.db.tables import utcnow
from models.errors import BusError
from models.evidence.store import EvidenceStore
from models.tickets.clips import ClipChanges, attach_clips, expire_pending, expire_retained
from models.tickets.desk import TicketDesk
from models.tickets.ingest import IngestResult, ingest_events
from models.tickets.outbox import deliver_due
from models.tickets.sweeps import escalate_overdue, verify_by_video

logger = logging.getLogger(__name__)
GROUP = "ticketer"
DB_ATTEMPTS = 5

#: what turns a batch of rule events into ticket changes inside the caller's transaction
Ingest = Callable[[Session, TicketDesk, Sequence[RuleEvent]], IngestResult]


@dataclass
class TicketerStats:
    batches: int = 0
    applied: int = 0
    duplicates: int = 0
    reclaimed: int = 0
    errors: int = 0
    #: events given up on (moved to the dead letters) by this ticketer
    dead_lettered: int = 0
    #: overdue tickets for which nobody up the grid tree answers (left to the centre)
    unattended: int = 0
    #: event clips linked to their occurrence, declared unavailable, removed (per-ticket bound, retention)
    clips: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("linked", "unavailable", "removed", "expired"), 0))
    #: rows and files deleted by retention, per kind (gridpatrol/retention_job.py)
    retention: dict[str, int] = field(default_factory=dict)
    #: camera-offline and back-online notices raised by this ticketer (gridpatrol/camera_watch.py)
    camera_notices: dict[str, int] = field(default_factory=lambda: {"offline": 0, "online": 0})
    last_batch_at: float = field(default=0.0)


class Ticketer:
    def __init__(
        self,
        *,
        bus: Bus,
        session_factory: sessionmaker[Session],
        desk: TicketDesk,
        evidence: EvidenceStore,
        consumer: str,
        batch: int = 500,
        block_ms: int = 200,
        stale_ms: int = 15_000,
        sweep_every_s: float = 2.0,
        max_deliveries: int = 5,
        clock: Callable[[], datetime] = utcnow,
        ingest: Ingest = ingest_events,
    ) -> None:
        self.bus, self.factory, self.desk, self.evidence = bus, session_factory, desk, evidence
        self.consumer, self.batch, self.block_ms, self.stale_ms = consumer, batch, block_ms, stale_ms
        self.sweep_every_s, self.clock = sweep_every_s, clock
        self.max_deliveries, self.ingest = max_deliveries, ingest
        self.stats = TicketerStats()
        self._next_sweep = 0.0
        self._next_claim = 0.0
        self._next_retention = 0.0
        self.retention_every_s = 300.0

    def handle(self, deliveries: list[Delivery]) -> None:
        """Apply, commit, ack, publish. Database errors are retried, then the entries stay pending; a
        poison event is isolated and, at its ``max_deliveries``-th delivery, dead-lettered."""
        try:
            self._apply(deliveries)
        except DBAPIError as err:
            logger.error(
                "ticketer %s: database unavailable (%s); the rest of a batch of %d stays pending",
                self.consumer, type(err.orig).__name__, len(deliveries),
            )

    def _apply(self, deliveries: list[Delivery]) -> None:
        try:
            result, clips = self._commit(
                [d.message for d in deliveries if isinstance(d.message, RuleEvent)],
                [d.message for d in deliveries if isinstance(d.message, EventClip)],
            )
        except DBAPIError:
            raise
        except Exception as err:  # a poison event: split the batch so that the good ones go through
            if len(deliveries) == 1:
                self._failed(deliveries[0], err)
                return
            half = len(deliveries) // 2
            self._apply(deliveries[:half])
            self._apply(deliveries[half:])
            return
        self.bus.ack(RULE_EVENTS, group=GROUP, ids=[d.id for d in deliveries])
        self.stats.batches += 1
        self.stats.applied += result.applied
        self.stats.duplicates += result.duplicates
        self.stats.last_batch_at = time.time()
        self.publish(result.notices + clips.notices)
        self._count_clips(clips)
        for key in result.surplus_evidence + clips.deletable:
            self.evidence.delete(key)

    def _count_clips(self, changes: ClipChanges, *, expired: int = 0) -> None:
        self.stats.clips["linked"] += changes.linked
        self.stats.clips["unavailable"] += changes.unavailable + expired
        self.stats.clips["removed"] += changes.removed

    def _commit(self, events: list[RuleEvent], clips: list[EventClip]) -> tuple[IngestResult, ClipChanges]:
        """One transaction for ``events`` and the clips reported with them, retried on database errors
        (deadlock, serialization failure, restart...); the last one is raised."""
        for attempt in range(DB_ATTEMPTS):
            try:
                with transaction(self.factory) as session:
                    result = self.ingest(session, self.desk, events)
                    return result, attach_clips(session, clips)
            except DBAPIError as err:
                self.stats.errors += 1
                if attempt == DB_ATTEMPTS - 1:
                    raise
                logger.warning("ticketer %s: batch of %d failed (%s), retry %d", self.consumer, len(events), type(err.orig).__name__, attempt + 1)
                time.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")

    def _failed(self, delivery: Delivery, err: Exception) -> None:
        """One event's handling raised: leave it pending for a later delivery, or give up on it."""
        self.stats.errors += 1
        camera = delivery.message.camera_id if isinstance(delivery.message, RuleEvent) else None
        error = f"{type(err).__name__}: {err}"
        if delivery.deliveries < self.max_deliveries:
            logger.warning(
                "camera %s: ticketer %s: entry %s failed on delivery %d of %d (%s); it stays pending",
                camera, self.consumer, delivery.id, delivery.deliveries, self.max_deliveries, error,
            )
            return
        if self.bus.dead_letter(RULE_EVENTS, group=GROUP, delivery=delivery, error=error):
            self.stats.dead_lettered += 1
            logger.error(
                "camera %s: ticketer %s: entry %s dead-lettered after %d deliveries (%s)",
                camera, self.consumer, delivery.id, delivery.deliveries, error,
            )

    def publish(self, notices: list[TicketNotice]) -> None:
        if notices:
            try:
                self.bus.publish(TICKET_NOTICES, notices)
            except BusError as err:  # notices are a convenience for live views; the tickets are committed
                logger.warning("ticketer %s: could not publish %d notices: %s", self.consumer, len(notices), err)

    def sweep(self) -> None:
        now = self.clock()
        with transaction(self.factory) as session:
            notices = escalate_overdue(session, self.desk, now=now) + verify_by_video(session, self.desk, now=now)
            expired = expire_pending(session, now=now)
            retained = ClipChanges()
            if time.monotonic() >= self._next_retention:
                self._next_retention = time.monotonic() + self.retention_every_s
                retained = expire_retained(session, self.desk.settings, now=now)
        self._count_clips(ClipChanges(), expired=expired)
        self.stats.clips["expired"] += retained.removed
        for key in retained.deletable:
            self.evidence.delete(key)
        unattended = [n for n in notices if n.event == "unattended"]
        if unattended:
            self.stats.unattended += len(unattended)
            logger.warning(
                "ticketer %s: %d overdue tickets have nobody responsible up their grid tree (tickets %s); the centre must dispatch them",
                self.consumer, len(unattended), [n.ticket_id for n in unattended],
            )
        self.publish(notices)

    def step(self) -> int:
        """One round: maybe reclaim stale entries, read a batch, handle it, maybe sweep. Returns events read."""
        mono = time.monotonic()
        deliveries: list[Delivery] = []
        if mono >= self._next_claim:
            self._next_claim = mono + self.stale_ms / 2000
            deliveries = self.bus.claim_stale(RULE_EVENTS, group=GROUP, consumer=self.consumer, min_idle_ms=self.stale_ms, count=self.batch)
            self.stats.reclaimed += len(deliveries)
        if not deliveries:
            deliveries = self.bus.consume(RULE_EVENTS, group=GROUP, consumer=self.consumer, count=self.batch, block_ms=self.block_ms)
        if deliveries:
            self.handle(deliveries)
        if mono >= self._next_sweep:
            self._next_sweep = mono + self.sweep_every_s
            self.sweep()
        return len(deliveries)

    def run(self, stop: threading.Event) -> None:
        logger.info("ticketer %s: consuming %s", self.consumer, RULE_EVENTS)
        backoff = 0.5
        while not stop.is_set():
            try:
                self.step()
                backoff = 0.5
            except Exception:  # the loop must survive a Redis or database outage
                self.stats.errors += 1
                logger.exception("ticketer %s: step failed; retrying in %.1fs", self.consumer, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)


class TicketerCollector(Collector):
    """Prometheus view of a ticketer's bus, at scrape time: entries given up on and dead letters waiting."""

    def __init__(self, ticketer: Ticketer) -> None:
        self._ticketer = ticketer

    def register(self, registry: CollectorRegistry) -> TicketerCollector:
        registry.register(self)
        return self

    def collect(self) -> Iterator[Metric]:
        bus = self._ticketer.bus
        given_up = CounterMetricFamily(
            "gridpatrol_bus_dead_lettered", "Bus entries this process gave up on (moved to the dead letters)", labels=["topic"]
        )
        for topic, n in sorted(bus.dead_lettered().items()):
            given_up.add_metric([topic], n)
        yield given_up
        waiting = GaugeMetricFamily(
            "gridpatrol_bus_dead_letters", "Dead letters waiting for an admin (gridpatrol bus dead-letters)", labels=["topic"]
        )
        try:
            waiting.add_metric([RULE_EVENTS], bus.dead_letter_count(RULE_EVENTS))
        except BusError as err:  # a scrape must not fail because Redis is briefly away
            logger.warning("dead-letter count unavailable: %s", err)
        yield waiting
        unattended = CounterMetricFamily(
            "gridpatrol_tickets_unattended", "Overdue tickets with nobody responsible up their grid tree (left to the centre)"
        )
        unattended.add_metric([], self._ticketer.stats.unattended)
        yield unattended
        clips = CounterMetricFamily(
            "gridpatrol_event_clips",
            "Event clips linked to tickets, unavailable, removed over the per-ticket bound, expired by retention",
            labels=["outcome"],
        )
        for outcome, n in sorted(self._ticketer.stats.clips.items()):
            clips.add_metric([outcome], n)
        yield clips
        retention = CounterMetricFamily(
            "gridpatrol_retention_deleted",
            "Rows and files deleted by retention (evidence, occurrences, clips, access log, refresh tokens, "
            "outbox deliveries, camera outages)",
            labels=["kind"],
        )
        for kind, n in sorted(self._ticketer.stats.retention.items()):
            retention.add_metric([kind], n)
        yield retention
        outages = CounterMetricFamily(
            "gridpatrol_camera_outages",
            "Camera outages announced by this ticketer (offline past GRIDPATROL_CAMERA_OFFLINE_NOTICE_S)",
        )
        outages.add_metric([], self._ticketer.stats.camera_notices.get("offline", 0))
        yield outages


def run_webhooks(
    factory: sessionmaker[Session], *, secret: str, stop: threading.Event, every_s: float = 1.0, timeout_s: float = 5.0
) -> None:
    """Deliver the webhook outbox until ``stop``; a thread of its own so endpoints never slow tickets."""
    with httpx.Client(timeout=timeout_s) as client:
        while not stop.is_set():
            try:
                deliver_due(factory, client=client, secret=secret)
            except Exception:
                logger.exception("webhook delivery round failed")
            stop.wait(every_s)
