"""HTTP face of login throttling: a refused attempt is 429 with a reason and ``Retry-After``, and a
``deny`` row in the access log naming the username tried, the address and the reason."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from api.errors import audit_refusal
from api.login_throttle import Throttled


def install_throttle_handler(app: FastAPI) -> None:
    @app.exception_handler(Throttled)
    async def _throttled(request: Request, exc: Throttled) -> JSONResponse:
        await audit_refusal(request, reason=str(exc), status=429, username=exc.username)
        return JSONResponse(
            {"error": "too_many_requests", "detail": str(exc), "field": None},
            status_code=429,
            headers={"Retry-After": str(exc.retry_after_s)},
        )
