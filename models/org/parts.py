"""Joint handling (协办): a ticket's department parts and the grid leader's linkage requests (请求联动).

A ticket keeps one lead (its grid leader) and any number of parts, one per department, each moving
dispatched → accepted → resolved (or rejected back to the centre). The ticket resolves only when the lead
and every open part are done: the lead's resolve waits for the parts (``TicketDesk.transition``), and the
last part to resolve after the lead resolves the ticket. Every change locks the ticket first, then its
parts (one order, no deadlock); the loser of a race gets :class:`Conflict` with the reason. An open part
lends the ticket's camera to the department (``models.identity.access``): the loan is audited when the
part opens and when it closes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.bus.messages import TicketNotice
from models.db.engine import lock_rows
from models.db.tables import (
    Department,
    DepartmentMember,
    LinkageRequest,
    Role,
    Ticket,
    TicketPart,
    TicketState,
    TicketTransition,
    User,
)
from models.errors import AccessDenied, Conflict, InvalidInput, NotFound
from models.evidence.store import image_suffix
from models.identity.audit import record_change
from models.identity.roles import CENTRE, TICKET_HANDLERS
from models.org.departments import DEPARTMENT_KINDS, covering, get_department
from models.tickets.desk import OPEN_PARTS, TicketDesk, lock_open_parts, lock_tickets, notice
from models.tickets.states import LIVE

S = TicketState
#: part state → the states it may move to, by action
PART_MOVES: dict[str, tuple[frozenset[str], str]] = {
    "accept": (frozenset({"dispatched"}), "accepted"),
    "reject": (frozenset({"dispatched"}), "rejected"),
    "resolve": (frozenset({"accepted"}), "resolved"),
}
PART_ACTION_ZH = {"accept": "受理", "reject": "退回", "resolve": "处置完成"}


def _audit_loan(session: Session, part: TicketPart, *, opened: bool, actor: User | None) -> None:
    """The camera loan of an open part starts or ends: written to the access log like a grant."""
    ticket = session.get(Ticket, part.ticket_id)
    if ticket is None or ticket.camera_id is None:
        return
    record_change(
        session,
        user=actor,
        channel="api",
        object_type="part_grant",
        object_id=part.id,
        detail={"camera_id": ticket.camera_id, "department_id": part.department_id, "ticket_id": part.ticket_id,
                "event": "start" if opened else "end"},
    )  # fmt: skip


def _trail(desk: TicketDesk, session: Session, ticket: Ticket, *, action: str, actor: User | None, at: datetime,
           note: str, photos: Sequence[str] = ()) -> None:  # fmt: skip
    """A line on the ticket's own history (timeline) without changing its state."""
    desk.record(
        session, ticket, action=action, to_state=ticket.state, actor=actor, at=at, note=note, photos=photos
    )


def add_part(
    desk: TicketDesk,
    session: Session,
    ticket: Ticket,
    *,
    department: Department,
    actor: User | None,
    origin: str = "centre",
    reason: str = "",
) -> tuple[TicketPart, list[TicketNotice]]:
    """Bring a department into a ticket (or send a rejected part to it again). The ticket must still be
    live: a resolved or closed ticket takes no new part (Conflict)."""
    lock_tickets(session, [ticket.id])
    if S(ticket.state) not in LIVE:
        raise Conflict(f"cannot add a department to a ticket that is {ticket.state}")
    at = desk.clock()
    part = session.scalar(
        select(TicketPart).where(TicketPart.ticket_id == ticket.id, TicketPart.department_id == department.id)
    )
    if part is not None:
        part = lock_rows(session, TicketPart, [part.id])[part.id]
        if part.state in OPEN_PARTS:
            raise Conflict(f"{department.name} already has an open part of this ticket")
        if part.state == "resolved":
            raise Conflict(f"{department.name} has already resolved its part of this ticket")
        part.state, part.accepted_at, part.resolved_at = "dispatched", None, None
    else:
        part = TicketPart(ticket_id=ticket.id, department_id=department.id, state="dispatched")
        session.add(part)
    part.origin, part.reason, part.dispatched_at = origin, reason, at
    part.accept_by = at + timedelta(seconds=department.accept_within_s)
    part.resolve_by = at + timedelta(seconds=department.resolve_within_s)
    part.department = department
    session.flush()
    why = {"rule": "规则联动", "request": "应网格长请求", "centre": "指挥中心交办"}.get(origin, origin)
    _trail(desk, session, ticket, action="part_dispatch", actor=actor, at=at,
           note=f"协办派遣 → {department.name}（{why}）{('：' + reason) if reason else ''}")  # fmt: skip
    _audit_loan(session, part, opened=True, actor=actor)
    out = [notice(ticket, "part_dispatched", at, department=department.code, part_id=part.id, origin=origin)]
    desk.queue_webhooks(session, out)
    return part, out


