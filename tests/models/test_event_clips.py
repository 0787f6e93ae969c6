"""Event clips on ticket occurrences, on SQLite and PostgreSQL: announced by a ``started`` event, linked
(or declared unavailable) by the worker's report, never a broken link when the worker dies, at most the
first and the latest per ticket, and deleted with the ticket's retention."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from models.bus.messages import RULE_EVENTS, EventClip, RuleEvent, decode, encode
from models.bus.redis_streams import RedisBus
from models.db.engine import transaction
from models.db.tables import Camera, Ticket, TicketOccurrence, TicketState
from models.evidence.store import FileEvidenceStore
from models.tickets.categories import TicketSettings
from models.tickets.clips import attach_clips, expire_pending, expire_retained
from models.tickets.desk import TicketDesk
from models.tickets.ingest import ingest_events
from tests.models.test_bus import REDIS_URL, redis_available
from tests.support.events import Episode
from tests.support.require import require

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


@pytest.fixture
def desk(tmp_path: Path) -> TicketDesk:
    settings = TicketSettings(ticket_max_clips=2, clip_retention_days=30)
    return TicketDesk(settings, evidence=FileEvidenceStore(tmp_path / "evidence"), clock=lambda: T0)


def started_with_clip(ep: Episode, after_s: float = 0.0) -> RuleEvent:
    event = ep.event("started", after_s=after_s)
    return event.model_copy(update={"clip_due": event.at + timedelta(minutes=2)})


def clip_of(event: RuleEvent, key: str | None, reason: str | None = None) -> EventClip:
    return EventClip(
        event_id=event.event_id,
        camera_id=event.camera_id,
        clip_key=key,
        started_at=event.at - timedelta(seconds=10),
        duration_s=30.0,
        reason=reason,
    )


def clips(factory: sessionmaker[Session]) -> list[tuple[str, str | None]]:
    with factory() as s:
        rows = s.execute(
            select(TicketOccurrence.clip_state, TicketOccurrence.clip_key)
            .where(TicketOccurrence.clip_state.is_not(None))
            .order_by(TicketOccurrence.at)
        )
        return [(state, key) for state, key in rows]


def camera(factory: sessionmaker[Session]) -> int:
    with factory() as s:
        return s.scalars(select(Camera.id).where(Camera.name == "cam-g1-a")).one()


def test_a_clip_is_pending_then_linked_and_a_repeat_changes_nothing(seeded, desk: TicketDesk) -> None:
    ep = Episode(camera(seeded), start=T0)
    event = started_with_clip(ep)
    assert decode(encode(clip_of(event, "k.mp4"))) == clip_of(event, "k.mp4")  # the bus carries it
    with transaction(seeded) as s:
        ingest_events(s, desk, [event, ep.event("updated", after_s=5)])
    assert clips(seeded) == [("pending", None)]
    with transaction(seeded) as s:
        done = attach_clips(s, [clip_of(event, "2026/11/27/cam/a.mp4")])
    assert (done.linked, done.deletable, [n.event for n in done.notices]) == (1, [], ["clip"])
    assert clips(seeded) == [("ready", "2026/11/27/cam/a.mp4")]
    with transaction(seeded) as s:  # a redelivered report
        again = attach_clips(s, [clip_of(event, "2026/11/27/cam/a.mp4")])
    assert (again.linked, again.deletable) == (0, [])
    # a report for an event no ticket has: its file can go
    stray = started_with_clip(Episode(camera(seeded), start=T0, zone="nowhere"))
    with transaction(seeded) as s:
        assert attach_clips(s, [clip_of(stray, "stray.mp4")]).deletable == ["stray.mp4"]


def test_a_worker_that_never_reports_leaves_unavailable_not_a_broken_link(seeded, desk: TicketDesk) -> None:
    ep = Episode(camera(seeded), start=T0)
    lost, failed = (
        started_with_clip(ep),
        started_with_clip(Episode(camera(seeded), start=T0, zone="road", rule="road_occupation")),
    )
    with transaction(seeded) as s:
        ingest_events(s, desk, [lost, failed])
    with transaction(seeded) as s:
        attach_clips(s, [clip_of(failed, None, reason="no video buffered")])
    with transaction(seeded) as s:
        assert expire_pending(s, now=T0 + timedelta(minutes=1)) == 0  # not due yet
    with transaction(seeded) as s:
        assert expire_pending(s, now=T0 + timedelta(minutes=3)) == 1
    assert sorted(clips(seeded)) == [("unavailable", None), ("unavailable", None)]
    with transaction(seeded) as s:  # the late report of an expired clip: its file goes
        assert attach_clips(s, [clip_of(lost, "late.mp4")]).deletable == ["late.mp4"]


def test_a_ticket_keeps_its_first_and_latest_clips(seeded, desk: TicketDesk) -> None:
    cam = camera(seeded)
    events = [started_with_clip(Episode(cam, start=T0 + timedelta(minutes=i))) for i in range(4)]
    deletable: list[str] = []
    for i, event in enumerate(events):
        with transaction(seeded) as s:
            deletable += ingest_events(s, desk, [event]).surplus_evidence
        with transaction(seeded) as s:
            attach_clips(s, [clip_of(event, f"clip-{i}.mp4")])
    assert [c for c in clips(seeded) if c[0] == "ready"] == [("ready", "clip-0.mp4"), ("ready", "clip-3.mp4")]
    assert deletable == ["clip-1.mp4", "clip-2.mp4"]
    with seeded() as s:
        assert len(set(s.scalars(select(TicketOccurrence.ticket_id)))) == 1


def test_clips_of_tickets_closed_long_ago_are_deleted(seeded, desk: TicketDesk) -> None:
    event = started_with_clip(Episode(camera(seeded), start=T0))
    with transaction(seeded) as s:
        ingest_events(s, desk, [event])
        attach_clips(s, [clip_of(event, "old.mp4")])
    with transaction(seeded) as s:
        s.execute(update(Ticket).values(state=TicketState.closed.value, closed_at=T0, active_key=None))
    with transaction(seeded) as s:
        assert expire_retained(s, desk.settings, now=T0 + timedelta(days=29)).removed == 0
    with transaction(seeded) as s:
        gone = expire_retained(s, desk.settings, now=T0 + timedelta(days=31))
    assert (gone.removed, gone.deletable) == (1, ["old.mp4"])
    assert clips(seeded) == [("removed", None)]
    keep = TicketSettings(clip_retention_days=0)  # 0: kept for ever
    with transaction(seeded) as s:
        assert expire_retained(s, keep, now=T0 + timedelta(days=3650)).removed == 0


def test_the_clip_report_follows_its_event_through_redis() -> None:
    require(redis_available(), "Redis on 127.0.0.1:6379")
    ns = f"test-{uuid.uuid4().hex[:8]}:"
    bus = RedisBus(REDIS_URL, namespace=ns)
    try:
        event = started_with_clip(Episode(1, start=T0))
        report = clip_of(event, "2026/11/27/cam-1/a.mp4")
        bus.publish(RULE_EVENTS, [event])
        bus.publish(RULE_EVENTS, [report])
        got = [d.message for d in bus.consume(RULE_EVENTS, group="g", consumer="c", count=10, block_ms=200)]
        assert got == [event, report]
    finally:
        bus.close()
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"{ns}*"):
            client.delete(key)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_clip_linked_while_the_bound_removes_it_leaves_no_orphan_file(seeded, desk: TicketDesk) -> None:
    """The worker's report and a newer clip's bound race on one occurrence: the report holds its row
    lock, the bound waits for it and then deletes the file it linked (never a file nobody points at)."""
    cam = camera(seeded)
    first, middle, newest = (
        started_with_clip(Episode(cam, start=T0 + timedelta(minutes=i))) for i in range(3)
    )
    for event in (first, middle):
        with transaction(seeded) as s:
            ingest_events(s, desk, [event])
    with transaction(seeded) as s:
        attach_clips(s, [clip_of(first, "first.mp4")])
    result: list[list[str]] = []
    reporter = seeded()
    try:
        attach_clips(reporter, [clip_of(middle, "middle.mp4")])  # row locked, not committed yet
        bound = threading.Thread(target=lambda: result.append(_ingest(seeded, desk, newest)))
        bound.start()
        bound.join(1.0)
        assert bound.is_alive(), "the bound did not wait for the report's row lock"
        reporter.commit()
    finally:
        reporter.close()
    bound.join(10)
    assert result == [["middle.mp4"]]
    assert clips(seeded) == [("ready", "first.mp4"), ("removed", None), ("pending", None)]


def _ingest(factory: sessionmaker[Session], desk: TicketDesk, event: RuleEvent) -> list[str]:
    with transaction(factory) as s:
        return ingest_events(s, desk, [event]).surplus_evidence
