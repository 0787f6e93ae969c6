"""The live ticket feed: ticket notices from the bus, fanned out to server-sent-event streams.

One thread per API process reads the notices topic as a broadcast reader (every API instance sees
every notice) and hands each to the subscribers' bounded buffers on the event loop; a slow browser
loses the oldest notice, never blocks the others. Each stream keeps its viewer honest with a
:class:`Watch` (``models.identity.stream_guard.StreamGuard``): it re-resolves the viewer's scope every
``recheck_s`` seconds and at once when an access-change notice names them (a second thread reads
those), filters every notice with the fresh scope, and ends at the credential's expiry or when the
check says so, with a last ``event: end`` naming the reason (``expired``, ``revoked``,
``access_changed``). The check reads the database: it runs in a worker thread, never on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import anyio
import anyio.to_thread

from models.bus.listener import BroadcastListener
from models.bus.messages import TICKET_NOTICES, TicketNotice
from models.bus.protocol import AnyMessage, Bus
from models.identity.access import AccessScope
from models.identity.access_changes import AccessChangeWatch
from models.identity.stream_guard import DEFAULT_RECHECK_S, END_MESSAGES, Verdict, same_access

logger = logging.getLogger(__name__)

QUEUE_SIZE = 256


class Watch(Protocol):
    """What a stream asks while it runs; ``StreamGuard`` is the real one. Blocking methods run in a thread."""

    scope: AccessScope
    recheck_s: float

    @property
    def user_id(self) -> int | None: ...

    def seconds_left(self) -> float | None: ...

    def check(self) -> Verdict: ...

    def record_start(self) -> None: ...

    def record_end(self, *, reason: str, delivered: int) -> None: ...


class FixedWatch:
    """A watch over a fixed scope with a yes/no check (``still_allowed`` false ends with ``revoked``),
    no expiry and no access log: for tests and callers without a credential."""

    def __init__(self, scope: AccessScope, still_allowed: Callable[[], bool], *, recheck_s: float = DEFAULT_RECHECK_S) -> None:
        self.scope = scope
        self.recheck_s = recheck_s
        self._still_allowed = still_allowed

    @property
    def user_id(self) -> int | None:
        return None

    def seconds_left(self) -> float | None:
        return None

    def check(self) -> Verdict:
        return Verdict(self.scope, None if self._still_allowed() else "revoked")

    def record_start(self) -> None:
        return None

    def record_end(self, *, reason: str, delivered: int) -> None:
        return None


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


def _end(reason: str) -> str:
    return _event("end", {"reason": reason, "message": END_MESSAGES.get(reason, reason)})


@dataclass(eq=False)
class _Subscriber:
    """One open stream, as the fan-out sees it (touched on the event loop only)."""

    user_id: int | None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    notices: deque[TicketNotice] = field(default_factory=lambda: deque(maxlen=QUEUE_SIZE))
    #: an access-change notice named this viewer: check before sending anything more
    recheck: bool = False


class TicketFeed:
    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._subscribers: set[_Subscriber] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._notices = BroadcastListener(bus, TICKET_NOTICES, self._received, name="ticket-feed")
        self._access = AccessChangeWatch(bus, self._access_changed, name="ticket-feed-access")

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._notices.start()
        self._access.start()

    def stop(self) -> None:
        self._notices.stop()
        self._access.stop()

    def _received(self, messages: list[AnyMessage]) -> None:
        """From the listener's thread: hand the ticket notices to the loop."""
        notices = [m for m in messages if isinstance(m, TicketNotice)]
        if notices and self._loop is not None:
            self._loop.call_soon_threadsafe(self._fan_out, notices)

    def _fan_out(self, notices: list[TicketNotice]) -> None:
        for sub in list(self._subscribers):
            sub.notices.extend(notices)  # bounded: a slow viewer loses the oldest notices
            sub.wake.set()

    def _access_changed(self, user_ids: frozenset[int]) -> None:
        """From the access watch's thread: flag those users' streams on the loop."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._flag_recheck, user_ids)

    def _flag_recheck(self, user_ids: frozenset[int]) -> None:
        for sub in list(self._subscribers):
            if sub.user_id in user_ids:
                sub.recheck = True
                sub.wake.set()

    async def stream(
        self,
        watch: Watch | AccessScope,
        *,
        still_allowed: Callable[[], bool] | None = None,
        heartbeat_s: float = 15.0,
        recheck_s: float | None = None,
    ) -> AsyncIterator[str]:
        """SSE lines for one viewer until they disconnect or the watch ends the stream.

        ``watch`` is normally a ``StreamGuard``; a bare scope with ``still_allowed`` makes a
        :class:`FixedWatch`. ``recheck_s`` overrides the watch's own period."""
        if isinstance(watch, AccessScope):
            watch = FixedWatch(watch, still_allowed or (lambda: True))
        period = watch.recheck_s if recheck_s is None else recheck_s
        sub = _Subscriber(user_id=watch.user_id)
        self._subscribers.add(sub)
        delivered = 0
        reason = "disconnected"
        try:
            await anyio.to_thread.run_sync(watch.record_start)
            yield "retry: 3000\n: connected\n\n"
            loop = asyncio.get_running_loop()
            scope = watch.scope
            next_check = loop.time() + period
            next_beat = loop.time() + heartbeat_s
            while True:
                now = loop.time()
                left = watch.seconds_left()  # the credential's own clock: nothing is sent past its expiry
                if left is not None and left <= 0:
                    reason = "expired"
                    yield _end(reason)
                    return
                if sub.recheck or now >= next_check:
                    sub.recheck = False
                    try:
                        verdict = await anyio.to_thread.run_sync(watch.check)
                    except Exception:  # the database failed us: end (the client reconnects), never guess
                        logger.exception("ticket feed: access check of user %s failed; ending the stream", watch.user_id)
                        reason = "error"
                        yield _end(reason)
                        return
                    next_check = loop.time() + period
                    if verdict.end is not None:
                        reason = verdict.end
                        yield _end(reason)
                        return
                    if not same_access(verdict.scope, scope):
                        scope = verdict.scope
                        yield _event("scope", {"reason": "access_changed", "message": "your access changed: reload the list"})
                    continue
                if sub.notices:
                    n = sub.notices.popleft()
                    if scope.allows_ticket(camera_id=n.camera_id, grid_path=n.grid_path, ticket_id=n.ticket_id):
                        delivered += 1
                        data = n.model_dump_json(exclude={"grid_path"}, by_alias=True)
                        yield f"id: {n.ticket_id}\nevent: ticket\ndata: {data}\n\n"
                    continue
                if now >= next_beat:
                    next_beat = now + heartbeat_s
                    yield ": keep-alive\n\n"
                    continue
                sub.wake.clear()
                expires = math.inf if left is None else now + left
                timeout = max(0.0, min(next_check, next_beat, expires) - loop.time())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(sub.wake.wait(), timeout=timeout)
        finally:
            self._subscribers.discard(sub)
            with anyio.CancelScope(shield=True):  # the viewer left (cancelled): still log the end
                try:
                    await anyio.to_thread.run_sync(partial(watch.record_end, reason=reason, delivered=delivered))
                except Exception:
                    logger.exception("ticket feed: could not log the end of user %s's stream", watch.user_id)
