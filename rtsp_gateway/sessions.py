"""Viewer sessions of the RTSP server: who watches which camera from where, how much was sent, and the
re-checks that cut a viewer whose access ended (user disabled, password changed, grant expired, token
revoked) within ``recheck_s``, or at once on an access-change notice.

Checks are grouped by credential (one database round per viewer credential and tick, whatever the number
of their sessions), and run in a worker thread. Start and end of each session (user, camera, client
address, bytes) go to the access log through :class:`StreamGuard` (channel ``rtsp``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from models.db.tables import User, utcnow
from models.identity.access import AccessScope, load_scope, visible_camera
from models.identity.stream_guard import StreamGuard
from models.identity.users import Credential, credential_is_live

logger = logging.getLogger(__name__)

#: why a session ended, as the access log records it
EndReason = str


@dataclass(eq=False)
class ViewerSession:
    """One RTSP session: one viewer watching one camera stream (or replay) over one connection."""

    id: str
    credential: Credential
    username: str
    #: the camera watched (None: a replay)
    camera_id: int | None
    stream: str
    remote_addr: str
    guard: StreamGuard
    #: called (on the event loop) to cut the session, with the reason
    cut: Callable[[EndReason], None]
    started_at: datetime = field(default_factory=utcnow)
    ended_at: datetime | None = None
    bytes_sent: int = 0
    end_reason: EndReason | None = None
    _expiry: asyncio.TimerHandle | None = None

    @property
    def user_id(self) -> int:
        return self.credential.user_id


def new_session_id() -> str:
    """An RTSP session id: 16 hex characters, unguessable (it names a stream on a shared server)."""
    return secrets.token_hex(8)


class ViewerSessions:
    """Every open session of one gateway process, and their periodic and notified access checks."""

    def __init__(self, session_factory: sessionmaker[Session], *, recheck_s: float = 2.5) -> None:
        self._factory = session_factory
        self.recheck_s = recheck_s
        self._open: dict[str, ViewerSession] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._notified: set[int] = set()
        self.ended_total = 0
        self.cut_total = 0

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the re-check loop on the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="rtsp-session-checks")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def notify_threadsafe(self, user_ids: frozenset[int]) -> None:
        """An access-change notice (from the watch thread): re-check these users' sessions now."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._notify, user_ids)

    def _notify(self, user_ids: frozenset[int]) -> None:
        if any(s.user_id in user_ids for s in self._open.values()):
            self._notified.update(user_ids)
            self._wake.set()

    # --- sessions --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._open)

    def sessions(self) -> list[ViewerSession]:
        return list(self._open.values())

    def count_for_user(self, user_id: int) -> int:
        return sum(1 for s in self._open.values() if s.user_id == user_id)

    async def open(self, session: ViewerSession) -> None:
        """Register a session (PLAY began) and write its start to the access log."""
        self._open[session.id] = session
        left = session.guard.seconds_left()
        if left is not None and self._loop is not None:  # a token that expires ends its stream on time
            session._expiry = self._loop.call_later(max(left, 0.0), self._cut, session, "expired")
        detail = {"stream": session.stream, "session": session.id}
        try:
            await asyncio.to_thread(session.guard.record_start, detail)
        except Exception:  # the viewer keeps watching; the end record still names the session
            logger.exception("camera %s: rtsp session %s start not audited", session.camera_id, session.id)

    async def close(self, session: ViewerSession, *, reason: EndReason) -> None:
        """Forget a session and write its end (reason, bytes) to the access log; idempotent."""
        if self._open.pop(session.id, None) is None:
            return
        if session._expiry is not None:
            session._expiry.cancel()
        session.ended_at = utcnow()
        session.end_reason = session.end_reason or reason
        self.ended_total += 1
        try:
            await asyncio.to_thread(
                session.guard.record_end, reason=session.end_reason, delivered=session.bytes_sent
            )
        except Exception:
            logger.exception("camera %s: rtsp session %s end not audited", session.camera_id, session.id)

    def _cut(self, session: ViewerSession, reason: EndReason) -> None:
        if session.id not in self._open or session.end_reason is not None:
            return
        session.end_reason = reason
        self.cut_total += 1
        logger.info(
            "camera %s: rtsp session %s of user %s cut: %s",
            session.camera_id,
            session.id,
            session.username,
            reason,
        )
        session.cut(reason)

    def authorize(self, credential: Credential, camera_id: int | None) -> AccessScope | None:
        """The viewer's scope when they may watch this camera (None: a replay), else None, which the
        server answers as for a camera that does not exist (blocks: run it in a worker thread)."""
        with self._factory() as db:
            user = db.get(User, credential.user_id)
            if user is None or not credential_is_live(db, credential):
                return None
            scope = load_scope(db, user)
            if camera_id is None:  # replays are clips an operator chose, for the centre's zone tuning
                return scope if scope.may_configure else None
            return scope if visible_camera(db, scope, camera_id) is not None else None

    def guard(
        self, credential: Credential, *, scope: AccessScope, camera_id: int | None, remote_addr: str
    ) -> StreamGuard:
        """The guard that audits one session's start and end."""
        return StreamGuard(
            self._factory,
            credential,
            scope=scope,
            channel="rtsp",
            object_type="camera" if camera_id is not None else "replay",
            object_id=camera_id if camera_id is not None else "",
            remote_addr=remote_addr,
            recheck_s=self.recheck_s,
        )

    # --- checks ----------------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.recheck_s)
            except TimeoutError:
                pass
            self._wake.clear()
            only = self._notified or None
            self._notified = set()
            try:
                await self.check_now(only_users=only)
            except Exception:  # a database outage must not end the loop (sessions go on until it is back)
                logger.exception("rtsp session checks failed; retrying")

    async def check_now(self, *, only_users: set[int] | None = None) -> None:
        """Re-check every open session (or those of ``only_users``) and cut the ones that lost access."""
        groups: dict[Credential, list[ViewerSession]] = {}
        for s in self._open.values():
            if s.end_reason is None and (only_users is None or s.user_id in only_users):
                groups.setdefault(s.credential, []).append(s)
        if not groups:
            return
        verdicts = await asyncio.to_thread(self._check_groups, groups)
        for sessions, (end, allowed) in zip(groups.values(), verdicts, strict=True):
            for s in sessions:
                if end is not None:
                    self._cut(s, end)
                elif s.camera_id is not None and s.camera_id not in allowed:
                    self._cut(s, "access_changed")

    def _check_groups(
        self, groups: dict[Credential, list[ViewerSession]]
    ) -> list[tuple[str | None, set[int]]]:
        out: list[tuple[str | None, set[int]]] = []
        for sessions in groups.values():
            cameras = {s.camera_id for s in sessions if s.camera_id is not None}
            allowed: set[int] = set()

            def covers(
                db: Session, scope: AccessScope, cameras: set[int] = cameras, allowed: set[int] = allowed
            ) -> bool:
                for cam in cameras:
                    if visible_camera(db, scope, cam) is not None:
                        allowed.add(cam)
                return True

            first = sessions[0].guard
            guard = StreamGuard(
                self._factory,
                sessions[0].credential,
                scope=first.scope,
                channel="rtsp",
                object_type="camera",
                covers=covers,
            )
            verdict = guard.check()
            for s in sessions:
                s.guard.scope = verdict.scope
            out.append((verdict.end, allowed))
        return out
