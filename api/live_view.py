"""The single-camera live view: ``WS /api/cameras/{camera_id}/live[?stream=sub]``.

The media (fMP4 for Media Source Extensions, or JPEG frames) comes from a collaborator the wiring
layer passes in (:class:`LiveVideo`, served by ``rtsp_gateway.mse.LiveViewServer``); this module
authenticates the socket (``api.deps.websocket_token``: Bearer header, ``gp_session`` cookie from this
site's pages, or a first ``{"type": "auth"}`` message), authorises the camera through the access policy
(a camera the viewer may not see, or that does not exist, closes with 4404 and nothing about it), logs
the view's start and end (channel ``live``) and keeps checking the viewer with a ``StreamGuard``: every
``stream_recheck_s`` and at once on an access-change notice. When access ends the view ends with
``{"type": "end", "reason": "revoked|expired|access_changed"}``; when the camera goes,
``{"type": "end", "reason": "upstream_gone"}``.

Close codes: 4401 not authenticated, 4403 the token may not read, 4404 no such camera (for this
viewer), 1000 after an ``end`` message, 1008 a client that does not speak the protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Literal, Protocol

import anyio
import anyio.to_thread
from fastapi import APIRouter, FastAPI, WebSocket
from sqlalchemy.orm import Session, sessionmaker
from starlette.websockets import WebSocketDisconnect, WebSocketState

from api.client_address import client_address, parse_networks
from api.deps import MAX_OBJECT_ID, credential_for_token, websocket_token
from api.settings import ApiSettings
from models.bus.protocol import Bus
from models.db.tables import User
from models.errors import AccessDenied, AuthError, ConfigError
from models.identity.access import AccessScope, load_scope, visible_camera
from models.identity.access_changes import AccessChangeWatch
from models.identity.audit import record_access
from models.identity.stream_guard import END_MESSAGES, StreamGuard
from models.identity.users import Credential

logger = logging.getLogger(__name__)

StreamName = Literal["main", "sub"]
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404


class LiveChannel(Protocol):
    """The socket as the live-video collaborator sees it."""

    def receive_text(self) -> Awaitable[str]: ...

    def send_text(self, data: str) -> Awaitable[None]: ...

    def send_bytes(self, data: bytes) -> Awaitable[None]: ...


class LiveVideo(Protocol):
    """Serves one viewer's media over an authorised socket until they leave or the stream ends; returns
    why it ended (``closed``, ``upstream_gone``, ``not_found``, ``limit``, ``protocol``)."""

    async def serve(
        self, *, camera_id: int, stream: StreamName, user_id: int | None, channel: LiveChannel
    ) -> str: ...


@dataclass(eq=False)
class _Viewers:
    """Users with an open live view, and a flag to re-check them now (an access-change notice)."""

    loop: asyncio.AbstractEventLoop | None = None
    wakes: dict[int, set[asyncio.Event]] = field(default_factory=dict)

    def changed(self, user_ids: frozenset[int]) -> None:  # from the watch's thread
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._wake, user_ids)

    def _wake(self, user_ids: frozenset[int]) -> None:
        for uid in user_ids:
            for event in self.wakes.get(uid, ()):
                event.set()


class _SocketChannel:
    """Starlette's WebSocket as a :class:`LiveChannel`."""

    def __init__(self, websocket: WebSocket) -> None:
        self._ws = websocket

    async def receive_text(self) -> str:
        return await self._ws.receive_text()

    async def send_text(self, data: str) -> None:
        await self._ws.send_text(data)

    async def send_bytes(self, data: bytes) -> None:
        await self._ws.send_bytes(data)


def _remote_addr(websocket: WebSocket, settings: ApiSettings) -> str:
    peer = websocket.client.host if websocket.client else ""
    return client_address(
        peer,
        websocket.headers.getlist("x-forwarded-for"),
        trusted=parse_networks(tuple(settings.trusted_proxies)),
    )


