"""Evaluation of grids and grid leaders (考核) over the tickets the caller may see, aggregated in SQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import ScopeDep, SessionDep, StateDep, x_access
from api.ticket_schemas import GridStats, LeaderStats, StatsOut
from models.db.tables import utcnow
from models.tickets.stats import evaluate

router = APIRouter(prefix="/api", tags=["tickets"])

DEFAULT_WINDOW = timedelta(days=30)


@router.get("/stats", response_model=StatsOut, openapi_extra=x_access("authenticated"))
def stats(
    session: SessionDep,
    scope: ScopeDep,
    state: StateDep,
    since: Annotated[
        datetime | None, Query(description="Opened at or after, with a time zone (default: 30 days before 'until')")
    ] = None,
    until: Annotated[datetime | None, Query(description="Opened before, with a time zone (default: now)")] = None,
) -> StatsOut:
    """Evaluation per grid and per grid leader over tickets opened in ``[since, until)``; the window
    spans at most 366 days and ``until`` must be later than ``since`` (422 naming the field otherwise)."""
    now = utcnow()
    until = until or now
    since = since or until - DEFAULT_WINDOW
    result = evaluate(session, scope=scope.ticket_filter(), since=since, until=until, now=now, tz=state.settings.tz)
    return StatsOut(
        since=since,
        until=until,
        total=result.total,
        by_state=result.by_state,
        by_category=result.by_category,
        grids=[GridStats(**r.__dict__) for r in result.grids],
        leaders=[LeaderStats(**r.__dict__) for r in result.leaders],
        unattended=result.unattended,
        by_day=result.by_day,
        timezone=state.settings.timezone,
    )
