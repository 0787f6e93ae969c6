"""Domain errors become JSON HTTP answers here, and only here; every refusal (403, 429) is audited here.

Every error body has one shape (:func:`error_body`, documented by ``api.schemas.ErrorOut``):
``{"error": code, "detail": one readable sentence, "field": the first bad field or null}``, plus
``"errors": [{"loc", "field", "msg", "type"}, ...]`` on a request-validation 422. A validation
``detail`` reads like a domain one: ``field 'since': Input should be a valid datetime``.

A refusal is written to the access log as a ``deny`` with the caller (when known), the route and the
reason, in its own session and committed at once (the request's own session is rolled back with the
error). Places that already wrote a more specific record (role checks, object lookups in api/deps.py)
mark the request with :func:`mark_refusal_audited` so that it is not written twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

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


#: the part of a validation loc that says where the value was, not which value
_LOC_SOURCES = frozenset({"body", "query", "path", "header", "cookie"})
#: pydantic's prefixes on messages raised by validators (the message after it is ours)
_MSG_PREFIXES = ("Value error, ", "Assertion failed, ")


def error_body(
    error: str, detail: object, *, field: str | None = None, errors: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The one error shape; ``detail`` always ends up a string."""
    body: dict[str, Any] = {"error": error, "detail": detail if isinstance(detail, str) else _as_text(detail), "field": field}
    if errors is not None:
        body["errors"] = errors
    return body


def _as_text(detail: object) -> str:
    if detail is None:
        return ""
    if isinstance(detail, dict | list):  # an HTTPException raised with a structured detail
        return json.dumps(jsonable_encoder(detail), ensure_ascii=False)
    return str(detail)


def _json(
    status: int,
    error: str,
    detail: object,
    headers: dict[str, str] | None = None,
    *,
    field: str | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(error, detail, field=field, errors=errors), status_code=status, headers=headers)


def field_of(loc: Sequence[str | int]) -> str | None:
    """``("body", "zones", 0, "polygon")`` → ``"zones[0].polygon"``; ``None`` when the loc names no field."""
    parts = list(loc[1:] if loc and loc[0] in _LOC_SOURCES else loc)
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or None


def validation_errors(raw: Sequence[Any]) -> tuple[str, str | None, list[dict[str, Any]]]:
    """pydantic's errors → (one sentence naming the first bad field, that field, the list for ``errors``)."""
    errors: list[dict[str, Any]] = []
    for e in raw:
        loc = list(e.get("loc", ()))
        msg = str(e.get("msg", ""))
        for prefix in _MSG_PREFIXES:
            msg = msg.removeprefix(prefix)
        kind = str(e.get("type", ""))
        field = None if kind == "json_invalid" else field_of(loc)  # a JSON syntax error's loc is a position
        if kind == "json_invalid":
            reason = (e.get("ctx") or {}).get("error")
            msg = f"the body is not valid JSON ({reason})" if reason else "the body is not valid JSON"
        errors.append({"loc": loc, "field": field, "msg": msg, "type": kind})
    if not errors:
        return "invalid input", None, errors
    first = errors[0]
    detail = f"field '{first['field']}': {first['msg']}" if first["field"] else first["msg"]
    if len(errors) > 1:
        detail += f" (and {len(errors) - 1} more: see errors)"
    return detail, first["field"], errors


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
                return _json(status, code, str(exc), headers, field=getattr(exc, "field", None))
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
        detail, field, errors = validation_errors(exc.errors())
        return _json(422, "invalid", detail, field=field, errors=errors)
