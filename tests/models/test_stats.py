"""Stats aggregated in SQL equal the straightforward Python computation over the same tickets, on
SQLite and PostgreSQL; the window is bounded."""

from __future__ import annotations

import random
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import ColumnElement, select, true
from sqlalchemy.orm import Session, joinedload, sessionmaker

from models.db.engine import transaction
from models.db.tables import GridNode, Ticket, TicketCategory, TicketState, User
from models.errors import InvalidInput
from models.tickets.states import HOLDS_LIVE_SLOT, LIVE
from models.tickets.stats import Evaluation, GridRow, LeaderRow, evaluate, is_late, is_overdue

S = TicketState
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SINCE = NOW - timedelta(days=30)


def _median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def reference(tickets: Sequence[Ticket], users: dict[int, User], *, now: datetime) -> Evaluation:
    """What /api/stats computed before it moved to SQL: every ticket loaded, grouped in Python."""

    def accept_s(t: Ticket) -> float | None:
        return (t.accepted_at - t.opened_at).total_seconds() if t.accepted_at else None

    def resolve_s(t: Ticket) -> float | None:
        return (t.resolved_at - t.opened_at).total_seconds() if t.resolved_at else None

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
        grids.append(
            GridRow(
                grid_code=g.code,
                grid_name=g.name,
                total=len(ts),
                live=sum(t.state in HOLDS_LIVE_SLOT for t in ts),
                closed=sum(t.state in (S.verified, S.closed) for t in ts),
                overdue=sum(is_overdue(t, now) for t in ts),
                overdue_rate=round(sum(is_late(t, now) for t in ts) / len(ts), 3),
                median_accept_s=_median([v for t in ts if (v := accept_s(t)) is not None]),
                median_resolve_s=_median([v for t in ts if (v := resolve_s(t)) is not None]),
            )
        )
    grids.sort(key=lambda r: r.grid_code)
    leaders = []
    for uid, ts in by_leader.items():
        resolved = sum(t.resolved_at is not None or t.state in (S.verified, S.closed) for t in ts)
        on_time = 1 - sum(is_late(t, now) for t in ts) / len(ts)
        leaders.append(
            LeaderRow(
                rank=0,
                username=users[uid].username,
                display_name=users[uid].display_name,
                assigned=len(ts),
                accepted=sum(t.accepted_at is not None for t in ts),
                resolved=resolved,
                overdue=sum(is_overdue(t, now) for t in ts),
                on_time_rate=round(on_time, 3),
                median_accept_s=_median([v for t in ts if (v := accept_s(t)) is not None]),
                median_resolve_s=_median([v for t in ts if (v := resolve_s(t)) is not None]),
                score=round(60 * on_time + 40 * resolved / len(ts), 1),
            )
        )
    leaders.sort(key=lambda r: (-r.score, r.median_resolve_s or 1e18, r.username))
    ranked = [LeaderRow(**{**r.__dict__, "rank": i}) for i, r in enumerate(leaders, start=1)]
    return Evaluation(
        total=len(tickets),
        by_state=dict(Counter(str(t.state) for t in tickets)),
        by_category=dict(Counter(str(t.category) for t in tickets)),
        grids=grids,
        leaders=ranked,
        # live tickets nobody answers for
        unattended=sum(1 for t in tickets if t.state in LIVE and t.assignee_id is None),
        by_day=dict(sorted(Counter(t.opened_at.astimezone(UTC).date().isoformat() for t in tickets).items())),
    )


