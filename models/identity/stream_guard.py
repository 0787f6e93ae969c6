"""The guard of one long-lived channel (SSE ticket feed, wall tiles, live view, RTSP session).

A request is checked once; a channel lives for hours. While it runs, its server asks the guard
:meth:`StreamGuard.check` every ``recheck_s`` seconds and whenever an access-change notice names the
viewer (``models.identity.access_changes``); the answer is a :class:`Verdict`: go on with this fresh
scope (filter what you send with it), or end, with the reason to tell the viewer:

- ``expired``: the credential's own expiry passed (an access token's ``exp``, an API token's
  ``expires_at``); servers also end the channel at that moment without waiting for a check
  (:meth:`StreamGuard.seconds_left`). The client reconnects with a new token.
- ``revoked``: the user was disabled, their password changed (every earlier token ends) or the API
  token was revoked.
- ``access_changed``: the channel's one object (a camera in a live view) left the viewer's scope
  (``covers``). A channel that filters many objects (the ticket feed) keeps going with the new scope.

Start and end (with the reason and how many items were delivered) are written to the access log.
Every method that reads the database blocks: async servers run it in a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.orm import Session, sessionmaker

from models.db.tables import User, utcnow
from models.identity.access import AccessScope, load_scope
from models.identity.audit import record_event
from models.identity.users import Credential, credential_is_live

EndReason = Literal["expired", "access_changed", "revoked"]
#: what the viewer is told with each end reason (and the others a channel may end with)
END_MESSAGES: dict[str, str] = {
    "expired": "your sign-in expired: reconnect with a new token",
    "revoked": "session ended: sign in again",
    "access_changed": "your access changed: this view is no longer yours",
    "error": "the server could not check your access: reconnect",
}
DEFAULT_RECHECK_S = 5.0


@dataclass(frozen=True)
class Verdict:
    """The answer of one check: the fresh scope, and why to end (None: go on)."""

    scope: AccessScope
    end: EndReason | None = None


def same_access(a: AccessScope, b: AccessScope) -> bool:
    """Whether two scopes let their user see the same things (their resolution times aside)."""
    return (a.user_id, a.role, a.grid_paths, a.granted_camera_ids) == (b.user_id, b.role, b.grid_paths, b.granted_camera_ids)


class StreamGuard:
    """Re-resolves one viewer's scope while their channel runs; see the module docstring."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        credential: Credential,
        *,
        scope: AccessScope,
        channel: str,
        object_type: str,
        object_id: int | str = "",
        remote_addr: str = "",
        recheck_s: float = DEFAULT_RECHECK_S,
        covers: Callable[[Session, AccessScope], bool] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._factory = session_factory
        self._credential = credential
        #: the latest scope a check resolved (the request's own at first)
        self.scope = scope
        self.channel = channel
        self.object_type = object_type
        self.object_id = object_id
        self.remote_addr = remote_addr
        self.recheck_s = recheck_s
        self._covers = covers
        self._clock = clock
        self._started_at: datetime | None = None

    @property
    def user_id(self) -> int:
        return self._credential.user_id

    def seconds_left(self) -> float | None:
        """Seconds until the credential expires by itself (None: it does not)."""
        expires_at = self._credential.expires_at
        return None if expires_at is None else (expires_at - self._clock()).total_seconds()

    def check(self) -> Verdict:
        """Is the viewer still allowed, and what may they see now? (Reads the database: blocks.)"""
        now = self._clock()
        expires_at = self._credential.expires_at
        if expires_at is not None and expires_at <= now:
            return Verdict(self.scope, "expired")
        with self._factory() as session:
            if not credential_is_live(session, self._credential, now=now):
                return Verdict(self.scope, "revoked")
            user = session.get(User, self.user_id)
            if user is None:
                return Verdict(self.scope, "revoked")
            scope = load_scope(session, user, at=now)
            if self._covers is not None and not self._covers(session, scope):
                return Verdict(scope, "access_changed")
        self.scope = scope
        return Verdict(scope)

    def record_start(self, detail: dict[str, Any] | None = None) -> None:
        """Write the channel's start to the access log (commits)."""
        self._started_at = self._clock()
        self._record("stream_start", dict(detail or {}))

    def record_end(self, *, reason: str, delivered: int) -> None:
        """Write the channel's end to the access log: why, how many items it delivered, how long it ran."""
        detail: dict[str, Any] = {"reason": reason, "delivered": delivered}
        if self._started_at is not None:
            detail["seconds"] = round((self._clock() - self._started_at).total_seconds(), 1)
        self._record("stream_end", detail)

    def _record(self, action: str, detail: dict[str, Any]) -> None:
        with self._factory() as session:
            user = session.get(User, self.user_id)
            record_event(
                session,
                user_id=self.user_id,
                username=user.username if user else "",
                action=action,
                channel=self.channel,
                object_type=self.object_type,
                object_id=self.object_id,
                remote_addr=self.remote_addr,
                detail=detail,
            )
            session.commit()