def live_view_router(
    live: LiveVideo, *, settings: ApiSettings, session_factory: sessionmaker[Session], bus: Bus | None
) -> APIRouter:
    """The live-view route around its collaborators (the API app and the gateway's live app use it)."""
    viewers = _Viewers()
    watch = AccessChangeWatch(bus, viewers.changed, name="live-view-access") if bus is not None else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        viewers.loop = asyncio.get_running_loop()
        if watch is not None:
            watch.start()
        try:
            yield
        finally:
            if watch is not None:
                watch.stop()

    router = APIRouter(lifespan=lifespan)

    def authenticate(token: str) -> Credential:
        with session_factory() as session:
            return credential_for_token(session, token, secret_key=settings.secret_key)

    def authorise(credential: Credential, camera_id: int, remote: str, stream: str) -> AccessScope | None:
        """The viewer's scope when they may see the camera (a view is logged), None otherwise (a deny)."""
        with session_factory() as session:
            user = session.get(User, credential.user_id)
            if user is None:
                return None
            scope = load_scope(session, user)
            allowed = visible_camera(session, scope, camera_id) is not None
            record_access(
                session, scope=scope, allowed=allowed, channel="live", object_type="camera", object_id=camera_id,
                remote_addr=remote, detail={"stream": stream},
            )  # fmt: skip
            session.commit()
            return scope if allowed else None

    def covers(camera_id: int) -> object:
        return lambda session, scope: visible_camera(session, scope, camera_id) is not None

    async def live_view(websocket: WebSocket) -> None:
        """One camera at full rate (x-access "camera": whoever may see it; others 4404)."""
        camera_id: int = websocket.path_params["camera_id"]
        stream: StreamName = "sub" if websocket.query_params.get("stream") == "sub" else "main"
        await websocket.accept()
        remote = _remote_addr(websocket, settings)
        try:
            token = await websocket_token(websocket)
            credential = await anyio.to_thread.run_sync(authenticate, token)
        except AuthError as err:
            await _close(websocket, CLOSE_UNAUTHENTICATED, str(err))
            return
        except AccessDenied as err:
            await _close(websocket, CLOSE_FORBIDDEN, str(err))
            return
        except WebSocketDisconnect:
            return
        scope = None
        if 1 <= camera_id <= MAX_OBJECT_ID:
            scope = await anyio.to_thread.run_sync(authorise, credential, camera_id, remote, stream)
        if scope is None:
            await _close(websocket, CLOSE_NOT_FOUND, "camera not found")
            return
        guard = StreamGuard(
            session_factory, credential, scope=scope, channel="live", object_type="camera", object_id=camera_id,
            remote_addr=remote, recheck_s=settings.stream_recheck_s, covers=covers(camera_id),  # type: ignore[arg-type]
        )  # fmt: skip
        await _run(websocket, guard, live=live, viewers=viewers, camera_id=camera_id, stream=stream)

    # a plain WebSocket route: the app-wide HTTP dependencies (object-id guard, form checks) take a
    # Request and do not apply here; the id is bounded below and the socket checks its own input
    router.add_websocket_route("/api/cameras/{camera_id:int}/live", live_view, name="camera_live_view")
    return router


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):
        await websocket.send_text(json.dumps({"type": "error", "value": reason}, ensure_ascii=False))
        await websocket.close(code=code, reason=reason[:120])


async def _run(
    websocket: WebSocket,
    guard: StreamGuard,
    *,
    live: LiveVideo,
    viewers: _Viewers,
    camera_id: int,
    stream: StreamName,
) -> None:
    """Serve the media while the guard allows it; log the start and the end with the reason."""
    wake = asyncio.Event()
    viewers.wakes.setdefault(guard.user_id, set()).add(wake)
    await anyio.to_thread.run_sync(partial(guard.record_start, {"stream": stream}))
    media = asyncio.create_task(
        live.serve(
            camera_id=camera_id, stream=stream, user_id=guard.user_id, channel=_SocketChannel(websocket)
        )
    )
    reason = "closed"
    try:
        while True:
            left = guard.seconds_left()
            if left is not None and left <= 0:
                reason = "expired"
                break
            timeout = min(guard.recheck_s, math.inf if left is None else left)
            wake.clear()
            waiter = asyncio.create_task(wake.wait())
            done, _ = await asyncio.wait(
                {media, waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            waiter.cancel()
            if media in done:
                reason = media.result() if media.exception() is None else "error"
                break
            try:
                verdict = await anyio.to_thread.run_sync(guard.check)
            except Exception:  # the database failed us: end (the client reconnects), never guess
                logger.exception(
                    "camera %s: live view access check of user %s failed", camera_id, guard.user_id
                )
                reason = "error"
                break
            if verdict.end is not None:
                reason = verdict.end
                break
    finally:
        media.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await media
        viewers.wakes.get(guard.user_id, set()).discard(wake)
        with anyio.CancelScope(shield=True):
            try:
                await anyio.to_thread.run_sync(partial(guard.record_end, reason=reason, delivered=0))
            except Exception:
                logger.exception(
                    "camera %s: could not log the end of user %s's live view", camera_id, guard.user_id
                )
    if reason in ("closed",):
        return
    if reason == "not_found":
        await _close(websocket, CLOSE_NOT_FOUND, "camera not found")
        return
    if reason in ("protocol", "limit"):  # the collaborator has said why in an error message
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close(code=1008 if reason == "protocol" else 1013)
        return
    if reason not in END_MESSAGES:
        reason = "upstream_gone"
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):
        if websocket.client_state == WebSocketState.CONNECTED:
            await websocket.send_text(json.dumps({"type": "end", "reason": reason}))
            await websocket.close(code=1000)


def create_live_app(
    settings: ApiSettings, *, session_factory: sessionmaker[Session], live: LiveVideo, bus: Bus | None = None
) -> FastAPI:
    """The distributed gateway's own app: the live-view route only, behind the same bearer tokens."""
    if not settings.secret_key:  # the same key as the API's: tokens it issued are checked here
        raise ConfigError("no JWT signing key: set GRIDPATROL_SECRET_KEY (the API's own)")
    app = FastAPI(title="GridPatrol live view", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(live_view_router(live, settings=settings, session_factory=session_factory, bus=bus))
    return app
