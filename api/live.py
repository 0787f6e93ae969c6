"""The live ticket feed: ticket notices from the bus, fanned out to server-sent-event streams.

One thread per API process reads the notices topic as a broadcast reader (every API instance sees
every notice) and hands each to the subscribers' bounded queues on the event loop; each stream sends
only what its viewer's scope allows and drops the oldest notice when a slow browser falls behind.
The periodic ``still_allowed`` check reads the database: it runs in a worker thread, never on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable

import anyio.to_thread

from models.bus.messages import TICKET_NOTICES, TicketNotice
from models.bus.protocol import Bus
from models.errors import BusError
from models.identity.access import AccessScope

logger = logging.getLogger(__name__)

QUEUE_SIZE = 256


class TicketFeed:
    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._subscribers: set[asyncio.Queue[TicketNotice]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="ticket-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        cursor: str | None = None
        while not self._stop.is_set():
            try:
                cursor, deliveries = self._bus.read_broadcast(TICKET_NOTICES, after=cursor, block_ms=500)
            except BusError as err:
                logger.warning("ticket feed: bus read failed (%s); retrying", err)
                self._stop.wait(1.0)
                continue
            notices = [d.message for d in deliveries if isinstance(d.message, TicketNotice)]
            if notices and self._loop is not None:
                self._loop.call_soon_threadsafe(self._fan_out, notices)

    def _fan_out(self, notices: list[TicketNotice]) -> None:
        with self._lock:
            queues = list(self._subscribers)
        for q in queues:
            for n in notices:
                if q.full():
                    q.get_nowait()  # a slow viewer loses the oldest notice, never blocks the others
                q.put_nowait(n)

    async def stream(
        self, scope: AccessScope, *, still_allowed: Callable[[], bool], heartbeat_s: float = 15.0, recheck_s: float = 5.0
    ) -> AsyncIterator[str]:
        """SSE lines for one viewer until they disconnect or ``still_allowed`` turns false.

        ``still_allowed`` blocks (a database query): it runs in a worker thread so that a slow database
        never stalls the event loop, and with it every other request of this process (issue 9)."""
        queue: asyncio.Queue[TicketNotice] = asyncio.Queue(maxsize=QUEUE_SIZE)
        with self._lock:
            self._subscribers.add(queue)
        try:
            yield "retry: 3000\n: connected\n\n"
            loop = asyncio.get_running_loop()
            next_check = loop.time() + recheck_s
            next_beat = loop.time() + heartbeat_s
            while True:
                timeout = max(0.0, min(next_check, next_beat) - loop.time())
                try:
                    n = await asyncio.wait_for(queue.get(), timeout=timeout)
                except TimeoutError:
                    n = None
                now = loop.time()
                if now >= next_check:
                    next_check = now + recheck_s
                    if not await anyio.to_thread.run_sync(still_allowed):
                        yield "event: end\ndata: {\"reason\": \"session ended\"}\n\n"
                        return
                if n is None:
                    if now >= next_beat:
                        next_beat = now + heartbeat_s
                        yield ": keep-alive\n\n"
                    continue
                if scope.allows_ticket(camera_id=n.camera_id, grid_path=n.grid_path):
                    data = n.model_dump_json(exclude={"grid_path"}, by_alias=True)
                    yield f"id: {n.ticket_id}\nevent: ticket\ndata: {data}\n\n"
        finally:
            with self._lock:
                self._subscribers.discard(queue)
