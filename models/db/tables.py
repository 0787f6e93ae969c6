"""The domain tables: grid tree, cameras, zones, users and their scope, tickets, access log.

Behaviour lives next to these tables in its own module (``access.py`` decides visibility,
``gridimport.py`` builds the tree, ``tickets.py`` moves tickets); this module only says what is stored.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every database (SQLite drops the zone; this puts it back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class GridKind(enum.StrEnum):
    district = "district"
    street = "street"
    community = "community"
    grid = "grid"


#: depth of each kind in the tree: a child is always exactly one level below its parent
GRID_KIND_LEVEL: dict[GridKind, int] = {
    GridKind.district: 0,
    GridKind.street: 1,
    GridKind.community: 2,
    GridKind.grid: 3,
}


class Role(enum.StrEnum):
    admin = "admin"
    operator = "operator"
    manager = "manager"
    grid_leader = "grid_leader"
    patroller = "patroller"
    #: a functional department's handler or head (职能部门): sees the tickets it has a part in
    department = "department"


class ZoneKind(enum.StrEnum):
    road = "road"
    fire_lane = "fire_lane"
    crowd_area = "crowd_area"
    mask = "mask"


class TicketState(enum.StrEnum):
    open = "open"
    dispatched = "dispatched"
    accepted = "accepted"
    resolved = "resolved"
    verified = "verified"
    closed = "closed"
    rejected = "rejected"
    reopened = "reopened"


class TicketCategory(enum.StrEnum):
    road_occupation = "road_occupation"
    fire_lane_blockage = "fire_lane_blockage"
    crowding = "crowding"
    other = "other"


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


def _enum_col(enum_cls: type[enum.StrEnum], length: int = 24) -> String:
    # Enums are stored as plain strings (validated in Python) so that adding a value needs no migration.
    return String(length)


class GridNode(Base):
    __tablename__ = "grid_nodes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(_enum_col(GridKind))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("grid_nodes.id", ondelete="RESTRICT"), index=True)
    #: materialised path of ids, "/1/7/42/": a subtree is every node whose path starts with this one's
    path: Mapped[str] = mapped_column(String(400), index=True)
    #: GeoJSON geometry (Polygon or MultiPolygon, lon/lat)
    geometry: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    parent: Mapped[GridNode | None] = relationship(remote_side=[id])


class Camera(Base):
    __tablename__ = "cameras"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    #: the stream URL, credentials included: a secret, never returned by the API or logged; stored
    #: encrypted (``gpenc:v1:...``, models.grid.credentials) like ``onvif_url`` and ``onvif_password``
    url: Mapped[str] = mapped_column(Text)
    #: the sub-stream URL (lower resolution, for analysis and wall tiles), a secret like ``url``
    sub_url: Mapped[str | None] = mapped_column(Text)
    #: which stream the worker analyses: 'sub', 'main', or NULL (auto: the sub-stream when there is one)
    analysis_stream: Mapped[str | None] = mapped_column(String(8))
    #: the stream URL's host, kept in clear for the API (which holds no credentials key)
    stream_host: Mapped[str | None] = mapped_column(String(255))
    onvif_url: Mapped[str | None] = mapped_column(Text)
    onvif_username: Mapped[str | None] = mapped_column(String(200))
    onvif_password: Mapped[str | None] = mapped_column(Text)
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    grid_id: Mapped[int | None] = mapped_column(ForeignKey("grid_nodes.id", ondelete="SET NULL"), index=True)
    #: true when an operator set the grid by hand: re-imports of the grid tree leave it alone
    grid_override: Mapped[bool] = mapped_column(Boolean, default=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(24), default="unknown")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    grid: Mapped[GridNode | None] = relationship()


class Zone(Base):
    """One detection zone of a camera, as of the camera's current zones version."""

    __tablename__ = "zones"
    __table_args__ = (UniqueConstraint("camera_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    camera_id: Mapped[int] = mapped_column(ForeignKey("cameras.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(_enum_col(ZoneKind))
    #: [[x, y], ...] normalised to 0..1 of the image (x right, y down)
    polygon_norm: Mapped[list[Any]] = mapped_column(JSON)
    #: rule parameters (dwell_s, classes, thresholds, schedule...), validated before storing
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    version: Mapped[int] = mapped_column(Integer, default=1)


class ZoneRevision(Base):
    """Every saved zones document of a camera, with who saved it and when."""

    __tablename__ = "zone_revisions"
    __table_args__ = (UniqueConstraint("camera_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    camera_id: Mapped[int] = mapped_column(ForeignKey("cameras.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class GbDevice(Base):
    """A GB/T 28181 device (camera, NVR, lower platform) that registers to GridPatrol over SIP."""

    __tablename__ = "gb_devices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: the 20-digit device ID (设备编码), the SIP user and Digest username
    device_id: Mapped[str] = mapped_column(String(20), unique=True)
    domain: Mapped[str] = mapped_column(String(64), default="")
    #: udp | tcp: how it registered, and how the platform reaches it
    transport: Mapped[str] = mapped_column(String(8), default="udp")
    host: Mapped[str | None] = mapped_column(String(255))
    port: Mapped[int | None] = mapped_column(Integer)
    user_agent: Mapped[str] = mapped_column(String(200), default="")
    #: online | offline | unregistered
    status: Mapped[str] = mapped_column(String(16), default="offline", index=True)
    registered_at: Mapped[datetime | None] = mapped_column()
    expires_at: Mapped[datetime | None] = mapped_column()
    last_keepalive_at: Mapped[datetime | None] = mapped_column()
    catalog_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class GbChannel(Base):
    """A channel of a GB/T 28181 device's catalog; each video channel is a camera of the grid tree."""

    __tablename__ = "gb_channels"
    __table_args__ = (UniqueConstraint("device_pk", "channel_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_pk: Mapped[int] = mapped_column(ForeignKey("gb_devices.id", ondelete="CASCADE"), index=True)
    channel_id: Mapped[str] = mapped_column(String(20))
    camera_id: Mapped[int | None] = mapped_column(ForeignKey("cameras.id", ondelete="SET NULL"), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    civil_code: Mapped[str] = mapped_column(String(32), default="")
    manufacturer: Mapped[str] = mapped_column(String(200), default="")
    model: Mapped[str] = mapped_column(String(200), default="")
    address: Mapped[str] = mapped_column(String(255), default="")
    #: ON | OFF as the device reports it
    status: Mapped[str] = mapped_column(String(16), default="")
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class User(Base):
    __tablename__ = "users"
    #: ``Admin1`` and ``admin1`` are one name (migration 0003)
    __table_args__ = (Index("uq_users_username_lower", text("lower(username)"), unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(200))
    #: MD5(username:realm:password) for RTSP Digest, set with the password (or at the next login);
    #: a password equivalent for the RTSP realm only, never returned (migration 0005)
    rtsp_ha1: Mapped[str | None] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(_enum_col(Role))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    #: bumped to cut every token issued before (password change, disable)
    token_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: made by ``gridpatrol demo`` with a published password: no process starts on a database holding
    #: an enabled one outside GRIDPATROL_ENVIRONMENT=demo (migration 0012)
    demo: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    assignments: Mapped[list[Assignment]] = relationship(
        back_populates="user", cascade="all, delete-orphan", lazy="selectin"
    )


class Assignment(Base):
    """A user's responsibility for a grid node (a manager's scope is the node's whole subtree)."""

    __tablename__ = "assignments"
    __table_args__ = (UniqueConstraint("user_id", "grid_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    grid_id: Mapped[int] = mapped_column(ForeignKey("grid_nodes.id", ondelete="CASCADE"), index=True)

    user: Mapped[User] = relationship(back_populates="assignments")
    grid: Mapped[GridNode] = relationship(lazy="joined")


class CameraGrant(Base):
    """A camera lent to a user for a time window [starts_at, ends_at)."""

    __tablename__ = "camera_grants"
    __table_args__ = (Index("ix_camera_grants_grantee_window", "grantee_id", "ends_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    camera_id: Mapped[int] = mapped_column(ForeignKey("cameras.id", ondelete="CASCADE"), index=True)
    grantee_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    granted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    starts_at: Mapped[datetime] = mapped_column(default=utcnow)
    ends_at: Mapped[datetime] = mapped_column()
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    """A long-lived token for machines and RTSP clients, stored hashed, revocable."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    #: MD5(username:realm:token) for RTSP Digest with a token of scope ``rtsp`` (migration 0005)
    rtsp_ha1: Mapped[str | None] = mapped_column(String(64))
    scopes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column()


class Ticket(Base):
    __tablename__ = "tickets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    category: Mapped[str] = mapped_column(_enum_col(TicketCategory, 32))
    #: the city-management case code of the category (e.g. 街面秩序/占道经营)
    case_code: Mapped[str] = mapped_column(String(120), default="")
    #: camera | patrol | hotline_12345 | police_110 | api
    source: Mapped[str] = mapped_column(String(32), default="camera")
    camera_id: Mapped[int | None] = mapped_column(ForeignKey("cameras.id", ondelete="SET NULL"), index=True)
    zone_name: Mapped[str | None] = mapped_column(String(120))
    rule: Mapped[str | None] = mapped_column(String(32))
    #: "camera:zone:rule" while the ticket is live (open .. resolved), NULL once verified/closed: at most one
    #: live ticket per camera zone and rule, enforced by the database so concurrent ticketers cannot fork one
    active_key: Mapped[str | None] = mapped_column(String(300), unique=True)
    #: the detection condition is present now (last rule event was started/updated, not ended)
    condition_active: Mapped[bool] = mapped_column(Boolean, default=False)
    grid_id: Mapped[int | None] = mapped_column(ForeignKey("grid_nodes.id", ondelete="SET NULL"), index=True)
    state: Mapped[str] = mapped_column(_enum_col(TicketState), default=TicketState.open, index=True)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    reporter_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    description: Mapped[str] = mapped_column(Text, default="")
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    opened_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    accept_by: Mapped[datetime | None] = mapped_column()
    resolve_by: Mapped[datetime | None] = mapped_column()
    accepted_at: Mapped[datetime | None] = mapped_column()
    resolved_at: Mapped[datetime | None] = mapped_column()
    closed_at: Mapped[datetime | None] = mapped_column()
    verified_at: Mapped[datetime | None] = mapped_column()
    condition_cleared_at: Mapped[datetime | None] = mapped_column()
    last_seen_at: Mapped[datetime | None] = mapped_column()
    occurrence_count: Mapped[int] = mapped_column(Integer, default=0)
    #: occurrences that kept their snapshot (bounded per ticket)
    snapshot_count: Mapped[int] = mapped_column(Integer, default=0)
    #: evidence key of the confirming snapshot (or the first reported photo)
    evidence_key: Mapped[str | None] = mapped_column(Text)
    #: evidence keys of the photos a reporter attached
    photos: Mapped[list[Any]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    grid: Mapped[GridNode | None] = relationship(lazy="joined")


class TicketEpisode(Base):
    """A detection episode ("camera:zone:rule:start") and the ticket it belongs to; unique, so a
    redelivered or concurrently handled event always lands on the same ticket."""

    __tablename__ = "ticket_episodes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    episode_key: Mapped[str] = mapped_column(String(300), unique=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)


class TicketTransition(Base):
    """The audit trail of a ticket: every state change with who, when, a note and optional photos."""

    __tablename__ = "ticket_transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(24))
    to_state: Mapped[str] = mapped_column(String(24))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    note: Mapped[str] = mapped_column(Text, default="")
    photos: Mapped[list[Any]] = mapped_column(JSON, default=list)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class TicketOccurrence(Base):
    """One rule event attached to a ticket; the unique event id makes at-least-once delivery idempotent."""

    __tablename__ = "ticket_occurrences"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[str] = mapped_column(String(80), unique=True)
    #: started | updated | ended
    kind: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    evidence_key: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: the event's video clip (models.tickets.clips): pending | ready | unavailable | removed; None: none asked
    clip_state: Mapped[str | None] = mapped_column(String(12), index=True)
    clip_key: Mapped[str | None] = mapped_column(Text)
    #: a pending clip not linked by then is unavailable (its worker died before writing it)
    clip_due_at: Mapped[datetime | None] = mapped_column()


class WebhookDelivery(Base):
    """The webhook outbox: written in the ticket's own transaction, delivered by a separate loop with
    retries; ``dead`` marks a dead letter that exhausted its attempts."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_due", "delivered_at", "dead", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id", ondelete="SET NULL"))
    event: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column()
    dead: Mapped[bool] = mapped_column(Boolean, default=False)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AccessLog(Base):
    """Who looked at (or tried to look at, or changed) what, when, from where, through which path."""

    __tablename__ = "access_log"
    __table_args__ = (Index("ix_access_log_user_at", "user_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    username: Mapped[str] = mapped_column(String(64), default="")
    #: view | deny | change | login | login_failed
    action: Mapped[str] = mapped_column(String(24))
    #: api | snapshot | wall | evidence | gateway | cli
    channel: Mapped[str] = mapped_column(String(24))
    object_type: Mapped[str] = mapped_column(String(24), default="")
    object_id: Mapped[str] = mapped_column(String(64), default="")
    remote_addr: Mapped[str] = mapped_column(String(64), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class RefreshToken(Base):
    """One refresh token of a login session, stored hashed. Rotating: each use spends it and issues the
    next of the same ``family``; presenting a spent one again (a stolen copy) revokes the whole family."""

    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    family: Mapped[str] = mapped_column(String(64), index=True)
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    #: the user's token version at issue: a password change or a disable bumps it and kills the token
    token_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()


# --- patrol and evaluation (migration 0006) ---------------------------------------------------------


class PatrolPoint(Base):
    """A place a grid's patrollers must visit (巡查点): where, how close, what to check, how often, when."""

    __tablename__ = "patrol_points"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    grid_id: Mapped[int] = mapped_column(ForeignKey("grid_nodes.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    lon: Mapped[float] = mapped_column(Float)
    lat: Mapped[float] = mapped_column(Float)
    radius_m: Mapped[float] = mapped_column(Float, default=50.0)
    checklist: Mapped[str] = mapped_column(Text, default="")
    #: daily | weekly (on ``weekdays``, 0 = Monday)
    frequency: Mapped[str] = mapped_column(String(16), default="daily")
    weekdays: Mapped[list[Any]] = mapped_column(JSON, default=list)
    #: local time of day "HH:MM" (the installation's time zone) during which a check-in counts
    window_start: Mapped[str] = mapped_column(String(5), default="08:00")
    window_end: Mapped[str] = mapped_column(String(5), default="18:00")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    grid: Mapped[GridNode] = relationship(lazy="joined")


class PatrolTask(Base):
    """One patroller's visit to one point on one local day (巡查任务); unique, so schedules are idempotent."""

    __tablename__ = "patrol_tasks"
    __table_args__ = (
        UniqueConstraint("point_id", "patroller_id", "day"),
        Index("ix_patrol_tasks_patroller_day", "patroller_id", "day"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    point_id: Mapped[int] = mapped_column(ForeignKey("patrol_points.id", ondelete="CASCADE"), index=True)
    grid_id: Mapped[int] = mapped_column(ForeignKey("grid_nodes.id", ondelete="CASCADE"), index=True)
    patroller_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    #: the local day, "YYYY-MM-DD"
    day: Mapped[str] = mapped_column(String(10))
    window_start_at: Mapped[datetime] = mapped_column()
    window_end_at: Mapped[datetime] = mapped_column(index=True)
    #: pending | done | missed
    state: Mapped[str] = mapped_column(String(16), default="pending")
    done_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    point: Mapped[PatrolPoint] = relationship(lazy="joined")


class CheckIn(Base):
    """The accepted check-in (签到) of a task: position, the browser's accuracy, distance, photo. One per task."""

    __tablename__ = "patrol_checkins"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("patrol_tasks.id", ondelete="CASCADE"), unique=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    lon: Mapped[float] = mapped_column(Float)
    lat: Mapped[float] = mapped_column(Float)
    accuracy_m: Mapped[float | None] = mapped_column(Float)
    distance_m: Mapped[float] = mapped_column(Float)
    photo_key: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str] = mapped_column(Text, default="")


class PatrolCase(Base):
    """A case (ticket) raised from a patrol task or a video patrol: the link that makes it traceable."""

    __tablename__ = "patrol_cases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), unique=True)
    task_id: Mapped[int | None] = mapped_column(ForeignKey("patrol_tasks.id", ondelete="CASCADE"), index=True)
    video_patrol_id: Mapped[int | None] = mapped_column(ForeignKey("video_patrols.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class VideoPatrol(Base):
    """One video patrol tour (视频巡查) of a viewer's cameras on the wall."""

    __tablename__ = "video_patrols"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column()


class VideoPatrolView(Base):
    """Time spent on one camera during a tour; heartbeats add to ``seconds`` (a relative update)."""

    __tablename__ = "video_patrol_views"
    __table_args__ = (UniqueConstraint("patrol_id", "camera_id", "day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patrol_id: Mapped[int] = mapped_column(ForeignKey("video_patrols.id", ondelete="CASCADE"), index=True)
    camera_id: Mapped[int] = mapped_column(ForeignKey("cameras.id", ondelete="CASCADE"), index=True)
    #: the local day of the view, "YYYY-MM-DD" (coverage is counted per camera and day)
    day: Mapped[str] = mapped_column(String(10))
    first_at: Mapped[datetime] = mapped_column(default=utcnow)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)


class Callback(Base):
    """A satisfaction callback (回访) on a closed ticket; one per closing, so two at once cannot both count."""

    __tablename__ = "ticket_callbacks"
    __table_args__ = (UniqueConstraint("ticket_id", "closed_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    #: the closing this callback rates (a reopened and closed-again ticket gets a new callback)
    closed_at: Mapped[datetime] = mapped_column()
    #: satisfied | basically_satisfied | dissatisfied
    result: Mapped[str] = mapped_column(String(24))
    note: Mapped[str] = mapped_column(Text, default="")
    #: centre | hotline
    channel: Mapped[str] = mapped_column(String(16), default="centre")
    by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    reopened: Mapped[bool] = mapped_column(Boolean, default=False)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class EvaluationReport(Base):
    """A generated ranking report (考核排名通报), its spreadsheet and printable page kept for download."""

    __tablename__ = "evaluation_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: weekly | monthly | custom
    period: Mapped[str] = mapped_column(String(16))
    starts_at: Mapped[datetime] = mapped_column()
    ends_at: Mapped[datetime] = mapped_column()
    #: "weekly:2026-11-23" for a scheduled report (unique: one per period whoever generates it), else NULL
    schedule_key: Mapped[str | None] = mapped_column(String(40), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    xlsx: Mapped[bytes] = mapped_column(LargeBinary)
    html: Mapped[str] = mapped_column(Text)
    generated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    generated_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- linkage: departments, ticket parts, triage, police clues (migration 0007) ------------------------


class Department(Base):
    """A functional department (职能部门) beside the grid tree: law enforcement, fire and rescue, police..."""

    __tablename__ = "departments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    #: law_enforcement | market | fire_rescue | police | transport | environment | other
    kind: Mapped[str] = mapped_column(String(32), index=True)
    #: time a part of this department has to be accepted / resolved
    accept_within_s: Mapped[int] = mapped_column(Integer, default=1800)
    resolve_within_s: Mapped[int] = mapped_column(Integer, default=4 * 3600)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DepartmentArea(Base):
    """One grid node of a department's jurisdiction (its whole subtree is covered)."""

    __tablename__ = "department_areas"
    __table_args__ = (UniqueConstraint("department_id", "grid_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id", ondelete="CASCADE"), index=True)
    grid_id: Mapped[int] = mapped_column(ForeignKey("grid_nodes.id", ondelete="CASCADE"), index=True)

    grid: Mapped[GridNode] = relationship(lazy="joined")


class DepartmentMember(Base):
    """A user of role ``department`` and the one department they work for (head or handler)."""

    __tablename__ = "department_members"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id", ondelete="CASCADE"), index=True)
    is_head: Mapped[bool] = mapped_column(Boolean, default=False)


class TicketPart(Base):
    """A department's co-handling part of a ticket (协办): its own state, deadlines, notes and photos.
    One per ticket and department; a rejected part is dispatched again, not duplicated."""

    __tablename__ = "ticket_parts"
    __table_args__ = (UniqueConstraint("ticket_id", "department_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id", ondelete="CASCADE"), index=True)
    #: dispatched | accepted | resolved | rejected
    state: Mapped[str] = mapped_column(String(16), default="dispatched", index=True)
    #: centre | rule | request
    origin: Mapped[str] = mapped_column(String(16), default="centre")
    reason: Mapped[str] = mapped_column(Text, default="")
    handler_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    note: Mapped[str] = mapped_column(Text, default="")
    photos: Mapped[list[Any]] = mapped_column(JSON, default=list)
    dispatched_at: Mapped[datetime] = mapped_column(default=utcnow)
    accept_by: Mapped[datetime] = mapped_column()
    resolve_by: Mapped[datetime] = mapped_column()
    accepted_at: Mapped[datetime | None] = mapped_column()
    resolved_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    department: Mapped[Department] = relationship(lazy="joined")


class LinkageRequest(Base):
    """A grid leader's request for linkage (请求联动) on their ticket, answered by the centre or a rule."""

    __tablename__ = "linkage_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    #: the department kind asked for (law_enforcement for "needs enforcement")
    kind: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text, default="")
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    requested_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    #: pending | answered | declined
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    part_id: Mapped[int | None] = mapped_column(ForeignKey("ticket_parts.id", ondelete="SET NULL"))
    answered_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    answered_at: Mapped[datetime | None] = mapped_column()
    answer_note: Mapped[str] = mapped_column(Text, default="")


class TicketMerge(Base):
    """A duplicate case merged into a kept ticket (same place, same problem): both sources stay on record."""

    __tablename__ = "ticket_merges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    merged_ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), unique=True)
    source: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(Text, default="")
    by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class PoliceClue(Base):
    """A public-security clue (治安线索): seen only by its reporter and the police station of the place."""

    __tablename__ = "police_clues"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reporter_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    grid_id: Mapped[int | None] = mapped_column(ForeignKey("grid_nodes.id", ondelete="SET NULL"))
    #: the police station covering the place (NULL: no station covers it; the reporter alone sees it)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id", ondelete="SET NULL"), index=True)
    lon: Mapped[float] = mapped_column(Float)
    lat: Mapped[float] = mapped_column(Float)
    description: Mapped[str] = mapped_column(Text)
    photos: Mapped[list[Any]] = mapped_column(JSON, default=list)
    #: new | received | closed
    state: Mapped[str] = mapped_column(String(16), default="new")
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class NotifyPreference(Base):
    """What a user wants to be told, and when not (quiet hours in their local time): models/notify."""

    __tablename__ = "notify_preferences"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    #: the message kinds received (models/notify/kinds.py)
    kinds: Mapped[list[Any]] = mapped_column(JSON, default=list)
    #: "HH:MM" local time; both NULL: no quiet hours
    quiet_start: Mapped[str | None] = mapped_column(String(5))
    quiet_end: Mapped[str | None] = mapped_column(String(5))
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    #: urgent kinds (escalated, overdue) are sent during quiet hours too
    urgent_in_quiet: Mapped[bool] = mapped_column(Boolean, default=True)
    #: bumped by every change: a PUT naming an older version is a conflict
    version: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class NotifyChannel(Base):
    """One way to reach a user: a WeCom or DingTalk group robot, an e-mail address, a phone for SMS.
    ``secret`` (robot key, DingTalk token and signing secret) is encrypted at rest and never returned."""

    __tablename__ = "notify_channels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: wecom | dingtalk | email | sms
    kind: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(100), default="")
    #: e-mail address or phone number (empty for robots)
    address: Mapped[str] = mapped_column(String(320), default="")
    secret: Mapped[str | None] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class NotifyDelivery(Base):
    """The notification outbox: one row per message and channel, written in the transaction of the
    change it tells about and delivered by the ticketer with retries; ``state`` is pending | held
    (quiet hours) | sent | failed (attempts exhausted or refused for good)."""

    __tablename__ = "notify_deliveries"
    __table_args__ = (
        Index("ix_notify_due", "state", "next_attempt_at"),
        UniqueConstraint("channel_id", "dedupe_key", name="uq_notify_dedupe"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("notify_channels.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id", ondelete="SET NULL"))
    #: a message sent at most once per channel (the daily summary: "summary:<local date>")
    dedupe_key: Mapped[str | None] = mapped_column(String(120))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class EvidenceBlob(Base):
    """Evidence kept in the database (``GRIDPATROL_EVIDENCE_STORE=database``): annotated JPEGs, photos and
    event clips, for deployments whose workers and API share no filesystem. ``key`` is the store's key."""

    __tablename__ = "evidence_blobs"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class CameraOutage(Base):
    """A camera seen offline (its worker reports it not streaming, or no worker reports it): one row per
    outage that lasted past ``GRIDPATROL_CAMERA_OFFLINE_NOTICE_S`` (shorter ones are deleted when they end).
    ``ongoing_camera_id`` is the camera while the outage goes on and NULL once it ended: its uniqueness
    keeps one ongoing outage per camera however many ticketers watch (models/grid/outages.py)."""

    __tablename__ = "camera_outages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    camera_id: Mapped[int] = mapped_column(ForeignKey("cameras.id", ondelete="CASCADE"), index=True)
    ongoing_camera_id: Mapped[int | None] = mapped_column(Integer, unique=True)
    #: when a ticketer first saw the camera offline
    started_at: Mapped[datetime] = mapped_column()
    #: the worker's ingest state then (backoff, failed, connecting...), ``unknown`` when no worker reported it
    state: Mapped[str] = mapped_column(String(24))
    reason: Mapped[str] = mapped_column(String(200), default="")
    #: when the "camera offline" notice was raised (NULL while still under the threshold)
    offline_notice_at: Mapped[datetime | None] = mapped_column()
    ended_at: Mapped[datetime | None] = mapped_column()
    #: when the "camera back online" notice was raised (NULL: ended by disabling the camera)
    online_notice_at: Mapped[datetime | None] = mapped_column()
