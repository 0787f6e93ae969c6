"""Limits on what a request may carry, enforced before a route reads anything: size (413 with the limit
in the reason) and NUL characters (422).

:class:`BodySizeLimit` is pure ASGI middleware: it refuses a declared ``Content-Length`` over the limit
at once and counts the bytes of a streamed (chunked) body as they arrive. Multipart uploads get their
own, larger limit; :func:`read_upload` bounds one uploaded file inside a route.
"""

from __future__ import annotations

import json

from fastapi import FastAPI, Request, UploadFile
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models.errors import GridPatrolError

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_MAX_UPLOAD_BYTES = 16 * 1024 * 1024
_CHUNK = 64 * 1024


class PayloadTooLarge(GridPatrolError):
    """A body or an uploaded file is over its limit (HTTP 413)."""


class _BodyOverLimit(Exception):
    pass


def _too_large(limit: int, what: str) -> bytes:
    return json.dumps(
        {"error": "payload_too_large", "detail": f"{what} is larger than the limit of {limit} bytes", "field": None}
    ).encode()


class BodySizeLimit:
    """413 for a request body over ``max_body_bytes`` (``max_upload_bytes`` for multipart/form-data)."""

    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        is_upload = headers.get(b"content-type", b"").lower().startswith(b"multipart/form-data")
        limit = self.max_upload_bytes if is_upload else self.max_body_bytes
        what = "the upload" if is_upload else "the request body"
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await _answer(send, 400, b'{"error":"bad_request","detail":"Content-Length is not a number","field":null}')
                return
            if int(declared) > limit:
                await _answer(send, 413, _too_large(limit, what))
                return

        received = 0
        over = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    raise _BodyOverLimit
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over:
                # the framework may turn the aborted read into its own answer (FastAPI: 400): ours wins
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await _answer(send, 413, _too_large(limit, what))
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _BodyOverLimit:
            if not started:
                started = True
                await _answer(send, 413, _too_large(limit, what))


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close")],
        }
    )  # fmt: skip
    await send({"type": "http.response.body", "body": body})


async def read_upload(upload: UploadFile, *, max_bytes: int) -> bytes:
    """The whole uploaded file, or :class:`PayloadTooLarge` as soon as it passes ``max_bytes``."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await upload.read(_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"the file {upload.filename or ''!s:.80} is larger than the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def install_limit_handler(app: FastAPI) -> None:
    @app.exception_handler(PayloadTooLarge)
    async def _too_large_handler(_request: Request, exc: PayloadTooLarge) -> JSONResponse:
        return JSONResponse({"error": "payload_too_large", "detail": str(exc), "field": None}, status_code=413)


_NUL_PATTERNS = (b"\x00", b"%00", b"\\u0000")
_NUL_ANSWER = b'{"error":"invalid","detail":"NUL characters are not accepted in a request","field":null}'


class RefuseNul:
    """422 for a NUL character anywhere in the path, query or a non-multipart body (raw, percent-encoded
    or a JSON escape): no text column can hold one (PostgreSQL refuses it with an error), so it never
    reaches a route. Multipart bodies carry binary files and are left to the routes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        target = scope.get("raw_path", b"") + b"?" + scope.get("query_string", b"")
        if _has_nul(target):
            await _answer(send, 422, _NUL_ANSWER)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        if headers.get(b"content-type", b"").lower().startswith(b"multipart/form-data"):
            await self.app(scope, receive, send)
            return

        tail = b""
        found = False
        started = False

        async def scanning_receive() -> Message:
            nonlocal tail, found
            message = await receive()
            if message["type"] == "http.request":
                chunk = tail + message.get("body", b"")
                if _has_nul(chunk):
                    found = True
                    raise _BodyOverLimit
                tail = chunk[-5:]
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if found:
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await _answer(send, 422, _NUL_ANSWER)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, scanning_receive, guarded_send)
        except _BodyOverLimit:
            if not started:
                started = True
                await _answer(send, 422, _NUL_ANSWER)


def _has_nul(data: bytes) -> bool:
    lowered = data.lower()
    return any(p in lowered for p in _NUL_PATTERNS)
