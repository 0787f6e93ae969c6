"""Response and request bodies. Camera URLs and ONVIF passwords have no field here: they cannot leak."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TokenOut(Strict):
    access_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires")


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
    updated_at: datetime


class CameraPage(Strict):
    items: list[CameraOut]
    total: int
    limit: int
    offset: int


class ErrorOut(Strict):
    error: str = Field(description="Machine-readable error class")
    detail: Any = Field(description="A human-readable reason (or a list of field errors for 422)")


class HealthOut(Strict):
    status: str
    database: str
