"""Delivering the webhook outbox: HMAC-signed POSTs with retries, backoff and a dead letter.

Rows are leased (their next attempt pushed forward) in a short transaction, sent outside any
transaction, then marked; a slow or dead endpoint never holds a lock or blocks the ticketer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
from datetime import datetime, timedelta

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.db.engine import transaction
from models.db.tables import WebhookDelivery, utcnow
from models.secrets import redact_url

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-GridPatrol-Signature"
LEASE_S = 60


def sign(secret: str, *, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>`` of ``"<timestamp>." + body``; receivers recompute it and compare in constant time."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(secret: str, *, timestamp: int, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, timestamp=timestamp, body=body), signature)


def backoff_s(attempts: int, *, base_s: float = 2.0, cap_s: float = 3600.0) -> float:
    return min(cap_s, base_s * 2 ** (attempts - 1)) * random.uniform(0.8, 1.2)


def deliver_due(
    factory: sessionmaker[Session],
    *,
    client: httpx.Client,
    secret: str,
    now: datetime | None = None,
    max_attempts: int = 8,
    batch: int = 50,
) -> int:
    """Send every due delivery once; returns how many were delivered."""
    now = now or utcnow()
    with transaction(factory) as s:
        rows = s.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.delivered_at.is_(None), WebhookDelivery.dead.is_(False), WebhookDelivery.next_attempt_at <= now)
            .order_by(WebhookDelivery.id)
            .limit(batch)
            .with_for_update(skip_locked=True)
        ).all()
        for r in rows:
            r.next_attempt_at = now + timedelta(seconds=LEASE_S)
        leased = [(r.id, r.event, dict(r.payload), r.attempts) for r in rows]

    delivered = 0
    for row_id, event, payload, attempts in leased:
        url = str(payload.pop("url"))
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        ts = int(now.timestamp())
        headers = {
            "Content-Type": "application/json",
            "X-GridPatrol-Event": event,
            "X-GridPatrol-Delivery": str(row_id),
            "X-GridPatrol-Timestamp": str(ts),
            SIGNATURE_HEADER: sign(secret, timestamp=ts, body=body),
        }
        error = ""
        try:
            response = client.post(url, content=body, headers=headers)
            if response.is_success:
                error = ""
            else:
                error = f"HTTP {response.status_code}"
        except httpx.HTTPError as err:
            error = f"{type(err).__name__}"
        with transaction(factory) as s:
            got = s.get(WebhookDelivery, row_id)
            if got is None:
                continue
            row = got
            row.attempts = attempts + 1
            if not error:
                row.delivered_at = utcnow()
                delivered += 1
                continue
            row.last_error = error
            if row.attempts >= max_attempts:
                row.dead = True
                logger.error("webhook %s to %s is a dead letter after %d attempts: %s", row_id, redact_url(url), row.attempts, error)
            else:
                row.next_attempt_at = now + timedelta(seconds=backoff_s(row.attempts))
                logger.warning("webhook %s to %s failed (%s); attempt %d", row_id, redact_url(url), error, row.attempts)
    return delivered
