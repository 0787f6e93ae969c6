"""Evaluation of grids and grid leaders (考核): counts, response times, overdue rate and a ranking."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from models.db.tables import Ticket, TicketState, User
from models.tickets.states import HOLDS_LIVE_SLOT, WAITING_ACCEPT, WAITING_RESOLVE

S = TicketState


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


def _median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


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


def _accept_s(t: Ticket) -> float | None:
    return (t.accepted_at - t.opened_at).total_seconds() if t.accepted_at else None


def _resolve_s(t: Ticket) -> float | None:
    return (t.resolved_at - t.opened_at).total_seconds() if t.resolved_at else None


def evaluate(tickets: Sequence[Ticket], users: dict[int, User], *, now: datetime) -> tuple[list[GridRow], list[LeaderRow]]:
    by_grid: dict[int, list[Ticket]] = defaultdict(list)
    by_leader: dict[int, list[Ticket]] = defaultdict(list)
    for t in tickets:
        if t.grid is not None:
            by_grid[t.grid.id].append(t)
        if t.assignee_id is not None and t.assignee_id in users:
            by_leader[t.assignee_id].append(t)
    grids = []
    for ts in by_grid.values():
        g = ts[0].grid
        assert g is not None
        late = sum(is_late(t, now) for t in ts)
        grids.append(
            GridRow(
                grid_code=g.code,
                grid_name=g.name,
                total=len(ts),
                live=sum(t.state in HOLDS_LIVE_SLOT for t in ts),
                closed=sum(t.state in (S.verified.value, S.closed.value) for t in ts),
                overdue=sum(is_overdue(t, now) for t in ts),
                overdue_rate=round(late / len(ts), 3),
                median_accept_s=_median([v for t in ts if (v := _accept_s(t)) is not None]),
                median_resolve_s=_median([v for t in ts if (v := _resolve_s(t)) is not None]),
            )
        )
    grids.sort(key=lambda r: r.grid_code)
    leaders = []
    for uid, ts in by_leader.items():
        u = users[uid]
        resolved = sum(t.resolved_at is not None or t.state in (S.verified.value, S.closed.value) for t in ts)
        late = sum(is_late(t, now) for t in ts)
        on_time = 1 - late / len(ts)
        leaders.append(
            (
                round(60 * on_time + 40 * resolved / len(ts), 1),
                u,
                ts,
                resolved,
                on_time,
            )
        )
    leaders.sort(key=lambda r: (-r[0], _median([v for t in r[2] if (v := _resolve_s(t)) is not None]) or 1e18, r[1].username))
    rows = [
        LeaderRow(
            rank=i,
            username=u.username,
            display_name=u.display_name,
            assigned=len(ts),
            accepted=sum(t.accepted_at is not None for t in ts),
            resolved=resolved,
            overdue=sum(is_overdue(t, now) for t in ts),
            on_time_rate=round(on_time, 3),
            median_accept_s=_median([v for t in ts if (v := _accept_s(t)) is not None]),
            median_resolve_s=_median([v for t in ts if (v := _resolve_s(t)) is not None]),
            score=score,
        )
        for i, (score, u, ts, resolved, on_time) in enumerate(leaders, start=1)
    ]
    return grids, rows


def counts(tickets: Sequence[Ticket]) -> tuple[dict[str, int], dict[str, int]]:
    return dict(Counter(t.state for t in tickets)), dict(Counter(t.category for t in tickets))
