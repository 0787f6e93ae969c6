"""Patrol points, schedules → tasks over a simulated week, check-ins (radius, window, accuracy), missed
tasks, cases from a point, callbacks, and the races on them — on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, timedelta
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from models.db.engine import transaction
from models.db.tables import Callback, CheckIn, GridNode, PatrolCase, PatrolTask, Ticket, TicketTransition
from models.errors import AccessDenied, Conflict, InvalidInput
from models.evidence.store import FileEvidenceStore
from models.identity.access import load_scope
from models.patrol.callbacks import record_callback
from models.patrol.points import haversine_m
from models.patrol.settings import PatrolSettings
from models.patrol.tasks import CheckInInput, check_in, generate_tasks, mark_missed, raise_case
from models.tickets.categories import TicketSettings
from models.tickets.desk import TicketDesk
from tests.support import sample
from tests.support.patrol import (
    MONDAY,
    TZ,
    Clock,
    add_patroller,
    jpeg,
    local,
    make_point,
    module_db_url,
    point,
    race,
    user,
    world,
)

__all__ = ["module_db_url", "world"]  # module-scoped fixtures: the sample seeded once per database

SETTINGS = PatrolSettings()


def test_haversine_on_the_wgs84_sphere() -> None:
    # one thousandth of a degree of latitude is 111.2 m; a degree of longitude shrinks with cos(latitude)
    assert haversine_m(118.7, 32.1, 118.7, 32.101) == pytest.approx(111.195, abs=0.01)
    assert haversine_m(118.7, 32.1, 118.701, 32.1) == pytest.approx(111.195 * 0.8471, rel=1e-3)
    assert haversine_m(118.7, 32.1, 118.7, 32.1) == 0.0


def tasks(factory: sessionmaker[Session]) -> list[PatrolTask]:
    with factory() as s:
        return list(
            s.scalars(
                select(PatrolTask).order_by(PatrolTask.day, PatrolTask.point_id, PatrolTask.patroller_id)
            )
        )


def test_a_schedule_generates_the_right_tasks_over_a_week(world: sessionmaker[Session]) -> None:
    second = add_patroller(world, "patroller-g2-b", "G2")
    daily = make_point(world, "G2", name="桥北菜场", window_start="08:00", window_end="10:00")
    weekly = make_point(world, "G2", name="消防通道", dx=0.2, frequency="weekly", weekdays=[0, 2])
    make_point(world, "G2", name="停用", dx=0.8, enabled=False)
    make_point(world, "G1", name="无巡查员的网格")  # G1 has no patroller: no task
    clock = Clock(local(MONDAY, 0, 5))
    for day in range(7):  # the scheduler's rounds over a simulated week, twice a day (idempotent)
        clock.now = local(MONDAY + timedelta(days=day), 0, 5)
        for _ in range(2):
            with transaction(world) as s:
                generate_tasks(s, day=(clock.now.astimezone(TZ)).date(), tz=TZ)
    got = [t for t in tasks(world) if t.point_id in {daily, weekly}]
    with world() as s:
        first = user(s, "patroller-g2").id
    by_point = {p: [(t.day, t.patroller_id) for t in got if t.point_id == p] for p in (daily, weekly)}
    days = [(MONDAY + timedelta(days=d)).isoformat() for d in range(7)]
    assert by_point[daily] == [(d, u) for d in days for u in (first, second)]
    assert by_point[weekly] == [(days[0], first), (days[0], second), (days[2], first), (days[2], second)]
    assert len(got) == 14 + 4
    # the window is the point's local time of day, stored in UTC (Beijing is UTC+8)
    monday = next(t for t in got if t.point_id == daily)
    assert (monday.window_start_at, monday.window_end_at) == (local(MONDAY, 8), local(MONDAY, 10))
    assert monday.window_start_at.hour == 0


@pytest.fixture
def store(tmp_path: Path) -> FileEvidenceStore:
    return FileEvidenceStore(tmp_path / "ev")


def one_task(factory: sessionmaker[Session], day: date, name: str) -> tuple[int, int]:
    """A G2 point (radius 50 m, 08:00–10:00) and patroller-g2's task on it on ``day``."""
    pid = make_point(factory, "G2", name=name, radius_m=50, window_start="08:00", window_end="10:00")
    with transaction(factory) as s:
        generate_tasks(s, day=day, tz=TZ)
        mine = user(s, "patroller-g2").id
        tid = s.scalars(
            select(PatrolTask.id).where(
                PatrolTask.point_id == pid, PatrolTask.patroller_id == mine, PatrolTask.day == day.isoformat()
            )
        ).one()
    return pid, tid


