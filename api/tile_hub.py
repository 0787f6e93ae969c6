"""The API's side of the tile board: one listener per process, fanned out to every wall viewer.

Each tile arrives once (from the board's thread), becomes its binary WebSocket message once, and is
handed to the viewers of that camera on the event loop: every viewer keeps only the newest unsent
tile per camera, so a slow socket loses old tiles and never holds up the others. While anyone here
watches a camera, the hub repeats the demand on the board (the worker stops encoding soon after the
last viewer leaves). Camera status (online, reconnecting, offline, frame age, open tickets, alarm) is
computed here once per period for all watched cameras, not per viewer. Access-change notices flag the
viewers they name for an immediate re-check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio.to_thread
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from models.bus.health_board import HealthBoard
from models.bus.protocol import Bus
from models.db.tables import Ticket
from models.errors import BusError
from models.identity.access_changes import AccessChangeWatch
from models.live.board import DEMAND_TTL_S, Subscription, TileBoard
from models.live.tiles import DEFAULT_WIDTH, Tile
from models.tickets.states import LIVE, values

logger = logging.getLogger(__name__)

#: how often demand is repeated on the board (well within its TTL) and status recomputed
DEMAND_PERIOD_S = 2.0
STATUS_PERIOD_S = 2.0
#: text messages a viewer may have waiting; past it the oldest status goes (tiles are per camera)
TEXT_QUEUE = 128
#: a watched camera whose last tile is older than this while its stream says "streaming" is reconnecting
STALE_TILE_S = 10.0
HEALTH_STATES = {"streaming": "online", "connecting": "reconnecting", "backoff": "reconnecting"}


@dataclass(eq=False)
class Viewer:
    """One wall connection as the hub sees it (touched on the event loop only)."""

    user_id: int
    width: int = DEFAULT_WIDTH
    cameras: set[int] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    #: the newest unsent tile message per camera: a newer tile replaces an unsent one
    tiles: dict[int, bytes] = field(default_factory=dict)
    texts: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=TEXT_QUEUE))
    #: set by an access-change notice naming this viewer: re-check now
    check_now: asyncio.Event = field(default_factory=asyncio.Event)
    #: status last sent per camera, and when
    sent_status: dict[int, tuple[dict[str, Any], float]] = field(default_factory=dict)
    delivered: dict[int, int] = field(default_factory=dict)

    def push_text(self, message: dict[str, Any]) -> None:
        self.texts.append(message)
        self.wake.set()


class TileHub:
    def __init__(
        self,
        board: TileBoard,
        *,
        session_factory: sessionmaker[Session],
        health_board: HealthBoard | None = None,
        bus: Bus | None = None,
        status_every_s: float = 5.0,
    ) -> None:
        self.board = board
        self._factory = session_factory
        self._health = health_board
        self._viewers: set[Viewer] = set()
        self._waiters: dict[int, list[tuple[float, int, asyncio.Future[Tile]]]] = {}
        self._latest: dict[int, Tile] = {}
        self._status: dict[int, dict[str, Any]] = {}
        self.status_every_s = status_every_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscription: Subscription | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._access = (
            AccessChangeWatch(bus, self._access_changed, name="tile-hub-access") if bus is not None else None
        )
        self.tiles_in = 0

    # --- lifecycle (the app's lifespan) -------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._subscription = self.board.listen(self._received)
        if self._access is not None:
            self._access.start()
        self._tasks = [loop.create_task(self._demand_loop()), loop.create_task(self._status_loop())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._subscription is not None:
            self._subscription.close()
        if self._access is not None:
            self._access.stop()

    # --- viewers ------------------------------------------------------------------------------------
    def add(self, viewer: Viewer) -> None:
        self._viewers.add(viewer)

    def remove(self, viewer: Viewer) -> None:
        self._viewers.discard(viewer)

    def watched(self) -> dict[int, int]:
        """Camera → the widest width any viewer here asked for."""
        widths: dict[int, int] = {}
        for v in self._viewers:
            for cid in v.cameras:
                widths[cid] = max(widths.get(cid, 0), v.width)
        return widths

    async def raise_demand(self, camera_ids: list[int], *, width: int) -> None:
        """Tell the workers now (a new subscription or a snapshot) rather than at the next period."""
        if camera_ids:
            await self._want({cid: width for cid in camera_ids})

    async def _want(self, widths: dict[int, int]) -> None:
        by_width: dict[int, list[int]] = {}
        for cid, w in widths.items():
            by_width.setdefault(w, []).append(cid)
        for w, ids in by_width.items():
            try:
                await anyio.to_thread.run_sync(partial(self.board.want, ids, width=w, ttl_s=DEMAND_TTL_S))
            except BusError as err:
                logger.warning("tile demand for cameras %s not raised: %s", ids, err)

    async def _demand_loop(self) -> None:
        while True:
            await asyncio.sleep(DEMAND_PERIOD_S)
            try:
                await self._want(self.watched())
            except Exception:
                logger.exception("tile demand loop failed")

    # --- tiles --------------------------------------------------------------------------------------
    def _received(self, tile: Tile) -> None:
        """From the board's thread: hand the tile to the loop."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._fan_out, tile)

    def _fan_out(self, tile: Tile) -> None:
        self.tiles_in += 1
        cid = tile.camera_id
        previous = self._latest.get(cid)
        if previous is not None and previous.captured_at > tile.captured_at:
            return  # an older frame arriving late (two workers during a take-over)
        self._latest[cid] = tile
        message: bytes | None = None
        for v in self._viewers:
            if cid in v.cameras:
                message = message or tile.wire()  # built once, shared by every viewer
                v.tiles[cid] = message
                v.wake.set()
        for after, width, future in self._waiters.pop(cid, []):
            if future.done():
                continue
            if tile.captured_at >= after and wide_enough(tile, width):
                future.set_result(tile)
            else:
                self._waiters.setdefault(cid, []).append((after, width, future))

    def latest(self, camera_id: int) -> Tile | None:
        """The newest tile of the camera this process has received (None: none yet)."""
        return self._latest.get(camera_id)

    async def wait_tile(
        self, camera_id: int, *, after: float, min_width: int = 0, timeout_s: float
    ) -> Tile | None:
        """The first tile of the camera captured at or after ``after`` (epoch s) and at least ``min_width``
        wide (or the camera's own width), or None after ``timeout_s``."""
        tile = self._latest.get(camera_id)
        if tile is not None and tile.captured_at >= after and wide_enough(tile, min_width):
            return tile
        future: asyncio.Future[Tile] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(camera_id, []).append((after, min_width, future))
        try:
            return await asyncio.wait_for(future, timeout=timeout_s)
        except TimeoutError:
            return None
        finally:
            waiting = self._waiters.get(camera_id)
            if waiting is not None:
                self._waiters[camera_id] = [w for w in waiting if w[2] is not future]
                if not self._waiters[camera_id]:
                    del self._waiters[camera_id]

    # --- status -------------------------------------------------------------------------------------
    def status(self, camera_id: int) -> dict[str, Any] | None:
        return self._status.get(camera_id)

    async def _status_loop(self) -> None:
        while True:
            try:
                await self.refresh_status()
            except Exception:
                logger.exception("tile status loop failed")
            await asyncio.sleep(STATUS_PERIOD_S)

    async def refresh_status(self) -> None:
        """Recompute the status of every watched camera (one health read each, one ticket count query)
        and queue it for the viewers whose copy changed, or is older than ``status_every_s``."""
        cameras = sorted(self.watched())
        if not cameras:
            return
        health, tickets = await anyio.to_thread.run_sync(self._read_status_inputs, cameras)
        now = time.time()
        for cid in cameras:
            self._status[cid] = camera_status(
                cid, health.get(cid), self._latest.get(cid), tickets.get(cid, 0), now=now
            )
        self.push_status()

    def push_status(self, *, only: Viewer | None = None) -> None:
        now = time.monotonic()
        for v in [only] if only is not None else list(self._viewers):
            for cid in v.cameras:
                status = self._status.get(cid)
                if status is None:
                    continue
                sent = v.sent_status.get(cid)
                changed = sent is None or {k: x for k, x in sent[0].items() if k != "frame_age_s"} != {
                    k: x for k, x in status.items() if k != "frame_age_s"
                }
                if changed or now - sent[1] >= self.status_every_s:  # type: ignore[index]
                    v.sent_status[cid] = (status, now)
                    v.push_text(status)

    def _read_status_inputs(
        self, cameras: list[int]
    ) -> tuple[dict[int, dict[str, Any] | None], dict[int, int]]:
        health: dict[int, dict[str, Any] | None] = {}
        for cid in cameras:
            try:
                health[cid] = self._health.get(str(cid)) if self._health is not None else None
            except BusError:
                health[cid] = None
        with self._factory() as session:
            rows = session.execute(
                select(Ticket.camera_id, func.count())
                .where(Ticket.camera_id.in_(cameras), Ticket.state.in_(values(LIVE)))
                .group_by(Ticket.camera_id)
            ).all()
        return health, {int(cid): int(n) for cid, n in rows if cid is not None}

    # --- access changes -----------------------------------------------------------------------------
    def _access_changed(self, user_ids: frozenset[int]) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._flag, user_ids)

    def _flag(self, user_ids: frozenset[int]) -> None:
        for v in self._viewers:
            if v.user_id in user_ids:
                v.check_now.set()


def wide_enough(tile: Tile, width: int) -> bool:
    """At least ``width`` wide, or as wide as the camera's own frames (tiles are never scaled up)."""
    return tile.width >= min(width, tile.source_wh[0] or width)


def camera_status(
    camera_id: int, health: dict[str, Any] | None, tile: Tile | None, open_tickets: int, *, now: float
) -> dict[str, Any]:
    """The status message of one camera from its posted health and its newest tile."""
    state = HEALTH_STATES.get(str(health.get("state")), "offline") if health else "offline"
    age: float | None = None
    if tile is not None:
        age = max(0.0, now - tile.captured_at)
    elif health and health.get("last_frame_age_s") is not None:
        age = float(health["last_frame_age_s"])
    if state == "online" and tile is not None and age is not None and age > STALE_TILE_S:
        state = "reconnecting"
    rules = list(tile.rules) if tile is not None and age is not None and age <= STALE_TILE_S else []
    return {
        "type": "status",
        "camera_id": camera_id,
        "state": state,
        "frame_age_s": None if age is None else round(age, 1),
        "open_tickets": open_tickets,
        "alarm": bool(rules),
        "rules": rules,
    }
