"""Structured access log of ``serve --access-log``: one JSON object per HTTP request on stdout.

An ASGI middleware rather than uvicorn's access lines: those carry the query string as sent (an SSE or
WebSocket URL may hold ``?token=...``) and are plain text. Here the query's secret-looking values are
redacted (``models.secrets.redact_url``) and the client is the one the API believes
(``GRIDPATROL_TRUSTED_PROXIES``, api/client_address.py).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from datetime import datetime, tzinfo
from typing import Any

from api.client_address import client_address, parse_networks
from models.secrets import redact_url

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger("gridpatrol.access")


def log_to_stdout() -> None:
    """Send the access log, and only it, to stdout as bare JSON lines (other logs keep their format)."""
    if any(getattr(h, "gridpatrol_access", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.gridpatrol_access = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def redacted_path(path: str, query: bytes) -> str:
    """The path, with the query string when there is one, its secret-looking values as ``***``."""
    if not query:
        return path
    base = "http://h"
    return redact_url(f"{base}{path}?{query.decode('latin-1')}")[len(base) :]


class AccessLog:
    """ASGI middleware: after each HTTP request, one JSON object (time, method, path, status,
    duration_ms, client) on the ``gridpatrol.access`` logger. Other scopes pass through untouched."""

    def __init__(self, app: ASGIApp, *, tz: tzinfo, trusted_proxies: Sequence[str] = ()) -> None:
        self.app = app
        self.tz = tz
        self.trusted = parse_networks(tuple(trusted_proxies))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        at = datetime.now(self.tz)
        status = 500  # an error that escapes before the answer starts

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            logger.info("%s", json.dumps(self.entry(scope, at=at, status=status, started=started), ensure_ascii=False))

    def entry(self, scope: Scope, *, at: datetime, status: int, started: float) -> dict[str, Any]:
        peer = scope.get("client")
        forwarded = [v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"x-forwarded-for"]
        return {
            "time": at.isoformat(timespec="milliseconds"),
            "method": scope.get("method", ""),
            "path": redacted_path(scope.get("path", ""), scope.get("query_string", b"")),
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            "client": client_address(peer[0], forwarded, trusted=self.trusted) if peer else None,
        }
