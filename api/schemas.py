"""Response and request bodies. Camera URLs and ONVIF passwords have no field here: they cannot leak."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GridRef(Strict):
    id: int
    code: str
    name: str
    kind: str


class MeOut(Strict):
    id: int
    username: str
    display_name: str
    role: str
    grids: list[GridRef] = Field(description="Grid nodes the user answers for")


class GridNodeOut(Strict):
    id: int
    code: str
    name: str
    kind: str
    parent_code: str | None
    geometry: dict[str, Any] | None = None
    children: list[GridNodeOut] = Field(default_factory=list)


class CameraOut(Strict):
    id: int
    name: str
    grid_id: int | None
    grid_code: str | None
    grid_name: str | None
    lon: float | None
    lat: float | None
    enabled: bool
    status: str
    has_onvif: bool = Field(description="An ONVIF endpoint is configured (its address and password stay secret)")
    stream_host: str | None = Field(description="Host of the stream URL, without credentials, path or query")
    has_sub_stream: bool = Field(default=False, description="A sub-stream (子码流) URL is configured (it stays secret)")
    analysis_stream: Literal["auto", "sub", "main"] = Field(
        default="auto", description="Which stream the worker analyses: sub, main, or auto (the sub-stream when there is one)"
    )
    analysed_stream: Literal["sub", "main"] = Field(default="main", description="The stream analysed under that setting")
    offline_since: datetime | None = Field(
        default=None,
        description="When the ticketers first saw the camera offline, during an ongoing outage; null while it streams",
    )
    updated_at: datetime


class CameraPage(Strict):
    items: list[CameraOut]
    total: int
    limit: int
    offset: int


class FieldErrorOut(Strict):
    """One bad value of a request that failed validation."""

    loc: list[str | int] = Field(description="Where the value was: source (body, query, path...) then the path to it")
    field: str | None = Field(description="The field as ``detail`` names it (``zones[0].polygon``); null for bad JSON")
    msg: str = Field(description="What is wrong with it")
    type: str = Field(description="pydantic's error type, e.g. ``int_parsing``")


class ErrorOut(Strict):
    """Every error answer (4xx and 5xx) has this shape, whatever refused the request."""

    error: str = Field(description="Machine-readable error class: unauthorized, forbidden, not_found, conflict, invalid, ...")
    detail: str = Field(
        description="One human-readable sentence; for a bad field it starts with it: \"field 'since': ...\""
    )
    field: str | None = Field(description="The first bad field, or null when the error is not about one field")
    errors: list[FieldErrorOut] = Field(
        default_factory=list, description="Every bad value, on request-validation 422s only (absent otherwise)"
    )


class HealthOut(Strict):
    status: str
    database: str


class ReadyOut(Strict):
    status: str = Field(description="ready | not ready")
    process: str
    checks: dict[str, str] = Field(description="Each check: ok, or why not")


# --- security: sessions, API tokens, users, grants, audit (issue 6) ---------------------------------


class SessionTokensOut(Strict):
    access_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires")
    refresh_token: str = Field(description="Single use: POST it to /api/auth/refresh for the next pair")
    refresh_expires_in: int = Field(description="Seconds until the refresh token expires")


class RefreshIn(Strict):
    refresh_token: str = Field(min_length=1, max_length=200)


class PasswordChangeIn(Strict):
    current_password: str = Field(min_length=1, max_length=200)
    new_password: str = Field(min_length=1, max_length=200, description="At least 8 characters")


class ApiTokenIn(Strict):
    name: str = Field(min_length=1, max_length=120, description="What the token is for (e.g. 'nvr-1 RTSP')")
    scopes: list[str] = Field(
        min_length=1, max_length=3, description="api:read (GET), api:write (everything else), rtsp (gateway)"
    )
    expires_at: datetime | None = Field(default=None, description="None: until revoked")


class ApiTokenOut(Strict):
    id: int
    user_id: int
    name: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiTokenCreatedOut(ApiTokenOut):
    token: str = Field(description="The token itself: shown this once, only its hash is kept")


class UserOut(Strict):
    id: int
    username: str
    display_name: str
    role: str
    enabled: bool
    grid_codes: list[str]
    created_at: datetime


class UserIn(Strict):
    username: str = Field(min_length=2, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    role: str = Field(description="admin | operator | manager | grid_leader | patroller")
    password: str = Field(min_length=8, max_length=200)
    display_name: str = Field(default="", max_length=200)
    grid_codes: list[str] = Field(default_factory=list, max_length=100, description="Grid nodes they answer for")


class UserGridsIn(Strict):
    grid_codes: list[str] = Field(max_length=100)


class GrantIn(Strict):
    camera_id: int = Field(ge=1, le=2**31 - 1)
    grantee: str = Field(min_length=1, max_length=64, description="Username of the grid leader or patroller")
    starts_at: datetime | None = Field(default=None, description="Default: now")
    ends_at: datetime = Field(description="Exclusive end of the window; at most 30 days after the start")
    reason: str = Field(default="", max_length=1000)


class GrantOut(Strict):
    id: int
    camera_id: int
    camera_name: str
    grantee: str
    granted_by: str | None
    starts_at: datetime
    ends_at: datetime
    reason: str
    active: bool
    created_at: datetime


class AuditEntryOut(Strict):
    id: int
    at: datetime
    user_id: int | None
    username: str
    action: str
    channel: str
    object_type: str
    object_id: str
    remote_addr: str
    detail: dict[str, Any]


class AuditPage(Strict):
    items: list[AuditEntryOut]
    total: int
    limit: int
    offset: int


class CameraPatchIn(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    enabled: bool | None = None
    grid_code: str | None = Field(default=None, max_length=64, description="Pin the camera to this grid node")
    analysis_stream: Literal["auto", "sub", "main"] | None = Field(
        default=None,
        description="Which stream the worker analyses (分析码流): sub (子码流), main (主码流) or auto (the sub-stream "
        "when the camera has one); takes effect within seconds, without a restart. sub needs a sub-stream: 409 otherwise",
    )
