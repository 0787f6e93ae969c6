"""Ticket writes under concurrency, on both databases: two parties act on one ticket at the same moment
(threads released together by a barrier, many rounds in a loop) and the result is always the one a
sequential order would give — never a lost counter, never two winners, never a 500.

The races: two ticketers applying events of one ticket; a grid leader's accept against a street
manager's reject through the API; the verification sweep against a re-detection; a manual reopen
against a ticketer opening a new ticket for the same zone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.bus.messages import RuleEvent
from models.db.engine import transaction
from models.db.tables import Camera, Ticket, TicketState, TicketTransition, User
from models.errors import Conflict
from models.evidence.store import FileEvidenceStore
from models.identity.access import load_scope
from models.tickets.categories import TicketSettings
from models.tickets.desk import TicketDesk
from models.tickets.ingest import ingest_events
from models.tickets.sweeps import verify_by_video
from tests.support.events import Episode

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def rounds(db_url: str) -> int:
    """100 rounds on PostgreSQL (the server used in production); SQLite serialises whole transactions,
    so fewer rounds show the same thing there."""
    return 100 if db_url.startswith("postgresql") else 25


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def desk(tmp_path: Path, clock: Clock) -> TicketDesk:
    return TicketDesk(TicketSettings(ticket_verify_clear_s=60), evidence=FileEvidenceStore(tmp_path / "ev"), clock=clock)


def race(*parties: Callable[[], Any]) -> list[Any]:
    """Run the parties in threads released together; each result is its return value or its exception."""
    barrier = threading.Barrier(len(parties))
    results: list[Any] = [None] * len(parties)

    def run(i: int, party: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            results[i] = party()
        except Exception as err:  # the test inspects what each party got
            results[i] = err

    threads = [threading.Thread(target=run, args=(i, p)) for i, p in enumerate(parties)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a party is stuck (deadlock?)"
    return results


def ingest(factory: sessionmaker[Session], desk: TicketDesk, events: list[RuleEvent]) -> None:
    with transaction(factory) as s:
        ingest_events(s, desk, events)


def sweep(factory: sessionmaker[Session], desk: TicketDesk, now: datetime) -> None:
    with transaction(factory) as s:
        verify_by_video(s, desk, now=now)


def camera(factory: sessionmaker[Session], name: str = "cam-g1-a") -> int:
    with factory() as s:
        return s.scalars(select(Camera.id).where(Camera.name == name)).one()


def ticket_of_zone(factory: sessionmaker[Session], zone: str) -> list[Ticket]:
    with factory() as s:
        return list(s.scalars(select(Ticket).where(Ticket.zone_name == zone).order_by(Ticket.id)))


def move(factory: sessionmaker[Session], desk: TicketDesk, ticket_id: int, username: str, action: str, note: str = "ok") -> str:
    with transaction(factory) as s:
        u = s.scalars(select(User).where(User.username == username)).one()
        t = s.get(Ticket, ticket_id)
        assert t is not None
        desk.transition(s, t, actor=u, scope=load_scope(s, u), action=action, note=note)
        return t.state


def resolved_ticket(factory: sessionmaker[Session], desk: TicketDesk, clock: Clock, *, camera_id: int, zone: str) -> Ticket:
    """A ticket whose problem was seen at T0 and gone at T0+5 s, accepted and resolved at T0+10 s."""
    clock.now = T0
    first = Episode(camera_id, zone=zone, start=T0)
    ingest(factory, desk, [first.event("started"), first.event("ended", after_s=5)])
    (t,) = ticket_of_zone(factory, zone)
    clock.now = T0 + timedelta(seconds=10)
    for action in ("accept", "resolve"):
        move(factory, desk, t.id, "leader-g1", action)
    return t


def test_two_ticketers_on_one_ticket_lose_no_event(seeded, desk: TicketDesk, db_url: str) -> None:
    cam = camera(seeded)
    n = rounds(db_url)
    for i in range(n):
        zone = f"lane-{i}"
        ep = Episode(cam, zone=zone, start=T0)
        ingest(seeded, desk, [ep.event("started")])
        updated, ended = ep.event("updated", after_s=5), ep.event("ended", after_s=10)
        outcome = race(partial(ingest, seeded, desk, [updated]), partial(ingest, seeded, desk, [ended]))
        assert outcome == [None, None], f"round {i}: {outcome}"
        (t,) = ticket_of_zone(seeded, zone)
        # both events counted, and the newer one (ended) decides the condition whatever the order
        assert (t.occurrence_count, t.condition_active) == (3, False), f"round {i}"
        assert t.condition_cleared_at == T0 + timedelta(seconds=10), f"round {i}"


def test_accept_against_reject_through_the_api_has_one_winner(client: TestClient, auth_headers, seeded, desk: TicketDesk, db_url: str) -> None:
    cam = camera(seeded)
    leader, manager = auth_headers("leader-g1"), auth_headers("manager-s1")
    n = rounds(db_url)
    for i in range(n):
        zone = f"lane-{i}"
        ingest(seeded, desk, [Episode(cam, zone=zone, start=T0).event("started")])
        (t,) = ticket_of_zone(seeded, zone)
        assert t.state == TicketState.dispatched.value

        def post(headers: dict[str, str], action: str, tid: int = t.id) -> Any:
            return client.post(f"/api/tickets/{tid}/transitions", json={"action": action, "note": "不属于本网格"}, headers=headers)

        accept, reject = race(lambda: post(leader, "accept"), lambda: post(manager, "reject"))
        codes = sorted([accept.status_code, reject.status_code])
        assert codes == [200, 409], f"round {i}: accept {accept.status_code} {accept.text[:120]}, reject {reject.status_code} {reject.text[:120]}"
        loser = accept if accept.status_code == 409 else reject
        assert "cannot" in loser.json()["detail"], loser.text  # the reason: the state the winner left
        (after,) = ticket_of_zone(seeded, zone)
        assert after.state == (TicketState.accepted.value if accept.status_code == 200 else TicketState.rejected.value)
        with seeded() as s:
            actions = list(s.scalars(select(TicketTransition.action).where(TicketTransition.ticket_id == t.id)))
        assert actions.count("accept") + actions.count("reject") == 1, f"round {i}: {actions}"


def test_two_accepts_have_one_winner(seeded, desk: TicketDesk, db_url: str) -> None:
    cam = camera(seeded)
    for i in range(rounds(db_url)):
        zone = f"lane-{i}"
        ingest(seeded, desk, [Episode(cam, zone=zone, start=T0).event("started")])
        (t,) = ticket_of_zone(seeded, zone)
        first, second = race(partial(move, seeded, desk, t.id, "leader-g1", "accept"), partial(move, seeded, desk, t.id, "manager-s1", "accept"))
        outcomes = sorted(type(r).__name__ for r in (first, second))
        assert outcomes == ["Conflict", "str"], f"round {i}: {first!r}, {second!r}"


def test_verification_against_a_redetection_never_verifies_a_present_problem(seeded, desk: TicketDesk, clock: Clock, db_url: str) -> None:
    cam = camera(seeded)
    for i in range(rounds(db_url)):
        zone = f"lane-{i}"
        resolved_ticket(seeded, desk, clock, camera_id=cam, zone=zone)
        now = T0 + timedelta(seconds=100)  # clear for 90 s: the sweep would verify it
        back = Episode(cam, zone=zone, start=T0 + timedelta(seconds=95)).event("started")

        assert race(partial(sweep, seeded, desk, now), partial(ingest, seeded, desk, [back])) == [None, None], f"round {i}"
        tickets = ticket_of_zone(seeded, zone)
        live = [x for x in tickets if x.active_key is not None]
        assert len(live) == 1, f"round {i}: {[(x.id, x.state, x.active_key) for x in tickets]}"
        # the problem is back: someone is dispatched to it, whichever party went first
        assert live[0].state == TicketState.dispatched.value and live[0].condition_active, f"round {i}"
        for other in tickets:
            if other is not live[0]:
                assert other.state == TicketState.verified.value and not other.condition_active, f"round {i}"


def test_reopen_against_a_new_ticket_for_the_zone_is_a_conflict_not_an_error(seeded, desk: TicketDesk, clock: Clock, db_url: str) -> None:
    cam = camera(seeded)
    for i in range(rounds(db_url)):
        zone = f"lane-{i}"
        t = resolved_ticket(seeded, desk, clock, camera_id=cam, zone=zone)
        sweep(seeded, desk, T0 + timedelta(seconds=100))
        assert ticket_of_zone(seeded, zone)[0].state == TicketState.verified.value
        clock.now = T0 + timedelta(seconds=200)
        again = Episode(cam, zone=zone, start=T0 + timedelta(seconds=150)).event("started")
        reopen, opened = race(partial(move, seeded, desk, t.id, "manager-s1", "reopen", "现场仍有杂物"), partial(ingest, seeded, desk, [again]))
        assert opened is None, f"round {i}: the ticketer failed: {opened!r}"
        assert reopen == TicketState.dispatched.value or isinstance(reopen, Conflict), f"round {i}: {reopen!r}"
        tickets = ticket_of_zone(seeded, zone)
        assert len([x for x in tickets if x.active_key is not None]) == 1, f"round {i}"
        expected = 1 if isinstance(reopen, str) else 2  # reopened: the event joined it; refused: a new ticket
        assert len(tickets) == expected, f"round {i}: {reopen!r} {[(x.id, x.state) for x in tickets]}"


def test_reopen_starts_escalation_again(seeded, desk: TicketDesk, clock: Clock) -> None:
    from models.tickets.sweeps import escalate_overdue

    cam = camera(seeded)
    ingest(seeded, desk, [Episode(cam, zone="lane", start=T0).event("started")])
    (t,) = ticket_of_zone(seeded, "lane")
    with transaction(seeded) as s:
        escalate_overdue(s, desk, now=T0 + timedelta(days=1))  # late to accept and to resolve
    assert ticket_of_zone(seeded, "lane")[0].escalation_level == 2
    clock.now = T0 + timedelta(days=1, hours=1)
    for username, action in [("manager-d1", "accept"), ("manager-d1", "resolve")]:
        move(seeded, desk, t.id, username, action)
    move(seeded, desk, t.id, "manager-s1", "reopen", "现场仍有杂物")
    (after,) = ticket_of_zone(seeded, "lane")
    assert after.escalation_level == 0 and after.state == TicketState.dispatched.value
    with transaction(seeded) as s:
        notices = escalate_overdue(s, desk, now=clock.now + timedelta(days=1))
    assert [n.event for n in notices] == ["escalated"]
    assert ticket_of_zone(seeded, "lane")[0].escalation_level == 2
