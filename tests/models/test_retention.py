"""Retention on SQLite and PostgreSQL: old material of closed tickets, access-log rows, expired refresh
tokens, sent or long-failed outbox rows and ended camera outages are deleted and counted; what a live
ticket needs, pending deliveries and ongoing outages stay; a legal minimum guards the access log; two
ticketers running it at once delete each row once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from models.db.engine import transaction
from models.db.tables import (
    AccessLog,
    Camera,
    CameraOutage,
    NotifyChannel,
    NotifyDelivery,
    RefreshToken,
    Role,
    Ticket,
    TicketOccurrence,
    TicketState,
    User,
    WebhookDelivery,
)
from models.errors import ConfigError
from models.evidence.store import FileEvidenceStore
from models.tickets.retention import RetentionSettings, run_retention

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=800)  # beyond every default
SETTINGS = RetentionSettings(retention_batch=3)


def ticket(
    session: Session,
    store: FileEvidenceStore,
    *,
    state: TicketState,
    closed_at: datetime | None,
    images: int = 2,
    shared_key: str | None = None,
) -> Ticket:
    keys = [store.put(b"\xff\xd8\xff" + bytes(8), prefix="cam-1") for _ in range(images)]
    row = Ticket(
        category="crowding",
        state=state.value,
        closed_at=closed_at,
        opened_at=OLD - timedelta(days=1),
        evidence_key=shared_key or (keys[0] if keys else None),
        photos=[],
    )
    session.add(row)
    session.flush()
    for i, key in enumerate(keys):
        session.add(
            TicketOccurrence(
                ticket_id=row.id, event_id=f"ev-{row.id}-{i}", kind="started", at=OLD, evidence_key=key
            )
        )
    if shared_key:
        session.add(
            TicketOccurrence(
                ticket_id=row.id, event_id=f"ev-{row.id}-s", kind="updated", at=OLD, evidence_key=shared_key
            )
        )
    return row


def count(factory: sessionmaker[Session], model: type, *where: object) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where)) or 0


def files(store: FileEvidenceStore) -> set[str]:
    return {p.relative_to(store.root).as_posix() for p in store.root.rglob("*.jpg")}


@pytest.fixture
def store(tmp_path: Path) -> FileEvidenceStore:
    return FileEvidenceStore(tmp_path / "evidence")


def days_ago(days: int) -> datetime:
    return NOW - timedelta(days=days)


#: label -> (delivered days ago, failed, last attempt days ago); None: not delivered
DELIVERIES: dict[str, tuple[int | None, bool, int]] = {
    "sent-40": (40, False, 40),  # past the 30 days of sent rows: goes
    "sent-10": (10, False, 10),
    "failed-60": (None, True, 60),  # failed rows are kept 90 days
    "failed-100": (None, True, 100),  # goes
    "pending-400": (None, False, 400),  # still being retried: never goes
}
#: label -> (ended days ago, None: ongoing; started days ago)
OUTAGES: dict[str, tuple[int | None, int]] = {
    "ended-400": (400, 401),  # past 365 days: goes
    "ended-100": (100, 101),
    "ongoing-800": (None, 800),  # a camera offline for years is still offline: never goes
}


def outbox_world(session: Session, *, user: User, copy: int = 0) -> None:
    """Webhook and notification deliveries in every state and age (labels in their payload), a held
    notification, and camera outages ended long ago, lately and still going on (labels in ``reason``)."""
    channel = NotifyChannel(user_id=user.id, kind="webhook", address="http://127.0.0.1:9/hook")
    camera = Camera(name=f"cam-outage-{copy}", url="rtsp://127.0.0.1:8554/x")
    session.add_all([channel, camera])
    session.flush()
    for label, (delivered, failed, attempt) in DELIVERIES.items():
        common = {"payload": {"label": label}, "created_at": days_ago(attempt + 1), "attempts": 3}
        session.add(
            WebhookDelivery(
                event="opened",
                delivered_at=days_ago(delivered) if delivered is not None else None,
                dead=failed,
                next_attempt_at=days_ago(attempt),
                **common,
            )
        )
        state = "sent" if delivered is not None else "failed" if failed else "pending"
        session.add(
            NotifyDelivery(
                user_id=user.id,
                channel_id=channel.id,
                kind="ticket_opened",
                state=state,
                delivered_at=days_ago(delivered) if delivered is not None else None,
                next_attempt_at=days_ago(attempt),
                **common,
            )
        )
    session.add(
        NotifyDelivery(
            user_id=user.id,
            channel_id=channel.id,
            kind="ticket_opened",
            state="held",  # waiting for quiet hours to end
            next_attempt_at=days_ago(400),
            created_at=days_ago(401),
            payload={"label": "held-400"},
        )
    )
    for label, (ended, started) in OUTAGES.items():
        session.add(
            CameraOutage(
                camera_id=camera.id,
                ongoing_camera_id=camera.id if ended is None else None,
                started_at=days_ago(started),
                ended_at=days_ago(ended) if ended is not None else None,
                state="backoff",
                reason=label,
            )
        )


def outbox_labels(factory: sessionmaker[Session]) -> dict[str, list[str]]:
    with factory() as s:
        return {
            "webhook": sorted(p["label"] for p in s.scalars(select(WebhookDelivery.payload))),
            "notify": sorted(p["label"] for p in s.scalars(select(NotifyDelivery.payload))),
            "outages": sorted(s.scalars(select(CameraOutage.reason))),
        }


def world(
    factory: sessionmaker[Session], store: FileEvidenceStore, *, closed: int = 4, outboxes: int = 1
) -> dict[str, object]:
    """``closed`` old closed tickets, one old ticket that was reopened (live), a recently closed one, and
    a live ticket whose snapshot one of the old closed tickets also names; access log and tokens old and new;
    ``outboxes`` copies of :func:`outbox_world`."""
    with transaction(factory) as s:
        live = ticket(s, store, state=TicketState.dispatched, closed_at=None)
        shared = live.evidence_key
        reopened = ticket(s, store, state=TicketState.reopened, closed_at=OLD)
        recent = ticket(s, store, state=TicketState.closed, closed_at=NOW - timedelta(days=3))
        old = [ticket(s, store, state=TicketState.closed, closed_at=OLD) for _ in range(closed)]
        old.append(ticket(s, store, state=TicketState.closed, closed_at=OLD, images=1, shared_key=shared))
        user = User(username="u1", password_hash="x", role=Role.operator.value)
        s.add(user)
        s.flush()
        for days in (200, 181, 179, 1):
            s.add(AccessLog(at=NOW - timedelta(days=days), action="view", channel="api", user_id=user.id))
        for i, days in enumerate((30, 8, 6, -1)):  # expired that many days ago (-1: still valid)
            s.add(
                RefreshToken(
                    user_id=user.id,
                    family=f"f{i}",
                    token_hash=f"h{i}",
                    token_version=0,
                    expires_at=NOW - timedelta(days=days),
                )
            )
        for i in range(outboxes):
            outbox_world(s, user=user, copy=i)
        keep = {live.id, reopened.id, recent.id}
        return {"keep": keep, "old": [t.id for t in old], "shared": shared}


def test_retention_deletes_old_material_of_closed_tickets_and_keeps_what_live_ones_need(
    session_factory: sessionmaker[Session], store: FileEvidenceStore
) -> None:
    w = world(session_factory, store)
    before = files(store)
    assert len(before) == 2 * 7 + 1  # two images each for seven tickets, one for the one sharing a snapshot
    result = run_retention(session_factory, SETTINGS, now=NOW, delete_file=store.delete)

    assert result.deleted == {
        "evidence": 9,
        "occurrences": 10,
        "clips": 0,
        "access_log": 2,
        "refresh_tokens": 2,
        "webhook_deliveries": 2,
        "notify_deliveries": 2,
        "camera_outages": 1,
    }
    kept_ids = w["keep"]
    assert isinstance(kept_ids, set)
    with session_factory() as s:
        remaining = set(s.scalars(select(TicketOccurrence.ticket_id)))
        assert remaining == kept_ids  # every occurrence of a live or recently closed ticket stays
        assert count(session_factory, Ticket) == 3 + 5  # tickets themselves are kept
        assert s.scalars(select(Ticket.evidence_key).where(Ticket.id.in_(w["old"]))).all() == [None] * 5
    # every file a kept ticket names is still there, the shared one included
    with session_factory() as s:
        needed = {k for k in s.scalars(select(TicketOccurrence.evidence_key)) if k}
    assert w["shared"] in needed and needed <= files(store)
    assert files(store) == needed
    assert count(session_factory, AccessLog) == 2  # 179 days and 1 day old
    assert count(session_factory, RefreshToken) == 2  # expired 6 days ago (grace 7) and still valid
    again = run_retention(session_factory, SETTINGS, now=NOW, delete_file=store.delete)
    assert sum(again.deleted.values()) == 0


def test_evidence_goes_before_occurrences_when_configured_so(
    session_factory: sessionmaker[Session], store: FileEvidenceStore
) -> None:
    with transaction(session_factory) as s:
        ticket(s, store, state=TicketState.closed, closed_at=NOW - timedelta(days=100))
    settings = RetentionSettings(retention_evidence_days=90, retention_occurrences_days=0)
    result = run_retention(session_factory, settings, now=NOW, delete_file=store.delete)
    assert (result.deleted["evidence"], result.deleted["occurrences"]) == (2, 0)
    assert count(session_factory, TicketOccurrence) == 2
    assert count(session_factory, TicketOccurrence, TicketOccurrence.evidence_key.is_not(None)) == 0
    assert files(store) == set()


@pytest.mark.parametrize(
    ("env", "value", "error"),
    [
        (
            "retention_access_log_days",
            30,
            "GRIDPATROL_RETENTION_ACCESS_LOG_DAYS=30 is below the legal minimum of 180",
        ),
        (
            "retention_access_log_days",
            179,
            "GRIDPATROL_RETENTION_ACCESS_LOG_DAYS=179 is below the legal minimum",
        ),
        ("retention_evidence_days", -1, "retention_evidence_days"),
        ("retention_batch", 0, "retention_batch"),
        (
            "retention_failed_deliveries_days",
            10,
            "GRIDPATROL_RETENTION_FAILED_DELIVERIES_DAYS=10 is shorter than GRIDPATROL_RETENTION_DELIVERIES_DAYS=30",
        ),
        ("retention_deliveries_days", -1, "retention_deliveries_days"),
        ("retention_outages_days", -1, "retention_outages_days"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(env: str, value: int, error: str) -> None:
    with pytest.raises((ConfigError, ValidationError)) as info:
        RetentionSettings(**{env: value})
    assert error in str(info.value)


def test_settings_defaults_keep_access_logs_six_months(monkeypatch: pytest.MonkeyPatch) -> None:
    assert RetentionSettings().retention_access_log_days == 180
    assert RetentionSettings(retention_access_log_days=0).retention_access_log_days == 0  # keep forever
    monkeypatch.setenv("GRIDPATROL_RETENTION_ACCESS_LOG_DAYS", "90")
    with pytest.raises(ConfigError, match="GRIDPATROL_RETENTION_ACCESS_LOG_DAYS"):
        RetentionSettings()


def test_two_ticketers_at_once_delete_each_row_once(
    session_factory: sessionmaker[Session], store: FileEvidenceStore
) -> None:
    w = world(session_factory, store, closed=12, outboxes=3)
    deleted_files: list[str] = []
    lock = threading.Lock()

    def delete_file(key: str) -> None:
        with lock:
            deleted_files.append(key)
        store.delete(key)

    results = []
    barrier = threading.Barrier(2)

    def run() -> None:
        barrier.wait()
        results.append(
            run_retention(
                session_factory, RetentionSettings(retention_batch=2), now=NOW, delete_file=delete_file
            )
        )

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2
    total = {k: results[0].deleted[k] + results[1].deleted[k] for k in results[0].deleted}
    assert total == {
        "evidence": 25,
        "occurrences": 26,
        "clips": 0,
        "access_log": 2,
        "refresh_tokens": 2,
        "webhook_deliveries": 6,
        "notify_deliveries": 6,
        "camera_outages": 3,
    }
    assert count(session_factory, WebhookDelivery) == count(session_factory, NotifyDelivery) - 3 == 9
    assert len(deleted_files) == len(set(deleted_files)) == 25  # each file once
    with session_factory() as s:
        needed = {k for k in s.scalars(select(TicketOccurrence.evidence_key)) if k}
    assert w["shared"] in needed and files(store) == needed  # never a live ticket's evidence


def test_outbox_rows_go_by_state_and_age_and_ongoing_outages_stay(
    session_factory: sessionmaker[Session], store: FileEvidenceStore
) -> None:
    with transaction(session_factory) as s:
        user = User(username="u1", password_hash="x", role=Role.operator.value)
        s.add(user)
        s.flush()
        outbox_world(s, user=user)
    everything = outbox_labels(session_factory)
    assert (len(everything["webhook"]), len(everything["notify"]), len(everything["outages"])) == (5, 6, 3)
    kept = {"sent-10", "failed-60", "pending-400"}

    result = run_retention(session_factory, SETTINGS, now=NOW, delete_file=store.delete)
    assert (result.deleted["webhook_deliveries"], result.deleted["notify_deliveries"]) == (2, 2)
    assert result.deleted["camera_outages"] == 1
    assert outbox_labels(session_factory) == {
        "webhook": sorted(kept),
        "notify": sorted(kept | {"held-400"}),
        "outages": ["ended-100", "ongoing-800"],
    }

    # a month later the recent sent row is past 30 days, the failed one past 90, the outage not yet past 365
    later = run_retention(session_factory, SETTINGS, now=NOW + timedelta(days=31), delete_file=store.delete)
    assert (later.deleted["webhook_deliveries"], later.deleted["notify_deliveries"]) == (2, 2)
    assert outbox_labels(session_factory) == {
        "webhook": ["pending-400"],
        "notify": ["held-400", "pending-400"],
        "outages": ["ended-100", "ongoing-800"],
    }


@pytest.mark.parametrize(
    ("days", "webhook_left", "outages_left"),
    [
        (
            {
                "retention_deliveries_days": 0,
                "retention_failed_deliveries_days": 0,
                "retention_outages_days": 0,
            },
            5,
            3,
        ),
        ({"retention_failed_deliveries_days": 0}, 4, 2),  # sent rows still go; failed ones are kept forever
        ({"retention_deliveries_days": 0}, 4, 2),  # failed rows still go after 90 days; sent ones are kept
    ],
)
def test_zero_days_keep_outbox_rows_and_outages(
    session_factory: sessionmaker[Session],
    store: FileEvidenceStore,
    days: dict[str, int],
    webhook_left: int,
    outages_left: int,
) -> None:
    with transaction(session_factory) as s:
        user = User(username="u1", password_hash="x", role=Role.operator.value)
        s.add(user)
        s.flush()
        outbox_world(s, user=user)
    run_retention(session_factory, RetentionSettings(**days), now=NOW, delete_file=store.delete)
    left = outbox_labels(session_factory)
    assert (len(left["webhook"]), len(left["notify"]), len(left["outages"])) == (
        webhook_left,
        webhook_left + 1,
        outages_left,
    )
    assert "pending-400" in left["webhook"] and "ongoing-800" in left["outages"]


def test_failed_deliveries_kept_at_least_as_long_as_sent_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = RetentionSettings()
    assert (defaults.retention_deliveries_days, defaults.retention_failed_deliveries_days) == (30, 90)
    assert defaults.retention_outages_days == 365
    assert RetentionSettings(
        retention_deliveries_days=0, retention_failed_deliveries_days=10
    )  # sent kept forever
    monkeypatch.setenv("GRIDPATROL_RETENTION_DELIVERIES_DAYS", "120")
    with pytest.raises(ConfigError, match="GRIDPATROL_RETENTION_FAILED_DELIVERIES_DAYS=90 is shorter"):
        RetentionSettings()
