"""The ticket loop on real databases: detections open one ticket per episode, people move it through
every state (forbidden moves refused with a reason), deadlines escalate it with an injected clock, and
the camera verifies or reopens it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from models.db.engine import transaction
from models.db.tables import Camera, Ticket, TicketOccurrence, TicketTransition, User
from models.errors import AccessDenied, Conflict, InvalidInput
from models.evidence.store import FileEvidenceStore
from models.identity.access import load_scope
from models.tickets.categories import TicketSettings
from models.tickets.desk import TicketDesk
from models.tickets.ingest import ingest_events
from models.tickets.sweeps import escalate_overdue, verify_by_video
from tests.support.events import Episode

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> datetime:
        self.now += timedelta(**kw)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def desk(tmp_path: Path, clock: Clock) -> TicketDesk:
    settings = TicketSettings(ticket_verify_clear_s=60, ticket_max_snapshots=2)
    return TicketDesk(settings, evidence=FileEvidenceStore(tmp_path / "evidence"), clock=clock)


def camera_id(factory: sessionmaker[Session], name: str) -> int:
    with factory() as s:
        return s.scalars(select(Camera.id).where(Camera.name == name)).one()


def user(s: Session, name: str) -> User:
    return s.scalars(select(User).where(User.username == name)).one()


def act(factory: sessionmaker[Session], desk: TicketDesk, ticket_id: int, username: str, action: str, note: str = "ok") -> Ticket:
    with transaction(factory) as s:
        u = user(s, username)
        ticket = s.get(Ticket, ticket_id)
        assert ticket is not None
        desk.transition(s, ticket, actor=u, scope=load_scope(s, u), action=action, note=note)
        return ticket


def history(factory: sessionmaker[Session], ticket_id: int) -> list[tuple[str, str | None, str]]:
    with factory() as s:
        rows = s.scalars(select(TicketTransition).where(TicketTransition.ticket_id == ticket_id).order_by(TicketTransition.id))
        return [(r.action, r.from_state, r.to_state) for r in rows]


def test_one_ticket_per_episode_dispatched_to_the_leader(seeded, desk: TicketDesk) -> None:
    cam = camera_id(seeded, "cam-g1-a")
    ep = Episode(cam, start=T0)
    started = ep.event("started", evidence_key="2026/11/27/c/first.jpg")
    batch = [started, ep.event("updated", after_s=5), started, ep.event("updated", after_s=10)]
    with transaction(seeded) as s:
        result = ingest_events(s, desk, batch)
    assert (result.applied, result.duplicates) == (3, 1)
    with transaction(seeded) as s:  # a full redelivery changes nothing
        again = ingest_events(s, desk, batch)
    assert (again.applied, again.duplicates) == (0, 4)
    with seeded() as s:
        tickets = s.scalars(select(Ticket)).all()
        assert len(tickets) == 1
        t = tickets[0]
        assert (t.category, t.case_code, t.state, t.grid.code) == ("fire_lane_blockage", "消防通道堵塞", "dispatched", "G1")
        assert t.assignee_id == user(s, "leader-g1").id
        assert t.evidence_key == "2026/11/27/c/first.jpg" and t.occurrence_count == 3
        assert t.accept_by == T0 + timedelta(minutes=10)
    assert [h[0] for h in history(seeded, t.id)] == ["open", "dispatch"]
    assert {n.event for n in result.notices} == {"opened", "dispatch"}


def test_a_new_episode_while_the_ticket_is_live_joins_it(seeded, desk: TicketDesk) -> None:
    cam = camera_id(seeded, "cam-g1-a")
    first, second = Episode(cam, start=T0), Episode(cam, start=T0 + timedelta(minutes=3))
    with transaction(seeded) as s:
        ingest_events(s, desk, [first.event("started"), first.event("ended", after_s=60)])
    with transaction(seeded) as s:
        ingest_events(s, desk, [second.event("started")])
    with seeded() as s:
        assert s.scalar(select(func.count()).select_from(Ticket)) == 1
        assert s.scalars(select(Ticket.condition_active)).one() is True
    # another zone or rule of the same camera is another ticket
    other = Episode(cam, zone="road", rule="road_occupation", start=T0)
    with transaction(seeded) as s:
        ingest_events(s, desk, [other.event("started")])
    with seeded() as s:
        assert s.scalar(select(func.count()).select_from(Ticket)) == 2


def test_snapshots_are_bounded_per_ticket(seeded, desk: TicketDesk) -> None:
    ep = Episode(camera_id(seeded, "cam-g1-a"), start=T0)
    events = [ep.event("started", evidence_key="e/0.jpg")] + [
        ep.event("updated", after_s=i, evidence_key=f"e/{i}.jpg") for i in range(1, 6)
    ]
    with transaction(seeded) as s:
        result = ingest_events(s, desk, events)
    with seeded() as s:
        kept = s.scalars(select(TicketOccurrence.evidence_key).where(TicketOccurrence.evidence_key.is_not(None))).all()
    assert len(kept) == 3  # the confirming snapshot + max_snapshots (2) more
    assert sorted(result.surplus_evidence) == ["e/3.jpg", "e/4.jpg", "e/5.jpg"]


def _open_ticket(seeded, desk: TicketDesk, name: str = "cam-g1-a") -> tuple[int, Episode]:
    ep = Episode(camera_id(seeded, name), start=T0)
    with transaction(seeded) as s:
        ingest_events(s, desk, [ep.event("started", evidence_key="e/start.jpg")])
    with seeded() as s:
        return s.scalars(select(Ticket.id)).one(), ep


def test_every_state_and_every_forbidden_move(seeded, desk: TicketDesk, clock: Clock) -> None:
    tid, _ = _open_ticket(seeded, desk)
    refused = [
        ("leader-g3", "accept", AccessDenied, "outside your responsibility"),  # wrong grid
        ("patroller-g2", "accept", AccessDenied, "a patroller may not accept"),  # wrong role
        ("operator1", "accept", AccessDenied, "an operator may not accept"),
        ("leader-g1", "resolve", Conflict, "cannot resolve a ticket that is dispatched"),
        ("leader-g1", "verify", AccessDenied, "a grid_leader may not verify"),
        ("leader-g1", "fly", InvalidInput, "unknown action 'fly'"),
    ]
    for username, action, error, reason in refused:
        with pytest.raises(error, match=reason):
            act(seeded, desk, tid, username, action)
    act(seeded, desk, tid, "leader-g1", "accept")
    with pytest.raises(Conflict, match="cannot accept a ticket that is accepted"):
        act(seeded, desk, tid, "manager-s1", "accept")
    clock.advance(minutes=20)
    act(seeded, desk, tid, "leader-g1", "resolve", "已清理")
    with pytest.raises(InvalidInput, match="note is required"):
        act(seeded, desk, tid, "manager-s1", "reopen", note="")
    act(seeded, desk, tid, "manager-s1", "reopen", "现场仍有杂物")  # → reopened → auto-dispatched
    act(seeded, desk, tid, "leader-g1", "reject", "不属于本网格")
    act(seeded, desk, tid, "operator1", "dispatch")
    act(seeded, desk, tid, "leader-g1", "accept")
    act(seeded, desk, tid, "leader-g1", "resolve", "已清理")
    act(seeded, desk, tid, "manager-d1", "verify")
    with pytest.raises(AccessDenied, match="a grid_leader may not close"):
        act(seeded, desk, tid, "leader-g1", "close")
    act(seeded, desk, tid, "operator1", "close")
    assert [h[0] for h in history(seeded, tid)] == [
        "open", "dispatch", "accept", "resolve", "reopen", "dispatch", "reject",
        "dispatch", "accept", "resolve", "verify", "close",
    ]  # fmt: skip
    with seeded() as s:
        t = s.get(Ticket, tid)
        assert t is not None and t.state == "closed" and t.active_key is None and t.closed_at == clock.now


def test_dismiss_a_false_alarm_needs_staff_and_a_note(seeded, desk: TicketDesk) -> None:
    tid, ep = _open_ticket(seeded, desk)
    with pytest.raises(AccessDenied, match="a manager may not dismiss"):
        act(seeded, desk, tid, "manager-s1", "dismiss", "误报")
    act(seeded, desk, tid, "operator1", "dismiss", "误报：施工围挡")
    # the same episode keeps reporting: it lands on the closed ticket, no new ticket, no flood
    with transaction(seeded) as s:
        ingest_events(s, desk, [ep.event("updated", after_s=30)])
    with seeded() as s:
        assert s.scalar(select(func.count()).select_from(Ticket)) == 1


def test_escalation_with_an_injected_clock(seeded, desk: TicketDesk, clock: Clock) -> None:
    tid, _ = _open_ticket(seeded, desk)
    with transaction(seeded) as s:
        assert escalate_overdue(s, desk, now=T0 + timedelta(minutes=9)) == []
    with transaction(seeded) as s:
        notes = escalate_overdue(s, desk, now=T0 + timedelta(minutes=10))
    assert [(n.event, n.detail["level"], n.detail["to"]) for n in notes] == [("escalated", 1, "S1")]
    with seeded() as s:
        t = s.get(Ticket, tid)
        assert t is not None and t.escalation_level == 1 and t.assignee_id == user(s, "manager-s1").id
    with transaction(seeded) as s:  # once per level
        assert escalate_overdue(s, desk, now=T0 + timedelta(minutes=30)) == []
    clock.now = T0 + timedelta(minutes=40)
    act(seeded, desk, tid, "leader-g1", "accept")
    with transaction(seeded) as s:
        notes = escalate_overdue(s, desk, now=T0 + timedelta(minutes=61))
    assert [(n.detail["level"], n.detail["to"]) for n in notes] == [(2, "D1")]
    with seeded() as s:
        assert s.get(Ticket, tid).assignee_id == user(s, "manager-d1").id  # type: ignore[union-attr]
        notes_text = [r.note for r in s.scalars(select(TicketTransition).where(TicketTransition.action == "escalate"))]
    assert notes_text[0].startswith("未按时受理") and notes_text[1].startswith("未按时办结")


def test_verification_by_video(seeded, desk: TicketDesk, clock: Clock) -> None:
    tid, ep = _open_ticket(seeded, desk)
    act(seeded, desk, tid, "leader-g1", "accept")
    clock.advance(minutes=5)
    act(seeded, desk, tid, "leader-g1", "resolve", "已清理")
    resolved_at = clock.now
    # the object is still there at resolve time: no verification however long we wait
    with transaction(seeded) as s:
        assert verify_by_video(s, desk, now=resolved_at + timedelta(minutes=10)) == []
    with transaction(seeded) as s:
        ingest_events(s, desk, [ep.event("ended", after_s=resolved_at.timestamp() - T0.timestamp() + 30, evidence_key="e/clear.jpg")])
    with transaction(seeded) as s:
        assert verify_by_video(s, desk, now=resolved_at + timedelta(seconds=89)) == []
    with transaction(seeded) as s:
        notes = verify_by_video(s, desk, now=resolved_at + timedelta(seconds=90))
    assert [n.event for n in notes] == ["verify"]
    with seeded() as s:
        t = s.get(Ticket, tid)
        assert t is not None and t.state == "verified" and t.active_key is None
        last = s.scalars(select(TicketTransition).where(TicketTransition.ticket_id == tid).order_by(TicketTransition.id.desc())).first()
        assert last is not None and last.actor_id is None and last.photos == ["e/clear.jpg"]


def test_fires_again_after_resolution_reopens(seeded, desk: TicketDesk, clock: Clock) -> None:
    tid, ep = _open_ticket(seeded, desk)
    with transaction(seeded) as s:
        ingest_events(s, desk, [ep.event("ended", after_s=20)])
    act(seeded, desk, tid, "leader-g1", "accept")
    act(seeded, desk, tid, "leader-g1", "resolve", "已清理")
    again = Episode(ep.camera_id, start=T0 + timedelta(minutes=2))
    with transaction(seeded) as s:
        result = ingest_events(s, desk, [again.event("started", evidence_key="e/again.jpg")])
    assert [n.event for n in result.notices] == ["reopen", "dispatch"]
    with seeded() as s:
        assert s.scalar(select(func.count()).select_from(Ticket)) == 1
        t = s.get(Ticket, tid)
        assert t is not None and t.state == "dispatched"
    assert [h[0] for h in history(seeded, tid)][-2:] == ["reopen", "dispatch"]


def test_manual_report_is_placed_by_location(seeded, desk: TicketDesk) -> None:
    from tests.support.sample import point_in

    with transaction(seeded) as s:
        u = user(s, "patroller-g2")
        lon, lat = point_in("G2")
        ticket, notes = desk.report(
            s, reporter=u, scope=load_scope(s, u), category="road_occupation", lon=lon, lat=lat, description="流动摊贩"
        )
        assert (ticket.grid.code, ticket.state, ticket.source, ticket.camera_id) == ("G2", "open", "patrol", None)
        lon3, lat3 = point_in("G3")
        with pytest.raises(AccessDenied, match="only inside your own grids"):
            desk.report(s, reporter=u, scope=load_scope(s, u), category="road_occupation", lon=lon3, lat=lat3, description="x")
        with pytest.raises(InvalidInput, match="outside every grid"):
            desk.report(s, reporter=u, scope=load_scope(s, u), category="road_occupation", lon=100.0, lat=30.0, description="x")
        with pytest.raises(InvalidInput, match="unknown category"):
            desk.report(s, reporter=u, scope=load_scope(s, u), category="ufo", lon=lon, lat=lat, description="x")


def test_late_redelivery_does_not_revive_a_cleared_condition(seeded, desk: TicketDesk, clock: Clock) -> None:
    """A reclaimed 'updated' that arrives after its episode's 'ended' is recorded, not obeyed."""
    cam = camera_id(seeded, "cam-g1-a")
    ep = Episode(cam, start=T0)
    started, updated, ended = ep.event("started"), ep.event("updated", after_s=5), ep.event("ended", after_s=10)
    with transaction(seeded) as s:
        ingest_events(s, desk, [started])
    with transaction(seeded) as s:
        ingest_events(s, desk, [ended])
    with transaction(seeded) as s:
        ingest_events(s, desk, [updated])  # held by a consumer that died, reclaimed late
    with seeded() as s:
        t = s.scalars(select(Ticket)).one()
        assert (t.occurrence_count, t.condition_active, t.condition_cleared_at) == (3, False, T0 + timedelta(seconds=10))
    # a later episode on the same zone does make it active again; its stale 'ended' cannot clear it
    again = Episode(cam, start=T0 + timedelta(minutes=1))
    with transaction(seeded) as s:
        ingest_events(s, desk, [again.event("started")])
    with transaction(seeded) as s:
        ingest_events(s, desk, [ep.event("ended", after_s=20)])  # an old episode's late end
    with seeded() as s:
        assert s.scalars(select(Ticket.condition_active)).one() is True
    # a stale 'started' from before the resolution does not reopen it
    with seeded() as s:
        tid = s.scalars(select(Ticket.id)).one()
    with transaction(seeded) as s:
        ingest_events(s, desk, [again.event("ended", after_s=30)])
    clock.now = T0 + timedelta(minutes=5)
    act(seeded, desk, tid, "leader-g1", "accept")
    act(seeded, desk, tid, "leader-g1", "resolve", "已清理")
    stale = Episode(cam, start=T0 + timedelta(minutes=2))
    with transaction(seeded) as s:
        ingest_events(s, desk, [stale.event("started")])
    with seeded() as s:
        assert s.get(Ticket, tid).state == "resolved"  # type: ignore[union-attr]
