"""Request and response bodies of the patrol, video patrol, callback and evaluation routes."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from models.patrol.points import PointSpec

MAX_PHOTOS = 4


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PointIn(PointSpec):
    """A patrol point as entered (its grid is the one its location lies in)."""


class PointOut(_Strict):
    id: int
    name: str
    lon: float
    lat: float
    radius_m: float
    checklist: str
    frequency: str
    weekdays: list[int]
    window_start: str
    window_end: str
    enabled: bool
    grid_id: int
    grid_code: str
    grid_name: str
    may_edit: bool = Field(description="Whether the caller may change or delete this point")


class CheckInOut(_Strict):
    id: int
    at: datetime
    lon: float
    lat: float
    accuracy_m: float | None
    distance_m: float
    photo_url: str | None


class TaskOut(_Strict):
    id: int
    day: str
    state: Literal["pending", "done", "missed"]
    window: str = Field(description="Local time window, HH:MM–HH:MM")
    window_start_at: datetime
    window_end_at: datetime
    patroller: str
    point: PointOut
    distance_m: float | None = Field(description="Metres from the position given with the request")
    checkin: CheckInOut | None
    ticket_ids: list[int]


class TaskPage(_Strict):
    items: list[TaskOut]
    day: str
    timezone: str


class CaseIn(_Strict):
    category: Literal["road_occupation", "fire_lane_blockage", "crowding", "other"]
    description: str = Field(min_length=1, max_length=2000)
    lon: float | None = Field(
        default=None, ge=-180, le=180, description="Where; the point's location by default"
    )
    lat: float | None = Field(default=None, ge=-90, le=90)
    photos: list[str] = Field(
        default_factory=list, max_length=MAX_PHOTOS, description="JPEG/PNG photos, base64"
    )


class CaseOut(_Strict):
    ticket_id: int
    task_id: int | None
    state: str
    grid_code: str | None


class VideoPatrolOut(_Strict):
    id: int
    started_at: datetime
    last_seen_at: datetime
    ended_at: datetime | None
    cameras: int
    seconds: float
    ticket_ids: list[int]


class HeartbeatIn(_Strict):
    camera_id: int = Field(ge=1, le=2**31 - 1)
    seconds: float = Field(ge=0, le=3600, description="Seconds the camera was shown since the last heartbeat")


class HeartbeatOut(_Strict):
    camera_id: int
    seconds: float = Field(description="The camera's total in this tour today")


class EndIn(_Strict):
    ticket_ids: list[int] = Field(
        default_factory=list, max_length=200, description="Cases raised during the tour"
    )


class CallbackIn(_Strict):
    result: Literal["satisfied", "basically_satisfied", "dissatisfied"] = Field(
        description="满意 / 基本满意 / 不满意"
    )
    note: str = Field(default="", max_length=2000)
    reopen: bool = Field(default=False, description="Dissatisfied only: reopen the ticket through the desk")


class CallbackOut(_Strict):
    id: int
    ticket_id: int
    result: str
    note: str
    channel: str
    reopened: bool
    at: datetime
    by: str | None


class ComponentOut(_Strict):
    name: str
    label: str
    weight: float
    numerator: float | None
    denominator: float | None
    share: float | None
    points: float | None
    rows: dict[str, list[int]]


class ScoreOut(_Strict):
    kind: str
    subject_id: int
    code: str
    name: str
    rank: int
    total: float | None
    components: list[ComponentOut]


class ScorePage(_Strict):
    level: str
    starts_at: datetime
    ends_at: datetime
    items: list[ScoreOut]
    formula: str


class DrillDownOut(_Strict):
    score: ScoreOut
    component: ComponentOut
    items: list[dict[str, Any]] = Field(description="The rows behind the component, one dict per row")


class ReportIn(_Strict):
    period: Literal["weekly", "monthly", "custom"] = "custom"
    first_day: date | None = Field(
        default=None, description="Local first day (weekly/monthly: any day of it)"
    )
    last_day: date | None = Field(default=None, description="custom: local last day, inclusive")


class ReportOut(_Strict):
    id: int
    period: str
    title: str
    starts_at: datetime
    ends_at: datetime
    generated_at: datetime
    scheduled: bool
    summary: dict[str, Any]
    xlsx_url: str
    html_url: str
