"""A server-sent-events client for tests: one streaming request against the real ASGI app, run on the
TestClient's own event loop (where the app's lifespan started the feed), read from the test's thread.

The test client and ``httpx.ASGITransport`` both wait for the whole answer, which a stream never
finishes; this drives the ASGI interface directly, like a browser's ``EventSource`` would see it.
"""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import anyio
from fastapi.testclient import TestClient

#: how long any single wait of the client may take before the test fails (generous: a loaded CI)
DEADLINE_S = 30.0


@dataclass(frozen=True)
class SseEvent:
    event: str
    data: str
    id: str | None = None

    def json(self) -> Any:
        return json.loads(self.data)


class SseStream:
    """``with SseStream(client, "/api/tickets/stream", headers) as s:`` connects and waits for the first
    bytes (the feed has subscribed by then); :meth:`next_event` reads; leaving the block disconnects."""

    def __init__(self, client: TestClient, url: str, headers: dict[str, str]) -> None:
        self._client = client
        self._url = urlsplit(url)
        self._headers = headers
        self._chunks: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._disconnect: anyio.Event | None = None
        self._buffer = ""
        self._pending: list[SseEvent] = []
        self.status: int | None = None
        #: the server ended the answer (after an ``end`` event, or an error)
        self.finished = False
        self.events: list[SseEvent] = []

    def __enter__(self) -> SseStream:
        portal = self._client.portal
        assert portal is not None, "use the TestClient as a context manager (the app's lifespan must run)"
        self._future = portal.start_task_soon(self._run)
        kind, value = self._chunks.get(timeout=DEADLINE_S)
        assert kind == "start", (kind, value)
        self.status = value
        if self.status == 200:
            self._feed(*self._chunks.get(timeout=DEADLINE_S))  # "retry: ... : connected"
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        portal = self._client.portal
        if portal is not None and self._disconnect is not None and not self._future.done():
            portal.call(self._disconnect.set)
        self._future.result(timeout=DEADLINE_S)

    async def _run(self) -> None:
        self._disconnect = anyio.Event()
        sent_request = False

        async def receive() -> dict[str, Any]:
            nonlocal sent_request
            if not sent_request:
                sent_request = True
                return {"type": "http.request", "body": b"", "more_body": False}
            assert self._disconnect is not None
            await self._disconnect.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self._chunks.put(("start", message["status"]))
            elif message["type"] == "http.response.body":
                self._chunks.put(("body", message.get("body", b"")))

        path = self._url.path
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": self._url.query.encode(), "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in self._headers.items()],
            "client": ("127.0.0.1", 50000), "server": ("testserver", 80), "app": self._client.app,
        }  # fmt: skip
        try:
            await self._client.app(scope, receive, send)
        finally:
            self._chunks.put(("done", None))

    def _feed(self, kind: str, value: Any) -> None:
        if kind == "done":
            self.finished = True
            return
        if kind != "body":
            return
        self._buffer += value.decode()
        while "\n\n" in self._buffer:
            block, self._buffer = self._buffer.split("\n\n", 1)
            fields: dict[str, list[str]] = {}
            for line in block.split("\n"):
                if not line or line.startswith(":"):
                    continue
                name, _, text = line.partition(":")
                fields.setdefault(name, []).append(text.removeprefix(" "))
            if "data" in fields:
                event = SseEvent(
                    event=fields.get("event", ["message"])[-1],
                    data="\n".join(fields["data"]),
                    id=fields.get("id", [None])[-1],
                )
                self._pending.append(event)
                self.events.append(event)

    def next_event(self, timeout: float) -> SseEvent | None:
        """The next event, or None when none came within ``timeout`` s or the server ended the answer."""
        while not self._pending:
            if self.finished:
                return None
            try:
                kind, value = self._chunks.get(timeout=timeout)
            except queue.Empty:
                return None
            self._feed(kind, value)
        return self._pending.pop(0)

    def read_until(self, stop: Callable[[SseEvent], bool], *, deadline_s: float = DEADLINE_S) -> list[SseEvent]:
        """Events up to and including the first one ``stop`` accepts; AssertionError if none came."""
        got: list[SseEvent] = []
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            event = self.next_event(0.25)
            if event is None:
                if self.finished:
                    break
                continue
            got.append(event)
            if stop(event):
                return got
        raise AssertionError(f"the awaited event never came (finished={self.finished}); got {got}")
