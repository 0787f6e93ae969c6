"""Ticket webhooks: an outbox row per ticket event, committed with the ticket; delivered signed to a
real local HTTP endpoint, retried with backoff when it fails, a dead letter when it never answers;
a stable delivery id per row, and never sent twice by two deliverers working the same outbox."""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.db.engine import transaction
from models.db.tables import Camera, WebhookDelivery, utcnow
from models.evidence.store import FileEvidenceStore
from models.tickets.categories import TicketSettings
from models.tickets.desk import TicketDesk
from models.tickets.ingest import ingest_events
from models.tickets.outbox import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    deliver_due,
    lease_s,
    request_budget_s,
    verify_signature,
)
from tests.support.events import Episode

SECRET = "webhook-secret"


class Endpoint:
    """A local HTTP server that fails its first ``fail_first`` requests with 500.

    With ``hold_first`` the first request waits (up to 10 s) for ``release`` before it is answered,
    which keeps one delivery in flight for as long as a test needs."""

    def __init__(self, fail_first: int, *, hold_first: bool = False) -> None:
        self.fail_first = fail_first
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.first_arrived = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()
        lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with lock:
                    endpoint.received.append((dict(self.headers), body))
                    n = len(endpoint.received)
                if n == 1:
                    endpoint.first_arrived.set()
                    endpoint.release.wait(10)
                self.send_response(204 if n > endpoint.fail_first else 500)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivery_ids(self) -> list[str]:
        return [h[DELIVERY_HEADER] for h, _ in self.received]

    def close(self) -> None:
        self.release.set()
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


def queue_rows(factory: sessionmaker[Session], url: str, n: int) -> list[int]:
    """``n`` due outbox rows for ``url`` (no ticket: the outbox does not care)."""
    with transaction(factory) as s:
        rows = [
            WebhookDelivery(ticket_id=None, event="opened", payload={"url": url, "seq": i}, next_attempt_at=utcnow() - timedelta(seconds=1))
            for i in range(n)
        ]
        s.add_all(rows)
        s.flush()
        return [r.id for r in rows]


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
    assert len(rows) == 2
    assert [(r.delivered_at is not None, r.attempts, r.dead) for r in rows] == [(True, 2, False)] * 2
    assert len(endpoint.received) == 4
    headers, body = endpoint.received[-1]
    assert verify_signature(SECRET, timestamp=int(headers["X-GridPatrol-Timestamp"]), body=body, signature=headers[SIGNATURE_HEADER])
    assert not verify_signature("wrong", timestamp=int(headers["X-GridPatrol-Timestamp"]), body=body, signature=headers[SIGNATURE_HEADER])
    payload = json.loads(body)
    assert payload["ticket_id"] == rows[0].ticket_id and payload["state"] in {"open", "dispatched"}
    assert "grid_path" in payload and "url" not in payload


def test_delivery_id_is_stable_across_retries_and_distinct_between_rows(seeded, tmp_path: Path, endpoint: Endpoint) -> None:
    open_ticket(seeded, tmp_path, endpoint.url)
    now = datetime.now(UTC)
    with httpx.Client(timeout=5) as client:
        assert deliver_due(seeded, client=client, secret=SECRET, now=now) == 0  # both fail (500)
        assert deliver_due(seeded, client=client, secret=SECRET, now=now + timedelta(seconds=10)) == 2
    assert len(endpoint.received) == 4
    ids = endpoint.delivery_ids()
    assert all(uuid.UUID(i).version == 5 for i in ids)
    assert ids[:2] == ids[2:]  # the retry of each row carries the id of its first attempt
    assert len(set(ids)) == 2  # ... and the two rows have different ids
    # the same row always pairs with the same id: the event and body of both attempts match
    by_id: dict[str, set[tuple[str, bytes]]] = {}
    for headers, body in endpoint.received:
        by_id.setdefault(headers[DELIVERY_HEADER], set()).add((headers["X-GridPatrol-Event"], body))
    assert sorted(len(v) for v in by_id.values()) == [1, 1]


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
        assert len(rows) == 2
        assert [(r.dead, r.attempts, r.delivered_at, r.last_error) for r in rows] == [(True, 3, None, "HTTP 500")] * 2
        assert len(ep.received) == 3 * len(rows)  # a dead letter is not tried again
        assert Counter(ep.delivery_ids()) == Counter({i: 3 for i in set(ep.delivery_ids())}) and len(set(ep.delivery_ids())) == 2
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
    assert len(rows) == 2
    assert [(r.attempts, r.last_error) for r in rows] == [(1, "ConnectError")] * 2


def test_lease_outlives_the_request_and_covers_only_the_row_in_flight(session_factory: sessionmaker[Session]) -> None:
    """While deliverer A's first POST hangs, only that row is leased (until after A's worst-case
    request), and deliverer B sends every other row; A never sends them again."""
    ep = Endpoint(fail_first=0, hold_first=True)
    try:
        ids = queue_rows(session_factory, ep.url, 6)
        with session_factory() as s:
            before = {i: at for i, at in s.execute(select(WebhookDelivery.id, WebhookDelivery.next_attempt_at))}
        assert len(before) == 6
        with httpx.Client(timeout=5) as client_a, httpx.Client(timeout=5) as client_b:
            assert lease_s(client_a) > request_budget_s(client_a) == 20
            result_a: list[int] = []
            started = utcnow()
            a = threading.Thread(target=lambda: result_a.append(deliver_due(session_factory, client=client_a, secret=SECRET)))
            a.start()
            try:
                assert ep.first_arrived.wait(10)
                with session_factory() as s:
                    during = {i: at for i, at in s.execute(select(WebhookDelivery.id, WebhookDelivery.next_attempt_at))}
                leased = [i for i in ids if during[i] != before[i]]
                assert leased == [ids[0]]  # only the row being sent is leased
                assert during[ids[0]] >= started + timedelta(seconds=request_budget_s(client_a))
                # B comes when A's request may still legitimately be running: it must not take A's row
                late = utcnow() + timedelta(seconds=request_budget_s(client_a))
                assert deliver_due(session_factory, client=client_b, secret=SECRET, now=late) == 5
            finally:
                ep.release.set()
                a.join(20)
        assert result_a == [1]
    finally:
        ep.close()
    assert len(ep.received) == 6
    assert sorted(Counter(ep.delivery_ids()).values()) == [1] * 6
    assert sorted(json.loads(body)["seq"] for _, body in ep.received) == list(range(6))
    with session_factory() as s:
        rows = s.scalars(select(WebhookDelivery)).all()
    assert len(rows) == 6
    assert [(r.delivered_at is not None, r.attempts) for r in rows] == [(True, 1)] * 6


def test_two_deliverers_at_once_never_send_a_row_twice(session_factory: sessionmaker[Session]) -> None:
    ep = Endpoint(fail_first=0)
    n = 40
    try:
        queue_rows(session_factory, ep.url, n)
        results: list[int] = []
        gate = threading.Barrier(2)

        def deliverer() -> None:
            with httpx.Client(timeout=5) as client:
                gate.wait(10)
                results.append(deliver_due(session_factory, client=client, secret=SECRET, batch=n))

        threads = [threading.Thread(target=deliverer) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        ep.close()
    assert len(results) == 2 and sum(results) == n
    assert len(ep.received) == n
    counts = Counter(ep.delivery_ids())
    assert len(counts) == n and set(counts.values()) == {1}
    with session_factory() as s:
        rows = s.scalars(select(WebhookDelivery)).all()
    assert len(rows) == n
    assert {(r.delivered_at is not None, r.attempts) for r in rows} == {(True, 1)}
