"""Event clips on ticket occurrences: linked when their worker reports them, bounded per ticket, expired.

A ``started`` event that announces a clip (``RuleEvent.clip_due``) inserts its occurrence as
``pending``. The worker's later :class:`~models.bus.messages.EventClip` makes it ``ready`` with the
MP4's key, or ``unavailable``; a pending clip still unlinked at ``clip_due_at`` (its worker died before
writing it) becomes ``unavailable`` in the sweep, so no occurrence ever points at a file that does not
exist. A ticket keeps at most ``ticket_max_clips`` clips, the first and the latest; the others become
``removed`` and their files are deleted. Clips of tickets closed longer than ``clip_retention_days``
ago are deleted by the sweep as well.

Every function runs inside the caller's transaction and returns the keys the store may delete once it
has committed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from models.bus.messages import EventClip, TicketNotice
from models.db.tables import Ticket, TicketOccurrence, TicketState
from models.tickets.categories import TicketSettings
from models.tickets.desk import notice

PENDING, READY, UNAVAILABLE, REMOVED = "pending", "ready", "unavailable", "removed"
#: states that count against the per-ticket bound
KEPT = (PENDING, READY)


@dataclass
class ClipChanges:
    #: MP4 keys the evidence store may delete after the commit
    deletable: list[str] = field(default_factory=list)
    notices: list[TicketNotice] = field(default_factory=list)
    linked: int = 0
    unavailable: int = 0
    removed: int = 0


def bound_clips(session: Session, settings: TicketSettings, ticket_ids: Iterable[int]) -> ClipChanges:
    """Keep each ticket's first clip and its latest ``ticket_max_clips - 1``; the others are removed.
    The caller holds the tickets' row locks (ingest does)."""
    out = ClipChanges()
    ids = sorted(set(ticket_ids))
    if not ids:
        return out
    # locked in id order, like attach_clips: a clip reported meanwhile is either linked before this
    # reads it (and its file deleted here) or finds it removed (and its file deleted there)
    rows = session.execute(
        select(
            TicketOccurrence.id, TicketOccurrence.ticket_id, TicketOccurrence.at, TicketOccurrence.clip_key
        )
        .where(TicketOccurrence.ticket_id.in_(ids), TicketOccurrence.clip_state.in_(KEPT))
        .order_by(TicketOccurrence.id)
        .with_for_update()
    ).all()
    by_ticket: dict[int, list[tuple[int, str | None]]] = {}
    for occ_id, ticket_id, _, key in sorted(rows, key=lambda r: (r[1], r[2], r[0])):
        by_ticket.setdefault(ticket_id, []).append((occ_id, key))
    surplus: list[int] = []
    for clips in by_ticket.values():
        over = len(clips) - settings.ticket_max_clips
        if over > 0:
            dropped = clips[1 : 1 + over]  # never the first: it shows how the problem began
            surplus += [occ_id for occ_id, _ in dropped]
            out.deletable += [key for _, key in dropped if key]
    if surplus:
        session.execute(
            update(TicketOccurrence)
            .where(TicketOccurrence.id.in_(surplus))
            .values(clip_state=REMOVED, clip_key=None)
        )
        out.removed = len(surplus)
    return out


def attach_clips(session: Session, clips: Sequence[EventClip]) -> ClipChanges:
    """Link reported clips to their pending occurrences (idempotent: a repeated report changes nothing).
    A clip whose occurrence is gone, no longer pending (removed, expired) or unknown is deletable."""
    out = ClipChanges()
    if not clips:
        return out
    latest = {c.event_id: c for c in clips}
    occurrences = {
        o.event_id: o
        for o in session.scalars(
            select(TicketOccurrence)
            .where(TicketOccurrence.event_id.in_(sorted(latest)))
            .order_by(TicketOccurrence.id)
            .with_for_update()
        )
    }
    touched: dict[int, tuple[datetime, str]] = {}
    for event_id, clip in latest.items():
        occ = occurrences.get(event_id)
        if occ is None or occ.clip_state != PENDING:
            if clip.clip_key and (occ is None or occ.clip_key != clip.clip_key):
                out.deletable.append(clip.clip_key)
            continue
        if clip.clip_key:
            occ.clip_state, occ.clip_key = READY, clip.clip_key
            started = clip.started_at.isoformat() if clip.started_at else None
            occ.payload = {
                **occ.payload,
                "clip_started_at": started,
                "clip_duration_s": round(clip.duration_s, 2),
            }
            out.linked += 1
        else:
            occ.clip_state = UNAVAILABLE
            occ.payload = {**occ.payload, "clip_reason": clip.reason or "not recorded"}
            out.unavailable += 1
        touched[occ.ticket_id] = (occ.at, occ.clip_state)
    if touched:
        for ticket in session.scalars(select(Ticket).where(Ticket.id.in_(sorted(touched)))):
            at, state = touched[ticket.id]
            out.notices.append(notice(ticket, "clip", at, clip=state))
    return out


def expire_pending(session: Session, *, now: datetime) -> int:
    """Pending clips past their due time (the worker died or lost them) become unavailable."""
    result = session.execute(
        update(TicketOccurrence)
        .where(TicketOccurrence.clip_state == PENDING, TicketOccurrence.clip_due_at < now)
        .values(clip_state=UNAVAILABLE)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def expire_retained(
    session: Session, settings: TicketSettings, *, now: datetime, limit: int = 500
) -> ClipChanges:
    """Clips of tickets closed more than ``clip_retention_days`` ago are removed (at most ``limit`` a call)."""
    out = ClipChanges()
    if settings.clip_retention_days <= 0:
        return out
    cutoff = now - timedelta(days=settings.clip_retention_days)
    rows = session.execute(
        select(TicketOccurrence.id, TicketOccurrence.clip_key)
        .join(Ticket, Ticket.id == TicketOccurrence.ticket_id)
        .where(
            TicketOccurrence.clip_state == READY,
            Ticket.state == TicketState.closed.value,
            Ticket.closed_at < cutoff,
        )
        .order_by(TicketOccurrence.id)
        .limit(limit)
    ).all()
    if rows:
        session.execute(
            update(TicketOccurrence)
            .where(TicketOccurrence.id.in_([r[0] for r in rows]), TicketOccurrence.clip_state == READY)
            .values(clip_state=REMOVED, clip_key=None)
            .execution_options(synchronize_session=False)
        )
        out.deletable = [key for _, key in rows if key]
        out.removed = len(rows)
    return out
