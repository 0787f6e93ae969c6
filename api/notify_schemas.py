"""Request and answer bodies of the notification routes (api/routes/notifications.py)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

#: ids are 32-bit in the database (as api.deps.MAX_OBJECT_ID)
MAX_ID = 2**31 - 1


class ChannelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: int | None = Field(
        default=None, ge=1, le=MAX_ID, description="An existing channel of yours (omit to add one)"
    )
    kind: str = Field(max_length=16, description="wecom | dingtalk | email | sms")
    label: str = Field(default="", max_length=100, description="Your name for it (e.g. 网格群)")
    address: str = Field(
        default="", max_length=320, description="E-mail address (email) or phone number (sms)"
    )
    enabled: bool = True
    key: str | None = Field(
        default=None,
        max_length=500,
        description="wecom: the robot's key or its whole webhook address; omit to keep",
    )
    access_token: str | None = Field(
        default=None,
        max_length=500,
        description="dingtalk: the robot's access_token or its webhook address; omit to keep",
    )
    sign_secret: str | None = Field(
        default=None,
        max_length=200,
        description="dingtalk: the signing secret (SEC...) of 加签; omit to keep",
    )


class ChannelOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: int
    kind: str
    label: str
    address: str
    enabled: bool
    #: which secret fields are set, each as ****<last four>: the secrets themselves are never returned
    secrets: dict[str, str]


class KindOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str
    name: str
    urgent: bool


class DeliveryOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: int
    user_id: int
    username: str
    channel_id: int
    channel_kind: str
    kind: str
    ticket_id: int | None
    state: str = Field(description="pending | held (quiet hours) | sent | failed")
    attempts: int
    next_attempt_at: datetime
    delivered_at: datetime | None
    last_error: str
    created_at: datetime


class PreferencesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=0, le=MAX_ID, description="The version you read (a newer one on the server: 409)")
    kinds: list[str] = Field(max_length=20, description="Kinds to receive")
    quiet_start: str | None = Field(
        default=None, max_length=5, description="Quiet hours start, HH:MM local time"
    )
    quiet_end: str | None = Field(default=None, max_length=5, description="Quiet hours end, HH:MM local time")
    timezone: str = Field(
        default="Asia/Shanghai", max_length=64, description="IANA time zone of the quiet hours"
    )
    urgent_in_quiet: bool = Field(
        default=True, description="Send escalations and overdue tickets in quiet hours too"
    )
    channels: list[ChannelIn] = Field(default_factory=list, max_length=20)


class PreferencesOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int
    kinds: list[str]
    quiet_start: str | None
    quiet_end: str | None
    timezone: str
    urgent_in_quiet: bool
    channels: list[ChannelOut]
    available_kinds: list[KindOut]
    channel_kinds: dict[str, str]
    #: the caller's latest deliveries (newest first), to see what reached them and what failed
    recent: list[DeliveryOut]


class TestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel_id: int | None = Field(
        default=None, ge=1, le=MAX_ID, description="One channel of yours (omit: every enabled one)"
    )


class TestOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    queued: list[int] = Field(description="Delivery ids; the ticketer sends them within seconds")


class DeliveriesOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    counts: dict[str, int] = Field(description="Deliveries per state")
    items: list[DeliveryOut]
