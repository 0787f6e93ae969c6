"""Versioned messages that cross the bus. Small by design: frames stay in the worker, evidence travels
as a key into the evidence store."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from models.grid.zonespec import RuleName

#: bus topics
RULE_EVENTS = "gridpatrol.rule_events"
CONFIG_CHANGES = "gridpatrol.config"
TICKET_NOTICES = "gridpatrol.tickets"
#: a user's access changed: long-lived channels (SSE, wall tiles, live view, RTSP) re-check at once
ACCESS_CHANGES = "gridpatrol.access"


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleEvent(_Msg):
    """A rule's state change on one camera zone: ``started`` when confirmed, ``updated`` at most every
    few seconds while it lasts, ``ended`` when the zone is clear again."""

    schema_: Literal["rule_event"] = Field(default="rule_event", alias="schema")
    v: Literal[1] = 1
    event_id: str = Field(min_length=1, max_length=80, description="Unique per event; redeliveries repeat it")
    type: Literal["started", "updated", "ended"]
    camera_id: int
    zone: str = Field(min_length=1, max_length=120)
    rule: RuleName
    episode_start: datetime = Field(description="When this episode's condition was first seen")
    at: datetime = Field(description="When this event happened (capture time of its frame)")
    count: int = Field(default=0, ge=0, description="Objects or people counted in the zone")
    score: float = Field(default=0.0, description="Rule-specific strength (coverage ratio, density...)")
    boxes: list[list[float]] = Field(default_factory=list, description="Normalised xyxy boxes that fired the rule")
    evidence_key: str | None = Field(default=None, description="Key of the annotated snapshot in the evidence store")
    clip_due: datetime | None = Field(
        default=None,
        description="A video clip of this event is being recorded; an EventClip should link it by then, else it is unavailable",
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @property
    def episode_key(self) -> str:
        return f"{self.camera_id}:{self.zone}:{self.rule}:{self.episode_start.timestamp():.3f}"

    @property
    def live_key(self) -> str:
        return f"{self.camera_id}:{self.zone}:{self.rule}"


class EventClip(_Msg):
    """The video clip announced by a ``started`` event's ``clip_due``: stored under ``clip_key``, or not
    made (``clip_key`` None, with the ``reason``). Travels on the rule-event topic, after its event."""

    schema_: Literal["event_clip"] = Field(default="event_clip", alias="schema")
    v: Literal[1] = 1
    type: Literal["clip"] = "clip"
    event_id: str = Field(min_length=1, max_length=80, description="The started event the clip belongs to")
    camera_id: int
    clip_key: str | None = Field(default=None, description="Key of the MP4 in the evidence store; None: no clip")
    started_at: datetime | None = Field(default=None, description="Capture time of the clip's first frame")
    duration_s: float = Field(default=0.0, ge=0, description="Length of the clip in seconds")
    reason: str | None = Field(default=None, max_length=200, description="Why there is no clip")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ConfigChange(_Msg):
    """Something the workers must re-read: a camera's zones or the camera itself."""

    schema_: Literal["config_change"] = Field(default="config_change", alias="schema")
    v: Literal[1] = 1
    kind: Literal["zones", "camera", "cameras"]
    camera_id: int | None = None
    version: int | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class TicketNotice(_Msg):
    """A ticket changed (opened, transitioned, escalated...): for the UI's live stream and webhooks."""

    schema_: Literal["ticket_notice"] = Field(default="ticket_notice", alias="schema")
    v: Literal[1] = 1
    ticket_id: int
    event: str = Field(description="opened | occurrence | cleared | <transition action> | escalated")
    state: str
    category: str
    grid_id: int | None
    grid_path: str | None
    camera_id: int | None
    at: datetime
    detail: dict[str, Any] = Field(default_factory=dict)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


#: what changed about a user's access
AccessChangeReason = Literal["assignments", "role", "enabled", "grant", "token", "password"]


class AccessChange(_Msg):
    """A user's assignments, role, enabled flag, grants or tokens changed: every open channel of theirs
    re-resolves their scope now instead of at its next periodic check. Carries no scope itself."""

    schema_: Literal["access_change"] = Field(default="access_change", alias="schema")
    v: Literal[1] = 1
    user_id: int = Field(ge=1, description="The user whose access changed")
    reason: AccessChangeReason
    at: datetime

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


Message = Annotated[RuleEvent | EventClip | ConfigChange | TicketNotice | AccessChange, Field(discriminator="schema_")]
_adapter: TypeAdapter[RuleEvent | EventClip | ConfigChange | TicketNotice | AccessChange] = TypeAdapter(Message)


def encode(message: RuleEvent | EventClip | ConfigChange | TicketNotice | AccessChange) -> bytes:
    return message.model_dump_json(by_alias=True).encode()


def decode(data: bytes | str) -> RuleEvent | EventClip | ConfigChange | TicketNotice | AccessChange:
    return _adapter.validate_json(data)