def _member(session: Session, user: User) -> DepartmentMember:
    member = session.scalar(select(DepartmentMember).where(DepartmentMember.user_id == user.id))
    if member is None:
        raise AccessDenied("only a department's own users act on its parts")
    return member


def move_part(
    desk: TicketDesk,
    session: Session,
    part_id: int,
    *,
    actor: User,
    action: str,
    note: str = "",
    photos: Sequence[bytes] = (),
) -> tuple[TicketPart, list[TicketNotice]]:
    """A department user accepts, rejects or resolves their department's part. The ticket is locked
    first, then the part: of two parts resolving at once, the second sees the first done and resolves
    the ticket when the lead is done too."""
    if action not in PART_MOVES:
        raise InvalidInput(f"unknown action {action!r} (use {', '.join(PART_MOVES)})", field="action")
    found = session.get(TicketPart, part_id)
    if found is None:
        raise NotFound("no such part")
    if Role(actor.role) != Role.department or _member(session, actor).department_id != found.department_id:
        raise NotFound("no such part")  # another department's part is not shown
    ticket = lock_tickets(session, [found.ticket_id])[found.ticket_id]
    part = lock_rows(session, TicketPart, [part_id])[part_id]
    sources, target = PART_MOVES[action]
    if part.state not in sources:
        raise Conflict(f"cannot {action} a part that is {part.state}")
    if action == "reject" and not note.strip():
        raise InvalidInput("a note is required to reject a part", field="note")
    at = desk.clock()
    keys = [
        desk.evidence.put(p, prefix=f"ticket-{ticket.id}-part-{part.id}", suffix=image_suffix(p), at=at)
        for p in photos
    ]
    part.state, part.handler_id = target, actor.id
    if note.strip():
        part.note = (part.note + "\n" if part.note else "") + note.strip()
    part.photos = [*part.photos, *keys]
    if target == "accepted":
        part.accepted_at = at
    elif target == "resolved":
        part.resolved_at = at
    _trail(desk, session, ticket, action=f"part_{action}", actor=actor, at=at,
           note=f"{part.department.name}{PART_ACTION_ZH[action]}{('：' + note.strip()) if note.strip() else ''}", photos=keys)  # fmt: skip
    if target in {"resolved", "rejected"}:
        _audit_loan(session, part, opened=False, actor=actor)
    out = [notice(ticket, f"part_{target}", at, department=part.department.code, part_id=part.id)]
    if target == "resolved":
        out += _resolve_when_all_done(desk, session, ticket, at=at)
    desk.queue_webhooks(session, out)
    return part, out


def lead_done(session: Session, ticket: Ticket) -> bool:
    """Has the lead resolved its side since the ticket was last accepted (a ``lead_resolve`` on record)?"""
    if ticket.state != S.accepted.value or ticket.accepted_at is None:
        return False
    return (
        session.scalar(
            select(TicketTransition.id)
            .where(
                TicketTransition.ticket_id == ticket.id,
                TicketTransition.action == "lead_resolve",
                TicketTransition.at >= ticket.accepted_at,
            )
            .limit(1)
        )  # fmt: skip
        is not None
    )


def _resolve_when_all_done(
    desk: TicketDesk, session: Session, ticket: Ticket, *, at: datetime
) -> list[TicketNotice]:
    if lock_open_parts(session, ticket.id) or not lead_done(session, ticket):
        return []
    return desk.system_move(session, ticket, action="resolve", at=at, note="牵头与协办部门均已办结")


# --- linkage requests ------------------------------------------------------------------------------


