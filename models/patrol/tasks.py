"""Patrol tasks (巡查任务): generated from the points' schedules, checked in on the spot, missed when late.

Every function takes the time it acts at (``now``) or the local day, so that a test drives a simulated
week with an injected clock. A task is unique per (point, patroller, day): generating twice, or from two
processes at once, inserts nothing new.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.bus.messages import TicketNotice
from models.db.engine import lock_rows
from models.db.tables import Assignment, CheckIn, PatrolCase, PatrolPoint, PatrolTask, Role, Ticket, User
from models.errors import AccessDenied, Conflict, InvalidInput
from models.evidence.store import EvidenceStore, image_suffix
from models.identity.access import AccessScope
from models.identity.audit import record_change
from models.patrol.points import haversine_m
from models.patrol.settings import PatrolSettings
from models.tickets.desk import TicketDesk

PENDING, DONE, MISSED = "pending", "done", "missed"


def local_day(at: datetime, tz: ZoneInfo) -> date:
    return at.astimezone(tz).date()


def _at(day: date, hhmm: str, tz: ZoneInfo) -> datetime:
    hour, minute = (int(x) for x in hhmm.split(":"))
    return datetime.combine(day, time(hour, minute), tzinfo=tz).astimezone(UTC)


def due_on(point: PatrolPoint, day: date) -> bool:
    """Does the point's schedule ask for a visit on this local day?"""
    if not point.enabled:
        return False
    return point.frequency == "daily" or day.weekday() in (point.weekdays or [])


def generate_tasks(session: Session, *, day: date, tz: ZoneInfo) -> int:
    """Create the day's tasks for every enabled patroller of each due point's grid; returns how many are new."""
    points = [
        p for p in session.scalars(select(PatrolPoint).where(PatrolPoint.enabled.is_(True))) if due_on(p, day)
    ]
    if not points:
        return 0
    grid_ids = {p.grid_id for p in points}
    patrollers: dict[int, list[int]] = {g: [] for g in grid_ids}
    for grid_id, user_id in session.execute(
        select(Assignment.grid_id, User.id)
        .join(User, User.id == Assignment.user_id)
        .where(Assignment.grid_id.in_(grid_ids), User.role == Role.patroller.value, User.enabled.is_(True))
    ):
        patrollers[grid_id].append(user_id)
    rows = [
        {
            "point_id": p.id,
            "grid_id": p.grid_id,
            "patroller_id": uid,
            "day": day.isoformat(),
            "window_start_at": _at(day, p.window_start, tz),
            "window_end_at": _at(day, p.window_end, tz),
            "state": PENDING,
        }
        for p in points
        for uid in sorted(patrollers[p.grid_id])
    ]
    if not rows:
        return 0
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = insert(PatrolTask).on_conflict_do_nothing(index_elements=["point_id", "patroller_id", "day"])
    return len(session.scalars(stmt.returning(PatrolTask.id), rows).all())


