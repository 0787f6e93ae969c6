"""The notification routes in the authorisation matrix (tests/security/test_matrix.py): how to call them
and what the written policy answers.

Policy (README "Notifications"): every logged-in user reads and changes only their own notification
settings and sends themselves a test (an api:read token may read, not change); the deliveries of
everyone, and sending a failed one again, are the administrators' (others 403).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from models.db.engine import transaction
from models.db.tables import NotifyChannel, NotifyDelivery, NotifyPreference, User

A, U, F = "2xx", 401, 403


def _user_id(world: Any, username: str) -> int:
    with world.factory() as s:
        return int(s.scalars(select(User.id).where(User.username == username)).one())


def _email_channel(world: Any, user_id: int) -> int:
    with transaction(world.factory) as s:
        channel = NotifyChannel(
            user_id=user_id, kind="email", label="", address="matrix@example.cn", enabled=True
        )
        s.add(channel)
        s.flush()
        return int(channel.id)


def fresh_delivery(c: Any) -> int:
    """A failed delivery to a grid leader's e-mail channel."""
    user_id = _user_id(c.world, "leader-g1")
    channel_id = _email_channel(c.world, user_id)
    with transaction(c.world.factory) as s:
        row = NotifyDelivery(
            user_id=user_id,
            channel_id=channel_id,
            kind="test",
            payload={},
            state="failed",
            attempts=8,
            last_error="matrix",
        )
        s.add(row)
        s.flush()
        return int(row.id)


def _settings_body(c: Any) -> dict[str, Any]:
    """The caller's own settings with the version they have now (an older one is a 409)."""
    version = 0
    if c.caller is not None:
        with c.world.factory() as s:
            pref = s.get(NotifyPreference, _user_id(c.world, c.caller))
            version = pref.version if pref is not None else 0
    channels = [{"kind": "email", "address": "matrix@example.cn"}]
    return {
        "json": {"version": version, "kinds": ["assigned"], "timezone": "Asia/Shanghai", "channels": channels}
    }


def _test_body(c: Any) -> dict[str, Any]:
    """A test send needs a channel of the caller's."""
    if c.caller is not None:
        _email_channel(c.world, _user_id(c.world, c.caller))
    return {"json": {}}


PARAMS = {"delivery_id": fresh_delivery}
CASES: dict[str, dict[str, Any]] = {
    "PUT /api/me/notifications": {"request": _settings_body},
    "POST /api/me/notifications/test": {"request": _test_body},
}
#: columns as test_matrix._row: anonymous, admin, operator, manager in/out of scope, grid leader own/other
#: grid, patroller own/other grid, token_rw, token_ro
OWN_WRITE = (U, A, A, A, A, A, A, A, A, A, F)
POLICY = {
    "GET /api/me/notifications": (U, A, A, A, A, A, A, A, A, A, A),
    "PUT /api/me/notifications": OWN_WRITE,
    "POST /api/me/notifications/test": OWN_WRITE,
}


def extend(ns: dict[str, Any]) -> None:
    """Add the notification routes to test_matrix's tables (its module namespace)."""
    ns["PARAMS"].update(PARAMS)
    case = ns["Case"]
    ns["CASES"].update({key: case(**kwargs) for key, kwargs in CASES.items()})
    ns["POLICY"].update({key: ns["_row"](*cells) for key, cells in POLICY.items()})
