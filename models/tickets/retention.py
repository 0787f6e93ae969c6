"""Retention: old evidence images, occurrences, access-log rows, expired refresh tokens, delivered or
failed outbox rows (webhooks, notifications) and ended camera outages are deleted.

Only what no live ticket needs goes: evidence and occurrences of tickets **closed** longer ago than the
configured days (a reopened ticket is live again and keeps everything), and an image is kept while any
live ticket still names it. Access-log rows are kept at least six months (network logs, PRC
Cybersecurity Law art. 21). Each round locks the closed tickets it works on (``FOR UPDATE SKIP LOCKED``
on PostgreSQL, the write lock on SQLite), so two ticketers running retention at once share the work and
delete each row once; files are deleted after the commit, by the ticketer whose commit removed their
keys. Event clips of closed tickets have their own, shorter sweep (``models.tickets.clips``); the clip of
an occurrence deleted here is deleted with it.

Outbox rows go by their state: sent rows after ``retention_deliveries_days`` from their delivery, failed
ones (webhook dead letters, notifications that gave up) only after the longer
``retention_failed_deliveries_days`` from their last attempt, so that an admin can still see and resend
them; pending (or held) rows never. Camera outages go a while after they ended, an ongoing one never.
These rows are locked like the tickets (``FOR UPDATE SKIP LOCKED``) and deleted by id with their
condition checked again, so a row resent in between stays and each row is counted once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import Field, model_validator
from sqlalchemy import ColumnElement, delete, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from models.db.engine import transaction
from models.db.tables import (
    AccessLog,
    CameraOutage,
    NotifyDelivery,
    RefreshToken,
    Ticket,
    TicketOccurrence,
    TicketState,
    TicketTransition,
    WebhookDelivery,
)
from models.errors import ConfigError
from models.settings import PartSettings

#: the legal minimum for network access logs: six months (《网络安全法》 第二十一条)
ACCESS_LOG_MIN_DAYS = 180
#: the counted kinds (``gridpatrol_retention_deleted_total{kind=...}``)
KINDS = (
    "evidence",
    "occurrences",
    "clips",
    "access_log",
    "refresh_tokens",
    "webhook_deliveries",
    "notify_deliveries",
    "camera_outages",
)


class RetentionSettings(PartSettings):
    """How long closed tickets' material, access-log rows, expired refresh tokens, outbox rows and ended
    camera outages are kept; 0 keeps forever."""

    retention_evidence_days: int = Field(
        default=365,
        ge=0,
        description="Evidence images of tickets closed longer ago than this are deleted; 0 = keep",
    )
    retention_occurrences_days: int = Field(
        default=730,
        ge=0,
        description="Occurrence rows of tickets closed longer ago than this are deleted; 0 = keep",
    )
    retention_access_log_days: int = Field(
        default=ACCESS_LOG_MIN_DAYS,
        ge=0,
        description="Access-log (audit) rows older than this are deleted; at least 180 (six months); 0 = keep",
    )
    retention_refresh_tokens_days: int = Field(
        default=7, ge=0, description="Refresh tokens expired longer ago than this are deleted"
    )
    retention_deliveries_days: int = Field(
        default=30,
        ge=0,
        description="Webhook and notification deliveries sent longer ago than this are deleted; 0 = keep",
    )
    retention_failed_deliveries_days: int = Field(
        default=90,
        ge=0,
        description="Failed webhook and notification deliveries (dead letters, given up) whose last attempt"
        " is older than this are deleted; at least the sent rows' days, so an admin can still resend them; 0 = keep",
    )
    retention_outages_days: int = Field(
        default=365,
        ge=0,
        description="Camera outages that ended longer ago than this are deleted (ongoing ones never); 0 = keep",
    )
    retention_every_s: float = Field(
        default=3600.0, gt=0, description="How often the ticketer runs retention"
    )
    retention_batch: int = Field(
        default=500, ge=1, le=10_000, description="Rows handled per retention transaction"
    )

    @model_validator(mode="after")
    def _legal_minimum(self) -> RetentionSettings:
        days = self.retention_access_log_days
        if 0 < days < ACCESS_LOG_MIN_DAYS:
            raise ConfigError(
                f"GRIDPATROL_RETENTION_ACCESS_LOG_DAYS={days} is below the legal minimum of {ACCESS_LOG_MIN_DAYS} days "
                "(network logs are kept at least six months); use 180 or more, or 0 to keep them forever"
            )
        sent, failed = self.retention_deliveries_days, self.retention_failed_deliveries_days
        if sent and 0 < failed < sent:
            raise ConfigError(
                f"GRIDPATROL_RETENTION_FAILED_DELIVERIES_DAYS={failed} is shorter than "
                f"GRIDPATROL_RETENTION_DELIVERIES_DAYS={sent}: failed deliveries are kept at least as long as sent "
                "ones, so that an admin can still see and resend them; raise it, or use 0 to keep them forever"
            )
        return self


@dataclass
class RetentionResult:
    deleted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    #: evidence-store keys whose rows are gone (delete the files after the commit)
    files: list[str] = field(default_factory=list)

    def add(self, other: RetentionResult) -> None:
        for kind, n in other.deleted.items():
            self.deleted[kind] += n
        self.files.extend(other.files)


def _rowcount(result: object) -> int:
    """Rows a DELETE removed (a row another ticketer removed first is not counted)."""
    return int(getattr(result, "rowcount", 0) or 0)


def _closed_before(session: Session, cutoff: datetime, *, limit: int, extra: object = None) -> list[int]:
    """Ids of tickets closed before ``cutoff``, locked; rows another ticketer holds are skipped."""
    query = select(Ticket.id).where(Ticket.state == TicketState.closed.value, Ticket.closed_at < cutoff)
    if extra is not None:
        query = query.where(extra)  # type: ignore[arg-type]
    query = query.order_by(Ticket.id).limit(limit).with_for_update(skip_locked=True)
    return list(session.scalars(query))


def _named_keys(session: Session, keys: Iterable[str]) -> set[str]:
    """Of ``keys``, those a row still names (a ticket's snapshot or an occurrence's image, whatever the
    ticket's state): a file goes only when nothing names it, so never while a live ticket needs it."""
    wanted = sorted(set(keys))
    if not wanted:
        return set()
    named = set(session.scalars(select(Ticket.evidence_key).where(Ticket.evidence_key.in_(wanted))))
    named |= set(
        session.scalars(
            select(TicketOccurrence.evidence_key).where(TicketOccurrence.evidence_key.in_(wanted))
        )
    )
    return {k for k in named if k}


def expire_evidence(session: Session, *, cutoff: datetime, limit: int) -> RetentionResult:
    """Evidence images (snapshots, photos of reports and transitions) of up to ``limit`` tickets closed
    before ``cutoff``: keys cleared in the rows, files listed for deletion."""
    out = RetentionResult()
    has_evidence = or_(
        Ticket.evidence_key.is_not(None),
        Ticket.id.in_(select(TicketOccurrence.ticket_id).where(TicketOccurrence.evidence_key.is_not(None))),
    )
    ids = _closed_before(session, cutoff, limit=limit, extra=has_evidence)
    if not ids:
        return out
    keys: list[str] = []
    for ticket in session.scalars(select(Ticket).where(Ticket.id.in_(ids))):
        keys += [k for k in [ticket.evidence_key, *(ticket.photos or [])] if isinstance(k, str) and k]
        ticket.evidence_key, ticket.photos = None, []
    for transition in session.scalars(select(TicketTransition).where(TicketTransition.ticket_id.in_(ids))):
        if transition.photos:
            keys += [k for k in transition.photos if isinstance(k, str) and k]
            transition.photos = []
    occurrences = session.execute(
        select(TicketOccurrence.id, TicketOccurrence.evidence_key).where(
            TicketOccurrence.ticket_id.in_(ids), TicketOccurrence.evidence_key.is_not(None)
        )
    ).all()
    if occurrences:
        session.execute(
            update(TicketOccurrence)
            .where(TicketOccurrence.id.in_([r[0] for r in occurrences]))
            .values(evidence_key=None)
            .execution_options(synchronize_session=False)
        )
        keys += [key for _, key in occurrences if key]
    session.flush()
    out.files = sorted(set(keys) - _named_keys(session, keys))
    out.deleted["evidence"] = len(out.files)
    return out


def expire_occurrences(session: Session, *, cutoff: datetime, limit: int) -> RetentionResult:
    """Occurrence rows of up to ``limit`` tickets closed before ``cutoff``, with their images and clips
    (the ticket keeps its ``occurrence_count``)."""
    out = RetentionResult()
    has_rows = Ticket.id.in_(select(TicketOccurrence.ticket_id))
    ids = _closed_before(session, cutoff, limit=limit, extra=has_rows)
    if not ids:
        return out
    rows = session.execute(
        select(TicketOccurrence.id, TicketOccurrence.evidence_key, TicketOccurrence.clip_key).where(
            TicketOccurrence.ticket_id.in_(ids)
        )
    ).all()
    gone = session.execute(
        delete(TicketOccurrence)
        .where(TicketOccurrence.id.in_([r[0] for r in rows]))
        .execution_options(synchronize_session=False)
    )
    out.deleted["occurrences"] = _rowcount(gone)
    images = [key for _, key, _ in rows if key]
    clips = [key for _, _, key in rows if key]
    session.flush()
    images = sorted(set(images) - _named_keys(session, images))
    out.deleted["evidence"] = len(images)
    out.deleted["clips"] = len(set(clips))
    out.files = images + sorted(set(clips))
    return out


def expire_access_log(session: Session, *, cutoff: datetime, limit: int) -> int:
    ids = list(
        session.scalars(select(AccessLog.id).where(AccessLog.at < cutoff).order_by(AccessLog.id).limit(limit))
    )
    if not ids:
        return 0
    result = session.execute(
        delete(AccessLog).where(AccessLog.id.in_(ids)).execution_options(synchronize_session=False)
    )
    return _rowcount(result)


def expire_refresh_tokens(session: Session, *, cutoff: datetime, limit: int) -> int:
    ids = list(
        session.scalars(
            select(RefreshToken.id)
            .where(RefreshToken.expires_at < cutoff)
            .order_by(RefreshToken.id)
            .limit(limit)
        )
    )
    if not ids:
        return 0
    result = session.execute(
        delete(RefreshToken).where(RefreshToken.id.in_(ids)).execution_options(synchronize_session=False)
    )
    return _rowcount(result)


def _delete_where(
    session: Session,
    model: type[WebhookDelivery | NotifyDelivery | CameraOutage],
    *where: ColumnElement[bool],
    limit: int,
) -> int:
    """Delete up to ``limit`` rows of ``model`` matching ``where``, oldest ids first; rows another ticketer
    holds are skipped, and the condition is checked again in the DELETE (a row resent meanwhile stays)."""
    id_col = model.id
    ids = list(
        session.scalars(
            select(id_col).where(*where).order_by(id_col).limit(limit).with_for_update(skip_locked=True)
        )
    )
    if not ids:
        return 0
    result = session.execute(
        delete(model).where(id_col.in_(ids), *where).execution_options(synchronize_session=False)
    )
    return _rowcount(result)


def expire_webhook_deliveries(
    session: Session, *, sent_cutoff: datetime | None, failed_cutoff: datetime | None, limit: int
) -> int:
    """Webhook rows delivered before ``sent_cutoff`` and dead letters whose last attempt (their
    ``next_attempt_at``, the end of its lease) is before ``failed_cutoff``; None keeps that state."""
    done = 0
    if sent_cutoff is not None:
        done += _delete_where(
            session,
            WebhookDelivery,
            WebhookDelivery.delivered_at.is_not(None),
            WebhookDelivery.delivered_at < sent_cutoff,
            limit=limit,
        )
    if failed_cutoff is not None and done < limit:
        done += _delete_where(
            session,
            WebhookDelivery,
            WebhookDelivery.delivered_at.is_(None),
            WebhookDelivery.dead.is_(True),
            WebhookDelivery.next_attempt_at < failed_cutoff,
            limit=limit - done,
        )
    return done


def expire_notify_deliveries(
    session: Session, *, sent_cutoff: datetime | None, failed_cutoff: datetime | None, limit: int
) -> int:
    """Notification rows ``sent`` before ``sent_cutoff`` and ``failed`` ones whose last attempt (or the
    moment they were due, for a disabled channel) is before ``failed_cutoff``; pending and held rows stay."""
    done = 0
    if sent_cutoff is not None:
        done += _delete_where(
            session,
            NotifyDelivery,
            NotifyDelivery.state == "sent",
            NotifyDelivery.delivered_at < sent_cutoff,
            limit=limit,
        )
    if failed_cutoff is not None and done < limit:
        done += _delete_where(
            session,
            NotifyDelivery,
            NotifyDelivery.state == "failed",
            NotifyDelivery.next_attempt_at < failed_cutoff,
            limit=limit - done,
        )
    return done


def expire_camera_outages(session: Session, *, cutoff: datetime, limit: int) -> int:
    """Camera outages that ended before ``cutoff``; an ongoing outage has no ``ended_at`` and stays."""
    return _delete_where(
        session,
        CameraOutage,
        CameraOutage.ended_at.is_not(None),
        CameraOutage.ended_at < cutoff,
        limit=limit,
    )


def run_retention(
    factory: sessionmaker[Session],
    settings: RetentionSettings,
    *,
    now: datetime,
    delete_file: Callable[[str], None],
    max_rounds: int = 20,
) -> RetentionResult:
    """One retention pass: each kind in transactions of ``retention_batch`` rows (at most ``max_rounds``
    each, the rest waits for the next pass); files are deleted after their rows' commit."""
    total = RetentionResult()
    batch = settings.retention_batch
    sent_days, failed_days = settings.retention_deliveries_days, settings.retention_failed_deliveries_days
    sent_cutoff = now - timedelta(days=sent_days) if sent_days else None
    failed_cutoff = now - timedelta(days=failed_days) if failed_days else None

    def rounds(step: Callable[[Session], RetentionResult]) -> None:
        for _ in range(max_rounds):
            with transaction(factory) as session:
                result = step(session)
            for key in result.files:
                delete_file(key)
            total.add(RetentionResult(deleted=result.deleted))
            if sum(result.deleted.values()) == 0:
                return

    def counted(kind: str, fn: Callable[..., int], cutoff: datetime) -> Callable[[Session], RetentionResult]:
        def step(session: Session) -> RetentionResult:
            out = RetentionResult()
            out.deleted[kind] = fn(session, cutoff=cutoff, limit=batch)
            return out

        return step

    def outbox(kind: str, fn: Callable[..., int]) -> Callable[[Session], RetentionResult]:
        def step(session: Session) -> RetentionResult:
            out = RetentionResult()
            out.deleted[kind] = fn(session, sent_cutoff=sent_cutoff, failed_cutoff=failed_cutoff, limit=batch)
            return out

        return step

    if settings.retention_occurrences_days:
        cutoff = now - timedelta(days=settings.retention_occurrences_days)
        rounds(lambda s: expire_occurrences(s, cutoff=cutoff, limit=batch))
    if settings.retention_evidence_days:
        cutoff_ev = now - timedelta(days=settings.retention_evidence_days)
        rounds(lambda s: expire_evidence(s, cutoff=cutoff_ev, limit=batch))
    if settings.retention_access_log_days:
        rounds(
            counted("access_log", expire_access_log, now - timedelta(days=settings.retention_access_log_days))
        )
    rounds(
        counted(
            "refresh_tokens",
            expire_refresh_tokens,
            now - timedelta(days=settings.retention_refresh_tokens_days),
        )
    )
    if sent_cutoff is not None or failed_cutoff is not None:
        rounds(outbox("webhook_deliveries", expire_webhook_deliveries))
        rounds(outbox("notify_deliveries", expire_notify_deliveries))
    if settings.retention_outages_days:
        rounds(
            counted(
                "camera_outages", expire_camera_outages, now - timedelta(days=settings.retention_outages_days)
            )
        )
    return total
