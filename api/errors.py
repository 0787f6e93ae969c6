"""Domain errors become JSON HTTP answers here, and only here; every refusal (403, 429) is audited here.

A refusal is written to the access log as a ``deny`` with the caller (when known), the route and the
reason, in its own session and committed at once (the request's own session is rolled back with the
error). Places that already wrote a more specific record (role checks, object lookups in api/deps.py)
mark the request with :func:`mark_refusal_audited` so that it is not written twice.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.deps import AppState, remote_addr
from models.db.tables import User
from models.errors import (
    AccessDenied,
    AuthError,
    Conflict,
    GridPatrolError,
    InvalidInput,
    NotFound,
    Unavailable,
)
from models.identity.audit import record_event

logger = logging.getLogger(__name__)

_STATUS: list[tuple[type[GridPatrolError], int, str]] = [
    (AuthError, 401, "unauthorized"),
    (AccessDenied, 403, "forbidden"),
    (NotFound, 404, "not_found"),
    (Conflict, 409, "conflict"),
    (InvalidInput, 422, "invalid"),
    (Unavailable, 503, "unavailable"),
]


def _json(status: int, error: str, detail: object, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": jsonable_encoder(detail)}, status_code=status, headers=headers)


def internal_error() -> JSONResponse:
    """The answer to an unhandled exception: JSON like every other error, no detail of the cause."""
    return _json(500, "internal", "internal error")


def mark_refusal_audited(request: Request) -> None:
    """The refusal this request is about to raise is already in the access log (do not write it again)."""
    request.state.refusal_audited = True


def route_of(request: Request) -> str:
    """``METHOD /path/{template}`` of the matched route (the raw path when none matched)."""
    return f"{request.method} {getattr(request.scope.get('route'), 'path', request.url.path)}"[:200]


def _record_refusal(request: Request, *, reason: str, status: int, user_id: int | None, username: str) -> None:
    state: AppState = request.app.state.gridpatrol
    try:
        with state.session_factory() as session:
            if user_id is not None and not username:
                user = session.get(User, user_id)
                username = user.username if user else ""
            record_event(
                session,
                user_id=user_id,
                username=username,
                action="deny",
                channel="api",
                object_type="route",
                object_id=route_of(request),
                remote_addr=remote_addr(request),
                detail={"status": status, "reason": reason[:300], "path": request.url.path[:200]},
            )
            session.commit()
    except SQLAlchemyError:  # the refusal stands even when the log cannot be written
        logger.exception("could not audit a refused request to %s", request.url.path)


async def audit_refusal(request: Request, *, reason: str, status: int, username: str = "", user_id: int | None = None) -> None:
    """Write a ``deny`` row for a refused request (once: see :func:`mark_refusal_audited`)."""
    if getattr(request.state, "refusal_audited", False):
        return
    request.state.refusal_audited = True
    credential = getattr(request.state, "credential", None)
    if user_id is None and credential is not None:
        user_id = credential.user_id
    await run_in_threadpool(
        _record_refusal, request, reason=reason, status=status, user_id=user_id, username=username
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GridPatrolError)
    async def _domain(request: Request, exc: GridPatrolError) -> JSONResponse:
        if isinstance(exc, AccessDenied):
            await audit_refusal(
                request,
                reason=str(exc),
                status=403,
                user_id=getattr(exc, "user_id", None),
                username=getattr(exc, "username", ""),
            )
        for cls, status, code in _STATUS:
            if isinstance(exc, cls):
                headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
                return _json(status, code, str(exc), headers)
        logger.error("unhandled domain error %s: %s", type(exc).__name__, exc)
        return _json(500, "internal", "internal error")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "http_error"
        )
        return _json(exc.status_code, code, exc.detail, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()
        ]
        return _json(422, "invalid", errors)
