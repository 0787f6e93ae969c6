"""Retention benchmark: one pass over a backlog (closed tickets older than every default, with occurrences
and evidence files; access-log rows older than six months; expired refresh tokens; webhook and
notification deliveries sent or failed long ago, with a quarter still pending that stays; ended camera
outages), on PostgreSQL and SQLite, with one ticketer and with two at once; and the cost of a pass that
finds nothing (the steady state).

    .venv/bin/python bench/bench_retention.py [--tickets 2000] [--occurrences 5] [--access-log 50000]
        [--deliveries 20000]

Rows per second = rows and files deleted / wall time of the pass. ``max_rounds`` is raised so that one
pass clears the whole backlog (the ticketer's default stops after 20 rounds of 500 per kind per pass).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert  # noqa: E402

from models.db.engine import make_engine, make_session_factory, upgrade  # noqa: E402
from models.db.tables import (  # noqa: E402
    AccessLog,
    Camera,
    CameraOutage,
    NotifyChannel,
    NotifyDelivery,
    RefreshToken,
    Role,
    Ticket,
    TicketOccurrence,
    User,
    WebhookDelivery,
)
from models.evidence.store import FileEvidenceStore  # noqa: E402
from models.tickets.retention import RetentionSettings, run_retention  # noqa: E402
from tests.support.databases import postgres_available, postgres_database  # noqa: E402

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=800)


def deliveries_of(n: int) -> list[dict[str, object]]:
    """``n`` outbox rows: half sent 40 days ago, a quarter failed 100 days ago (both past the defaults),
    a quarter still pending (never deleted); ``state`` is the notification state, dropped for webhooks."""
    rows: list[dict[str, object]] = []
    for i in range(n):
        state = ("sent", "sent", "failed", "pending")[i % 4]
        at = NOW - timedelta(days={"sent": 40, "failed": 100, "pending": 400}[state])
        rows.append(
            {
                "state": state,
                "payload": {"i": i},
                "attempts": 1,
                "next_attempt_at": at,
                "delivered_at": at if state == "sent" else None,
                "last_error": "",
                "created_at": at,
            }
        )
    return rows


def fill(
    url: str, store: FileEvidenceStore, *, tickets: int, occurrences: int, access_log: int, deliveries: int
) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(insert(User), [{"username": "bench", "password_hash": "x", "role": Role.operator.value}])
        user_id = conn.execute(User.__table__.select()).first().id  # type: ignore[union-attr]
        conn.execute(
            insert(Ticket),
            [
                {"category": "crowding", "state": "closed", "closed_at": OLD, "opened_at": OLD, "photos": []}
                for _ in range(tickets)
            ],
        )
        ids = [r.id for r in conn.execute(Ticket.__table__.select())]
        rows = []
        for tid in ids:
            for j in range(occurrences):
                key = store.put(b"\xff\xd8\xff" + bytes(2000), prefix=f"cam-{tid % 50}")
                rows.append(
                    {
                        "ticket_id": tid,
                        "event_id": f"e{tid}-{j}",
                        "kind": "updated",
                        "at": OLD,
                        "evidence_key": key,
                        "payload": {},
                    }
                )
        conn.execute(insert(TicketOccurrence), rows)
        conn.execute(
            insert(AccessLog),
            [
                {"at": NOW - timedelta(days=200), "action": "view", "channel": "api", "detail": {}}
                for _ in range(access_log)
            ],
        )
        conn.execute(
            insert(RefreshToken),
            [
                {
                    "user_id": user_id,
                    "family": f"f{i}",
                    "token_hash": f"h{i}",
                    "token_version": 0,
                    "expires_at": OLD,
                }
                for i in range(access_log // 10)
            ],
        )
        if deliveries:
            rows = deliveries_of(deliveries)
            hooks = [{k: v for k, v in r.items() if k != "state"} for r in rows]
            for hook, row in zip(hooks, rows, strict=True):
                hook.update(event="opened", dead=row["state"] == "failed")
            conn.execute(insert(WebhookDelivery), hooks)
            conn.execute(
                insert(NotifyChannel),
                [{"user_id": user_id, "kind": "webhook", "address": "", "enabled": True}],
            )
            channel_id = conn.execute(NotifyChannel.__table__.select()).first().id  # type: ignore[union-attr]
            conn.execute(
                insert(NotifyDelivery),
                [{**r, "user_id": user_id, "channel_id": channel_id, "kind": "ticket_opened"} for r in rows],
            )
            conn.execute(insert(Camera), [{"name": "bench", "url": "rtsp://127.0.0.1/x"}])
            camera_id = conn.execute(Camera.__table__.select()).first().id  # type: ignore[union-attr]
            conn.execute(
                insert(CameraOutage),
                [
                    {
                        "camera_id": camera_id,
                        "started_at": OLD,
                        "ended_at": OLD,
                        "state": "backoff",
                        "reason": "",
                    }
                    for _ in range(deliveries // 10)
                ],
            )
    engine.dispose()


def one_pass(url: str, store: FileEvidenceStore, ticketers: int) -> tuple[float, int]:
    engine = make_engine(url)
    factory = make_session_factory(engine)
    settings = RetentionSettings()
    totals: list[int] = []

    def run() -> None:
        result = run_retention(factory, settings, now=NOW, delete_file=store.delete, max_rounds=10_000)
        totals.append(sum(result.deleted.values()))

    threads = [threading.Thread(target=run) for _ in range(ticketers)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    engine.dispose()
    return wall, sum(totals)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickets", type=int, default=2000)
    parser.add_argument("--occurrences", type=int, default=5)
    parser.add_argument("--access-log", type=int, default=50_000)
    parser.add_argument("--deliveries", type=int, default=20_000, help="webhook and notification rows each")
    args = parser.parse_args()
    kinds = ["sqlite"] + (["postgresql"] if postgres_available() else [])
    print("| database | ticketers | rows+files deleted | pass s | per s | empty pass ms |")
    print("|---|---|---|---|---|---|")
    for kind in kinds:
        for ticketers in (1, 2):
            with tempfile.TemporaryDirectory() as tmp:
                store = FileEvidenceStore(Path(tmp) / "evidence")
                if kind == "sqlite":
                    url = f"sqlite:///{tmp}/bench.db"
                    engine = make_engine(url)
                    upgrade(engine)
                    engine.dispose()
                    ctx = None
                else:
                    ctx = postgres_database()
                    url = ctx.__enter__()
                try:
                    fill(
                        url,
                        store,
                        tickets=args.tickets,
                        occurrences=args.occurrences,
                        access_log=args.access_log,
                        deliveries=args.deliveries,
                    )
                    wall, deleted = one_pass(url, store, ticketers)
                    empty, _ = one_pass(url, store, 1)
                finally:
                    if ctx is not None:
                        ctx.__exit__(None, None, None)
            print(
                f"| {kind} | {ticketers} | {deleted} | {wall:.2f} | {deleted / wall:,.0f} | {empty * 1000:.0f} |"
            )


if __name__ == "__main__":
    main()
