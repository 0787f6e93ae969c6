"""Time-driven ticket moves, run by the ticketer every few seconds with an injectable clock:
escalation of overdue tickets ("一级为主，二级兜底") and verification of resolved tickets by video."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from models.bus.messages import TicketNotice
from models.db.tables import Assignment, GridKind, GridNode, Role, Ticket, TicketOccurrence, TicketState, User
from models.org.parts import bring_in_by_rule
from models.tickets.desk import TicketDesk, notice
from models.tickets.states import WAITING_ACCEPT, WAITING_RESOLVE, values

S = TicketState
NOT_ACCEPTED = values(WAITING_ACCEPT)
NOT_RESOLVED = values(WAITING_RESOLVE)

#: escalation level → (the tree level it goes to, what was late)
LEVELS = {1: (GridKind.street, "未按时受理"), 2: (GridKind.district, "未按时办结")}


def _managers_at(session: Session, ticket: Ticket, kind: GridKind) -> tuple[GridNode | None, list[User]]:
    """The ancestor of the ticket's grid at ``kind`` level and the managers assigned to it."""
    if ticket.grid is None:
        return None, []
    ancestor_ids = [int(p) for p in ticket.grid.path.strip("/").split("/")]
    node = session.scalar(select(GridNode).where(GridNode.id.in_(ancestor_ids), GridNode.kind == kind.value))
    if node is None:
        return None, []
    managers = list(
        session.scalars(
            select(User)
            .join(Assignment, Assignment.user_id == User.id)
            .where(Assignment.grid_id == node.id, User.role == Role.manager.value, User.enabled.is_(True))
            .order_by(User.id)
        )
    )
    return node, managers


def escalate_overdue(session: Session, desk: TicketDesk, *, now: datetime) -> list[TicketNotice]:
    """Not accepted by ``accept_by`` → the street; not resolved by ``resolve_by`` → the district."""
    out: list[TicketNotice] = []
    overdue = session.scalars(
        select(Ticket)
        .where(
            or_(
                (Ticket.escalation_level < 1) & Ticket.state.in_(NOT_ACCEPTED) & (Ticket.accept_by <= now),
                (Ticket.escalation_level < 2) & Ticket.state.in_(NOT_RESOLVED) & (Ticket.resolve_by <= now),
            )
        )
        .order_by(Ticket.id)
        .with_for_update(skip_locked=True, of=Ticket)
    ).all()
    for ticket in overdue:
        late_resolve = ticket.state in NOT_RESOLVED and ticket.resolve_by is not None and ticket.resolve_by <= now
        wanted = 2 if late_resolve else 1
        _, why = LEVELS[wanted]
        # the first level, from the one due, that has someone to answer: a street without a manager
        # passes the ticket on to the district rather than to nobody
        level, node, managers = wanted, None, []
        for candidate in range(wanted, max(LEVELS) + 1):
            found, people = _managers_at(session, ticket, LEVELS[candidate][0])
            if node is None:
                node = found
            if people:
                level, node, managers = candidate, found, people
                break
        ticket.escalation_level = max(level, ticket.escalation_level)
        if managers:
            ticket.assignee_id = managers[0].id
            where = f"{node.name}({node.code})" if node else "上级"
            note = f"{why}，升级至{where} → {', '.join(m.username for m in managers)}"
            event = "escalated"
        else:
            # nobody up the tree answers for this grid: the centre must dispatch it (visible in the
            # stats as unattended, in the live feed and webhooks as an 'unattended' notice)
            ticket.assignee_id = None
            ticket.escalation_level = max(LEVELS)
            note = f"{why}，上级无负责人：请指挥中心派遣"
            event = "unattended"
        desk.record(session, ticket, action="escalate", to_state=ticket.state, actor=None, at=now, note=note)
        out.append(notice(ticket, event, now, level=ticket.escalation_level, to=node.code if node and managers else None, managers=[m.id for m in managers]))
    desk.queue_webhooks(session, out)
    # category rules: an overdue fire-lane blockage brings in fire and rescue (协办, models/org/parts.py)
    return out + bring_in_by_rule(desk, session, now=now)


def verify_by_video(session: Session, desk: TicketDesk, *, now: datetime) -> list[TicketNotice]:
    """A resolved camera ticket whose zone has stayed clear for ``ticket_verify_clear_s`` becomes verified,
    with the clear snapshot (the last 'ended' event's) attached to the transition."""
    clear_for = timedelta(seconds=desk.settings.ticket_verify_clear_s)
    candidates = session.scalars(
        select(Ticket)
        .where(
            Ticket.state == S.resolved.value,
            Ticket.camera_id.is_not(None),
            Ticket.condition_active.is_(False),
            Ticket.resolved_at <= now - clear_for,
        )
        .order_by(Ticket.id)
        .with_for_update(skip_locked=True, of=Ticket)
    ).all()
    out: list[TicketNotice] = []
    for ticket in candidates:
        assert ticket.resolved_at is not None
        clear_since = max(ticket.resolved_at, ticket.condition_cleared_at or ticket.resolved_at)
        if now - clear_since < clear_for:
            continue
        snapshot = session.scalar(
            select(TicketOccurrence.evidence_key)
            .where(TicketOccurrence.ticket_id == ticket.id, TicketOccurrence.kind == "ended", TicketOccurrence.evidence_key.is_not(None))
            .order_by(TicketOccurrence.at.desc())
            .limit(1)
        )
        seconds = int(clear_for.total_seconds())
        out += desk.system_move(
            session, ticket, action="verify", at=now, note=f"视频核查：{seconds} 秒内未再发现", photos=[snapshot] if snapshot else []
        )
    desk.queue_webhooks(session, out)
    return out
