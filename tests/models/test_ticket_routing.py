"""Where a ticket goes: a rejected ticket is rerouted by its dispatcher to another grid or leader; an
escalation skips a level with nobody to answer and, with nobody anywhere up the tree, becomes an
'unattended' ticket the centre sees; a camera ticket carries the camera's place and name.

The sample tree: D1 (manager-d1) → S1 (manager-s1) → C1 → G1 (leader-g1), G2 (no leader);
D1 → S2 (no manager) → C2 → G3 (leader-g3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.db.engine import transaction
from models.db.tables import Camera, GridNode, Ticket, TicketTransition, User
from models.errors import AccessDenied, InvalidInput
from models.evidence.store import FileEvidenceStore
from models.identity.access import load_scope, visible_ticket
from models.identity.users import set_enabled
from models.tickets.categories import TicketSettings
from models.tickets.desk import TicketDesk
from models.tickets.ingest import ingest_events
from models.tickets.stats import evaluate
from models.tickets.sweeps import escalate_overdue
from tests.support.events import Episode

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


@pytest.fixture
def desk(tmp_path: Path) -> TicketDesk:
    return TicketDesk(TicketSettings(), evidence=FileEvidenceStore(tmp_path / "ev"), clock=lambda: T0 + timedelta(minutes=1))


def _user(s: Session, name: str) -> User:
    return s.scalars(select(User).where(User.username == name)).one()


def _open(factory: sessionmaker[Session], desk: TicketDesk, camera: str) -> int:
    with transaction(factory) as s:
        cam = s.scalars(select(Camera.id).where(Camera.name == camera)).one()
        ingest_events(s, desk, [Episode(cam, start=T0).event("started")])
        return s.scalars(select(Ticket.id).where(Ticket.camera_id == cam)).one()


def _act(factory: sessionmaker[Session], desk: TicketDesk, tid: int, username: str, action: str, **route: str) -> None:
    with transaction(factory) as s:
        u = _user(s, username)
        t = s.get(Ticket, tid)
        assert t is not None
        desk.transition(s, t, actor=u, scope=load_scope(s, u), action=action, note="该点位属于南浦第一网格", **route)


def test_a_rejected_ticket_is_rerouted_to_the_right_grid(seeded, desk: TicketDesk) -> None:
    tid = _open(seeded, desk, "cam-g1-a")
    _act(seeded, desk, tid, "leader-g1", "reject")
    _act(seeded, desk, tid, "manager-d1", "dispatch", to_grid="G3")
    with seeded() as s:
        t = s.get(Ticket, tid)
        assert t is not None and t.state == "dispatched"
        assert (t.grid.code, t.assignee_id, t.escalation_level) == ("G3", _user(s, "leader-g3").id, 0)
        note = s.scalars(select(TicketTransition.note).where(TicketTransition.ticket_id == tid).order_by(TicketTransition.id.desc())).first()
        assert note is not None and note.startswith("派遣 → 南浦第一网格(G3) · leader-g3")
        # the ticket now belongs to G3: its leader sees it and may accept it; G1's leader no longer sees it
        assert visible_ticket(s, load_scope(s, _user(s, "leader-g1")), tid) is None
    _act(seeded, desk, tid, "leader-g3", "accept")


def test_naming_a_leader_moves_the_ticket_to_their_grid(seeded, desk: TicketDesk) -> None:
    tid = _open(seeded, desk, "cam-g1-a")
    _act(seeded, desk, tid, "leader-g1", "reject")
    _act(seeded, desk, tid, "operator1", "dispatch", to_user="leader-g3")
    with seeded() as s:
        t = s.get(Ticket, tid)
        assert t is not None and t.grid.code == "G3" and t.assignee_id == _user(s, "leader-g3").id


@pytest.mark.parametrize(
    ("who", "action", "route", "error", "message"),
    [
        ("manager-s1", "dispatch", {"to_grid": "G3"}, AccessDenied, "inside your responsibility"),
        ("manager-d1", "dispatch", {"to_grid": "S1"}, InvalidInput, "S1 is a street, not a grid"),
        ("manager-d1", "dispatch", {"to_grid": "G2"}, InvalidInput, "grid G2 has no grid leader"),
        ("manager-d1", "dispatch", {"to_grid": "G9"}, InvalidInput, "no grid has code 'G9'"),
        ("manager-d1", "dispatch", {"to_user": "patroller-g2"}, InvalidInput, "not an enabled grid leader"),
        ("manager-d1", "dispatch", {"to_grid": "G1", "to_user": "leader-g3"}, InvalidInput, "not a leader of grid G1"),
    ],
)
def test_where_a_dispatch_may_not_go(seeded, desk: TicketDesk, who: str, action: str, route: dict[str, str], error: type, message: str) -> None:
    tid = _open(seeded, desk, "cam-g1-a")
    _act(seeded, desk, tid, "leader-g1", "reject")
    with pytest.raises(error, match=message):
        _act(seeded, desk, tid, who, action, **route)
    with seeded() as s:
        t = s.get(Ticket, tid)
        assert t is not None and t.state == "rejected" and t.grid.code == "G1"  # nothing changed


def test_only_a_dispatch_names_a_destination(seeded, desk: TicketDesk) -> None:
    tid = _open(seeded, desk, "cam-g1-a")
    with pytest.raises(InvalidInput, match="only a dispatch names where the ticket goes"):
        _act(seeded, desk, tid, "leader-g1", "accept", to_grid="G1")


def test_escalation_skips_a_street_without_a_manager(seeded, desk: TicketDesk) -> None:
    tid = _open(seeded, desk, "cam-g3-a")  # S2 has no manager
    with transaction(seeded) as s:
        notices = escalate_overdue(s, desk, now=T0 + timedelta(hours=1))  # late to accept (10 min)
    assert [(n.event, n.detail["to"]) for n in notices] == [("escalated", "D1")]
    with seeded() as s:
        t = s.get(Ticket, tid)
        assert t is not None and t.assignee_id == _user(s, "manager-d1").id and t.escalation_level == 2


def test_nobody_up_the_tree_makes_an_unattended_ticket_for_the_centre(seeded, desk: TicketDesk) -> None:
    with transaction(seeded) as s:
        set_enabled(s, user=_user(s, "manager-d1"), enabled=False)
    tid = _open(seeded, desk, "cam-g3-a")
    with transaction(seeded) as s:
        notices = escalate_overdue(s, desk, now=T0 + timedelta(hours=1))
    assert [n.event for n in notices] == ["unattended"]
    with transaction(seeded) as s:  # said once, not at every sweep
        assert escalate_overdue(s, desk, now=T0 + timedelta(hours=5)) == []
    with seeded() as s:
        t = s.get(Ticket, tid)
        assert t is not None and t.assignee_id is None
        assert "上级无负责人" in (s.scalars(select(TicketTransition.note).where(TicketTransition.action == "escalate")).one())
        admin = load_scope(s, _user(s, "admin1"))
        result = evaluate(s, scope=admin.ticket_filter(), since=T0 - timedelta(days=1), until=T0 + timedelta(days=1), now=T0 + timedelta(hours=5))
    assert result.unattended == 1


def test_a_camera_ticket_carries_the_cameras_place_and_name(seeded, desk: TicketDesk) -> None:
    tid = _open(seeded, desk, "cam-g1-b")
    with seeded() as s:
        t = s.get(Ticket, tid)
        cam = s.scalars(select(Camera).where(Camera.name == "cam-g1-b")).one()
        assert t is not None and (t.lon, t.lat) == (cam.lon, cam.lat) and cam.lon is not None
        assert "cam-g1-b" in t.description
        assert s.get(GridNode, t.grid_id).code == "G1"  # type: ignore[union-attr]


def test_the_ticketer_counts_unattended_tickets_in_its_metrics(seeded, desk: TicketDesk, tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from gridpatrol.ticketer import Ticketer, TicketerCollector
    from models.bus.memory import MemoryBus

    with transaction(seeded) as s:
        set_enabled(s, user=_user(s, "manager-d1"), enabled=False)
    _open(seeded, desk, "cam-g3-a")
    ticketer = Ticketer(
        bus=MemoryBus(), session_factory=seeded, desk=desk, evidence=desk.evidence, consumer="t1", clock=lambda: T0 + timedelta(hours=1)
    )
    registry = CollectorRegistry()
    TicketerCollector(ticketer).register(registry)
    ticketer.sweep()
    ticketer.sweep()  # said once per ticket, not per sweep
    assert ticketer.stats.unattended == 1
    assert "gridpatrol_tickets_unattended_total 1.0" in generate_latest(registry).decode()