def mark_missed(session: Session, *, now: datetime) -> int:
    """Pending tasks whose window has closed become missed (漏巡); returns how many."""
    result = session.execute(
        update(PatrolTask)
        .where(PatrolTask.state == PENDING, PatrolTask.window_end_at <= now)
        .values(state=MISSED)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class TaskView:
    task: PatrolTask
    #: metres from the position the viewer gave, when they gave one
    distance_m: float | None


def tasks_for(
    session: Session, *, user: User, day: date, lon: float | None = None, lat: float | None = None
) -> list[TaskView]:
    """A patroller's tasks of one local day, nearest first when a position is given."""
    tasks = session.scalars(
        select(PatrolTask)
        .where(PatrolTask.patroller_id == user.id, PatrolTask.day == day.isoformat())
        .order_by(PatrolTask.window_start_at, PatrolTask.id)
    ).all()
    views = [
        TaskView(
            t,
            haversine_m(lon, lat, t.point.lon, t.point.lat) if lon is not None and lat is not None else None,
        )
        for t in tasks
    ]
    if lon is not None and lat is not None:
        views.sort(key=lambda v: (v.task.state != PENDING, v.distance_m or 0.0))
    return views


def visible_task(session: Session, scope: AccessScope, task_id: int) -> PatrolTask | None:
    """The task when its grid is in the viewer's scope (its patroller, their leaders and managers, the centre)."""
    task = session.get(PatrolTask, task_id)
    if task is None or not scope.allows_grid(task.point.grid.path):
        return None
    return task


@dataclass(frozen=True)
class CheckInInput:
    lon: float
    lat: float
    accuracy_m: float | None
    photo: bytes | None
    note: str = ""


def check_in(
    session: Session,
    *,
    task: PatrolTask,
    user: User,
    given: CheckInInput,
    now: datetime,
    settings: PatrolSettings,
    evidence: EvidenceStore,
) -> CheckIn:
    """Accept a check-in on the spot and in the window, or refuse it with the reason (and the distance).
    The task is locked first: of two check-ins at once, the second sees the first and gets a Conflict."""
    lock_rows(session, PatrolTask, [task.id])
    if task.patroller_id != user.id:
        raise AccessDenied("这不是您的巡查任务 (only the task's patroller checks in)")
    if task.state == DONE:
        raise Conflict("该任务已签到 (this task is already checked in)")
    if now < task.window_start_at:
        raise Conflict(
            f"未到签到时间：{task.point.window_start} 起可签到 (the window opens at {task.point.window_start})"
        )
    if now >= task.window_end_at or task.state == MISSED:
        raise Conflict(
            f"已过签到时间：{task.point.window_end} 截止，记为漏巡 (the window closed at {task.point.window_end})"
        )
    if given.accuracy_m is not None and given.accuracy_m > settings.patrol_max_accuracy_m:
        raise InvalidInput(
            f"定位精度 {given.accuracy_m:.0f} 米，超过允许的 {settings.patrol_max_accuracy_m:.0f} 米，请到开阔处重新定位",
            field="accuracy_m",
        )
    point = task.point
    distance = haversine_m(given.lon, given.lat, point.lon, point.lat)
    if distance > point.radius_m:
        raise InvalidInput(
            f"不在签到范围内：距离巡查点 {distance:.0f} 米，允许 {point.radius_m:.0f} 米 "
            f"(distance {distance:.0f} m, radius {point.radius_m:.0f} m)",
            field="position",
        )
    if given.photo is None and settings.patrol_photo_required:
        raise InvalidInput("签到需要现场照片 (a photo is required)", field="photo")
    key = None
    if given.photo is not None:
        key = evidence.put(given.photo, prefix=f"patrol-{task.id}", suffix=image_suffix(given.photo), at=now)
    row = CheckIn(
        task_id=task.id,
        user_id=user.id,
        at=now,
        lon=given.lon,
        lat=given.lat,
        accuracy_m=given.accuracy_m,
        distance_m=round(distance, 2),
        photo_key=key,
        note=given.note,
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError as err:  # SQLite's lock is the database's: only a stray second writer lands here
        raise Conflict("该任务已签到 (this task is already checked in)") from err
    task.state, task.done_at = DONE, now
    record_change(
        session,
        user=user,
        channel="api",
        object_type="patrol_task",
        object_id=task.id,
        detail={"op": "check_in", "distance_m": round(distance, 2), "accuracy_m": given.accuracy_m},
    )
    return row


def raise_case(
    session: Session,
    *,
    desk: TicketDesk,
    task: PatrolTask,
    user: User,
    scope: AccessScope,
    category: str,
    description: str,
    lon: float | None,
    lat: float | None,
    photos: Sequence[bytes] = (),
) -> tuple[Ticket, list[TicketNotice]]:
    """A problem found at a point becomes a case through the ticket intake (source patrol), linked to the task."""
    if task.patroller_id != user.id:
        raise AccessDenied("这不是您的巡查任务 (only the task's patroller reports from it)")
    ticket, notices = desk.report(
        session,
        reporter=user,
        scope=scope,
        category=category,
        lon=task.point.lon if lon is None else lon,
        lat=task.point.lat if lat is None else lat,
        description=f"[巡查点 {task.point.name}] {description}",
        source="patrol",
        photos=photos,
    )
    session.add(PatrolCase(ticket_id=ticket.id, task_id=task.id, at=ticket.opened_at))
    record_change(
        session,
        user=user,
        channel="api",
        object_type="patrol_task",
        object_id=task.id,
        detail={"op": "case", "ticket_id": ticket.id},
    )
    return ticket, notices


def cases_of(session: Session, task_ids: Sequence[int]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    if task_ids:
        for task_id, ticket_id in session.execute(
            select(PatrolCase.task_id, PatrolCase.ticket_id).where(PatrolCase.task_id.in_(task_ids))
        ):
            if task_id is not None:
                out.setdefault(task_id, []).append(ticket_id)
    return out


def window_text(task: PatrolTask, tz: ZoneInfo) -> str:
    start, end = task.window_start_at.astimezone(tz), task.window_end_at.astimezone(tz)
    return f"{start:%H:%M}–{end:%H:%M}"
