"""Still pictures and the camera wall: ``GET /api/cameras/{id}/snapshot.jpg`` and the WebSocket
``/api/live/tiles``, both from frames the worker already decoded (models/live, api/tile_hub.py).

The WebSocket protocol (the web UI's wall is built against exactly this; README "Wall tiles"):

- Auth, in order: ``Authorization: Bearer``; the ``gp_session`` cookie when ``Origin`` is this host;
  else a first text message ``{"type": "auth", "token": "..."}`` within 5 s. Failure: close 4401.
- Client → server: ``{"type": "subscribe", "cameras": [1, 2], "width": 320}`` (replaces the set, at
  most 36), ``{"type": "unsubscribe", "cameras": [2]}``.
- Server → client, binary: ``0x01``, camera id (uint32 BE), capture time in ms since the epoch
  (uint64 BE), then the JPEG.
- Server → client, text: ``status`` (state online|reconnecting|offline, frame_age_s, open_tickets,
  alarm, rules) when it changes and every few seconds; ``error`` for one camera (``not_found``: the
  viewer may not see it; other tiles go on) or a bad message (``invalid``, camera_id null);
  ``end`` (revoked|expired|error) just before the server closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.client_address import client_address, parse_networks
from api.deps import (
    MAX_OBJECT_ID,
    AppState,
    SessionDep,
    StateDep,
    TileBoardDep,
    TileHubDep,
    VisibleCamera,
    credential_for_token,
    get_ws_state,
    websocket_token,
    x_access,
)
from api.errors import validation_errors
from api.schemas import ErrorOut
from api.tile_hub import TileHub, Viewer, wide_enough
from models.db.tables import Camera, GridNode, User
from models.errors import AccessDenied, AuthError, BusError, InvalidInput, Unavailable
from models.evidence.drawing import BoxShape, ZoneShape, draw_overlay, open_jpeg, to_jpeg
from models.grid.zones import current_zones
from models.identity.access import AccessScope, load_scope
from models.identity.audit import record_access, record_event
from models.identity.stream_guard import END_MESSAGES, StreamGuard, Verdict
from models.identity.users import Credential
from models.live.tiles import DEFAULT_WIDTH, Tile, width_bucket

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["live"])

#: tiles one connection may carry (a 6×6 wall)
MAX_TILES = 36
#: how long a snapshot waits for the worker's next frame, and how old a frame may be to serve at once
SNAPSHOT_WAIT_S = 5.0
SNAPSHOT_FRESH_S = 2.0
SNAPSHOT_WIDTH = 1280
OVERLAYS = ("zones", "detections")
#: close codes: 4401 not (or no longer) authenticated; 1011 the server could not check access
CLOSE_CODES = {"revoked": 4401, "expired": 4401, "error": 1011}
CHANNEL = "tile"
NOT_FOUND_DETAIL = "摄像头不存在或无权查看 (camera not found)"


# --- snapshot ---------------------------------------------------------------------------------------


def parse_overlay(overlay: str | None) -> tuple[str, ...]:
    """``zones,detections`` → the names; an unknown name is a 422 naming ``overlay``."""
    if not overlay:
        return ()
    names = tuple(dict.fromkeys(p.strip() for p in overlay.split(",") if p.strip()))
    unknown = [n for n in names if n not in OVERLAYS]
    if unknown:
        raise InvalidInput(f"unknown overlay {unknown[0]!r}: use zones, detections or both", field="overlay")
    return names


def _zone_shapes(session: Session, camera_id: int) -> list[ZoneShape]:
    document = current_zones(session, camera_id).document or {}
    return [
        ZoneShape(str(z["name"]), str(z["kind"]), [tuple(p) for p in z["polygon"]])
        for z in document.get("zones", [])
    ]


def render_snapshot(tile: Tile, *, width: int, zones: list[ZoneShape] | None, detections: bool) -> bytes:
    """The tile as served: as published when no change is asked, else scaled and drawn on."""
    if zones is None and not detections and tile.width <= width:
        return tile.jpeg
    image = open_jpeg(tile.jpeg)
    if image.width > width:
        image = image.resize((width, max(2, round(image.height * width / image.width))))
    boxes = [BoxShape(d.xyxy_norm, d.label, d.score) for d in tile.detections] if detections else []
    draw_overlay(image, zones=zones or [], boxes=boxes)
    return to_jpeg(image)


def _unavailable_reason(health: dict[str, Any] | None) -> str | None:
    if not health:
        return "没有工作进程在读取此摄像头 (no worker is reading this camera)"
    state = str(health.get("state"))
    if state != "streaming":
        reason = f": {health['reason']}" if health.get("reason") else ""
        return f"摄像头视频流不可用 (the camera's stream is {state}{reason})"
    return None


@router.get(
    "/cameras/{camera_id}/snapshot.jpg",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "The newest analysed frame as JPEG"},
        404: {"model": ErrorOut},
        422: {"model": ErrorOut},
        503: {"model": ErrorOut, "description": "No worker reads the camera, or no fresh frame came"},
    },
    openapi_extra=x_access("camera"),
)
async def snapshot(
    cam: VisibleCamera,  # first: a camera the caller may not see is 404 whatever this process serves
    board: TileBoardDep,
    hub: TileHubDep,
    state: StateDep,
    session: SessionDep,
    width: Annotated[
        int | None, Query(ge=80, le=1920, description="Scale down to this width (pixels)")
    ] = None,
    overlay: Annotated[
        str | None, Query(max_length=40, description="zones, detections, or both (comma-separated)")
    ] = None,
) -> Response:
    """The newest frame the camera's worker analysed (no extra decode), optionally with its zones and
    latest detections drawn; 503 with the reason when no worker reads the camera right now."""
    camera_id = cam.id
    overlays = parse_overlay(overlay)
    health = None
    if state.health_board is not None:
        try:
            health = await anyio.to_thread.run_sync(state.health_board.get, str(camera_id))
        except BusError:
            health = None
    reason = _unavailable_reason(health)
    if reason:
        raise Unavailable(reason)
    wanted = width_bucket(width or SNAPSHOT_WIDTH)
    now = time.time()
    tile = hub.latest(camera_id)
    if tile is None:
        try:
            tile = await anyio.to_thread.run_sync(board.latest, camera_id)
        except BusError:
            tile = None
    if tile is None or now - tile.captured_at > SNAPSHOT_FRESH_S or not wide_enough(tile, wanted):
        await hub.raise_demand([camera_id], width=wanted)  # the worker publishes at its next analysed frame
        tile = await hub.wait_tile(camera_id, after=now, min_width=wanted, timeout_s=SNAPSHOT_WAIT_S)
        if tile is None:
            raise Unavailable(
                f"摄像头 {SNAPSHOT_WAIT_S:.0f} 秒内没有新画面 (no fresh frame from the camera's worker)"
            )
    zones = await anyio.to_thread.run_sync(_zone_shapes, session, camera_id) if "zones" in overlays else None
    jpeg = await anyio.to_thread.run_sync(
        partial(
            render_snapshot, tile, width=width or tile.width, zones=zones, detections="detections" in overlays
        )
    )
    captured = datetime.fromtimestamp(tile.captured_at, UTC).isoformat()
    return Response(
        jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store", "X-Captured-At": captured}
    )


# --- the wall's WebSocket -------------------------------------------------------------------------------


class _Subscribe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["subscribe"]
    cameras: list[Annotated[int, Field(ge=1, le=MAX_OBJECT_ID)]] = Field(max_length=MAX_TILES)
    width: int = Field(default=DEFAULT_WIDTH, ge=80, le=1920)


class _Unsubscribe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["unsubscribe"]
    cameras: list[Annotated[int, Field(ge=1, le=MAX_OBJECT_ID)]] = Field(max_length=MAX_TILES)


class _Auth(BaseModel):
    """A late auth message (already authenticated): ignored."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["auth"]
    token: str = ""


