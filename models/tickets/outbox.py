"""Delivering the webhook outbox: HMAC-signed POSTs with retries, backoff and a dead letter.

Rows are leased one at a time, just before their POST, in a short transaction (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL, the write lock on SQLite), sent outside any transaction, then marked; a slow
or dead endpoint never holds a lock or blocks the ticketer. A lease lasts longer than the client's
worst-case request (:func:`lease_s`), so another deliverer never takes a row that is still being
sent; a row a batch has not reached yet is not leased at all and stays free for other deliverers.

Delivery is still at-least-once (a crash between the POST and the mark sends the row again), so every
POST carries ``X-GridPatrol-Delivery``: an id that is the same on every retry of a row and differs
between rows and between installations; receivers deduplicate on it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.db.engine import transaction
from models.db.tables import WebhookDelivery, utcnow
from models.secrets import redact_url

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-GridPatrol-Signature"
DELIVERY_HEADER = "X-GridPatrol-Delivery"
#: added to the worst-case request time: marking the row after the POST, clock skew between hosts
LEASE_MARGIN_S = 30.0
#: the request time assumed when the client has no finite timeout for some phase
UNBOUNDED_REQUEST_S = 600.0
#: namespace of the delivery ids (uuid5), fixed so that an id never changes between releases
DELIVERY_NAMESPACE = uuid.UUID("6f1d3c1e-5a0b-4c55-9a37-1f0c2b7d9e42")


def sign(secret: str, *, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>`` of ``"<timestamp>." + body``; receivers recompute it and compare in constant time."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(secret: str, *, timestamp: int, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, timestamp=timestamp, body=body), signature)


def backoff_s(attempts: int, *, base_s: float = 2.0, cap_s: float = 3600.0) -> float:
    return min(cap_s, base_s * 2 ** (attempts - 1)) * random.uniform(0.8, 1.2)


def delivery_id(row_id: int, created_at: datetime) -> str:
    """The ``X-GridPatrol-Delivery`` id of an outbox row: stable across its retries (both inputs are
    immutable), and not repeated by another installation or a fresh database that reuses the row id."""
    return str(uuid.uuid5(DELIVERY_NAMESPACE, f"{row_id}@{created_at.isoformat()}"))


def request_budget_s(client: httpx.Client) -> float:
    """The longest one POST may take under ``client``'s timeouts (pool + connect + write + read)."""
    t = client.timeout
    phases = (t.pool, t.connect, t.write, t.read)
    return sum(UNBOUNDED_REQUEST_S if p is None else p for p in phases)


def lease_s(client: httpx.Client) -> float:
    """How long a row stays leased to the deliverer that is sending it: longer than its request."""
    return request_budget_s(client) + LEASE_MARGIN_S


@dataclass(frozen=True)
class _Leased:
    row_id: int
    event: str
    payload: dict[str, object]
    delivery_id: str
    until: datetime


def _lease_next(factory: sessionmaker[Session], *, at: datetime, after_id: int, lease_for_s: float) -> _Leased | None:
    """Lease the next due row after ``after_id`` (rows another deliverer holds locked are skipped)."""
    with transaction(factory) as s:
        row = s.scalars(
            select(WebhookDelivery)
            .where(
                WebhookDelivery.delivered_at.is_(None),
                WebhookDelivery.dead.is_(False),
                WebhookDelivery.next_attempt_at <= at,
                WebhookDelivery.id > after_id,
            )
            .order_by(WebhookDelivery.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if row is None:
            return None
        until = at + timedelta(seconds=lease_for_s)
        row.next_attempt_at = until
        return _Leased(row.id, row.event, dict(row.payload), delivery_id(row.id, row.created_at), until)


def _post(client: httpx.Client, url: str, *, body: bytes, headers: dict[str, str]) -> str:
    """POST and return ``""`` on a 2xx, else the error; the response body is never read (a receiver
    that trickles a body cannot hold the row past its lease)."""
    try:
        with client.stream("POST", url, content=body, headers=headers) as response:
            return "" if response.is_success else f"HTTP {response.status_code}"
    except httpx.HTTPError as err:
        return type(err).__name__


def deliver_due(
    factory: sessionmaker[Session],
    *,
    client: httpx.Client,
    secret: str,
    now: datetime | None = None,
    max_attempts: int = 8,
    batch: int = 50,
) -> int:
    """Send each due delivery once (at most ``batch``); returns how many were delivered.

    ``now`` pins the clock (tests); by default each row is leased and rescheduled at the time it is
    reached, so that a long batch never works with a stale clock."""
    lease_for_s = lease_s(client)
    delivered = 0
    after_id = 0
    for _ in range(batch):
        at = now or utcnow()
        leased = _lease_next(factory, at=at, after_id=after_id, lease_for_s=lease_for_s)
        if leased is None:
            break
        after_id = leased.row_id
        payload = dict(leased.payload)
        url = str(payload.pop("url"))
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        ts = int(at.timestamp())
        headers = {
            "Content-Type": "application/json",
            "X-GridPatrol-Event": leased.event,
            DELIVERY_HEADER: leased.delivery_id,
            "X-GridPatrol-Timestamp": str(ts),
            SIGNATURE_HEADER: sign(secret, timestamp=ts, body=body),
        }
        error = _post(client, url, body=body, headers=headers)
        if _mark(factory, leased, url=url, error=error, at=now or utcnow(), max_attempts=max_attempts):
            delivered += 1
    return delivered


def _mark(factory: sessionmaker[Session], leased: _Leased, *, url: str, error: str, at: datetime, max_attempts: int) -> bool:
    """Record one attempt; True when it delivered the row."""
    with transaction(factory) as s:
        row = s.get(WebhookDelivery, leased.row_id, with_for_update=True)
        if row is None or row.delivered_at is not None:
            return False  # deleted meanwhile, or delivered by a deliverer that took over a lost lease
        if row.next_attempt_at != leased.until:
            logger.warning("webhook %s to %s: lease lost while sending (request longer than the lease)", leased.row_id, redact_url(url))
        row.attempts = row.attempts + 1
        if not error:
            row.delivered_at = utcnow()
            return True
        row.last_error = error
        if row.attempts >= max_attempts:
            row.dead = True
            logger.error("webhook %s to %s is a dead letter after %d attempts: %s", leased.row_id, redact_url(url), row.attempts, error)
        else:
            row.next_attempt_at = at + timedelta(seconds=backoff_s(row.attempts))
            logger.warning("webhook %s to %s failed (%s); attempt %d", leased.row_id, redact_url(url), error, row.attempts)
        return False
