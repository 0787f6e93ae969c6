"""The FastAPI application factory."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request
from starlette.responses import Response

from api.deps import AppState, SessionDep
from api.errors import install_error_handlers
from api.routes import auth, cameras, grids
from api.schemas import HealthOut
from api.settings import ApiSettings

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def create_app(settings: ApiSettings, *, session_factory: sessionmaker[Session]) -> FastAPI:
    """Build the API around collaborators it is given (settings, a session factory)."""

    app = FastAPI(
        title="GridPatrol",
        description="网格视频巡查 — video-surveillance grid patrol: cameras, detections and grid tickets",
        version="0.1.0",
    )
    app.state.gridpatrol = AppState(settings=settings, session_factory=session_factory)
    install_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )

    @app.middleware("http")
    async def security_headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        response: Response = await call_next(request)
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    app.include_router(auth.router)
    app.include_router(grids.router)
    app.include_router(cameras.router)

    @app.get("/healthz", response_model=HealthOut, tags=["health"])
    def healthz(session: SessionDep) -> HealthOut:
        """Liveness and database reachability (no authentication: for load balancers)."""
        session.execute(text("SELECT 1"))
        return HealthOut(status="ok", database="ok")

    return app
