"""Request and response bodies of the linkage routes: departments, triage, ticket parts, police clues."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_PHOTOS = 4
DepartmentKind = Literal[
    "law_enforcement", "market", "fire_rescue", "police", "transport", "environment", "other"
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DepartmentIn(_Strict):
    code: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$", description="Unique code")
    name: str = Field(min_length=1, max_length=200, description="Name shown to people")
    kind: DepartmentKind = Field(description="What the department does")
    grids: list[str] = Field(
        default_factory=list, max_length=1000, description="Codes of the grid nodes it covers"
    )
    accept_within_s: int = Field(default=1800, gt=0, le=30 * 86400, description="Time to accept a part")
    resolve_within_s: int = Field(default=4 * 3600, gt=0, le=90 * 86400, description="Time to resolve a part")


class JurisdictionIn(_Strict):
    grids: list[str] = Field(
        max_length=1000, description="Codes of the grid nodes covered (each with its subtree)"
    )


class MemberIn(_Strict):
    username: str = Field(min_length=1, max_length=64, description="An existing user of role department")
    is_head: bool = Field(default=False, description="The department head")


class DepartmentOut(BaseModel):
    id: int
    code: str
    name: str
    kind: str
    kind_zh: str
    grids: list[str]
    members: list[str]
    accept_within_s: int
    resolve_within_s: int


class PartOut(BaseModel):
    id: int
    ticket_id: int
    department: str
    department_name: str
    state: str
    origin: str
    reason: str
    note: str
    photos: int
    dispatched_at: datetime
    accept_by: datetime
    resolve_by: datetime
    accepted_at: datetime | None
    resolved_at: datetime | None
    overdue: bool
    # the ticket, for the department's work list
    category: str
    ticket_state: str
    description: str
    camera_id: int | None
    grid_name: str | None


class LinkageOut(BaseModel):
    id: int
    ticket_id: int
    kind: str
    reason: str
    state: str
    requested_by: str | None
    requested_at: datetime
    answered_at: datetime | None
    part_id: int | None


class TicketLinkageOut(BaseModel):
    """A ticket's joint handling: its lead, parts and linkage requests (the timeline has each step)."""

    ticket_id: int
    lead: str | None
    lead_done: bool
    parts: list[PartOut]
    requests: list[LinkageOut]
    sources: list[str]


class PartIn(_Strict):
    department: str = Field(min_length=1, max_length=64, description="Code of the department brought in")
    note: str = Field(default="", max_length=2000)


class PartActionIn(_Strict):
    action: Literal["accept", "reject", "resolve"]
    note: str = Field(default="", max_length=2000)
    photos: list[str] = Field(
        default_factory=list, max_length=MAX_PHOTOS, description="JPEG/PNG photos, base64"
    )


class LinkageIn(_Strict):
    kind: DepartmentKind = Field(default="law_enforcement", description="The department kind asked for")
    reason: str = Field(default="", max_length=2000)


class AnswerIn(_Strict):
    department: str | None = Field(default=None, max_length=64, description="Department code; none declines")
    note: str = Field(default="", max_length=2000)


class TriageItemOut(BaseModel):
    id: int
    category: str
    source: str
    sources: list[str]
    description: str
    grid: str | None
    grid_name: str | None
    lon: float | None
    lat: float | None
    opened_at: datetime
    waiting_s: int
    duplicates: list[int]


class TriageOut(BaseModel):
    items: list[TriageItemOut]
    waiting: int
    longest_wait_s: int
    pending_requests: list[LinkageOut]


class TriageDispatchIn(_Strict):
    grid: str | None = Field(default=None, max_length=64, description="Code of the grid whose leader leads")
    departments: list[str] = Field(
        default_factory=list, max_length=10, description="Codes of departments brought in"
    )
    note: str = Field(default="", max_length=2000)


class MergeIn(_Strict):
    duplicate_id: int = Field(ge=1, le=2**31 - 1, description="The duplicate case merged into this ticket")


class ClueIn(_Strict):
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)
    description: str = Field(min_length=1, max_length=2000)
    photos: list[str] = Field(
        default_factory=list, max_length=MAX_PHOTOS, description="JPEG/PNG photos, base64"
    )


class ClueStateIn(_Strict):
    state: Literal["received", "closed"]
    note: str = Field(default="", max_length=2000)


class ClueOut(BaseModel):
    id: int
    state: str
    description: str
    lon: float
    lat: float
    station: str | None
    reporter: str | None
    note: str
    photos: int
    created_at: datetime
