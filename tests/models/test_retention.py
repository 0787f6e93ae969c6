"""Retention on SQLite and PostgreSQL: old material of closed tickets, access-log rows and expired refresh
tokens are deleted and counted; what a live ticket needs stays; a legal minimum guards the access log; two
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
from models.db.tables import AccessLog, RefreshToken, Role, Ticket, TicketOccurrence, TicketState, User
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


def world(factory: sessionmaker[Session], store: FileEvidenceStore, *, closed: int = 4) -> dict[str, object]:
    """``closed`` old closed tickets, one old ticket that was reopened (live), a recently closed one, and
    a live ticket whose snapshot one of the old closed tickets also names; access log and tokens old and new."""
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
    w = world(session_factory, store, closed=12)
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
    assert total == {"evidence": 25, "occurrences": 26, "clips": 0, "access_log": 2, "refresh_tokens": 2}
    assert len(deleted_files) == len(set(deleted_files)) == 25  # each file once
    with session_factory() as s:
        needed = {k for k in s.scalars(select(TicketOccurrence.evidence_key)) if k}
    assert w["shared"] in needed and files(store) == needed  # never a live ticket's evidence
