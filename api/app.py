"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request
from starlette.responses import Response

from api.deps import AppState, SessionDep, check_object_ids, x_access
from api.docs import install_docs
from api.errors import install_error_handlers, internal_error
from api.forms import refuse_nul_in_form
from api.limits import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_UPLOAD_BYTES,
    BodySizeLimit,
    RefuseNul,
    install_limit_handler,
)
from api.live import TicketFeed
from api.live_view import LiveVideo, live_view_router
from api.login_throttle import LoginThrottle
from api.routes import (
    admin,
    audit,
    auth,
    camera_import,
    cameras,
    dashboard,
    grants,
    grids,
    live_tiles,
    notifications,
    org,
    patrol,
    stats,
    ticket_parts,
    tickets,
    tokens,
    triage,
    zone_preview,
    zones,
)
from api.routes.metrics import metrics_router
from api.schemas import ErrorOut, HealthOut, ReadyOut
from api.settings import ApiSettings
from api.throttle import install_throttle_handler
from api.tile_hub import TileHub
from api.web_app import install_web
from models.bus.health_board import HealthBoard
from models.bus.protocol import Bus
from models.db.readiness import bus_problem, database_problem
from models.errors import ConfigError
from models.live.board import TileBoard
from models.patrol.settings import PatrolSettings
from models.tickets.desk import TicketDesk

logger = logging.getLogger(__name__)

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # geolocation for this origin only: the patroller's check-in page (api/web/pages/patrol.js) reads the position
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(self)",
    # the web UI: own scripts and styles only, frames and images from this origin (snapshots are blobs)
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        # media-src blob: the single view plays a MediaSource through an object URL (api/web/pages/live.js)
        "media-src 'self' blob:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
}
# /docs and /redoc set their own policy (api/docs.py): assets from this origin, their inline script by hash
#: every error answer has the same body (api/errors.py): documented once, for every route
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in [
        (401, "Not authenticated"),
        (403, "Known to the caller but not allowed to them"),
        (404, "Not found, or not visible to the caller"),
        (409, "Conflicts with the current state"),
        (413, "Request body or upload over the limit"),
        (422, "Invalid input: the field and the reason"),
        (429, "Too many attempts: see Retry-After"),
    ]
}


