"""Request and response bodies of the ticket routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Action = Literal["dispatch", "accept", "reject", "resolve", "verify", "close", "dismiss", "reopen"]
MAX_PHOTOS = 4


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TicketReport(_Strict):
    category: Literal["road_occupation", "fire_lane_blockage", "crowding", "other"]
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)
    description: str = Field(min_length=1, max_length=2000)
    source: Literal["patrol", "hotline_12345", "police_110", "api"] = Field(
        default="patrol", description="Who found the case: a patroller, the 12345 hotline, the 110 platform, a system"
    )
    photos: list[str] = Field(
        default_factory=list, max_length=MAX_PHOTOS, description="JPEG/PNG photos, base64 (data: URLs accepted)"
    )


class TransitionIn(_Strict):
    action: Action
    note: str = Field(default="", max_length=2000)
    photos: list[str] = Field(default_factory=list, max_length=MAX_PHOTOS, description="JPEG/PNG photos, base64")
    grid: str | None = Field(
        default=None, max_length=64, description="dispatch only: code of the grid to send the ticket to (inside your scope)"
    )
    assignee: str | None = Field(
        default=None, max_length=64, description="dispatch only: username of the grid leader to send the ticket to"
    )


class TicketOut(_Strict):
    id: int
    category: str
    case_code: str
    source: str
    state: str
    grid_id: int | None
    grid_code: str | None
    grid_name: str | None
    camera_id: int | None
    camera_name: str | None = Field(default=None, description="The camera's name (camera tickets)")
    zone: str | None
    rule: str | None
    description: str
    lon: float | None
    lat: float | None
    assignee: str | None
    escalation_level: int = Field(description="0 grid, 1 escalated to the street, 2 to the district")
    opened_at: datetime
    accept_by: datetime | None
    resolve_by: datetime | None
    accepted_at: datetime | None
    resolved_at: datetime | None
    verified_at: datetime | None
    closed_at: datetime | None
    overdue: bool
    condition_active: bool = Field(description="The camera still sees the problem")
    occurrence_count: int
    evidence_url: str | None


class TransitionOut(_Strict):
    action: str
    from_state: str | None
    to_state: str
    actor: str | None = Field(description="Username, or null for the system")
    note: str
    photo_urls: list[str]
    at: datetime


class OccurrenceOut(_Strict):
    event_id: str
    kind: str
    at: datetime
    evidence_url: str | None
    detail: dict[str, Any]
    clip: Literal["pending", "ready", "unavailable"] | None = Field(
        default=None, description="The event's video clip: being recorded, ready at clip_url, or not available"
    )
    clip_url: str | None = Field(default=None, description="MP4 of the event (HTTP ranges supported)")


class TicketDetail(TicketOut):
    history: list[TransitionOut]
    occurrences: list[OccurrenceOut] = Field(description="The latest occurrences, newest first")
    photo_urls: list[str]


class TicketPage(_Strict):
    items: list[TicketOut]
    total: int
    limit: int
    offset: int


class GridStats(_Strict):
    grid_code: str
    grid_name: str
    total: int
    live: int
    closed: int
    overdue: int
    overdue_rate: float
    median_accept_s: float | None
    median_resolve_s: float | None


class LeaderStats(_Strict):
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
    score: float = Field(description="60 × on-time rate + 40 × resolution rate (0-100)")


class StatsOut(_Strict):
    since: datetime
    until: datetime
    total: int
    by_state: dict[str, int]
    by_category: dict[str, int]
    grids: list[GridStats]
    leaders: list[LeaderStats]
    unattended: int = Field(description="Live tickets nobody answers for (no grid leader, no manager up the tree): the centre must dispatch them")
    by_day: dict[str, int] = Field(default_factory=dict, description="Tickets opened per local calendar day (YYYY-MM-DD in 'timezone'), oldest first")
    timezone: str = Field(default="Asia/Shanghai", description="The installation's time zone (GRIDPATROL_TIMEZONE) that days are counted in")