def seed_tickets(factory: sessionmaker[Session], *, n: int, seed: int) -> None:
    """``n`` tickets in every state across grids G1..G3 (and none), assignees (and none), met and
    missed deadlines; a few opened before the window. Whole seconds, so medians are exact."""
    rng = random.Random(seed)
    with transaction(factory) as s:
        grids = [*s.scalars(select(GridNode.id).where(GridNode.code.in_(["G1", "G2", "G3"]))), None]
        users = [*s.scalars(select(User.id).where(User.username.in_(["leader-g1", "leader-g3", "manager-s1"]))), None]
        assert len(grids) == 4 and len(users) == 4
        for i in range(n):
            opened = SINCE + timedelta(seconds=rng.randint(-3 * 86400, 30 * 86400 - 1))
            state = rng.choice(list(S))
            t = Ticket(
                category=rng.choice(list(TicketCategory)).value,
                state=state.value,
                grid_id=rng.choice(grids),
                assignee_id=rng.choice(users),
                opened_at=opened,
                accept_by=opened + timedelta(seconds=rng.choice([600, 3600])) if rng.random() < 0.9 else None,
                resolve_by=opened + timedelta(seconds=rng.choice([3600, 4 * 3600])) if rng.random() < 0.9 else None,
                description=f"t{i}",
            )
            if state not in {S.open, S.dispatched} and rng.random() < 0.85:
                t.accepted_at = opened + timedelta(seconds=rng.randint(30, 2 * 3600))
            if state in {S.resolved, S.verified, S.closed, S.reopened} and rng.random() < 0.85:
                t.resolved_at = opened + timedelta(seconds=rng.randint(600, 6 * 3600))
            s.add(t)


def python_reference(factory: sessionmaker[Session], where: ColumnElement[bool], *, since: datetime, until: datetime) -> Evaluation:
    with factory() as s:
        tickets = s.scalars(
            select(Ticket).options(joinedload(Ticket.grid)).where(where, Ticket.opened_at >= since, Ticket.opened_at < until)
        ).all()
        users = {u.id: u for u in s.scalars(select(User))}
        return reference(tickets, users, now=NOW)


@pytest.mark.parametrize("seed", [1, 2])
def test_sql_aggregation_equals_the_python_computation(seeded: sessionmaker[Session], seed: int) -> None:
    seed_tickets(seeded, n=160, seed=seed)
    with seeded() as s:
        g1 = s.scalars(select(GridNode.id).where(GridNode.code == "G1")).one()
    for where in (true(), Ticket.grid_id == g1):
        expected = python_reference(seeded, where, since=SINCE, until=NOW)
        with seeded() as s:
            got = evaluate(s, scope=where, since=SINCE, until=NOW, now=NOW)
        assert got == expected
    # the seed must exercise what is compared: several grids and leaders, late and on time, medians
    assert expected.total > 20 and [g.grid_code for g in expected.grids] == ["G1"] and len(expected.leaders) == 3
    full = python_reference(seeded, true(), since=SINCE, until=NOW)
    assert full.total > 100 and len(full.grids) == 3 and len(full.leaders) == 3 and full.unattended > 0
    assert sum(g.overdue for g in full.grids) > 0 and sum(0 < r.on_time_rate < 1 for r in full.leaders) == 3
    assert sum(g.median_accept_s is not None and g.median_resolve_s is not None for g in full.grids) == 3
    assert len(full.by_state) == len(S) and len(full.by_category) == len(TicketCategory)


def test_window_is_half_open(seeded: sessionmaker[Session]) -> None:
    seed_tickets(seeded, n=40, seed=3)
    with seeded() as s:
        opened = sorted(s.scalars(select(Ticket.opened_at)))
    assert len(opened) == 40
    cut = opened[20]
    with seeded() as s:
        before = evaluate(s, scope=true(), since=opened[0], until=cut, now=NOW)
        after = evaluate(s, scope=true(), since=cut, until=opened[-1] + timedelta(seconds=1), now=NOW)
    assert (before.total, after.total) == (20, 20)


@pytest.mark.parametrize(
    ("since", "until", "field"),
    [
        (NOW, NOW, "until"),
        (NOW, NOW - timedelta(days=1), "until"),
        (NOW - timedelta(days=367), NOW, "since"),
        (NOW.replace(tzinfo=None) - timedelta(days=1), NOW, "since"),
        (NOW - timedelta(days=1), NOW.replace(tzinfo=None), "until"),
    ],
)
def test_bad_windows(session_factory: sessionmaker[Session], since: datetime, until: datetime, field: str) -> None:
    with session_factory() as s, pytest.raises(InvalidInput) as caught:
        evaluate(s, scope=true(), since=since, until=until, now=NOW)
    assert caught.value.field == field


def test_longest_window_is_accepted(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as s:
        got = evaluate(s, scope=true(), since=NOW - timedelta(days=366), until=NOW, now=NOW)
    assert (got.total, got.grids, got.leaders) == (0, [], [])
