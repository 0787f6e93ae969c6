"""The access log: every allowed look at a camera or ticket, every denied attempt, every change."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from models.access import AccessScope
from models.domain import AccessLog, User


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
    """Add one row (the caller commits): a view when allowed, a deny otherwise."""
    user = session.get(User, scope.user_id)
    session.add(
        AccessLog(
            user_id=scope.user_id,
            username=user.username if user else "",
            action="view" if allowed else "deny",
            channel=channel,
            object_type=object_type,
            object_id=str(object_id),
            remote_addr=remote_addr[:64],
            detail=detail or {},
        )
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
    session.add(
        AccessLog(
            user_id=user.id if user else None,
            username=user.username if user else "",
            action="change",
            channel=channel,
            object_type=object_type,
            object_id=str(object_id),
            remote_addr=remote_addr[:64],
            detail=detail or {},
        )
    )
