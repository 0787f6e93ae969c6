"""HTTP face of login throttling: a refused attempt is 429 with a reason and ``Retry-After``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from api.login_throttle import Throttled


def install_throttle_handler(app: FastAPI) -> None:
    @app.exception_handler(Throttled)
    async def _throttled(_request: Request, exc: Throttled) -> JSONResponse:
        return JSONResponse(
            {"error": "too_many_requests", "detail": str(exc)},
            status_code=429,
            headers={"Retry-After": str(exc.retry_after_s)},
        )
