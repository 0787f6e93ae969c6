"""Ticket webhooks: an outbox row per ticket event, committed with the ticket; delivered signed to a
real local HTTP endpoint, retried with backoff when it fails, a dead letter when it never answers."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from models.db.engine import transaction
from models.db.tables import Camera, WebhookDelivery
from models.evidence.store import FileEvidenceStore
from models.tickets.categories import TicketSettings
from models.tickets.desk import TicketDesk
from models.tickets.ingest import ingest_events
from models.tickets.outbox import SIGNATURE_HEADER, deliver_due, verify_signature
from tests.support.events import Episode

SECRET = "webhook-secret"


class Endpoint:
    """A local HTTP server that fails its first ``fail_first`` requests with 500."""

    def __init__(self, fail_first: int) -> None:
        self.fail_first = fail_first
        self.received: list[tuple[dict[str, str], bytes]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                endpoint.received.append((dict(self.headers), body))
                ok = len(endpoint.received) > endpoint.fail_first
                self.send_response(204 if ok else 500)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    ep = Endpoint(fail_first=2)
    yield ep
    ep.close()


def open_ticket(seeded, tmp_path: Path, url: str) -> TicketDesk:  # type: ignore[no-untyped-def]
    desk = TicketDesk(TicketSettings(webhook_urls=[url], webhook_secret=SECRET), evidence=FileEvidenceStore(tmp_path / "ev"))
    with seeded() as s:
        cam = s.scalars(select(Camera.id).where(Camera.name == "cam-g1-a")).one()
    with transaction(seeded) as s:
        ingest_events(s, desk, [Episode(cam, start=datetime.now(UTC)).event("started")])
    return desk


def test_signed_delivery_with_retries(seeded, tmp_path: Path, endpoint: Endpoint) -> None:
    open_ticket(seeded, tmp_path, endpoint.url)
    with seeded() as s:
        rows = s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()
    assert [r.event for r in rows] == ["opened", "dispatch"]
    now = datetime.now(UTC)
    with httpx.Client(timeout=5) as client:
        assert deliver_due(seeded, client=client, secret=SECRET, now=now) == 0  # both fail (500)
        assert deliver_due(seeded, client=client, secret=SECRET, now=now) == 0  # not due yet: backoff
        assert deliver_due(seeded, client=client, secret=SECRET, now=now + timedelta(seconds=10)) == 2
    with seeded() as s:
        rows = s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()
    assert all(r.delivered_at is not None and r.attempts == 2 and not r.dead for r in rows)
    headers, body = endpoint.received[-1]
    assert verify_signature(SECRET, timestamp=int(headers["X-GridPatrol-Timestamp"]), body=body, signature=headers[SIGNATURE_HEADER])
    assert not verify_signature("wrong", timestamp=int(headers["X-GridPatrol-Timestamp"]), body=body, signature=headers[SIGNATURE_HEADER])
    payload = json.loads(body)
    assert payload["ticket_id"] == rows[0].ticket_id and payload["state"] in {"open", "dispatched"}
    assert "grid_path" in payload and "url" not in payload


def test_dead_letter_after_max_attempts(seeded, tmp_path: Path) -> None:
    ep = Endpoint(fail_first=10**6)
    try:
        open_ticket(seeded, tmp_path, ep.url)
        now = datetime.now(UTC)
        with httpx.Client(timeout=5) as client:
            for i in range(4):
                deliver_due(seeded, client=client, secret=SECRET, now=now + timedelta(hours=2 * i), max_attempts=3)
        with seeded() as s:
            rows = s.scalars(select(WebhookDelivery)).all()
        assert all(r.dead and r.attempts == 3 and r.delivered_at is None and r.last_error == "HTTP 500" for r in rows)
        assert len(ep.received) == 3 * len(rows)  # a dead letter is not tried again
    finally:
        ep.close()


def test_unreachable_endpoint_is_an_error_not_a_crash(seeded, tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    open_ticket(seeded, tmp_path, f"http://127.0.0.1:{port}/nobody")  # nothing listens there
    with httpx.Client(timeout=2) as client:
        assert deliver_due(seeded, client=client, secret=SECRET) == 0
    with seeded() as s:
        rows = s.scalars(select(WebhookDelivery)).all()
    assert all(r.attempts == 1 and r.last_error == "ConnectError" for r in rows)
