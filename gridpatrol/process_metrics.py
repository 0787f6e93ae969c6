"""Metrics computed at scrape time that no single loop owns: analysis time per frame (worker), tickets by
state and overdue, the webhook outbox (ticketer, from the database), bus consumer groups' pending
entries and lag (from Redis). Names and meanings: docs/metrics.md."""

from __future__ import annotations

import bisect
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import datetime

import redis
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from models.bus.messages import RULE_EVENTS, TICKET_NOTICES
from models.db.tables import Ticket, WebhookDelivery, utcnow
from models.tickets.sweeps import NOT_ACCEPTED, NOT_RESOLVED

logger = logging.getLogger(__name__)

#: seconds; the classic backend takes milliseconds, onnx tens, yolo on CPU hundreds
ANALYSIS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class AnalysisLatency(Collector):
    """``gridpatrol_detector_seconds``: time of one frame's analysis (motion gate, detector, tracker,
    rules), a histogram per detector backend. ``observe`` is cheap: a bisect and two additions."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self._counts = [0] * (len(ANALYSIS_BUCKETS) + 1)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        i = bisect.bisect_left(ANALYSIS_BUCKETS, seconds)
        with self._lock:
            self._counts[i] += 1
            self._sum += seconds

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            counts, total = list(self._counts), self._sum
        buckets, running = [], 0
        for bound, n in zip([*map(str, ANALYSIS_BUCKETS), "+Inf"], counts, strict=True):
            running += n
            buckets.append((bound, running))
        family = HistogramMetricFamily(
            "gridpatrol_detector_seconds",
            "Analysis time of one frame (motion gate, detector, tracker, rules)",
            labels=["backend"],
        )
        family.add_metric([self.backend], buckets, total)
        yield family


class TicketCollector(Collector):
    """Tickets by state and category, live tickets past their deadline, the webhook outbox: one small
    grouped query each per scrape."""

    def __init__(self, factory: sessionmaker[Session], *, clock: Callable[[], datetime] = utcnow) -> None:
        self.factory, self.clock = factory, clock

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        try:
            with self.factory() as session:
                by_state = session.execute(
                    select(Ticket.state, Ticket.category, func.count()).group_by(
                        Ticket.state, Ticket.category
                    )
                ).all()
                late_accept = session.execute(
                    select(Ticket.category, func.count())
                    .where(Ticket.state.in_(NOT_ACCEPTED), Ticket.accept_by <= now)
                    .group_by(Ticket.category)
                ).all()
                late_resolve = session.execute(
                    select(Ticket.category, func.count())
                    .where(Ticket.state.in_(NOT_RESOLVED), Ticket.resolve_by <= now)
                    .group_by(Ticket.category)
                ).all()
                hooks = session.execute(
                    select(WebhookDelivery.dead, func.count())
                    .where(WebhookDelivery.delivered_at.is_(None))
                    .group_by(WebhookDelivery.dead)
                ).all()
                failing = session.scalar(
                    select(func.count()).where(
                        WebhookDelivery.delivered_at.is_(None),
                        WebhookDelivery.dead.is_(False),
                        WebhookDelivery.attempts > 0,
                    )
                )
        except SQLAlchemyError as err:  # a scrape must not fail because the database is briefly away
            logger.warning("ticket metrics unavailable: %s", type(err).__name__)
            return
        tickets = GaugeMetricFamily(
            "gridpatrol_tickets", "Tickets by state and category", labels=["state", "category"]
        )
        for state, category, n in by_state:
            tickets.add_metric([str(state), str(category)], n)
        yield tickets
        overdue = GaugeMetricFamily(
            "gridpatrol_tickets_overdue",
            "Live tickets past a deadline (accept or resolve)",
            labels=["deadline", "category"],
        )
        for deadline, rows in (("accept", late_accept), ("resolve", late_resolve)):
            for category, n in rows:
                overdue.add_metric([deadline, str(category)], n)
        yield overdue
        outbox = GaugeMetricFamily(
            "gridpatrol_webhook_deliveries",
            "Undelivered webhook deliveries: pending (retrying), failing (pending with a failed attempt), dead",
            labels=["status"],
        )
        counts = {bool(dead): n for dead, n in hooks}
        outbox.add_metric(["pending"], counts.get(False, 0))
        outbox.add_metric(["failing"], failing or 0)
        outbox.add_metric(["dead"], counts.get(True, 0))
        yield outbox


class BusGroupCollector(Collector):
    """Each consumer group of the bus's streams: entries delivered but not acknowledged (``pending``) and
    entries not yet delivered (``lag``, Redis 7), from ``XINFO GROUPS``."""

    def __init__(
        self, redis_url: str, *, namespace: str = "", topics: tuple[str, ...] = (RULE_EVENTS, TICKET_NOTICES)
    ) -> None:
        self._client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
        self._ns, self._topics = namespace, topics

    def collect(self) -> Iterator[Metric]:
        pending = GaugeMetricFamily(
            "gridpatrol_bus_pending",
            "Entries delivered to a consumer group and not yet acknowledged",
            labels=["topic", "group"],
        )
        lag = GaugeMetricFamily(
            "gridpatrol_bus_lag", "Entries not yet delivered to a consumer group", labels=["topic", "group"]
        )
        for topic in self._topics:
            try:
                groups = self._client.xinfo_groups(self._ns + topic)
            except redis.ResponseError:
                continue  # no such stream yet
            except redis.RedisError as err:
                logger.warning("bus metrics unavailable: %s", err)
                break
            for g in groups:
                name = g["name"].decode() if isinstance(g["name"], bytes) else str(g["name"])
                pending.add_metric([topic, name], g.get("pending") or 0)
                if g.get("lag") is not None:
                    lag.add_metric([topic, name], g["lag"])
        yield pending
        yield lag
