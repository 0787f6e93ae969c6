"""Evaluation of grids and grid leaders (考核): counts, response times, overdue rate and a ranking.

Aggregated in SQL (GROUP BY grid and by assignee) over a bounded window, so that a request never
loads the tickets themselves. Medians: ``percentile_cont(0.5)`` on PostgreSQL (exact, the same
interpolation as :func:`statistics.median`); SQLite has no percentile aggregate, so there they are
computed in Python from a fetch of just the timestamps of the handled tickets in the window.
:func:`is_late` and :func:`is_overdue` are the row predicates the SQL clauses mirror.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Select, and_, case, extract, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from models.db.tables import GridNode, Ticket, TicketState, User
from models.errors import InvalidInput
from models.tickets.states import HOLDS_LIVE_SLOT, LIVE, WAITING_ACCEPT, WAITING_RESOLVE, values

S = TicketState

#: the longest window one request may evaluate
MAX_WINDOW = timedelta(days=366)
#: states that count as closed in the grid table and as resolved for a leader
_DONE = values(frozenset({S.verified, S.closed}))


def is_late(t: Ticket, now: datetime) -> bool:
    """Accepted or resolved after its deadline, or still waiting past it."""
    if t.accept_by is not None:
        if t.accepted_at is not None:
            if t.accepted_at > t.accept_by:
                return True
        elif t.state in WAITING_ACCEPT and now > t.accept_by:
            return True
    if t.resolve_by is not None:
        if t.resolved_at is not None:
            return t.resolved_at > t.resolve_by
        return t.state in WAITING_RESOLVE and now > t.resolve_by
    return False


def is_overdue(t: Ticket, now: datetime) -> bool:
    """Still waiting and past a deadline (what the dashboard flags red)."""
    if t.state in WAITING_ACCEPT and t.accept_by is not None and now > t.accept_by:
        return True
    return t.state in WAITING_RESOLVE and t.resolve_by is not None and now > t.resolve_by


def late_clause(now: datetime) -> ColumnElement[bool]:
    """:func:`is_late` as SQL."""
    T = Ticket
    late_accept = and_(
        T.accept_by.is_not(None),
        or_(
            and_(T.accepted_at.is_not(None), T.accepted_at > T.accept_by),
            and_(T.accepted_at.is_(None), T.state.in_(values(WAITING_ACCEPT)), T.accept_by < now),
        ),
    )
    late_resolve = and_(
        T.resolve_by.is_not(None),
        or_(
            and_(T.resolved_at.is_not(None), T.resolved_at > T.resolve_by),
            and_(T.resolved_at.is_(None), T.state.in_(values(WAITING_RESOLVE)), T.resolve_by < now),
        ),
    )
    return or_(late_accept, late_resolve)


def overdue_clause(now: datetime) -> ColumnElement[bool]:
    """:func:`is_overdue` as SQL."""
    T = Ticket
    return or_(
        and_(T.state.in_(values(WAITING_ACCEPT)), T.accept_by.is_not(None), T.accept_by < now),
        and_(T.state.in_(values(WAITING_RESOLVE)), T.resolve_by.is_not(None), T.resolve_by < now),
    )


def check_window(*, since: datetime, until: datetime) -> None:
    """A window must be time-zone aware, non-empty and at most :data:`MAX_WINDOW` long."""
    for name, at in (("until", until), ("since", since)):
        if at.tzinfo is None:
            raise InvalidInput("must carry a time zone (e.g. 2026-01-01T00:00:00Z)", field=name)
    if until <= since:
        raise InvalidInput("must be later than 'since'", field="until")
    if until - since > MAX_WINDOW:
        raise InvalidInput(f"the window may span at most {MAX_WINDOW.days} days", field="since")


@dataclass(frozen=True)
class GridRow:
    grid_code: str
    grid_name: str
    total: int
    live: int
    closed: int
    overdue: int
    overdue_rate: float
    median_accept_s: float | None
    median_resolve_s: float | None


@dataclass(frozen=True)
class LeaderRow:
    rank: int
    username: str
    display_name: str
    assigned: int
    accepted: int
    resolved: int
    overdue: int
    on_time_rate: float
    median_accept_s: float | None
    median_resolve_s: float | None
    score: float


@dataclass(frozen=True)
class Evaluation:
    total: int
    by_state: dict[str, int]
    by_category: dict[str, int]
    grids: list[GridRow]
    leaders: list[LeaderRow]
    #: live tickets nobody answers for (no leader in the grid, no manager up the tree): the centre must act
    unattended: int = 0
    #: tickets opened per local calendar day (``YYYY-MM-DD`` → count), oldest first
    by_day: dict[str, int] = field(default_factory=dict)


def _count(clause: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((clause, 1), else_=0)), 0)


def _median(values_s: Sequence[float]) -> float | None:
    return round(statistics.median(values_s), 1) if values_s else None


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)


Medians = dict[int, tuple[float | None, float | None]]


def _medians_in_sql(session: Session, stmt: Select[Any], key: InstrumentedAttribute[int]) -> Medians:
    """PostgreSQL: ``percentile_cont`` per group (NULL durations, i.e. not handled yet, are skipped)."""
    accept = extract("epoch", Ticket.accepted_at - Ticket.opened_at)
    resolve = extract("epoch", Ticket.resolved_at - Ticket.opened_at)
    rows = session.execute(
        stmt.add_columns(
            func.percentile_cont(0.5).within_group(accept),
            func.percentile_cont(0.5).within_group(resolve),
        ).group_by(key)
    )
    return {k: (_rounded(a), _rounded(r)) for k, a, r in rows}


def _medians_in_python(rows: Iterable[tuple[int, datetime, datetime | None, datetime | None]]) -> Medians:
    accept: dict[int, list[float]] = defaultdict(list)
    resolve: dict[int, list[float]] = defaultdict(list)
    for key, opened, accepted, resolved in rows:
        if accepted is not None:
            accept[key].append((accepted - opened).total_seconds())
        if resolved is not None:
            resolve[key].append((resolved - opened).total_seconds())
    return {k: (_median(accept.get(k, [])), _median(resolve.get(k, []))) for k in accept.keys() | resolve.keys()}


def _medians(session: Session, *, key: InstrumentedAttribute[int], join: tuple[type, ColumnElement[bool]], where: ColumnElement[bool]) -> Medians:
    stmt = select(key).select_from(Ticket).join(*join).where(where)
    if session.get_bind().dialect.name == "postgresql":
        return _medians_in_sql(session, stmt, key)
    handled = or_(Ticket.accepted_at.is_not(None), Ticket.resolved_at.is_not(None))
    fetch = stmt.add_columns(Ticket.opened_at, Ticket.accepted_at, Ticket.resolved_at).where(handled)
    return _medians_in_python(session.execute(fetch).all())


def evaluate(
    session: Session, *, scope: ColumnElement[bool], since: datetime, until: datetime, now: datetime, tz: tzinfo = UTC
) -> Evaluation:
    """Counts and rankings of the tickets opened in ``[since, until)`` that ``scope`` lets the caller see;
    ``by_day`` counts them per calendar day of ``tz`` (the installation's zone: a day is a local day)."""
    check_window(since=since, until=until)
    where = and_(scope, Ticket.opened_at >= since, Ticket.opened_at < until)
    by_state = {str(k): n for k, n in session.execute(select(Ticket.state, func.count()).where(where).group_by(Ticket.state))}
    by_category = {
        str(k): n for k, n in session.execute(select(Ticket.category, func.count()).where(where).group_by(Ticket.category))
    }
    late, overdue = late_clause(now), overdue_clause(now)
    done = Ticket.state.in_(_DONE)

    grid_join = (GridNode, Ticket.grid_id == GridNode.id)
    grid_medians = _medians(session, key=GridNode.id, join=grid_join, where=where)
    grids = []
    for gid, code, name, total, live, closed, n_overdue, n_late in session.execute(
        select(
            GridNode.id,
            GridNode.code,
            GridNode.name,
            func.count(),
            _count(Ticket.state.in_(values(HOLDS_LIVE_SLOT))),
            _count(done),
            _count(overdue),
            _count(late),
        )
        .select_from(Ticket)
        .join(*grid_join)
        .where(where)
        .group_by(GridNode.id, GridNode.code, GridNode.name)
    ):
        med_accept, med_resolve = grid_medians.get(gid, (None, None))
        grids.append(
            GridRow(
                grid_code=code,
                grid_name=name,
                total=total,
                live=live,
                closed=closed,
                overdue=n_overdue,
                overdue_rate=round(n_late / total, 3),
                median_accept_s=med_accept,
                median_resolve_s=med_resolve,
            )
        )
    grids.sort(key=lambda r: r.grid_code)

    user_join = (User, Ticket.assignee_id == User.id)
    leader_medians = _medians(session, key=User.id, join=user_join, where=where)
    ranked = []
    for uid, username, display_name, assigned, accepted, resolved, n_overdue, n_late in session.execute(
        select(
            User.id,
            User.username,
            User.display_name,
            func.count(),
            func.count(Ticket.accepted_at),
            _count(or_(Ticket.resolved_at.is_not(None), done)),
            _count(overdue),
            _count(late),
        )
        .select_from(Ticket)
        .join(*user_join)
        .where(where)
        .group_by(User.id, User.username, User.display_name)
    ):
        on_time = 1 - n_late / assigned
        med_accept, med_resolve = leader_medians.get(uid, (None, None))
        row = LeaderRow(
            rank=0,
            username=username,
            display_name=display_name,
            assigned=assigned,
            accepted=accepted,
            resolved=resolved,
            overdue=n_overdue,
            on_time_rate=round(on_time, 3),
            median_accept_s=med_accept,
            median_resolve_s=med_resolve,
            score=round(60 * on_time + 40 * resolved / assigned, 1),
        )
        ranked.append(row)
    ranked.sort(key=lambda r: (-r.score, r.median_resolve_s or 1e18, r.username))
    leaders = [replace(r, rank=i) for i, r in enumerate(ranked, start=1)]
    unattended = session.scalar(
        select(func.count()).select_from(Ticket).where(where, Ticket.state.in_(values(LIVE)), Ticket.assignee_id.is_(None))
    )
    return Evaluation(
        total=sum(by_state.values()), by_state=by_state, by_category=by_category, grids=grids, leaders=leaders,
        unattended=unattended or 0, by_day=_by_day(session, where, tz),
    )


def _by_day(session: Session, where: ColumnElement[bool], tz: tzinfo) -> dict[str, int]:
    """Tickets opened per calendar day of ``tz``: in SQL on PostgreSQL (``AT TIME ZONE``), from the
    window's bounded column of opening times on SQLite (which has no time zones)."""
    counts: Counter[str] = Counter()
    if session.get_bind().dialect.name == "postgresql" and isinstance(tz, ZoneInfo):
        day = func.to_char(func.timezone(tz.key, Ticket.opened_at), "YYYY-MM-DD")
        counts.update({d: n for d, n in session.execute(select(day, func.count()).where(where).group_by(day))})
    else:
        counts.update(opened.astimezone(tz).date().isoformat() for opened in session.scalars(select(Ticket.opened_at).where(where)))
    return dict(sorted(counts.items()))
