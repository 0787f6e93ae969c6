"""Notifications: each user's own channels, subscriptions and quiet hours (``/api/me/notifications``),
a test send, and the administrators' view of deliveries and failures (``/api/notifications``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlalchemy import func, select

from api.deps import AdminUser, CurrentUser, ObjectId, SessionDep, remote_addr, x_access
from api.notify_schemas import (
    ChannelOut,
    DeliveriesOut,
    DeliveryOut,
    KindOut,
    PreferencesIn,
    PreferencesOut,
    TestIn,
    TestOut,
)
from models.db.tables import NotifyChannel, NotifyDelivery, User, utcnow
from models.errors import InvalidInput, NotFound
from models.grid.credentials import CredentialKeyring, CredentialsError
from models.identity.audit import record_change
from models.notify.kinds import CHANNEL_NAMES, DELIVERY_STATES, KIND_NAMES, KINDS, URGENT_KINDS
from models.notify.outbox import queue_test, retry
from models.notify.preferences import (
    ChannelSpec,
    channels_of,
    open_secret,
    preference_of,
    save_preferences,
    secret_hint,
)

router = APIRouter(prefix="/api", tags=["notifications"])


def _keyring_source(request: Request) -> Callable[[], CredentialKeyring] | None:
    """The credentials keyring create_app was given (camera import uses the same one), or None."""
    source: Callable[[], CredentialKeyring] | None = getattr(request.app.state, "camera_keyring", None)
    return source


def _channel_out(channel: NotifyChannel, keyring: Callable[[], CredentialKeyring] | None) -> ChannelOut:
    secrets: dict[str, str] = {}
    if channel.secret:
        try:
            secrets = {
                k: secret_hint(v)
                for k, v in open_secret(keyring() if keyring else None, channel.secret).items()
            }
        except CredentialsError:
            secrets = {"secret": "****"}  # set, but not readable here
    return ChannelOut(
        id=channel.id,
        kind=channel.kind,
        label=channel.label,
        address=channel.address,
        enabled=channel.enabled,
        secrets=secrets,
    )


def _delivery_out(row: NotifyDelivery, username: str, channel_kind: str) -> DeliveryOut:
    return DeliveryOut(
        id=row.id, user_id=row.user_id, username=username, channel_id=row.channel_id, channel_kind=channel_kind,
        kind=row.kind, ticket_id=row.ticket_id, state=row.state, attempts=row.attempts,
        next_attempt_at=row.next_attempt_at, delivered_at=row.delivered_at, last_error=row.last_error,
        created_at=row.created_at,
    )  # fmt: skip


def _deliveries(session: SessionDep, *where: object, limit: int) -> list[DeliveryOut]:
    rows = session.execute(
        select(NotifyDelivery, User.username, NotifyChannel.kind)
        .join(User, User.id == NotifyDelivery.user_id)
        .join(NotifyChannel, NotifyChannel.id == NotifyDelivery.channel_id)
        .where(*where)  # type: ignore[arg-type]
        .order_by(NotifyDelivery.id.desc())
        .limit(limit)
    ).all()
    return [_delivery_out(r, name, kind) for r, name, kind in rows]


def _preferences_out(session: SessionDep, user: User, request: Request) -> PreferencesOut:
    pref = preference_of(session, user.id)
    keyring = _keyring_source(request)
    return PreferencesOut(
        version=pref.version,
        kinds=list(pref.kinds or []),
        quiet_start=pref.quiet_start,
        quiet_end=pref.quiet_end,
        timezone=pref.timezone,
        urgent_in_quiet=pref.urgent_in_quiet,
        channels=[_channel_out(c, keyring) for c in channels_of(session, user.id)],
        available_kinds=[KindOut(kind=k, name=KIND_NAMES[k], urgent=k in URGENT_KINDS) for k in KINDS],
        channel_kinds=dict(CHANNEL_NAMES),
        recent=_deliveries(session, NotifyDelivery.user_id == user.id, limit=20),
    )


@router.get("/me/notifications", response_model=PreferencesOut, openapi_extra=x_access("authenticated"))
def my_notifications(session: SessionDep, user: CurrentUser, request: Request) -> PreferencesOut:
    """Your channels (secrets masked), what you receive, your quiet hours and your latest deliveries."""
    return _preferences_out(session, user, request)


@router.put("/me/notifications", response_model=PreferencesOut, openapi_extra=x_access("authenticated"))
def save_my_notifications(
    body: PreferencesIn, session: SessionDep, user: CurrentUser, request: Request
) -> PreferencesOut:
    """Replace your notification settings (channels left out are removed; a secret left out is kept).
    422 names the bad field (``channels[1].address``); 409 when they changed since you read ``version``."""
    specs = [ChannelSpec(**c.model_dump()) for c in body.channels]
    save_preferences(
        session, user, version=body.version, kinds=body.kinds, quiet_start=body.quiet_start, quiet_end=body.quiet_end,
        timezone=body.timezone, urgent_in_quiet=body.urgent_in_quiet, channels=specs, keyring=_keyring_source(request),
    )  # fmt: skip
    record_change(
        session, user=user, channel="api", object_type="notifications", object_id=str(user.id), remote_addr=remote_addr(request),
        detail={"kinds": body.kinds, "channels": [c.kind for c in body.channels]},
    )  # fmt: skip
    session.commit()
    return _preferences_out(session, user, request)


@router.post(
    "/me/notifications/test", response_model=TestOut, status_code=202, openapi_extra=x_access("authenticated")
)
def test_my_notifications(body: TestIn, session: SessionDep, user: CurrentUser) -> TestOut:
    """Queue a test message to your enabled channels (or one); see the result in ``recent``."""
    queued = queue_test(session, user, channel_id=body.channel_id, at=utcnow())
    if not queued:
        field = "channel_id" if body.channel_id is not None else "channels"
        raise InvalidInput("no enabled channel of yours to test", field=field)
    session.commit()
    return TestOut(queued=queued)


@router.get("/notifications/deliveries", response_model=DeliveriesOut, openapi_extra=x_access("admin"))
def list_deliveries(
    session: SessionDep,
    _admin: AdminUser,
    state: Annotated[str | None, Query(description="pending | held | sent | failed")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> DeliveriesOut:
    """Every user's deliveries, newest first, with their state and last error (never a message's secrets)."""
    if state is not None and state not in DELIVERY_STATES:
        raise InvalidInput(f"unknown state {state!r} (use {', '.join(DELIVERY_STATES)})", field="state")
    query = select(NotifyDelivery.state, func.count()).group_by(NotifyDelivery.state)
    counts = {state: int(n) for state, n in session.execute(query)}
    where = [NotifyDelivery.state == state] if state else []
    return DeliveriesOut(
        counts={s: int(counts.get(s, 0)) for s in DELIVERY_STATES},
        items=_deliveries(session, *where, limit=limit),
    )


@router.post(
    "/notifications/deliveries/{delivery_id}/retry",
    response_model=DeliveryOut,
    openapi_extra=x_access("admin"),
)
def retry_delivery(
    delivery_id: ObjectId, session: SessionDep, admin: AdminUser, request: Request
) -> DeliveryOut:
    """Send a failed delivery again (after fixing the channel or the server settings)."""
    row = retry(session, delivery_id, at=utcnow())
    if row is None:
        raise NotFound("no such delivery")
    record_change(
        session, user=admin, channel="api", object_type="notify_delivery", object_id=str(delivery_id), remote_addr=remote_addr(request),
        detail={"state": row.state},
    )  # fmt: skip
    session.commit()
    out = _deliveries(session, NotifyDelivery.id == delivery_id, limit=1)
    return out[0]
