"""The scoring model (考核): a score out of 100 per grid node (grid, street...) and per person over a period,
computed from the records themselves, every figure traceable to its rows (the drill-down).

For a period [start, end) and a subject — a grid node (its whole subtree) or a person (tickets assigned
to them, their patrol tasks, their video patrols over the cameras of their grids) — each component is a
share ``s`` in [0, 1], or None when the subject has no records for it:

- workload         min(1, Σ difficulty(category) of tickets resolved in the period / (per-day target × days))
- on_time_accept   tickets whose accept deadline fell in the period, accepted by it / all of them
- on_time_resolve  tickets whose resolve deadline fell in the period, resolved by it / all of them
                   (false alarms dismissed without handling are left out of both)
- escalations      1 - min(1, escalations in the period / tickets due to accept in the period)
- reopens          1 - min(1, reopens in the period / tickets resolved in the period)
- checkins         tasks whose window closed in the period that were checked in / all of them
- video_coverage   (camera, day) pairs viewed on video patrol / (cameras × days of the period)
- satisfaction     (满意 + 基本满意) callbacks in the period / all callbacks in the period

total = 100 × Σ weight·s / Σ weight, both sums over the components that are not None (a subject is not
punished for having no cameras or no citizen tickets). The weights and difficulties are settings.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from models.db.tables import (
    Assignment,
    Callback,
    Camera,
    GridNode,
    PatrolTask,
    Role,
    Ticket,
    TicketState,
    TicketTransition,
    User,
    VideoPatrol,
    VideoPatrolView,
)
from models.identity.access import AccessScope
from models.patrol.settings import COMPONENTS, PatrolSettings

COMPONENT_ZH = {
    "workload": "工作量（按难度加权）",
    "on_time_accept": "按时受理率",
    "on_time_resolve": "按时办结率",
    "escalations": "被升级（越少越好）",
    "reopens": "重开率（越低越好）",
    "checkins": "巡查签到率",
    "video_coverage": "视频巡查覆盖率",
    "satisfaction": "群众满意率",
}


@dataclass(frozen=True)
class Period:
    """[starts_at, ends_at) in UTC; ``days`` are the local days it covers (for per-day targets and coverage)."""

    starts_at: datetime
    ends_at: datetime
    tz: ZoneInfo

    @property
    def days(self) -> list[date]:
        first = self.starts_at.astimezone(self.tz).date()
        last = (self.ends_at - timedelta(microseconds=1)).astimezone(self.tz).date()
        return (
            [first + timedelta(days=i) for i in range((last - first).days + 1)]
            if self.ends_at > self.starts_at
            else []
        )

    def contains(self, at: datetime | None) -> bool:
        return at is not None and self.starts_at <= at < self.ends_at

    @classmethod
    def local(cls, first: date, last_exclusive: date, tz: ZoneInfo) -> Period:
        """Whole local days ``first`` .. ``last_exclusive`` (exclusive)."""
        return cls(
            datetime.combine(first, time(), tzinfo=tz).astimezone(UTC),
            datetime.combine(last_exclusive, time(), tzinfo=tz).astimezone(UTC),
            tz,
        )


@dataclass
class Component:
    """One component: its share, the numerator and denominator it came from, and the rows behind them."""

    name: str
    weight: float
    numerator: Fraction | None
    denominator: Fraction | None
    share: Fraction | None
    #: row kind → ids ("tickets", "tasks", "missed_tasks", "views", "callbacks", ...)
    rows: dict[str, list[int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": COMPONENT_ZH[self.name],
            "weight": self.weight,
            "numerator": _num(self.numerator),
            "denominator": _num(self.denominator),
            "share": _num(self.share),
            "points": _num(self.share * Fraction(self.weight) if self.share is not None else None),
            "rows": self.rows,
        }


def _num(x: Fraction | None) -> float | None:
    return None if x is None else round(float(x), 6)


@dataclass
class Score:
    kind: str  # grid | street | community | district | person
    subject_id: int
    code: str
    name: str
    components: dict[str, Component]
    total: Fraction | None
    rank: int = 0

    @property
    def total_points(self) -> float | None:
        return None if self.total is None else round(float(self.total), 2)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "subject_id": self.subject_id,
            "code": self.code,
            "name": self.name,
            "rank": self.rank,
            "total": self.total_points,
            "components": [self.components[c].as_dict() for c in COMPONENTS],
        }


def _share(num: Fraction, den: Fraction) -> Fraction | None:
    return None if den == 0 else num / den


def _dismissed(t: _TicketRow) -> bool:
    return t.state == TicketState.closed.value and t.accepted_at is None and t.resolved_at is None


class _TicketRow(Protocol):
    id: int
    category: str
    grid_id: int | None
    assignee_id: int | None
    state: str
    accept_by: datetime | None
    accepted_at: datetime | None
    resolve_by: datetime | None
    resolved_at: datetime | None


class _TaskRow(Protocol):
    id: int
    grid_id: int
    patroller_id: int
    state: str
    window_end_at: datetime


@dataclass
class _Subject:
    tickets: list[_TicketRow]
    tasks: list[_TaskRow]
    camera_ids: set[int] | None  # None: video coverage does not apply
    viewer: Callable[[int], bool]  # video patrol user id → counts for this subject


def _group(rows: Iterable[Any], key: Callable[[Any], Any]) -> dict[Any, list[Any]]:
    out: dict[Any, list[Any]] = defaultdict(list)
    for row in rows:
        out[key(row)].append(row)
    return out


class Evaluation:
    """The period's records, loaded once (plain rows, indexed by grid and person); scores of any number
    of subjects computed from them, each touching only its own rows."""

    def __init__(self, session: Session, *, period: Period, settings: PatrolSettings, now: datetime) -> None:
        self.session, self.period, self.settings, self.now = session, period, settings, now
        start, end = period.starts_at, period.ends_at
        self.nodes = {n.id: n for n in session.scalars(select(GridNode))}
        moves = (
            TicketTransition.at >= start,
            TicketTransition.at < end,
            TicketTransition.action.in_(["escalate", "reopen"]),
        )
        calls = (Callback.at >= start, Callback.at < end)
        tickets: list[_TicketRow] = list(
            session.execute(
                select(
                    Ticket.id, Ticket.category, Ticket.grid_id, Ticket.assignee_id, Ticket.state, Ticket.accept_by,
                    Ticket.accepted_at, Ticket.resolve_by, Ticket.resolved_at,
                ).where(
                    or_(
                        Ticket.resolved_at.between(start, end),
                        Ticket.accept_by.between(start, end),
                        Ticket.resolve_by.between(start, end),
                        Ticket.id.in_(select(TicketTransition.ticket_id).where(*moves)),
                        Ticket.id.in_(select(Callback.ticket_id).where(*calls)),
                    )
                )
            )
        )  # fmt: skip
        self.tickets_by_grid = _group(tickets, lambda t: t.grid_id)
        self.tickets_by_assignee = _group(tickets, lambda t: t.assignee_id)
        self.transitions_by_ticket = _group(
            session.execute(
                select(TicketTransition.id, TicketTransition.ticket_id, TicketTransition.action).where(*moves)
            ),
            lambda r: r.ticket_id,
        )
        tasks: list[_TaskRow] = list(
            session.execute(
                select(
                    PatrolTask.id,
                    PatrolTask.grid_id,
                    PatrolTask.patroller_id,
                    PatrolTask.state,
                    PatrolTask.window_end_at,
                ).where(PatrolTask.window_end_at >= start, PatrolTask.window_end_at < end)
            )
        )
        self.tasks_by_grid = _group(tasks, lambda t: t.grid_id)
        self.tasks_by_patroller = _group(tasks, lambda t: t.patroller_id)
        self.callbacks_by_ticket = _group(
            session.execute(select(Callback.id, Callback.ticket_id, Callback.result).where(*calls)),
            lambda c: c.ticket_id,
        )
        days = [d.isoformat() for d in period.days]
        self.views_by_camera = _group(
            session.execute(
                select(
                    VideoPatrolView.id, VideoPatrolView.camera_id, VideoPatrolView.day, VideoPatrol.user_id
                )
                .join(VideoPatrol, VideoPatrol.id == VideoPatrolView.patrol_id)
                .where(VideoPatrolView.day.in_(days), VideoPatrolView.seconds > 0)
            ),
            lambda v: v.camera_id,
        )
        self.cameras_by_grid = _group(
            session.execute(select(Camera.id, Camera.grid_id).where(Camera.enabled.is_(True))),
            lambda c: c.grid_id,
        )
        self.assignments: dict[int, list[int]] = {}
        for user_id, grid_id in session.execute(select(Assignment.user_id, Assignment.grid_id)):
            self.assignments.setdefault(user_id, []).append(grid_id)

    # --- subjects ----------------------------------------------------------------------------------
    def _subtree(self, paths: Iterable[str]) -> set[int]:
        prefixes = tuple(paths)
        return {n.id for n in self.nodes.values() if prefixes and n.path.startswith(prefixes)}

    def _cameras_in(self, grid_ids: set[int]) -> set[int]:
        return {c.id for g in grid_ids for c in self.cameras_by_grid.get(g, [])}

    def score_node(self, node: GridNode) -> Score:
        ids = self._subtree([node.path])
        subject = _Subject(
            tickets=[t for g in ids for t in self.tickets_by_grid.get(g, [])],
            tasks=[t for g in ids for t in self.tasks_by_grid.get(g, [])],
            camera_ids=self._cameras_in(ids),
            viewer=lambda _uid: True,
        )
        return self._score(subject, kind=node.kind, subject_id=node.id, code=node.code, name=node.name)

    def score_person(self, user: User) -> Score:
        grids = self._subtree(
            self.nodes[g].path for g in self.assignments.get(user.id, []) if g in self.nodes
        )
        watches = Role(user.role) in {Role.grid_leader, Role.manager}
        subject = _Subject(
            tickets=list(self.tickets_by_assignee.get(user.id, [])),
            tasks=list(self.tasks_by_patroller.get(user.id, [])),
            camera_ids=self._cameras_in(grids) if watches else None,
            viewer=lambda uid: uid == user.id,
        )
        name = user.display_name or user.username
        return self._score(subject, kind="person", subject_id=user.id, code=user.username, name=name)

    # --- the components ----------------------------------------------------------------------------
    def _score(self, s: _Subject, *, kind: str, subject_id: int, code: str, name: str) -> Score:
        w = self.settings.scoring_weights
        p = self.period
        mine = s.tickets
        handled = sorted((t for t in mine if p.contains(t.resolved_at)), key=lambda t: t.id)
        per_category = Counter(t.category for t in handled)
        weighted = sum(
            (n * Fraction(str(self.settings.difficulty(c))) for c, n in per_category.items()), Fraction(0)
        )
        target = Fraction(str(self.settings.scoring_workload_per_day)) * len(p.days)
        comps: dict[str, Component] = {}
        comps["workload"] = Component(
            "workload",
            w.workload,
            weighted,
            target,
            min(Fraction(1), weighted / target) if handled and target else None,
            {"tickets": [t.id for t in handled]},
        )
        due_accept = sorted(
            (t for t in mine if p.contains(t.accept_by) and not _dismissed(t)), key=lambda t: t.id
        )
        ok_accept = [
            t.id
            for t in due_accept
            if t.accepted_at is not None and t.accept_by is not None and t.accepted_at <= t.accept_by
        ]
        comps["on_time_accept"] = Component(
            "on_time_accept",
            w.on_time_accept,
            Fraction(len(ok_accept)),
            Fraction(len(due_accept)),
            _share(Fraction(len(ok_accept)), Fraction(len(due_accept))),
            {"tickets": [t.id for t in due_accept], "on_time": ok_accept},
        )
        due_resolve = sorted(
            (t for t in mine if p.contains(t.resolve_by) and not _dismissed(t)), key=lambda t: t.id
        )
        ok_resolve = [
            t.id
            for t in due_resolve
            if t.resolved_at is not None and t.resolve_by is not None and t.resolved_at <= t.resolve_by
        ]
        comps["on_time_resolve"] = Component(
            "on_time_resolve",
            w.on_time_resolve,
            Fraction(len(ok_resolve)),
            Fraction(len(due_resolve)),
            _share(Fraction(len(ok_resolve)), Fraction(len(due_resolve))),
            {"tickets": [t.id for t in due_resolve], "on_time": ok_resolve},
        )
        moves = [m for t in mine for m in self.transitions_by_ticket.get(t.id, [])]
        esc = sorted((m.id, m.ticket_id) for m in moves if m.action == "escalate")
        comps["escalations"] = _penalty("escalations", w.escalations, len(esc), len(due_accept), esc)
        reo = sorted((m.id, m.ticket_id) for m in moves if m.action == "reopen")
        comps["reopens"] = _penalty("reopens", w.reopens, len(reo), len(handled), reo)
        tasks = sorted(
            (t for t in s.tasks if not (t.state == "pending" and t.window_end_at > self.now)),
            key=lambda t: t.id,
        )
        done = [t.id for t in tasks if t.state == "done"]
        comps["checkins"] = Component(
            "checkins",
            w.checkins,
            Fraction(len(done)),
            Fraction(len(tasks)),
            _share(Fraction(len(done)), Fraction(len(tasks))),
            {
                "tasks": [t.id for t in tasks],
                "done": done,
                "missed": [t.id for t in tasks if t.state != "done"],
            },
        )
        if s.camera_ids:
            pairs: dict[tuple[int, str], int] = {}
            views = sorted(
                (tuple(v) for c in s.camera_ids for v in self.views_by_camera.get(c, [])), key=lambda v: v[0]
            )
            for view_id, camera_id, day, user_id in views:
                if s.viewer(user_id):
                    pairs.setdefault((camera_id, day), view_id)
            slots = Fraction(len(s.camera_ids) * len(p.days))
            comps["video_coverage"] = Component(
                "video_coverage",
                w.video_coverage,
                Fraction(len(pairs)),
                slots,
                _share(Fraction(len(pairs)), slots),
                {"views": sorted(pairs.values()), "cameras": sorted(s.camera_ids)},
            )
        else:
            comps["video_coverage"] = Component("video_coverage", w.video_coverage, None, None, None, {})
        calls = sorted((c for t in mine for c in self.callbacks_by_ticket.get(t.id, [])), key=lambda c: c.id)
        good = [c.id for c in calls if c.result in {"satisfied", "basically_satisfied"}]
        comps["satisfaction"] = Component(
            "satisfaction",
            w.satisfaction,
            Fraction(len(good)),
            Fraction(len(calls)),
            _share(Fraction(len(good)), Fraction(len(calls))),
            {"callbacks": [c.id for c in calls], "satisfied": good},
        )
        return Score(kind, subject_id, code, name, comps, total(comps))

    # --- rankings ----------------------------------------------------------------------------------
    def rank_nodes(self, kind: str, *, scope: AccessScope | None = None) -> list[Score]:
        nodes = [
            n for n in self.nodes.values() if n.kind == kind and (scope is None or scope.allows_grid(n.path))
        ]
        return rank([self.score_node(n) for n in nodes])

    def rank_departments(self) -> list[Score]:
        """Departments (协办) ranked on their parts: workload (parts resolved in the period against the
        per-day target), on-time accept and resolve by the parts' own deadlines (rejected parts left out);
        rows "parts". The other components have no records for a department (None)."""
        from models.db.tables import Department, TicketPart

        w, p = self.settings.scoring_weights, self.period
        target = Fraction(str(self.settings.scoring_workload_per_day)) * len(p.days)
        out = []
        for dept in self.session.scalars(select(Department).order_by(Department.code)):
            parts = self.session.scalars(
                select(TicketPart).where(TicketPart.department_id == dept.id).order_by(TicketPart.id)
            ).all()
            comps = {c: Component(c, getattr(w, c), None, None, None, {}) for c in COMPONENTS}
            done = [x.id for x in parts if p.contains(x.resolved_at)]
            comps["workload"] = Component(
                "workload",
                w.workload,
                Fraction(len(done)),
                target,
                min(Fraction(1), len(done) / target) if done and target else None,
                {"parts": done},
            )
            for name, due, at in (
                ("on_time_accept", "accept_by", "accepted_at"),
                ("on_time_resolve", "resolve_by", "resolved_at"),
            ):
                rows = [x for x in parts if p.contains(getattr(x, due)) and x.state != "rejected"]
                ok = [x.id for x in rows if getattr(x, at) is not None and getattr(x, at) <= getattr(x, due)]
                comps[name] = Component(
                    name,
                    getattr(w, name),
                    Fraction(len(ok)),
                    Fraction(len(rows)),
                    _share(Fraction(len(ok)), Fraction(len(rows))),
                    {"parts": [x.id for x in rows], "on_time": ok},
                )
            out.append(Score("department", dept.id, dept.code, dept.name, comps, total(comps)))
        return rank(out)

    def linkage_requests(self) -> dict[str, list[int]]:
        """Linkage requests (请求联动) made in the period: all of them, and those answered (a part or a
        decline), by id — the centre's answering rate, traceable to its rows."""
        from models.db.tables import LinkageRequest

        rows = self.session.scalars(
            select(LinkageRequest).where(
                LinkageRequest.requested_at >= self.period.starts_at,
                LinkageRequest.requested_at < self.period.ends_at,
            )
        ).all()
        return {
            "requests": sorted(r.id for r in rows),
            "answered": sorted(r.id for r in rows if r.answered_at is not None),
        }

    def rank_people(self, *, scope: AccessScope | None = None) -> list[Score]:
        roles = [Role.grid_leader.value, Role.patroller.value]
        users = self.session.scalars(select(User).where(User.role.in_(roles), User.enabled.is_(True))).all()
        if scope is not None and not scope.sees_everything:
            if scope.role == Role.manager:
                users = [
                    u
                    for u in users
                    if any(
                        scope.allows_grid(self.nodes[g].path)
                        for g in self.assignments.get(u.id, [])
                        if g in self.nodes
                    )
                ]
            else:
                users = [u for u in users if u.id == scope.user_id]
        return rank([self.score_person(u) for u in users])


