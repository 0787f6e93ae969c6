"""``/metrics``: Prometheus metrics of this process (camera ids and counters, never URLs).

With ``GRIDPATROL_METRICS_TOKEN`` set, a scrape must send ``Authorization: Bearer <token>``; a missing
or wrong one is 401 and written to the audit log. Without a token the endpoint is anonymous outside
production and absent (404) in production (``ApiSettings.metrics_served``)."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from api.deps import SessionDep, remote_addr, x_access
from models.errors import AuthError
from models.identity.audit import record_event


def metrics_router(registry: CollectorRegistry, *, token: str | None) -> APIRouter:
    router = APIRouter(tags=["health"])
    expected = f"Bearer {token}".encode() if token is not None else None

    @router.get(
        "/metrics",
        openapi_extra=x_access("public"),
        response_class=PlainTextResponse,
        # behind a token it is for the scraper, not for API users (and not in the authorisation matrix)
        include_in_schema=token is None,
    )
    def prometheus_metrics(request: Request, session: SessionDep) -> PlainTextResponse:
        """Prometheus metrics of this process (camera ids and counters only, no URLs)."""
        if expected is not None:
            sent = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(sent, expected):
                record_event(
                    session,
                    user_id=None,
                    username="",
                    action="deny",
                    channel="api",
                    object_type="route",
                    object_id="GET /metrics",
                    remote_addr=remote_addr(request),
                    detail={"reason": "metrics token missing or wrong"},
                )
                session.commit()
                raise AuthError("/metrics needs Authorization: Bearer <GRIDPATROL_METRICS_TOKEN>")
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
