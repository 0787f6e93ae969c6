"""The access log: every allowed look at a camera or ticket, every denied attempt, every change, every login.

Writers add rows to the caller's session (the caller commits, so that a change and its log row land
together); :func:`query_log` serves the admin's audit view and its CSV export.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from models.db.tables import AccessLog, CameraGrant, Ticket, User
from models.identity.access import AccessScope

#: the values of AccessLog.action
ACTIONS = ("view", "deny", "change", "login", "login_failed", "logout")
#: the values of AccessLog.channel
CHANNELS = ("api", "snapshot", "wall", "evidence", "gateway", "sse", "cli")


def _grant_used(session: Session, scope: AccessScope, *, object_type: str, object_id: int | str) -> int | None:
    """The grant that lent this camera (or the camera of this ticket) to the viewer, if that is why they see it."""
    if not scope.granted_camera_ids or scope.sees_everything:
        return None
    try:
        oid = int(object_id)
    except (TypeError, ValueError):
        return None
    camera_id: int | None = oid if object_type == "camera" else None
    if object_type == "ticket":
        camera_id = session.scalar(select(Ticket.camera_id).where(Ticket.id == oid))
    if camera_id is None or camera_id not in scope.granted_camera_ids:
        return None
    return session.scalar(
        select(CameraGrant.id)
        .where(
            CameraGrant.camera_id == camera_id,
            CameraGrant.grantee_id == scope.user_id,
            CameraGrant.starts_at <= scope.at,
            CameraGrant.ends_at > scope.at,
        )
        .order_by(CameraGrant.ends_at.desc())
        .limit(1)
    )


def record_access(
    session: Session,
    *,
    scope: AccessScope,
    allowed: bool,
    channel: str,
    object_type: str,
    object_id: int | str,
    remote_addr: str = "",
    detail: dict[str, Any] | None = None,
) -> None:
    """Add one row (the caller commits): a view when allowed, a deny otherwise. A view made possible by
    a camera grant names the grant (``detail.grant_id``): using a grant is logged."""
    detail = dict(detail or {})
    if allowed:
        grant_id = _grant_used(session, scope, object_type=object_type, object_id=object_id)
        if grant_id is not None:
            detail.setdefault("grant_id", grant_id)
        elif object_type == "camera" and str(object_id) in {str(c) for c in scope.part_camera_ids}:
            detail.setdefault("via", "ticket_part")  # a department's open part lends the camera
    user = session.get(User, scope.user_id)
    record_event(
        session,
        user_id=scope.user_id,
        username=user.username if user else "",
        action="view" if allowed else "deny",
        channel=channel,
        object_type=object_type,
        object_id=object_id,
        remote_addr=remote_addr,
        detail=detail,
    )


def record_change(
    session: Session,
    *,
    user: User | None,
    channel: str,
    object_type: str,
    object_id: int | str,
    detail: dict[str, Any] | None = None,
    remote_addr: str = "",
) -> None:
    """A configuration change (cameras, zones, users, grants, tokens). Never put a secret in ``detail``."""
    record_event(
        session,
        user_id=user.id if user else None,
        username=user.username if user else "",
        action="change",
        channel=channel,
        object_type=object_type,
        object_id=object_id,
        remote_addr=remote_addr,
        detail=detail,
    )


def record_event(
    session: Session,
    *,
    user_id: int | None,
    username: str,
    action: str,
    channel: str,
    object_type: str = "",
    object_id: int | str = "",
    remote_addr: str = "",
    detail: dict[str, Any] | None = None,
) -> None:
    """One row of any action (logins, refused role checks...); the specific writers above use it."""
    session.add(
        AccessLog(
            user_id=user_id,
            username=username[:64],
            action=action,
            channel=channel,
            object_type=object_type[:24],
            object_id=str(object_id)[:64],
            remote_addr=remote_addr[:64],
            detail=detail or {},
        )
    )


@dataclass(frozen=True)
class AuditFilter:
    """Filters of the audit view; every field is optional and they combine with AND."""

    username: str | None = None
    user_id: int | None = None
    action: str | None = None
    channel: str | None = None
    object_type: str | None = None
    object_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def where(self) -> list[ColumnElement[bool]]:
        clauses: list[ColumnElement[bool]] = []
        if self.username is not None:
            clauses.append(AccessLog.username == self.username)
        if self.user_id is not None:
            clauses.append(AccessLog.user_id == self.user_id)
        if self.action is not None:
            clauses.append(AccessLog.action == self.action)
        if self.channel is not None:
            clauses.append(AccessLog.channel == self.channel)
        if self.object_type is not None:
            clauses.append(AccessLog.object_type == self.object_type)
        if self.object_id is not None:
            clauses.append(AccessLog.object_id == self.object_id)
        if self.since is not None:
            clauses.append(AccessLog.at >= self.since)
        if self.until is not None:
            clauses.append(AccessLog.at < self.until)
        return clauses


def query_log(
    session: Session, audit_filter: AuditFilter, *, limit: int, offset: int = 0
) -> tuple[Sequence[AccessLog], int]:
    """Matching rows, newest first, and their total count."""
    where = audit_filter.where()
    total = session.scalar(select(func.count()).select_from(AccessLog).where(*where)) or 0
    rows = session.scalars(
        select(AccessLog).where(*where).order_by(AccessLog.at.desc(), AccessLog.id.desc()).limit(limit).offset(offset)
    ).all()
    return rows, total
