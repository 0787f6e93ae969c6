"""Joint handling on SQLite and PostgreSQL: rules bring departments in, a part lends its ticket's camera
while it is open, the ticket resolves only when the lead and every part are done, police clues stay with
their station, duplicates merge with both sources kept, and the races on parts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from models.db.engine import transaction
from models.db.tables import (
    AccessLog,
    Camera,
    LinkageRequest,
    PoliceClue,
    Ticket,
    TicketPart,
    TicketTransition,
    WebhookDelivery,
)
from models.errors import AccessDenied, Conflict, NotFound
from models.evidence.store import FileEvidenceStore
from models.identity.access import load_scope, visible_camera, visible_ticket
from models.org import clues, parts, triage
from models.org.departments import get_department
from models.tickets.categories import TicketSettings
from models.tickets.desk import TicketDesk
from models.tickets.ingest import ingest_events
from models.tickets.sweeps import escalate_overdue
from tests.support import sample
from tests.support.events import Episode
from tests.support.org import seed_org
from tests.support.patrol import Clock, module_db_url, race, user, world

__all__ = ["module_db_url", "world"]

T0 = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def org(world: sessionmaker[Session]) -> Iterator[sessionmaker[Session]]:
    seed_org(world)
    yield world


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def desk(tmp_path: Path, clock: Clock) -> TicketDesk:
    return TicketDesk(TicketSettings(), evidence=FileEvidenceStore(tmp_path / "ev"), clock=clock)


def camera_id(factory: sessionmaker[Session], name: str) -> int:
    with factory() as s:
        return int(s.scalars(select(Camera.id).where(Camera.name == name)).one())


def video_ticket(
    factory: sessionmaker[Session], desk: TicketDesk, *, camera: str, zone: str, start: datetime
) -> int:
    with transaction(factory) as s:
        ingest_events(s, desk, [Episode(camera_id(factory, camera), zone=zone, start=start).event("started")])
    with factory() as s:
        return int(s.scalars(select(Ticket.id).where(Ticket.zone_name == zone)).one())


def reported(factory: sessionmaker[Session], desk: TicketDesk, *, by: str = "leader-g1", grid: str = "G1",
             category: str = "road_occupation", source: str = "patrol", dx: float = 0.5) -> int:  # fmt: skip
    lon, lat = sample.point_in(grid, dx, 0.5)
    with transaction(factory) as s:
        u = user(s, by)
        t, _ = desk.report(s, reporter=u, scope=load_scope(s, u), category=category, lon=lon, lat=lat, description=f"{source} case",
                           source=source, may_set_source=source != "patrol")  # fmt: skip
        return int(t.id)


def act(
    factory: sessionmaker[Session], desk: TicketDesk, ticket_id: int, who: str, action: str, note: str = ""
) -> None:
    with transaction(factory) as s:
        u = user(s, who)
        t = s.get(Ticket, ticket_id)
        assert t is not None
        desk.transition(s, t, actor=u, scope=load_scope(s, u), action=action, note=note)


def add(factory: sessionmaker[Session], desk: TicketDesk, ticket_id: int, dept: str) -> int:
    with transaction(factory) as s:
        t = s.get(Ticket, ticket_id)
        assert t is not None
        return parts.add_part(desk, s, t, department=get_department(s, dept), actor=user(s, "operator1"))[
            0
        ].id


def part_move(factory: sessionmaker[Session], desk: TicketDesk, part_id: int, who: str, action: str) -> str:
    with transaction(factory) as s:
        return parts.move_part(
            desk, s, part_id, actor=user(s, who), action=action, note=f"{action} by {who}"
        )[0].state


def state(factory: sessionmaker[Session], ticket_id: int) -> str:
    with factory() as s:
        t = s.get(Ticket, ticket_id)
        assert t is not None
        return t.state


def test_an_overdue_fire_lane_video_ticket_brings_in_fire_and_rescue(
    org: sessionmaker[Session], desk: TicketDesk, clock: Clock
) -> None:
    tid = video_ticket(org, desk, camera="cam-g1-a", zone="lane-rule", start=T0)
    assert state(org, tid) == "dispatched"  # to leader-g1, 10 minutes to accept
    for minutes, wanted in ((5, 0), (11, 1), (12, 1)):  # the rule fires once, when the ticket is late
        with transaction(org) as s:
            escalate_overdue(s, desk, now=T0 + timedelta(minutes=minutes))
        with org() as s:
            found = s.scalars(select(TicketPart).where(TicketPart.ticket_id == tid)).all()
            assert len(found) == wanted, minutes
    with org() as s:
        assert (
            found[0].origin == "rule"
            and found[0].department.code == "FIRE-S1"
            and found[0].state == "dispatched"
        )
        history = [
            r.action
            for r in s.scalars(
                select(TicketTransition)
                .where(TicketTransition.ticket_id == tid)
                .order_by(TicketTransition.id)
            )
        ]
        assert "part_dispatch" in history


def test_the_handler_sees_the_ticket_and_its_camera_while_the_part_is_open(
    org: sessionmaker[Session], desk: TicketDesk
) -> None:
    tid = video_ticket(org, desk, camera="cam-g1-b", zone="lane-access", start=T0)
    cam = camera_id(org, "cam-g1-b")

    def sees() -> tuple[bool, bool, bool]:
        with org() as s:
            scope = load_scope(s, user(s, "fire-s1"))
            listed = cam in s.scalars(select(Camera.id).where(scope.camera_filter())).all()
            return (
                visible_ticket(s, scope, tid) is not None,
                visible_camera(s, scope, cam) is not None,
                listed,
            )

    assert sees() == (False, False, False)
    pid = add(org, desk, tid, "FIRE-S1")
    assert sees() == (True, True, True)
    with org() as s:  # the other department and the other station see nothing of it
        for other in ("law-d1", "police-s2"):
            scope = load_scope(s, user(s, other))
            assert visible_ticket(s, scope, tid) is None and visible_camera(s, scope, cam) is None
    assert part_move(org, desk, pid, "fire-s1", "accept") == "accepted"
    assert sees()[:2] == (True, True)
    assert part_move(org, desk, pid, "fire-s1", "resolve") == "resolved"
    assert sees() == (True, False, False)  # the work record stays; the camera goes with the part
    with org() as s:
        loans = s.scalars(
            select(AccessLog).where(AccessLog.object_type == "part_grant", AccessLog.object_id == str(pid))
        ).all()
        assert [r.detail["event"] for r in loans] == ["start", "end"]


def test_the_ticket_resolves_only_when_the_lead_and_every_part_are_done(
    org: sessionmaker[Session], desk: TicketDesk
) -> None:
    tid = reported(org, desk, dx=0.2)
    act(org, desk, tid, "leader-g1", "accept")
    pid = add(org, desk, tid, "LAW-D1")
    act(org, desk, tid, "leader-g1", "resolve", "摊位已劝离")
    assert state(org, tid) == "accepted"  # the lead is done, the department is not
    part_move(org, desk, pid, "law-d1", "accept")
    assert state(org, tid) == "accepted"
    part_move(org, desk, pid, "law-d1", "resolve")
    assert state(org, tid) == "resolved"
    # the other order: the part first, then the lead resolves the ticket at once
    tid2 = reported(org, desk, dx=0.25)
    act(org, desk, tid2, "leader-g1", "accept")
    pid2 = add(org, desk, tid2, "LAW-D1")
    part_move(org, desk, pid2, "law-d1", "accept")
    part_move(org, desk, pid2, "law-d1", "resolve")
    assert state(org, tid2) == "accepted"
    act(org, desk, tid2, "leader-g1", "resolve")
    assert state(org, tid2) == "resolved"
    with pytest.raises(NotFound):  # a department acts only on its own parts
        part_move(org, desk, pid2, "market-d1", "accept")


def test_a_linkage_request_for_enforcement_is_answered_by_the_rule(
    org: sessionmaker[Session], desk: TicketDesk
) -> None:
    tid = reported(org, desk, dx=0.3)
    with transaction(org) as s:
        t = s.get(Ticket, tid)
        assert t is not None
        req, _ = parts.request_linkage(
            desk,
            s,
            t,
            actor=user(s, "leader-g1"),
            kind="law_enforcement",
            reason="需执法",
            grid_in_scope=True,
        )
        assert req.state == "answered"
    tid2 = reported(org, desk, dx=0.35, category="crowding")
    with transaction(org) as s:
        t = s.get(Ticket, tid2)
        assert t is not None
        req, _ = parts.request_linkage(
            desk, s, t, actor=user(s, "leader-g1"), kind="market", reason="", grid_in_scope=True
        )
        assert req.state == "pending"  # no rule: the centre answers
        rid = req.id
    with transaction(org) as s:
        parts.answer_request_by_code(
            desk, s, rid, department_code="MKT-D1", actor=user(s, "operator1"), note=""
        )
    with org() as s:
        r = s.get(LinkageRequest, rid)
        assert r is not None and r.state == "answered" and r.part_id is not None
    with transaction(org) as s, pytest.raises(AccessDenied):
        t = s.get(Ticket, tid2)
        assert t is not None
        parts.request_linkage(
            desk, s, t, actor=user(s, "patroller-g2"), kind="market", reason="", grid_in_scope=False
        )


def test_a_police_clue_is_seen_only_by_its_reporter_and_the_station(
    org: sessionmaker[Session], desk: TicketDesk, tmp_path: Path
) -> None:
    lon, lat = sample.point_in("G1", 0.6, 0.6)
    with transaction(org) as s:
        u = user(s, "leader-g1")
        clue = clues.report_clue(s, reporter=u, scope=load_scope(s, u), lon=lon, lat=lat, description="可疑人员夜间撬锁", photos=[],
                                 evidence=FileEvidenceStore(tmp_path / "ev"), now=T0)  # fmt: skip
        cid = clue.id
    with org() as s:
        seen = {name: s.scalar(select(PoliceClue.id).where(PoliceClue.id == cid, clues.clue_filter(s, user(s, name)))) is not None
                for name in ("leader-g1", "police-s1", "police-s2", "manager-s1", "manager-d1", "fire-s1", "operator1", "admin1")}  # fmt: skip
    assert seen == {"leader-g1": True, "police-s1": True, "police-s2": False, "manager-s1": False, "manager-d1": False,
                    "fire-s1": False, "operator1": False, "admin1": False}  # fmt: skip
    with transaction(org) as s:
        assert (
            clues.move_clue(s, user=user(s, "police-s1"), clue_id=cid, state="received", note="已出警").state
            == "received"
        )
    with transaction(org) as s, pytest.raises(NotFound):
        clues.move_clue(s, user=user(s, "police-s2"), clue_id=cid, state="closed", note="")


def test_two_reports_of_one_place_merge_with_both_sources_kept(
    org: sessionmaker[Session], desk: TicketDesk, clock: Clock
) -> None:
    first = reported(org, desk, by="operator1", grid="G2", category="other", source="hotline_12345", dx=0.7)
    clock.now = T0 + timedelta(minutes=3)
    second = reported(org, desk, by="operator1", grid="G2", category="other", source="police_110", dx=0.7)
    with org() as s:
        items = {i.ticket.id: i for i in triage.queue(s, now=T0 + timedelta(minutes=5))}
    assert items[first].waiting_s == 300 and items[second].waiting_s == 120  # both wait for triage
    assert second in items[first].duplicates
    with transaction(org) as s:
        keep, dup = s.get(Ticket, first), s.get(Ticket, second)
        assert keep is not None and dup is not None
        triage.merge(desk, s, keep=keep, duplicate=dup, actor=user(s, "operator1"))
    with org() as s:
        keep = s.get(Ticket, first)
        assert keep is not None
        assert triage.sources_of(s, keep) == ["hotline_12345", "police_110"]
        assert state(org, second) == "closed" and state(org, first) == "open"
        assert second not in {i.ticket.id for i in triage.queue(s, now=T0)}


def test_one_triage_action_sends_a_case_to_a_grid_and_a_department(
    org: sessionmaker[Session], desk: TicketDesk
) -> None:
    tid = reported(
        org, desk, by="operator1", grid="G1", category="road_occupation", source="hotline_12345", dx=0.8
    )
    assert state(org, tid) == "open"
    with transaction(org) as s:
        t = s.get(Ticket, tid)
        op = user(s, "operator1")
        assert t is not None
        triage.dispatch(
            desk,
            s,
            t,
            actor=op,
            scope=load_scope(s, op),
            grid_code="G1",
            department_codes=["MKT-D1"],
            note="12345转办",
        )
    with org() as s:
        t = s.get(Ticket, tid)
        assert t is not None and t.state == "dispatched" and t.assignee_id == user(s, "leader-g1").id
        assert [
            p.department.code for p in s.scalars(select(TicketPart).where(TicketPart.ticket_id == tid))
        ] == ["MKT-D1"]


# --- races (the loser gets Conflict with the reason; never two winners, never a stuck ticket) -----


def test_two_parts_resolving_at_once_resolve_the_ticket_once(
    org: sessionmaker[Session], desk: TicketDesk, world: sessionmaker[Session]
) -> None:
    for i in range(5):
        tid = reported(org, desk, dx=0.05 + 0.01 * i, category="crowding")
        act(org, desk, tid, "leader-g1", "accept")
        p1, p2 = add(org, desk, tid, "LAW-D1"), add(org, desk, tid, "MKT-D1")
        part_move(org, desk, p1, "law-d1", "accept")
        part_move(org, desk, p2, "market-d1", "accept")
        act(org, desk, tid, "leader-g1", "resolve")
        results = race(
            partial(part_move, org, desk, p1, "law-d1", "resolve"),
            partial(part_move, org, desk, p2, "market-d1", "resolve"),
        )
        assert results == ["resolved", "resolved"], results
        assert state(org, tid) == "resolved"
        with org() as s:
            moves = s.scalars(
                select(TicketTransition.action).where(
                    TicketTransition.ticket_id == tid, TicketTransition.action == "resolve"
                )
            ).all()
            assert len(moves) == 1


def test_the_lead_resolving_while_a_part_is_added(org: sessionmaker[Session], desk: TicketDesk) -> None:
    outcomes = set()
    for i in range(5):
        tid = reported(org, desk, dx=0.1 + 0.01 * i, category="crowding")
        act(org, desk, tid, "leader-g1", "accept")
        results = race(
            partial(act, org, desk, tid, "leader-g1", "resolve"), partial(add, org, desk, tid, "MKT-D1")
        )
        if isinstance(results[1], Conflict):  # the lead won: the ticket is resolved and takes no part
            assert state(org, tid) == "resolved"
            outcomes.add("lead first")
        else:  # the part won: the lead's resolve waits for it
            assert results[0] is None and isinstance(results[1], int), results
            assert state(org, tid) == "accepted"
            outcomes.add("part first")
    assert outcomes  # either order is a sequential outcome


def test_evaluation_ranks_departments_on_their_parts(
    org: sessionmaker[Session], desk: TicketDesk, clock: Clock
) -> None:
    from models.org.departments import DepartmentSpec, add_department_user, create_department
    from models.patrol.evaluation import Evaluation, Period
    from models.patrol.settings import PatrolSettings

    with transaction(org) as s:
        dept = create_department(
            s,
            DepartmentSpec(
                code="EVAL-D1",
                name="评测部门",
                kind="transport",
                grids=["D1"],
                accept_within_s=600,
                resolve_within_s=3600,
            ),
        )
        add_department_user(s, dept=dept, username="eval-d1", password=sample.PASSWORD)
    clock.now = T0 + timedelta(days=2)
    late, quick = (
        reported(org, desk, dx=0.91, category="other"),
        reported(org, desk, dx=0.92, category="other"),
    )
    p_late, p_quick = add(org, desk, late, "EVAL-D1"), add(org, desk, quick, "EVAL-D1")
    clock.now += timedelta(minutes=5)
    part_move(org, desk, p_quick, "eval-d1", "accept")
    part_move(org, desk, p_quick, "eval-d1", "resolve")
    clock.now += timedelta(minutes=20)  # past the accept deadline of the other part
    part_move(org, desk, p_late, "eval-d1", "accept")
    with transaction(org) as s:
        t = s.get(Ticket, late)
        assert t is not None
        parts.request_linkage(
            desk, s, t, actor=user(s, "leader-g1"), kind="transport", reason="", grid_in_scope=True
        )
    settings = PatrolSettings()
    day = (T0 + timedelta(days=2)).astimezone(settings.tz).date()
    with org() as s:
        ev = Evaluation(
            s,
            period=Period.local(day, day + timedelta(days=1), settings.tz),
            settings=settings,
            now=clock.now,
        )
        score = next(x for x in ev.rank_departments() if x.code == "EVAL-D1")
        accept, resolve = score.components["on_time_accept"], score.components["on_time_resolve"]
        assert (accept.numerator, accept.denominator, accept.rows["on_time"]) == (1, 2, [p_quick])
        assert (resolve.numerator, resolve.denominator) == (1, 2)  # the late part is not resolved yet
        assert score.components["workload"].rows["parts"] == [p_quick]
        requests = ev.linkage_requests()
        assert len(requests["requests"]) == 1 and requests["answered"] == []


def test_a_linkage_request_answered_by_the_rule_sends_each_webhook_once(
    org: sessionmaker[Session], tmp_path: Path, clock: Clock
) -> None:
    hooked = TicketDesk(
        TicketSettings(webhook_urls=["http://127.0.0.1:9/hook"], webhook_secret="s" * 32), evidence=FileEvidenceStore(tmp_path / "ev"), clock=clock
    )
    tid = reported(org, hooked, dx=0.3)
    with transaction(org) as s:
        t = s.get(Ticket, tid)
        assert t is not None
        before = s.scalar(select(func.max(WebhookDelivery.id))) or 0
        parts.request_linkage(
            hooked, s, t, actor=user(s, "leader-g1"), kind="law_enforcement", reason="需执法", grid_in_scope=True
        )
    with org() as s:
        events = list(s.scalars(select(WebhookDelivery.event).where(WebhookDelivery.id > before)))
    assert sorted(events) == ["linkage_requested", "part_dispatched"]