def create_app(
    settings: ApiSettings,
    *,
    session_factory: sessionmaker[Session],
    login_throttle: LoginThrottle | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    desk: TicketDesk | None = None,
    bus: Bus | None = None,
    health_board: HealthBoard | None = None,
    metrics: CollectorRegistry | None = None,
    live_video: LiveVideo | None = None,
    zone_previewer: zone_preview.ZonePreviewer | None = None,
    camera_keyring: camera_import.KeyringSource | None = None,
    patrol_settings: PatrolSettings | None = None,
    tile_board: TileBoard | None = None,
) -> FastAPI:
    """Build the API around collaborators it is given (settings, a session factory, and optionally a
    login throttle on a shared store such as ``models.throttle_redis.RedisThrottleStore``, the ticket
    desk, and the bus that carries ticket notices to the live feed)."""
    if not settings.secret_key:  # HS256 with an empty key: anyone could sign a token
        raise ConfigError(
            "no JWT signing key: set GRIDPATROL_SECRET_KEY, or start through gridpatrol.signing_key.settings_with_signing_key"
        )
    feed = TicketFeed(bus) if bus is not None else None
    # wall tiles and snapshots (api/tile_hub.py): the workers' tiles fanned out to this process's viewers
    tile_hub = (
        TileHub(tile_board, session_factory=session_factory, health_board=health_board, bus=bus)
        if tile_board is not None
        else None
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if feed is not None:
            feed.start(asyncio.get_running_loop())
        if tile_hub is not None:
            tile_hub.start(asyncio.get_running_loop())
        try:
            yield
        finally:
            if tile_hub is not None:
                await tile_hub.stop()
            if feed is not None:
                feed.stop()

    app = FastAPI(
        title="GridPatrol",
        description="网格视频巡查 — video-surveillance grid patrol: cameras, detections and grid tickets",
        version="0.1.0",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
        dependencies=[Depends(check_object_ids), Depends(refuse_nul_in_form)],
        # GRIDPATROL_API_DOCS; off in production unless asked for (the schema maps every route).
        # /docs and /redoc are api/docs.py's: the same pages with their scripts served from here, no CDN
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json" if settings.docs_enabled else None,
    )
    app.state.gridpatrol = AppState(
        settings=settings,
        session_factory=session_factory,
        login_throttle=login_throttle or LoginThrottle(),
        desk=desk,
        bus=bus,
        feed=feed,
        health_board=health_board,
        tile_board=tile_board,
        tile_hub=tile_hub,
    )
    app.state.zone_previewer = zone_previewer  # the zone editor's preview (api/routes/zone_preview.py)
    app.state.camera_keyring = camera_keyring  # camera import encrypts stream URLs (api/routes/camera_import.py)
    app.state.patrol_settings = patrol_settings or PatrolSettings()  # patrol rules and scoring (api/routes/patrol.py)
    install_error_handlers(app)
    install_throttle_handler(app)
    install_limit_handler(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-CSRF-Token"],
        )

    app.add_middleware(RefuseNul)
    app.add_middleware(BodySizeLimit, max_body_bytes=max_body_bytes, max_upload_bytes=max_upload_bytes)

    headers = dict(SECURITY_HEADERS)
    if settings.map_tiles_origin:  # GRIDPATROL_MAP_TILES_URL: the intranet map's tiles under the grid map
        headers["Content-Security-Policy"] = headers["Content-Security-Policy"].replace(
            "img-src 'self' data: blob:", f"img-src 'self' data: blob: {settings.map_tiles_origin}"
        )

    @app.middleware("http")
    async def security_headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        try:
            response: Response = await call_next(request)
        except Exception:  # an unhandled error: JSON and these headers too (outer handlers skip this middleware)
            logger.exception("unhandled error on %s %s", request.method, request.url.path)
            response = internal_error()
        if request.url.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        for k, v in headers.items():
            response.headers.setdefault(k, v)
        return response

    app.include_router(auth.router)
    app.include_router(grids.router)
    app.include_router(cameras.router)
    app.include_router(admin.router)
    app.include_router(grants.router)
    app.include_router(tokens.router)
    app.include_router(audit.router)
    app.include_router(tickets.router)
    app.include_router(stats.router)
    app.include_router(zones.router)
    app.include_router(camera_import.router)  # before cameras' /cameras/{camera_id} routes: no clash (POST only)
    app.include_router(zone_preview.router)
    app.include_router(dashboard.router)
    app.include_router(patrol.router)
    app.include_router(org.router)
    app.include_router(triage.router)
    app.include_router(ticket_parts.router)
    app.include_router(notifications.router)
    app.include_router(live_tiles.router)
    app.include_router(live_tiles.websocket_router)

    if live_video is not None:  # the browser live view (api/live_view.py), when this process has a media hub
        app.include_router(live_view_router(live_video, settings=settings, session_factory=session_factory, bus=bus))

    if metrics is not None and settings.metrics_served:  # GRIDPATROL_METRICS_TOKEN, see api/routes/metrics.py
        app.include_router(metrics_router(metrics, token=settings.metrics_token))

    if settings.docs_enabled:
        install_docs(app, openapi_url="/openapi.json")

    @app.get("/healthz", response_model=HealthOut, tags=["health"], openapi_extra=x_access("public"))
    def healthz(session: SessionDep) -> HealthOut:
        """Liveness and database reachability (no authentication: for load balancers)."""
        session.execute(text("SELECT 1"))
        return HealthOut(status="ok", database="ok")

    @app.get("/readyz", tags=["health"], openapi_extra=x_access("public"), responses={503: {"model": ReadyOut}})
    def readyz() -> JSONResponse:
        """Ready to serve: the database answers with its schema at head, the bus answers (503 otherwise)."""
        checks = {"database": database_problem(session_factory) or "ok"}
        if bus is not None:
            checks["bus"] = bus_problem(bus) or "ok"
        ok = all(v == "ok" for v in checks.values())
        body = ReadyOut(status="ready" if ok else "not ready", process="api", checks=checks)
        return JSONResponse(body.model_dump(), status_code=200 if ok else 503)

    install_web(app)  # the web UI under / (api/web_app.py): the router's fallback, never shadowing a route
    return app