def attempt(factory: sessionmaker[Session], store: FileEvidenceStore, task_id: int, *, at, lon: float, lat: float,
            accuracy: float | None = 10.0, who: str = "patroller-g2", photo: bytes | None = None) -> CheckIn:  # fmt: skip
    with transaction(factory) as s:
        task = s.get(PatrolTask, task_id)
        assert task is not None
        given = CheckInInput(
            lon=lon, lat=lat, accuracy_m=accuracy, photo=photo if photo is not None else jpeg()
        )
        row = check_in(
            s, task=task, user=user(s, who), given=given, now=at, settings=SETTINGS, evidence=store
        )
        s.flush()
        s.expunge(row)
        return row


def test_check_ins_inside_and_outside_the_radius_and_window(
    world: sessionmaker[Session], store: FileEvidenceStore
) -> None:
    day = MONDAY + timedelta(days=7)
    pid, tid = one_task(world, day, "radius-window")
    p = point(world, pid)
    near = (p.lon, p.lat + 0.0003)  # 33 m north
    far = (p.lon, p.lat + 0.0009)  # 100 m north
    go = partial(attempt, world, store, tid)
    # table: when, where, accuracy, who → the refusal and the words of its reason
    refusals = [
        (local(day, 7, 59), near, 10.0, "patroller-g2", Conflict, "未到签到时间"),
        (local(day, 9), far, 10.0, "patroller-g2", InvalidInput, "距离巡查点 100 米，允许 50 米"),
        (local(day, 9), near, 500.0, "patroller-g2", InvalidInput, "定位精度 500 米"),
        (local(day, 9), near, 10.0, "leader-g1", AccessDenied, "不是您的巡查任务"),
    ]
    for at, (lon, lat), acc, who, error, words in refusals:
        with pytest.raises(error) as info:
            go(at=at, lon=lon, lat=lat, accuracy=acc, who=who)
        assert words in str(info.value), (words, str(info.value))
    row = go(at=local(day, 9), lon=near[0], lat=near[1], accuracy=12.5)
    assert (round(row.distance_m), row.accuracy_m) == (33, 12.5)
    assert row.photo_key and store.get(row.photo_key)[:2] == b"\xff\xd8"
    with pytest.raises(Conflict, match="已签到"):
        go(at=local(day, 9, 1), lon=near[0], lat=near[1])
    with world() as s:
        task = s.get(PatrolTask, tid)
        assert task is not None and (task.state, task.done_at) == ("done", local(day, 9))


def test_a_check_in_after_the_window_is_refused_and_the_task_counts_as_missed(
    world: sessionmaker[Session], store: FileEvidenceStore
) -> None:
    day = MONDAY + timedelta(days=14)
    pid, tid = one_task(world, day, "missed")
    p = point(world, pid)
    with pytest.raises(Conflict, match="已过签到时间"):
        attempt(world, store, tid, at=local(day, 10), lon=p.lon, lat=p.lat)

    def state() -> str:
        with world() as s:
            task = s.get(PatrolTask, tid)
            assert task is not None
            return task.state

    with transaction(world) as s:
        mark_missed(s, now=local(day, 9, 59))
    assert state() == "pending"
    with transaction(world) as s:
        assert mark_missed(s, now=local(day, 10)) >= 1
    assert state() == "missed"
    with transaction(world) as s:
        assert mark_missed(s, now=local(day, 11)) == 0  # marked once
    with pytest.raises(Conflict, match="已过签到时间"):
        attempt(world, store, tid, at=local(day, 9), lon=p.lon, lat=p.lat)


def test_a_problem_at_a_point_becomes_a_linked_patrol_case(
    world: sessionmaker[Session], store: FileEvidenceStore
) -> None:
    pid, tid = one_task(world, MONDAY + timedelta(days=21), "case")
    desk = TicketDesk(TicketSettings(), evidence=store)
    with transaction(world) as s:
        task = s.get(PatrolTask, tid)
        assert task is not None
        u = user(s, "patroller-g2")
        ticket, _ = raise_case(
            s,
            desk=desk,
            task=task,
            user=u,
            scope=load_scope(s, u),
            category="road_occupation",
            description="占道摆摊",
            lon=None,
            lat=None,
            photos=[jpeg(2)],
        )
        ticket_id = ticket.id
    with world() as s:
        t = s.get(Ticket, ticket_id)
        assert t is not None and (t.source, t.grid.code if t.grid else None) == ("patrol", "G2")
        assert "占道摆摊" in t.description and t.photos
        assert s.scalars(select(PatrolCase.task_id).where(PatrolCase.ticket_id == ticket_id)).one() == tid


def closed_citizen_ticket(factory: sessionmaker[Session], grid: str = "G1") -> int:
    lon, lat = sample.point_in(grid)
    at = local(MONDAY, 9)
    with transaction(factory) as s:
        node = s.scalars(select(GridNode).where(GridNode.code == grid)).one()
        t = Ticket(
            category="other", case_code="其他", source="hotline_12345", grid_id=node.id, state="closed", lon=lon, lat=lat,
            opened_at=at, accept_by=at + timedelta(hours=1), resolve_by=at + timedelta(hours=24),
            accepted_at=at + timedelta(minutes=5), resolved_at=at + timedelta(hours=2), verified_at=at + timedelta(hours=3),
            closed_at=at + timedelta(hours=3),
        )  # fmt: skip
        s.add(t)
        s.flush()
        return t.id