def request_linkage(
    desk: TicketDesk,
    session: Session,
    ticket: Ticket,
    *,
    actor: User,
    kind: str,
    reason: str,
    grid_in_scope: bool,
) -> tuple[LinkageRequest, list[TicketNotice]]:
    """A grid leader asks for a department on their ticket (请求联动, e.g. "needs enforcement"). A rule
    answers at once where one applies (road occupation + law_enforcement: the department covering the
    place); otherwise the request waits for the centre."""
    if Role(actor.role) not in TICKET_HANDLERS:
        raise AccessDenied(f"a {actor.role} may not request linkage")
    if Role(actor.role) not in CENTRE and not grid_in_scope:
        raise AccessDenied("this ticket belongs to a grid outside your responsibility")
    if kind not in DEPARTMENT_KINDS:
        raise InvalidInput(
            f"unknown department kind {kind!r} (use {', '.join(DEPARTMENT_KINDS)})", field="kind"
        )
    lock_tickets(session, [ticket.id])
    if S(ticket.state) not in LIVE:
        raise Conflict(f"cannot request linkage on a ticket that is {ticket.state}")
    at = desk.clock()
    req = LinkageRequest(
        ticket_id=ticket.id, kind=kind, reason=reason, requested_by_id=actor.id, requested_at=at
    )
    session.add(req)
    session.flush()
    _trail(desk, session, ticket, action="linkage_request", actor=actor, at=at,
           note=f"请求联动：{DEPARTMENT_KINDS[kind]}{('：' + reason) if reason else ''}")  # fmt: skip
    out = [notice(ticket, "linkage_requested", at, kind=kind, request_id=req.id)]
    desk.queue_webhooks(session, out)
    rule = LINKAGE_RULES.get((ticket.category, kind))
    if rule is not None:
        found = covering(session, grid_path=ticket.grid.path if ticket.grid else None, kind=kind)
        if found:  # the part's own notices are queued where it is added: once
            out += answer_request(desk, session, req, department=found[0], actor=None, note=rule)
    return req, out


def answer_request(
    desk: TicketDesk,
    session: Session,
    req: LinkageRequest,
    *,
    department: Department | None,
    actor: User | None,
    note: str = "",
) -> list[TicketNotice]:
    """The centre (or a rule, ``actor`` None) answers a pending request: a department part, or declined."""
    req = lock_rows(session, LinkageRequest, [req.id])[req.id]
    if req.state != "pending":
        raise Conflict(f"this linkage request is already {req.state}")
    ticket = session.get(Ticket, req.ticket_id)
    assert ticket is not None
    at = desk.clock()
    out: list[TicketNotice] = []
    if department is None:
        if not note.strip():
            raise InvalidInput("a note is required to decline a linkage request", field="note")
        req.state = "declined"
        _trail(
            desk,
            session,
            ticket,
            action="linkage_declined",
            actor=actor,
            at=at,
            note=f"联动请求未采纳：{note}",
        )
    else:
        part, out = add_part(desk, session, ticket, department=department, actor=actor, origin="request" if actor else "rule",
                             reason=note or req.reason)  # fmt: skip
        req.state, req.part_id = "answered", part.id
    req.answered_by_id, req.answered_at, req.answer_note = (actor.id if actor else None), at, note
    return out


def answer_request_by_code(
    desk: TicketDesk,
    session: Session,
    request_id: int,
    *,
    department_code: str | None,
    actor: User,
    note: str,
) -> list[TicketNotice]:
    req = session.get(LinkageRequest, request_id)
    if req is None:
        raise NotFound("no such linkage request")
    dept = get_department(session, department_code) if department_code else None
    return answer_request(desk, session, req, department=dept, actor=actor, note=note)


# --- category rules --------------------------------------------------------------------------------

#: (ticket category, department kind asked for) → the rule that answers the request at once
LINKAGE_RULES: dict[tuple[str, str], str] = {
    ("road_occupation", "law_enforcement"): "占道经营需执法：综合执法力量予以保障",
}
#: category → (department kind brought in, the rule's words) when the ticket is not handled in time
OVERDUE_RULES: dict[str, tuple[str, str]] = {
    "fire_lane_blockage": ("fire_rescue", "消防通道堵塞超时未处置：消防救援联动"),
}


def bring_in_by_rule(desk: TicketDesk, session: Session, *, now: datetime) -> list[TicketNotice]:
    """The ticketer's sweep: a ticket of an OVERDUE_RULES category not accepted by ``accept_by`` or not
    resolved by ``resolve_by`` brings in the department of the rule's kind covering its place (once)."""
    out: list[TicketNotice] = []
    for category, (kind, words) in OVERDUE_RULES.items():
        late = session.scalars(
            select(Ticket)
            .where(
                Ticket.category == category,
                Ticket.state.in_(sorted(s.value for s in LIVE)),
                ((Ticket.state != S.accepted.value) & (Ticket.accept_by <= now)) | (Ticket.resolve_by <= now),
                ~select(TicketPart.id)
                .join(Department, Department.id == TicketPart.department_id)
                .where(TicketPart.ticket_id == Ticket.id, Department.kind == kind)
                .exists(),
            )
            .order_by(Ticket.id)
            .with_for_update(skip_locked=True, of=Ticket)
        ).all()
        for ticket in late:
            found = covering(session, grid_path=ticket.grid.path if ticket.grid else None, kind=kind)
            if not found:
                continue
            _, notices = add_part(
                desk, session, ticket, department=found[0], actor=None, origin="rule", reason=words
            )
            out += notices
    return out
