"""Rule events become tickets: one live ticket per camera zone and rule, idempotent by event id.

A batch is handled with a handful of set-based statements whatever its size (this is what lets one
ticketer carry thousands of events a second), and every uniqueness decision is left to the database:
- ``ticket_occurrences.event_id`` is unique: a redelivered event inserts nothing and changes nothing;
- ``ticket_episodes.episode_key`` is unique: all events of one episode reach the same ticket;
- ``tickets.active_key`` is unique while a ticket is live: two ticketers racing on a new episode
  create one ticket, the loser's insert does nothing and it reads the winner's row.

Counters are written back as values computed from the row, so the batch's tickets are locked first
(``SELECT ... FOR NO KEY UPDATE`` in id order on PostgreSQL, the write lock on SQLite): a second
ticketer, an API transition or a sweep on the same ticket waits and then sees this batch's result.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Result, Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from models.bus.messages import RuleEvent, TicketNotice
from models.db.tables import Camera, Ticket, TicketEpisode, TicketOccurrence, TicketState, User
from models.errors import Conflict
from models.tickets.categories import RULE_CATEGORY
from models.tickets.clips import PENDING, bound_clips
from models.tickets.desk import TicketDesk, lock_tickets, notice

logger = logging.getLogger(__name__)

_TYPE_ORDER = {"started": 0, "updated": 1, "ended": 2}


@dataclass
class IngestResult:
    notices: list[TicketNotice] = field(default_factory=list)
    applied: int = 0
    duplicates: int = 0
    #: events for cameras that no longer exist: acknowledged and dropped
    orphans: int = 0
    #: evidence the store may delete once the transaction has committed (over the per-ticket bound)
    surplus_evidence: list[str] = field(default_factory=list)


def pairs(source: Session | Result[Any], stmt: Any = None) -> dict[Any, Any]:
    """{first column: second column} of a two-column select (or of an executed statement's rows)."""
    rows = source.execute(stmt) if isinstance(source, Session) else source
    return {row[0]: row[1] for row in rows}


def _insert(session: Session, table: Any) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def ingest_events(session: Session, desk: TicketDesk, events: Sequence[RuleEvent]) -> IngestResult:
    """Apply a batch inside the caller's transaction; safe to call again with any subset of it.

    The common case (events of episodes that already have their ticket) costs four statements: the
    episodes, the occurrence insert, the tickets, one UPDATE of their counters.
    """
    result = IngestResult()
    unique = {e.event_id: e for e in events}
    result.duplicates = len(events) - len(unique)
    if not unique:
        return result
    pending = sorted(unique.values(), key=lambda e: (e.at, _TYPE_ORDER[e.type]))

    episode_ticket, created = _episode_tickets(session, desk, pending, result)
    pending = [e for e in pending if e.episode_key in episode_ticket]
    if not pending:
        return result
    # lock before deciding anything from the rows: which events are new, the counters, the state
    tickets = lock_tickets(session, {episode_ticket[e.episode_key] for e in pending})

    occ_rows = [
        {
            "ticket_id": episode_ticket[e.episode_key],
            "event_id": e.event_id,
            "kind": e.type,
            "at": e.at,
            "evidence_key": e.evidence_key,
            "payload": {"count": e.count, "score": e.score, "boxes": e.boxes},
            # a clip the worker records: linked (or declared unavailable) later, see models.tickets.clips
            "clip_state": PENDING if e.clip_due is not None else None,
            "clip_due_at": e.clip_due,
        }
        for e in pending
    ]
    stmt = _insert(session, TicketOccurrence).on_conflict_do_nothing(index_elements=["event_id"])
    inserted = set(session.scalars(stmt.returning(TicketOccurrence.event_id), occ_rows))
    result.duplicates += len(pending) - len(inserted)
    fresh = [e for e in pending if e.event_id in inserted]
    if not fresh:
        return result

    touched = {episode_ticket[e.episode_key] for e in fresh}
    tickets = {tid: t for tid, t in tickets.items() if tid in touched}
    for tid in created & tickets.keys():
        ticket = tickets[tid]
        desk.set_deadlines(ticket, ticket.opened_at)
        desk.record(session, ticket, action="open", to_state=TicketState.open, actor=None, at=ticket.opened_at, note="视频自动发现")
    # grid leaders are needed only where a ticket is dispatched (new) or re-dispatched (reopened)
    needs_leaders = {t.grid_id for t in tickets.values() if t.occurrence_count == 0 or t.state == TicketState.resolved.value}
    leaders = desk.leaders_by_grid(session, needs_leaders)
    surplus: list[str] = []
    with session.no_autoflush:
        for e in fresh:
            ticket = tickets[episode_ticket[e.episode_key]]
            result.notices += _apply(session, desk, ticket, e, surplus, leaders)
            result.applied += 1
    _write_counters(session, list(tickets.values()))
    if surplus:
        # over the per-ticket bound: the occurrence keeps no snapshot, and the file can go
        session.execute(update(TicketOccurrence).where(TicketOccurrence.event_id.in_(surplus)).values(evidence_key=None))
        result.surplus_evidence = [k for e in fresh if e.event_id in set(surplus) and (k := e.evidence_key)]
    clipped = {episode_ticket[e.episode_key] for e in fresh if e.clip_due is not None}
    if clipped:  # at most the first and the latest clips per ticket
        result.surplus_evidence += bound_clips(session, desk.settings, clipped).deletable
    session.flush()
    desk.queue_webhooks(session, result.notices)
    return result


def _episode_tickets(
    session: Session, desk: TicketDesk, events: Sequence[RuleEvent], result: IngestResult
) -> tuple[dict[str, int], set[int]]:
    """(episode key → ticket id, ids of tickets created now), creating tickets and episodes as needed.
    Events of a camera that no longer exists are dropped (counted as orphans)."""
    keys = {e.episode_key for e in events}
    found = pairs(session, select(TicketEpisode.episode_key, TicketEpisode.ticket_id).where(TicketEpisode.episode_key.in_(keys)))
    first_of_missing: dict[str, RuleEvent] = {}
    for e in events:
        if e.episode_key not in found:
            first_of_missing.setdefault(e.episode_key, e)
    if not first_of_missing:
        return found, set()

    camera_ids = {e.camera_id for e in first_of_missing.values()}
    # where the camera stands: the ticket is placed (grid, location) and named by it
    cams = {row.id: row for row in session.execute(select(Camera.id, Camera.grid_id, Camera.name, Camera.lon, Camera.lat).where(Camera.id.in_(camera_ids)))}
    orphans = [k for k, e in first_of_missing.items() if e.camera_id not in cams]
    if orphans:
        unknown = sorted({first_of_missing[k].camera_id for k in orphans})
        result.orphans = sum(1 for e in events if e.camera_id in unknown)
        logger.warning("dropping %d rule events of unknown cameras %s", result.orphans, unknown)
        for k in orphans:
            del first_of_missing[k]

    live_keys = {e.live_key for e in first_of_missing.values()}
    live = pairs(session, select(Ticket.active_key, Ticket.id).where(Ticket.active_key.in_(live_keys)))
    to_create: dict[str, RuleEvent] = {}
    for e in first_of_missing.values():
        if e.live_key not in live:
            to_create.setdefault(e.live_key, e)
    created: set[int] = set()
    if to_create:
        rows = [_new_ticket_row(desk, live_key, e, cams[e.camera_id]) for live_key, e in sorted(to_create.items())]
        stmt = _insert(session, Ticket).on_conflict_do_nothing(index_elements=["active_key"])
        won = pairs(session.execute(stmt.returning(Ticket.active_key, Ticket.id), rows))
        live.update(won)
        created = set(won.values())
        if len(won) < len(rows):  # another ticketer created some first: read theirs
            lost = set(to_create) - set(won)
            live.update(pairs(session, select(Ticket.active_key, Ticket.id).where(Ticket.active_key.in_(lost))))

    ep_rows = [
        {"episode_key": k, "ticket_id": live[e.live_key], "started_at": e.episode_start}
        for k, e in sorted(first_of_missing.items())
        if e.live_key in live
    ]
    if ep_rows:
        stmt = _insert(session, TicketEpisode).on_conflict_do_nothing(index_elements=["episode_key"])
        won_eps = pairs(session.execute(stmt.returning(TicketEpisode.episode_key, TicketEpisode.ticket_id), ep_rows))
        found.update(won_eps)
        lost_eps = {r["episode_key"] for r in ep_rows} - set(won_eps)
        if lost_eps:
            found.update(
                pairs(session, select(TicketEpisode.episode_key, TicketEpisode.ticket_id).where(TicketEpisode.episode_key.in_(lost_eps)))
            )
    return found, created


def _new_ticket_row(desk: TicketDesk, live_key: str, e: RuleEvent, camera: Any) -> dict[str, Any]:
    category = RULE_CATEGORY[e.rule]
    policy = desk.settings.category(category)
    return {
        "category": category,
        "case_code": policy.case_code,
        "source": "camera",
        "camera_id": e.camera_id,
        "zone_name": e.zone,
        "rule": e.rule,
        "active_key": live_key,
        "grid_id": camera.grid_id,
        "lon": camera.lon,
        "lat": camera.lat,
        "state": TicketState.open.value,
        "opened_at": e.at,
        "updated_at": e.at,
        "escalation_level": 0,
        "condition_active": False,
        "occurrence_count": 0,
        "snapshot_count": 0,
        "photos": [],
        "description": f"{policy.case_code} · {camera.name} · {e.zone}",
    }


#: ticket columns an event changes; written for every touched ticket in one executemany UPDATE
COUNTERS = ("occurrence_count", "snapshot_count", "evidence_key", "condition_active", "condition_cleared_at", "last_seen_at", "updated_at")


def _apply(
    session: Session,
    desk: TicketDesk,
    ticket: Ticket,
    e: RuleEvent,
    surplus: list[str],
    leaders: dict[int, list[User]],
) -> list[TicketNotice]:
    """One event's effect on its ticket. Counters are set as committed values (no ORM history): the
    batch writes them with one UPDATE; state changes (dispatch, reopen) go through the desk as usual."""

    def put(name: str, value: object) -> None:
        set_committed_value(ticket, name, value)

    out: list[TicketNotice] = []
    put("occurrence_count", ticket.occurrence_count + 1)
    put("updated_at", max(ticket.updated_at, e.at))
    if e.evidence_key:
        if ticket.evidence_key is None:
            put("evidence_key", e.evidence_key)
            put("snapshot_count", ticket.snapshot_count + 1)
        elif ticket.snapshot_count <= desk.settings.ticket_max_snapshots or e.type == "ended":
            put("snapshot_count", ticket.snapshot_count + 1)  # an "ended" clear snapshot is always kept
        else:
            surplus.append(e.event_id)
    state = TicketState(ticket.state)
    if ticket.occurrence_count == 1 and state == TicketState.open:
        out.append(notice(ticket, "opened", e.at, zone=e.zone, rule=e.rule))
        out += desk.auto_dispatch(session, ticket, e.at, leaders=leaders)
    # Redelivery (a reclaimed batch, a second ticketer) can bring an event after a newer one: whether the
    # condition is present is decided by event time, never by arrival order.
    if e.type == "ended":
        if ticket.last_seen_at is not None and ticket.last_seen_at > e.at:
            return out  # a newer detection (another episode on the same zone) is already applied
        put("condition_active", False)
        put("condition_cleared_at", max(e.at, ticket.condition_cleared_at or e.at))
        out.append(notice(ticket, "cleared", e.at))
        return out
    if ticket.condition_cleared_at is not None and e.at <= ticket.condition_cleared_at:
        return out  # older than the clearing already applied: recorded as an occurrence only
    put("condition_active", True)
    put("last_seen_at", max(e.at, ticket.last_seen_at or e.at))
    resolved_at = ticket.resolved_at
    # The problem came back after the grid said it was handled. A verification sweep may have verified
    # the ticket a moment before this event was applied (it saw the zone clear): the event is newer
    # than the resolution, so the verification was premature and the ticket reopens all the same.
    came_back = e.type == "started" and (resolved_at is None or e.at > resolved_at)
    if came_back and state in {TicketState.resolved, TicketState.verified}:
        photos = [e.evidence_key] if e.evidence_key else []
        try:
            out += desk.system_move(session, ticket, action="reopen", at=e.at, note="视频复核：问题再次出现", photos=photos)
        except Conflict as err:  # a newer ticket already holds the zone: the event stays an occurrence here
            logger.info("ticket %s not reopened: %s", ticket.id, err)
    return out


def _write_counters(session: Session, tickets: list[Ticket]) -> None:
    table = cast(Table, Ticket.__table__)
    stmt = update(table).where(table.c.id == bindparam("b_id")).values({c: bindparam(f"b_{c}") for c in COUNTERS})
    session.execute(stmt, [{"b_id": t.id, **{f"b_{c}": getattr(t, c) for c in COUNTERS}} for t in tickets])
