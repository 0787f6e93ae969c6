"""The ticketer: rule events from the bus become tickets; deadlines and video verification are swept.

At least once, end to end: a batch is committed, then acknowledged, then its notices are published.
A ticketer that dies between commit and ack leaves its entries pending; another ticketer (or this one
on restart) claims them after ``stale_ms`` and re-applies them, which changes nothing (idempotent).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import httpx
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from models.bus.messages import RULE_EVENTS, TICKET_NOTICES, RuleEvent, TicketNotice
from models.bus.streams import Bus, Delivery
from models.db.engine import transaction
from models.db.tables import utcnow
from models.errors import BusError
from models.evidence.store import EvidenceStore
from models.tickets.desk import TicketDesk
from models.tickets.ingest import ingest_events
from models.tickets.outbox import deliver_due
from models.tickets.sweeps import escalate_overdue, verify_by_video

logger = logging.getLogger(__name__)
GROUP = "ticketer"


@dataclass
class TicketerStats:
    batches: int = 0
    applied: int = 0
    duplicates: int = 0
    reclaimed: int = 0
    errors: int = 0
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
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.bus, self.factory, self.desk, self.evidence = bus, session_factory, desk, evidence
        self.consumer, self.batch, self.block_ms, self.stale_ms = consumer, batch, block_ms, stale_ms
        self.sweep_every_s, self.clock = sweep_every_s, clock
        self.stats = TicketerStats()
        self._next_sweep = 0.0
        self._next_claim = 0.0

    def handle(self, deliveries: list[Delivery]) -> None:
        """Apply, commit, ack, publish. Retried on transient database errors; left pending otherwise."""
        events = [d.message for d in deliveries if isinstance(d.message, RuleEvent)]
        for attempt in range(5):
            try:
                with transaction(self.factory) as session:
                    result = ingest_events(session, self.desk, events)
                break
            except DBAPIError as err:  # deadlock, serialization failure, database restart...
                self.stats.errors += 1
                logger.warning("ticketer %s: batch of %d failed (%s), retry %d", self.consumer, len(events), type(err.orig).__name__, attempt + 1)
                time.sleep(0.05 * 2**attempt)
        else:
            logger.error("ticketer %s: giving up on a batch of %d for now; it stays pending", self.consumer, len(events))
            return
        self.bus.ack(RULE_EVENTS, group=GROUP, ids=[d.id for d in deliveries])
        self.stats.batches += 1
        self.stats.applied += result.applied
        self.stats.duplicates += result.duplicates
        self.stats.last_batch_at = time.time()
        self.publish(result.notices)
        for key in result.surplus_evidence:
            self.evidence.delete(key)

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