def callback(
    factory: sessionmaker[Session], desk: TicketDesk, ticket_id: int, result: str, *, reopen: bool = False
) -> int:
    with transaction(factory) as s:
        u = user(s, "operator1")
        t = s.get(Ticket, ticket_id)
        assert t is not None
        row, _ = record_callback(
            s,
            desk=desk,
            ticket=t,
            user=u,
            scope=load_scope(s, u),
            result=result,
            note="市民反映仍有摊位",
            channel="centre",
            reopen=reopen,
            now=local(MONDAY, 15),
        )
        return row.id


def test_a_dissatisfied_callback_reopens_its_ticket(
    world: sessionmaker[Session], store: FileEvidenceStore
) -> None:
    desk = TicketDesk(TicketSettings(), evidence=store)
    tid = closed_citizen_ticket(world)
    with pytest.raises(InvalidInput, match="only a dissatisfied"):
        callback(world, desk, tid, "satisfied", reopen=True)
    callback(world, desk, tid, "dissatisfied", reopen=True)
    with world() as s:
        t = s.get(Ticket, tid)
        assert t is not None and t.state in {"reopened", "dispatched"} and t.closed_at is None
        actions = s.scalars(
            select(TicketTransition.action)
            .where(TicketTransition.ticket_id == tid)
            .order_by(TicketTransition.id)
        ).all()
        assert actions[0] == "reopen"
        cb = s.scalars(select(Callback).where(Callback.ticket_id == tid)).one()
        assert (cb.result, cb.reopened) == ("dissatisfied", True)
    with pytest.raises(Conflict, match="已结案"):  # not closed any more: no second callback
        callback(world, desk, tid, "satisfied")


# -- races (the real test is on PostgreSQL: SQLite serialises whole transactions) ----------------------
def test_two_check_ins_for_one_task_at_once_make_one(
    world: sessionmaker[Session], store: FileEvidenceStore, module_db_url: str
) -> None:
    rounds = 10 if module_db_url.startswith("postgresql") else 5
    day = MONDAY + timedelta(days=28)
    for i in range(rounds):
        pid, tid = one_task(world, day, f"race-{i}")
        p = point(world, pid)
        go = partial(attempt, world, store, tid, at=local(day, 9), lon=p.lon, lat=p.lat)
        outcome = race(go, go)
        kinds = sorted(type(r).__name__ for r in outcome)
        assert kinds == ["CheckIn", "Conflict"], f"round {i}: {outcome}"
        with world() as s:
            assert s.scalar(select(func.count()).select_from(CheckIn).where(CheckIn.task_id == tid)) == 1


def test_two_callbacks_at_once_make_one(
    world: sessionmaker[Session], store: FileEvidenceStore, module_db_url: str
) -> None:
    desk = TicketDesk(TicketSettings(webhook_urls=[]), evidence=store)
    rounds = 10 if module_db_url.startswith("postgresql") else 5
    for i in range(rounds):
        tid = closed_citizen_ticket(world)
        outcome = race(
            partial(callback, world, desk, tid, "satisfied"),
            partial(callback, world, desk, tid, "dissatisfied", reopen=True),
        )
        errors = [r for r in outcome if isinstance(r, Exception)]
        assert len(errors) == 1 and isinstance(errors[0], Conflict), f"round {i}: {outcome}"
        with world() as s:
            rows = s.scalars(select(Callback).where(Callback.ticket_id == tid)).all()
            t = s.get(Ticket, tid)
            assert len(rows) == 1 and t is not None
            # the winner decides: a satisfied one leaves the ticket closed, a dissatisfied one reopened it
            assert (t.state == "closed") == (rows[0].result == "satisfied"), f"round {i}"


def test_the_scheduler_makes_tasks_marks_missed_and_reports(world: sessionmaker[Session]) -> None:
    from gridpatrol.patrol_jobs import PatrolJobs

    day = MONDAY + timedelta(days=35)
    pid = make_point(world, "G2", name="scheduled", window_start="08:00", window_end="10:00")
    clock = Clock(local(day, 7))
    jobs = PatrolJobs(world, PatrolSettings(), webhook_urls=[], clock=clock)
    first = jobs.step()
    assert (
        first["created"] >= 2 and first["reports"] == 2
    )  # today's and tomorrow's tasks; last week's and month's report
    with world() as s:
        mine = s.scalars(select(PatrolTask).where(PatrolTask.point_id == pid).order_by(PatrolTask.day)).all()
        assert [t.day for t in mine if t.patroller_id == user(s, "patroller-g2").id] == [
            day.isoformat(),
            (day + timedelta(days=1)).isoformat(),
        ]
    clock.now = local(day, 10, 30)
    again = jobs.step()
    assert again["created"] == 0 and again["missed"] >= 1 and again["reports"] == 0
