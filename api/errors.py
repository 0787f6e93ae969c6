"""Domain errors become JSON HTTP answers here, and only here."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from models.errors import (
    AccessDenied,
    AuthError,
    Conflict,
    GridPatrolError,
    InvalidInput,
    NotFound,
    Unavailable,
)

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


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GridPatrolError)
    async def _domain(_request: Request, exc: GridPatrolError) -> JSONResponse:
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
