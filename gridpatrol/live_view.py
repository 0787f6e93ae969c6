"""Wiring of the browser live view: the media hub's fMP4/JPEG server (``rtsp_gateway.mse``) behind the
API's WebSocket route (``api.live_view``).

Two set-ups: ``serve`` runs the gateway on an event loop of its own thread while the API runs on
uvicorn's loop, so :class:`ThreadedLiveVideo` runs each view's media on the hub's loop and carries the
socket calls over to the API's; the distributed ``gateway`` process serves :func:`build_live_app` on
the hub's own loop (:func:`serve_live_app`), behind the same bearer tokens as the API.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from api.live_view import LiveChannel, StreamName, create_live_app
from rtsp_gateway.mse import LiveViewServer

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

    from api.settings import ApiSettings
    from gridpatrol.gateway import Gateway, GatewayThread
    from models.bus.protocol import Bus
    from rtsp_gateway.media import Hub

#: JPEGs per second for browsers that cannot play the camera's codec
JPEG_FALLBACK_FPS = 8.0


class _BridgedChannel:
    """A socket living on another event loop, used from the hub's loop."""

    def __init__(self, channel: LiveChannel, loop: asyncio.AbstractEventLoop) -> None:
        self._channel = channel
        self._loop = loop

    def _there(self, coro: Awaitable[Any]) -> Awaitable[Any]:
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))  # type: ignore[arg-type]

    async def receive_text(self) -> str:
        text: str = await self._there(self._channel.receive_text())
        return text

    async def send_text(self, data: str) -> None:
        await self._there(self._channel.send_text(data))

    async def send_bytes(self, data: bytes) -> None:
        await self._there(self._channel.send_bytes(data))


class ThreadedLiveVideo:
    """The API's live-video collaborator when the hub runs on another thread's event loop (``serve``)."""

    def __init__(self, server: LiveViewServer, loop: asyncio.AbstractEventLoop) -> None:
        self.server = server
        self._loop = loop

    async def serve(
        self, *, camera_id: int, stream: StreamName, user_id: int | None, channel: LiveChannel
    ) -> str:
        bridged = _BridgedChannel(channel, asyncio.get_running_loop())
        media = self.server.serve(camera_id=camera_id, stream=stream, user_id=user_id, channel=bridged)
        future = asyncio.run_coroutine_threadsafe(media, self._loop)
        try:
            return await asyncio.wrap_future(future)
        finally:
            future.cancel()  # the viewer left or lost access: end the media side too


def live_view_server(hub: Hub) -> LiveViewServer:
    return LiveViewServer(hub, jpeg_fps=JPEG_FALLBACK_FPS)


def threaded_live_video(gateway: GatewayThread) -> ThreadedLiveVideo:
    """For ``serve``: ``runtime.build_api(..., live_video=threaded_live_video(gateway_thread))``."""
    return ThreadedLiveVideo(live_view_server(gateway.gateway.hub), gateway.loop)


def build_live_app(api_settings: ApiSettings, *, gateway: Gateway, bus: Bus | None) -> FastAPI:
    """For the ``gateway`` process: the live-view route alone, checking the API's bearer tokens
    (``settings.api`` after ``gridpatrol.signing_key.settings_with_signing_key``: the API's own key)."""
    app = create_live_app(
        api_settings, session_factory=gateway.factory, live=live_view_server(gateway.hub), bus=bus
    )
    add_health_routes(app, gateway=gateway, bus=bus)
    return app


def add_health_routes(app: FastAPI, *, gateway: Gateway, bus: Bus | None) -> None:
    """``/healthz`` and ``/readyz`` on the live port, as on every process (gridpatrol/health_http.py)."""
    from fastapi.responses import JSONResponse

    from gridpatrol.health_http import common_checks, readiness

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok", "process": "gateway-live"})

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        ok, checks = readiness(common_checks(gateway.factory, bus))
        body = {"status": "ready" if ok else "not ready", "process": "gateway-live", "checks": checks}
        return JSONResponse(body, status_code=200 if ok else 503)


async def serve_live_app(app: FastAPI, sock: socket.socket) -> uvicorn.Server:
    """Serve the live app on the running (hub's) loop from a bound socket; ``server.should_exit = True``
    and await the returned server's task to stop it."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    _serving.add(asyncio.get_running_loop().create_task(server.serve(sockets=[sock])))
    return server


_serving: set[asyncio.Task[None]] = set()  # a reference to each server task while it runs
