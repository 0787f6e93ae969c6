"""The dashboard's reads (数字云图): live tickets by grid and category, camera health, and the grid map as
GeoJSON coloured by open tickets. Everything is filtered by the caller's scope; trend per day, times to
accept and resolve per leader and the ranking come from ``GET /api/stats`` (api/routes/stats.py)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import and_, case, func, select

from api.deps import ScopeDep, SessionDep, StateDep, x_access
from models.db.tables import Camera, GridNode, Ticket, utcnow
from models.identity.access import AccessScope
from models.tickets.states import LIVE, values
from models.tickets.stats import overdue_clause

router = APIRouter(prefix="/api/dashboard", tags=["dashboard"])

#: the ranking formula of ``GET /api/stats`` (models/tickets/stats.py), in the words the page shows
RANKING_FORMULA = "得分 = 60 × 按时办结率 + 40 × 办结率（满分100）"
RANKING_FORMULA_EN = "score = 60 × on-time rate + 40 × resolution rate (0-100)"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GridCategoryCount(_Strict):
    grid_code: str | None = Field(description="None: tickets without a grid")
    grid_name: str | None
    category: str
    open: int = Field(description="Live tickets (waiting to be accepted or resolved)")
    overdue: int = Field(description="Live tickets past their accept or resolve deadline")


class CameraHealthSummary(_Strict):
    total: int
    enabled: int
    by_status: dict[str, int] = Field(description="online | reconnecting | offline | unknown ... → cameras")


class SummaryOut(_Strict):
    now: datetime
    timezone: str
    new_today: int = Field(description="Tickets opened since local midnight")
    open: int
    overdue: int
    by_grid_category: list[GridCategoryCount]
    cameras: CameraHealthSummary
    ranking_formula: str = Field(description="How GET /api/stats ranks leaders, in Chinese")
    ranking_formula_en: str


class MapOut(_Strict):
    type: Literal["FeatureCollection"] = "FeatureCollection"
    tiles_url: str | None = Field(
        default=None,
        description="The intranet map's tile URL template (GRIDPATROL_MAP_TILES_URL); None: no base map",
    )
    features: list[dict[str, Any]] = Field(
        description="Grid nodes (polygons; properties: code, name, kind, open, overdue) and cameras (points; "
        "properties: id, name, status, open)"
    )


def _live(scope: AccessScope) -> Any:
    return and_(scope.ticket_filter(), Ticket.state.in_(values(LIVE)))


@router.get("/summary", response_model=SummaryOut, openapi_extra=x_access("authenticated"))
def summary(session: SessionDep, scope: ScopeDep, state: StateDep) -> SummaryOut:
    """Live and overdue tickets by grid and category, today's new tickets, and camera health, as far as
    the caller may see them."""
    now = utcnow()
    tz = state.settings.tz
    local = now.astimezone(tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    overdue = overdue_clause(now)
    rows = session.execute(
        select(
            GridNode.code,
            GridNode.name,
            Ticket.category,
            func.count(),
            func.coalesce(func.sum(case((overdue, 1), else_=0)), 0),
        )
        .select_from(Ticket)
        .outerjoin(GridNode, GridNode.id == Ticket.grid_id)
        .where(_live(scope))
        .group_by(GridNode.code, GridNode.name, Ticket.category)
    ).all()
    cells = [
        GridCategoryCount(grid_code=code, grid_name=name, category=str(cat), open=n, overdue=int(late))
        for code, name, cat, n, late in rows
    ]
    cells.sort(key=lambda c: (c.grid_code or "~", c.category))
    new_today = session.scalar(
        select(func.count()).select_from(Ticket).where(scope.ticket_filter(), Ticket.opened_at >= midnight)
    )
    statuses: Counter[str] = Counter()
    enabled = 0
    for status, is_enabled, n in session.execute(
        select(Camera.status, Camera.enabled, func.count())
        .where(scope.camera_filter())
        .group_by(Camera.status, Camera.enabled)
    ):
        statuses[str(status or "unknown") if is_enabled else "disabled"] += n
        enabled += n if is_enabled else 0
    return SummaryOut(
        now=now,
        timezone=state.settings.timezone,
        new_today=new_today or 0,
        open=sum(c.open for c in cells),
        overdue=sum(c.overdue for c in cells),
        by_grid_category=cells,
        cameras=CameraHealthSummary(
            total=sum(statuses.values()), enabled=enabled, by_status=dict(sorted(statuses.items()))
        ),
        ranking_formula=RANKING_FORMULA,
        ranking_formula_en=RANKING_FORMULA_EN,
    )


@router.get("/map", response_model=MapOut, openapi_extra=x_access("authenticated"))
def grid_map(session: SessionDep, scope: ScopeDep, state: StateDep) -> MapOut:
    """The grid polygons the caller may see (with their live and overdue tickets, subtree included) and
    their cameras as points (with live tickets), as one GeoJSON FeatureCollection for the map."""
    now = utcnow()
    nodes = list(session.scalars(select(GridNode).order_by(GridNode.path)))
    if not scope.sees_everything:
        nodes = [n for n in nodes if scope.allows_grid(n.path)]
    live_q = (
        select(Ticket.grid_id, func.count())
        .where(_live(scope), Ticket.grid_id.is_not(None))
        .group_by(Ticket.grid_id)
    )
    live_by_grid: Counter[int | None] = Counter({g: n for g, n in session.execute(live_q)})
    late_by_grid: Counter[int | None] = Counter(
        {g: n for g, n in session.execute(live_q.where(overdue_clause(now)))}
    )
    path_of = {n.id: n.path for n in session.scalars(select(GridNode))}
    features: list[dict[str, Any]] = []
    for node in nodes:
        if not node.geometry:
            continue
        in_subtree = [gid for gid, path in path_of.items() if path.startswith(node.path)]
        features.append(
            {
                "type": "Feature",
                "geometry": node.geometry.get("geometry", node.geometry)
                if node.geometry.get("type") == "Feature"
                else node.geometry,
                "properties": {
                    "layer": "grid",
                    "code": node.code,
                    "name": node.name,
                    "kind": str(node.kind),
                    "open": sum(live_by_grid[g] for g in in_subtree),
                    "overdue": sum(late_by_grid[g] for g in in_subtree),
                },
            }
        )
    live_by_camera = dict(
        session.execute(
            select(Ticket.camera_id, func.count())
            .where(_live(scope), Ticket.camera_id.is_not(None))
            .group_by(Ticket.camera_id)
        ).all()
    )
    for cam in session.scalars(
        select(Camera).where(scope.camera_filter(), Camera.lon.is_not(None), Camera.lat.is_not(None))
    ):
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [cam.lon, cam.lat]},
                "properties": {
                    "layer": "camera",
                    "id": cam.id,
                    "name": cam.name,
                    "status": cam.status if cam.enabled else "disabled",
                    "open": live_by_camera.get(cam.id, 0),
                },
            }
        )
    return MapOut(features=features, tiles_url=state.settings.map_tiles_url)