_MESSAGE: TypeAdapter[_Subscribe | _Unsubscribe | _Auth] = TypeAdapter(
    Annotated[_Subscribe | _Unsubscribe | _Auth, Field(discriminator="type")]
)


def _remote(websocket: WebSocket, state: AppState) -> str:
    peer = websocket.client.host if websocket.client else ""
    return client_address(
        peer,
        websocket.headers.getlist("x-forwarded-for"),
        trusted=parse_networks(tuple(state.settings.trusted_proxies)),
    )


class WallSession:
    """One wall connection: its viewer in the hub, its guard, and what it audits."""

    def __init__(
        self, websocket: WebSocket, state: AppState, hub: TileHub, guard: StreamGuard, viewer: Viewer
    ) -> None:
        self.ws, self.state, self.hub, self.guard, self.viewer = websocket, state, hub, guard, viewer
        self.scope: AccessScope = guard.scope

    # blocking helpers (worker threads) ---------------------------------------------------------------
    def _visible(self, scope: AccessScope, ids: list[int]) -> set[int]:
        with self.state.session_factory() as session:
            rows = session.execute(
                select(Camera.id, GridNode.path)
                .outerjoin(GridNode, GridNode.id == Camera.grid_id)
                .where(Camera.id.in_(ids))
            ).all()
        return {cid for cid, path in rows if scope.allows_camera(camera_id=cid, grid_path=path)}

    def _start_tiles(self, ids: list[int]) -> tuple[set[int], list[int]]:
        """Which of these cameras the viewer may see; every start and refusal is in the access log."""
        allowed = self._visible(self.scope, ids)
        with self.state.session_factory() as session:
            for cid in ids:
                record_access(
                    session, scope=self.scope, allowed=cid in allowed, channel=CHANNEL, object_type="camera",
                    object_id=cid, remote_addr=self.guard.remote_addr, detail={"op": "tile_start" if cid in allowed else "tile"},
                )  # fmt: skip
            session.commit()
        return allowed, [cid for cid in ids if cid not in allowed]

    def _end_tiles(self, ids: list[int], reason: str) -> None:
        if not ids:
            return
        with self.state.session_factory() as session:
            user = session.get(User, self.guard.user_id)
            for cid in ids:
                record_event(
                    session, user_id=self.guard.user_id, username=user.username if user else "", action="stream_end",
                    channel=CHANNEL, object_type="camera", object_id=cid, remote_addr=self.guard.remote_addr,
                    detail={"op": "tile_end", "reason": reason, "delivered": self.viewer.delivered.get(cid, 0)},
                )  # fmt: skip
            session.commit()

    # messages ------------------------------------------------------------------------------------------
    def _error(self, camera_id: int | None, error: str, detail: str) -> None:
        self.viewer.push_text({"type": "error", "camera_id": camera_id, "error": error, "detail": detail})

    async def handle(self, text: str) -> None:
        try:
            message = _MESSAGE.validate_json(text)
        except ValidationError as err:
            detail, _field, _errors = validation_errors(err.errors())
            self._error(None, "invalid", detail)
            return
        if isinstance(message, _Subscribe):
            await self.subscribe(list(dict.fromkeys(message.cameras)), width=message.width)
        elif isinstance(message, _Unsubscribe):
            gone = [cid for cid in dict.fromkeys(message.cameras) if cid in self.viewer.cameras]
            await self.stop_tiles(gone, reason="unsubscribed")

    async def subscribe(self, ids: list[int], *, width: int) -> None:
        """Replace the set: new cameras are checked and audited, dropped ones end."""
        v = self.viewer
        v.width = width_bucket(width)
        await self.stop_tiles([cid for cid in v.cameras if cid not in ids], reason="unsubscribed")
        new = [cid for cid in ids if cid not in v.cameras]
        if not new:
            return
        allowed, denied = await anyio.to_thread.run_sync(self._start_tiles, new)
        for cid in denied:
            self._error(cid, "not_found", NOT_FOUND_DETAIL)
        v.cameras |= allowed
        await self.hub.raise_demand(sorted(allowed), width=v.width)
        for cid in allowed:  # a picture at once when this process already has one
            tile = self.hub.latest(cid)
            if tile is not None:
                v.tiles[cid] = tile.wire()
        self.hub.push_status(only=v)
        v.wake.set()

    async def stop_tiles(self, ids: list[int], *, reason: str) -> None:
        if not ids:
            return
        for cid in ids:
            self.viewer.cameras.discard(cid)
            self.viewer.tiles.pop(cid, None)
            self.viewer.sent_status.pop(cid, None)
        await anyio.to_thread.run_sync(self._end_tiles, ids, reason)

    # tasks -----------------------------------------------------------------------------------------------
    async def read(self) -> str:
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    return "disconnected"
                if message.get("text") is not None:
                    await self.handle(message["text"])
                else:
                    self._error(None, "invalid", "send JSON text messages")
        except WebSocketDisconnect:
            return "disconnected"

    async def write(self) -> str:
        v = self.viewer
        try:
            while True:
                await v.wake.wait()
                v.wake.clear()
                while v.texts or v.tiles:
                    if v.texts:
                        await self.ws.send_text(json.dumps(v.texts.popleft(), ensure_ascii=False))
                        continue
                    cid = next(iter(v.tiles))
                    message = v.tiles.pop(cid)
                    if cid in v.cameras:
                        await self.ws.send_bytes(message)
                        v.delivered[cid] = v.delivered.get(cid, 0) + 1
        except (WebSocketDisconnect, RuntimeError, OSError):
            return "disconnected"

    async def watch(self) -> str:
        """Re-check access every ``recheck_s`` and on notices; end at the credential's expiry."""
        v = self.viewer
        while True:
            left = self.guard.seconds_left()
            if left is not None and left <= 0:
                return "expired"
            timeout = self.guard.recheck_s if left is None else min(self.guard.recheck_s, left)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(v.check_now.wait(), timeout=timeout)
            v.check_now.clear()
            try:
                verdict: Verdict = await anyio.to_thread.run_sync(self.guard.check)
            except Exception:  # the database failed us: end (the client reconnects), never guess
                logger.exception("tiles: access check of user %s failed; closing", self.guard.user_id)
                return "error"
            if verdict.end is not None:
                return verdict.end
            self.scope = verdict.scope
            if v.cameras:
                ids = sorted(v.cameras)
                still = await anyio.to_thread.run_sync(self._visible, self.scope, ids)
                lost = [cid for cid in ids if cid not in still]
                await self.stop_tiles(lost, reason="access_changed")
                for cid in lost:
                    self._error(cid, "not_found", NOT_FOUND_DETAIL)

    async def run(self) -> str:
        tasks = [asyncio.create_task(c) for c in (self.read(), self.write(), self.watch())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            return next(iter(done)).result()
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t


def _authenticate(state: AppState, token: str) -> tuple[Credential, AccessScope]:
    with state.session_factory() as session:
        credential = credential_for_token(session, token, secret_key=state.settings.secret_key)
        user = session.get(User, credential.user_id)
        if user is None:
            raise AuthError("invalid token")
        return credential, load_scope(session, user)


async def tiles_socket(websocket: WebSocket) -> None:
    """The wall: many cameras' tiles over one WebSocket (protocol in the module docstring). A plain
    Starlette route: the app-wide HTTP dependencies (path ids, form bodies) do not apply to it."""
    state = get_ws_state(websocket)
    await websocket.accept()
    hub = state.tile_hub
    if hub is None:
        await websocket.send_text(
            json.dumps({"type": "end", "reason": "unavailable", "detail": "no tile board here"})
        )
        await websocket.close(code=1013)
        return
    try:
        token = await websocket_token(websocket)
        credential, scope = await anyio.to_thread.run_sync(_authenticate, state, token)
    except (AuthError, AccessDenied) as err:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close(code=4401, reason=str(err)[:120])
        return
    except WebSocketDisconnect:
        return
    guard = StreamGuard(
        state.session_factory, credential, scope=scope, channel=CHANNEL, object_type="wall",
        remote_addr=_remote(websocket, state), recheck_s=state.settings.stream_recheck_s,
    )  # fmt: skip
    viewer = Viewer(user_id=credential.user_id)
    wall = WallSession(websocket, state, hub, guard, viewer)
    await anyio.to_thread.run_sync(guard.record_start)
    hub.add(viewer)
    reason = "disconnected"
    try:
        reason = await wall.run()
        if reason in END_MESSAGES:
            with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
                await websocket.send_text(
                    json.dumps({"type": "end", "reason": reason, "detail": END_MESSAGES[reason]})
                )
                await websocket.close(code=CLOSE_CODES.get(reason, 1000))
    finally:
        hub.remove(viewer)
        with anyio.CancelScope(shield=True):
            try:
                await anyio.to_thread.run_sync(wall._end_tiles, sorted(viewer.cameras), reason)
                await anyio.to_thread.run_sync(
                    partial(guard.record_end, reason=reason, delivered=sum(viewer.delivered.values()))
                )
            except Exception:
                logger.exception("tiles: could not log the end of user %s's wall", credential.user_id)


#: a separate router: the prefix of ``router`` is not applied to plain Starlette routes
websocket_router = APIRouter()
websocket_router.add_websocket_route("/api/live/tiles", tiles_socket, name="live_tiles")
