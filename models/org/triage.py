"""The centre's triage desk (统一受理、分流交办): cases waiting for dispatch, one action that sends a case
to a grid and/or departments, and merging duplicates (same place, same problem) with both sources kept."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.bus.messages import TicketNotice
from models.db.tables import Ticket, TicketMerge, TicketState, User
from models.errors import Conflict, InvalidInput
from models.identity.access import AccessScope
from models.org.departments import get_department
from models.org.parts import add_part
from models.patrol.points import haversine_m
from models.tickets.desk import TicketDesk, lock_tickets
from models.tickets.states import LIVE

S = TicketState
#: waiting for triage: nobody has dispatched it yet (a hotline/110 case, or a case whose grid has no leader)
WAITING = (S.open.value,)
#: two cases closer than this (metres), of the same category, are offered as duplicates
DUPLICATE_RADIUS_M = 100.0


@dataclass(frozen=True)
class QueueItem:
    ticket: Ticket
    waiting_s: int
    sources: list[str]
    duplicates: list[int]


def sources_of(session: Session, ticket: Ticket) -> list[str]:
    """The ticket's own source and those of every case merged into it (in merge order)."""
    merged = session.scalars(
        select(TicketMerge.source).where(TicketMerge.ticket_id == ticket.id).order_by(TicketMerge.id)
    ).all()
    return [ticket.source, *merged]


def queue(session: Session, *, now: datetime, limit: int = 200) -> list[QueueItem]:
    """Cases waiting for triage, longest-waiting first, each with its likely duplicates among live tickets."""
    waiting = list(
        session.scalars(
            select(Ticket).where(Ticket.state.in_(WAITING)).order_by(Ticket.opened_at, Ticket.id).limit(limit)
        )
    )
    live = list(
        session.scalars(
            select(Ticket).where(Ticket.state.in_(sorted(s.value for s in LIVE)), Ticket.lon.is_not(None))
        )
    )
    out = []
    for t in waiting:
        dups = [
            o.id
            for o in live
            if o.id != t.id and o.category == t.category and t.lon is not None and t.lat is not None and o.lat is not None
            and o.lon is not None and haversine_m(t.lon, t.lat, o.lon, o.lat) <= DUPLICATE_RADIUS_M
        ]  # fmt: skip
        out.append(QueueItem(ticket=t, waiting_s=max(0, int((now - t.opened_at).total_seconds())), sources=sources_of(session, t),
                             duplicates=dups))  # fmt: skip
    return out


def dispatch(
    desk: TicketDesk,
    session: Session,
    ticket: Ticket,
    *,
    actor: User,
    scope: AccessScope,
    grid_code: str | None,
    department_codes: Sequence[str],
    note: str = "",
) -> list[TicketNotice]:
    """One action: the ticket goes to a grid (its leader leads) and/or to departments (parts). All in the
    caller's transaction: either every part of the dispatch happens or none."""
    if not grid_code and not department_codes:
        raise InvalidInput("dispatch to a grid, a department, or both", field="grid")
    departments = [get_department(session, code) for code in dict.fromkeys(department_codes)]
    out: list[TicketNotice] = []
    if grid_code:
        out += desk.transition(
            session, ticket, actor=actor, scope=scope, action="dispatch", note=note, to_grid=grid_code
        )
    else:
        lock_tickets(session, [ticket.id])
        if S(ticket.state) not in LIVE:
            raise Conflict(f"cannot dispatch a ticket that is {ticket.state}")
    for dept in departments:
        out += add_part(desk, session, ticket, department=dept, actor=actor, origin="centre", reason=note)[1]
    return out


def merge(
    desk: TicketDesk, session: Session, *, keep: Ticket, duplicate: Ticket, actor: User
) -> list[TicketNotice]:
    """Merge ``duplicate`` into ``keep``: one ticket, both sources and descriptions kept. The duplicate
    closes as merged (its history points to the kept ticket). Both are locked (id order)."""
    if keep.id == duplicate.id:
        raise InvalidInput("a ticket cannot be merged into itself", field="duplicate_id")
    locked = lock_tickets(session, [keep.id, duplicate.id])
    keep, duplicate = locked[keep.id], locked[duplicate.id]
    for t in (keep, duplicate):
        if S(t.state) not in LIVE:
            raise Conflict(f"ticket {t.id} is {t.state}: only live tickets are merged")
    if keep.category != duplicate.category:
        raise InvalidInput("only cases of the same problem (category) are merged", field="duplicate_id")
    at = desk.clock()
    session.add(TicketMerge(ticket_id=keep.id, merged_ticket_id=duplicate.id, source=duplicate.source,
                            description=duplicate.description, by_id=actor.id, at=at))  # fmt: skip
    # cases merged earlier into the duplicate move along with it
    for earlier in session.scalars(select(TicketMerge).where(TicketMerge.ticket_id == duplicate.id)):
        earlier.ticket_id = keep.id
    keep.occurrence_count = keep.occurrence_count + 1
    desk.record(session, keep, action="merge", to_state=keep.state, actor=actor, at=at,
                note=f"合并重复工单 #{duplicate.id}（{duplicate.source}）：{duplicate.description}")  # fmt: skip
    out = desk.system_move(session, duplicate, action="dismiss", at=at, note=f"重复工单，已并入 #{keep.id}")
    duplicate.active_key = None
    desk.queue_webhooks(session, out)
    return out
