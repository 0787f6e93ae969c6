"""Patrol points (巡查点): where a grid's patrollers must go, checked against the viewer's scope."""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import ColumnElement, false, or_, select, true
from sqlalchemy.orm import Session

from models.db.tables import GridKind, GridNode, PatrolPoint, PatrolTask, Role, User, utcnow
from models.errors import AccessDenied, InvalidInput
from models.grid.geo import GridLocator
from models.identity.access import AccessScope
from models.identity.audit import record_change
from models.identity.roles import CENTRE

#: mean radius of the WGS-84 ellipsoid (IUGG), metres: the haversine sphere
EARTH_RADIUS_M = 6_371_008.8
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres between two WGS-84 positions, on the mean sphere."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


class PointSpec(BaseModel):
    """A patrol point as operators and managers enter it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="巡查点名称")
    lon: float = Field(ge=-180, le=180, description="Longitude (WGS-84)")
    lat: float = Field(ge=-90, le=90, description="Latitude (WGS-84)")
    radius_m: float | None = Field(default=None, gt=0, le=5000, description="Check-in radius in metres")
    checklist: str = Field(default="", max_length=4000, description="What to check there (巡查内容)")
    frequency: Literal["daily", "weekly"] = Field(default="daily", description="daily, or weekly on weekdays")
    weekdays: list[int] = Field(default_factory=list, description="0 = Monday .. 6 = Sunday (weekly points)")
    window_start: str = Field(default="08:00", description="Local time a check-in opens, HH:MM")
    window_end: str = Field(
        default="18:00", description="Local time a check-in closes, HH:MM (after the start)"
    )
    enabled: bool = True

    @field_validator("window_start", "window_end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError("a time of day is HH:MM, 00:00 to 23:59")
        return value

    @field_validator("weekdays")
    @classmethod
    def _days(cls, value: list[int]) -> list[int]:
        if any(d < 0 or d > 6 for d in value):
            raise ValueError("weekdays are 0 (Monday) to 6 (Sunday)")
        return sorted(set(value))

    @model_validator(mode="after")
    def _consistent(self) -> PointSpec:
        if self.window_end <= self.window_start:
            raise ValueError("window_end must be later than window_start on the same day")
        if self.frequency == "weekly" and not self.weekdays:
            raise ValueError("a weekly point names its weekdays")
        return self


def may_manage(scope: AccessScope, user: User, grid: GridNode) -> bool:
    """Operators (the centre) anywhere, managers inside their subtree."""
    role = Role(user.role)
    return role in CENTRE or (role == Role.manager and scope.allows_grid(grid.path))


def grid_filter(scope: AccessScope, column: Any) -> ColumnElement[bool]:
    """A WHERE clause keeping rows whose grid (``column``: a grid id column) lies in the viewer's scope."""
    if scope.sees_everything:
        return true()
    if not scope.grid_paths:
        return false()
    in_scope = or_(*(GridNode.path.startswith(p, autoescape=True) for p in scope.grid_paths))
    return column.in_(select(GridNode.id).where(in_scope))  # type: ignore[no-any-return]


def visible_point(session: Session, scope: AccessScope, point_id: int) -> PatrolPoint | None:
    """The point when it exists and its grid is in the viewer's scope (callers answer 404 otherwise)."""
    point = session.get(PatrolPoint, point_id)
    if point is None or not scope.allows_grid(point.grid.path):
        return None
    return point


def _grid_of(session: Session, lon: float, lat: float) -> GridNode:
    hit = GridLocator.from_session(session).locate(lon, lat)
    grid = session.get(GridNode, hit[0]) if hit else None
    if grid is None or grid.kind != GridKind.grid.value:
        raise InvalidInput("该位置不在任何网格内 (the location lies outside every grid)", field="lon")
    return grid


def create_point(
    session: Session, *, spec: PointSpec, user: User, scope: AccessScope, default_radius_m: float
) -> PatrolPoint:
    """A new point in the grid its location lies in; the caller must manage that grid."""
    grid = _grid_of(session, spec.lon, spec.lat)
    if not may_manage(scope, user, grid):
        raise AccessDenied("you may mark patrol points only inside your own area")
    data = spec.model_dump()
    data["radius_m"] = spec.radius_m or default_radius_m
    point = PatrolPoint(grid_id=grid.id, created_by_id=user.id, **data)
    session.add(point)
    session.flush()
    point.grid = grid
    record_change(
        session,
        user=user,
        channel="api",
        object_type="patrol_point",
        object_id=point.id,
        detail={"op": "create", **data},
    )
    return point


def update_point(
    session: Session, point: PatrolPoint, *, spec: PointSpec, user: User, scope: AccessScope
) -> PatrolPoint:
    """Replace a point's fields (its grid follows the location; both grids must be the caller's)."""
    if not may_manage(scope, user, point.grid):
        raise AccessDenied("your role may not change this patrol point")
    grid = _grid_of(session, spec.lon, spec.lat)
    if not may_manage(scope, user, grid):
        raise AccessDenied("you may move patrol points only inside your own area")
    data = spec.model_dump()
    data["radius_m"] = spec.radius_m or point.radius_m
    for key, value in data.items():
        setattr(point, key, value)
    point.grid_id, point.grid, point.updated_at = grid.id, grid, utcnow()
    record_change(
        session,
        user=user,
        channel="api",
        object_type="patrol_point",
        object_id=point.id,
        detail={"op": "update", **data},
    )
    return point


def delete_point(session: Session, point: PatrolPoint, *, user: User, scope: AccessScope) -> None:
    """Delete a point and its pending tasks; a point with check-ins or missed tasks is disabled instead."""
    if not may_manage(scope, user, point.grid):
        raise AccessDenied("your role may not delete this patrol point")
    record_change(
        session,
        user=user,
        channel="api",
        object_type="patrol_point",
        object_id=point.id,
        detail={"op": "delete", "name": point.name},
    )
    # a point with history is disabled, not deleted: its check-ins stay traceable from the scores
    has_history = session.scalar(
        select(PatrolTask.id).where(PatrolTask.point_id == point.id, PatrolTask.state != "pending").limit(1)
    )
    if has_history is not None:
        point.enabled = False
        return
    session.delete(point)