def _penalty(name: str, weight: float, count: int, base: int, rows: list[tuple[int, int]]) -> Component:
    if count == 0 and base == 0:
        return Component(name, weight, Fraction(0), Fraction(0), None, {"transitions": [], "tickets": []})
    share = Fraction(0) if base == 0 else max(Fraction(0), 1 - Fraction(count, base))
    return Component(
        name,
        weight,
        Fraction(count),
        Fraction(base),
        share,
        {"transitions": [r[0] for r in rows], "tickets": sorted({r[1] for r in rows})},
    )


def total(components: dict[str, Component]) -> Fraction | None:
    """100 × Σ weight·share / Σ weight over the components that have records."""
    present = [c for c in components.values() if c.share is not None]
    weights = sum((Fraction(str(c.weight)) for c in present), Fraction(0))
    if not present or weights == 0:
        return None
    assert all(c.share is not None for c in present)
    return (
        100
        * sum((Fraction(str(c.weight)) * c.share for c in present if c.share is not None), Fraction(0))
        / weights
    )


def rank(scores: list[Score]) -> list[Score]:
    """Highest total first (no records last), ties share a rank (1, 2, 2, 4), then by code."""
    ordered = sorted(scores, key=lambda s: (s.total is None, -(s.total or 0), s.code))
    prev: Fraction | None = None
    for i, s in enumerate(ordered, start=1):
        s.rank = ordered[i - 2].rank if i > 1 and s.total == prev and s.total is not None else i
        prev = s.total
    return ordered
