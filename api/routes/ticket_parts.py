"""Joint handling (协办) on a ticket: its parts and linkage requests, a department's work list and part
actions (accept, reject, resolve with a note and photos), the centre bringing a department in, a grid
leader's linkage request (请求联动), and police clues (治安线索) seen only by the reporter and the station."""

from __future__ import annotations

import base64
import binascii

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.deps import (
    BusDep,
    ConfigureUser,
    CurrentUser,
    DeskDep,
    ObjectId,
    ScopeDep,
    SessionDep,
    VisibleTicket,
    x_access,
)
from api.org_schemas import (
    ClueIn,
    ClueOut,
    ClueStateIn,
    LinkageIn,
    LinkageOut,
    PartActionIn,
    PartIn,
    PartOut,
    TicketLinkageOut,
)
from models.bus.messages import TICKET_NOTICES, TicketNotice
from models.bus.protocol import Bus
from models.db.tables import (
    Department,
    DepartmentMember,
    LinkageRequest,
    PoliceClue,
    Role,
    Ticket,
    TicketPart,
    User,
    utcnow,
)
from models.errors import BusError, InvalidInput
from models.identity.access_changes import publish_access_change
from models.org import clues, parts, triage
from models.org.departments import get_department

router = APIRouter(prefix="/api", tags=["linkage"])


def publish(bus: Bus | None, notices: list[TicketNotice]) -> None:
    if bus is not None and notices:
        try:
            bus.publish(TICKET_NOTICES, notices)
        except BusError:
            pass  # the change is committed; only live views miss the notice


def decode_photos(photos: list[str]) -> list[bytes]:
    out = []
    for i, text in enumerate(photos):
        data = text.split(",", 1)[1] if text.startswith("data:") else text
        try:
            out.append(base64.b64decode(data, validate=True))
        except (binascii.Error, ValueError) as err:
            raise InvalidInput(f"photo {i} is not valid base64", field="photos") from err
    return out


def _name(session: Session, user_id: int | None) -> str | None:
    return session.scalar(select(User.username).where(User.id == user_id)) if user_id else None


def part_out(part: TicketPart, ticket: Ticket) -> PartOut:
    now = utcnow()
    overdue = (part.state == "dispatched" and part.accept_by <= now) or (
        part.state in {"dispatched", "accepted"} and part.resolve_by <= now
    )
    return PartOut(
        id=part.id, ticket_id=part.ticket_id, department=part.department.code, department_name=part.department.name, state=part.state,
        origin=part.origin, reason=part.reason, note=part.note, photos=len(part.photos), dispatched_at=part.dispatched_at,
        accept_by=part.accept_by, resolve_by=part.resolve_by, accepted_at=part.accepted_at, resolved_at=part.resolved_at, overdue=overdue,
        category=ticket.category, ticket_state=ticket.state, description=ticket.description, camera_id=ticket.camera_id,
        grid_name=ticket.grid.name if ticket.grid else None,
    )  # fmt: skip


def linkage_out(session: Session, r: LinkageRequest) -> LinkageOut:
    return LinkageOut(id=r.id, ticket_id=r.ticket_id, kind=r.kind, reason=r.reason, state=r.state, requested_by=_name(session, r.requested_by_id),
                      requested_at=r.requested_at, answered_at=r.answered_at, part_id=r.part_id)  # fmt: skip


def linkage_of(session: Session, ticket: Ticket) -> TicketLinkageOut:
    found = session.scalars(
        select(TicketPart).where(TicketPart.ticket_id == ticket.id).order_by(TicketPart.id)
    )
    requests = session.scalars(
        select(LinkageRequest).where(LinkageRequest.ticket_id == ticket.id).order_by(LinkageRequest.id)
    )
    return TicketLinkageOut(
        ticket_id=ticket.id, lead=_name(session, ticket.assignee_id), lead_done=parts.lead_done(session, ticket),
        parts=[part_out(p, ticket) for p in found], requests=[linkage_out(session, r) for r in requests],
        sources=triage.sources_of(session, ticket),
    )  # fmt: skip


@router.get("/tickets/{ticket_id}/linkage", response_model=TicketLinkageOut, openapi_extra=x_access("ticket"))
def ticket_linkage(ticket: VisibleTicket, session: SessionDep) -> TicketLinkageOut:
    """The ticket's lead, department parts, linkage requests and sources (each step is also on its timeline)."""
    return linkage_of(session, ticket)


@router.post(
    "/tickets/{ticket_id}/parts",
    response_model=TicketLinkageOut,
    status_code=201,
    openapi_extra=x_access("configure"),
)
def add_part(
    body: PartIn, ticket: VisibleTicket, user: ConfigureUser, session: SessionDep, desk: DeskDep, bus: BusDep
) -> TicketLinkageOut:
    """The centre brings a department into a ticket (409 when the ticket is no longer live or the part is open)."""
    _, notices = parts.add_part(
        desk,
        session,
        ticket,
        department=get_department(session, body.department),
        actor=user,
        reason=body.note,
    )
    session.flush()
    publish(bus, notices)
    return linkage_of(session, ticket)


@router.post(
    "/tickets/{ticket_id}/linkage",
    response_model=LinkageOut,
    status_code=201,
    openapi_extra=x_access("ticket"),
)
def request_linkage(
    body: LinkageIn,
    ticket: VisibleTicket,
    user: CurrentUser,
    scope: ScopeDep,
    session: SessionDep,
    desk: DeskDep,
    bus: BusDep,
) -> LinkageOut:
    """A grid leader asks for a department (请求联动); a category rule may answer at once (road occupation
    needing enforcement brings in law enforcement), otherwise the centre answers."""
    in_scope = ticket.grid is not None and scope.allows_grid(ticket.grid.path)
    req, notices = parts.request_linkage(
        desk, session, ticket, actor=user, kind=body.kind, reason=body.reason, grid_in_scope=in_scope
    )
    session.flush()
    publish(bus, notices)
    return linkage_out(session, req)


@router.get("/parts", response_model=list[PartOut], openapi_extra=x_access("authenticated"))
def my_parts(session: SessionDep, user: CurrentUser) -> list[PartOut]:
    """A department user's work list: their department's parts, open ones first (others get an empty list)."""
    if user.role != Role.department.value:
        return []
    rows = session.execute(
        select(TicketPart, Ticket)
        .join(Ticket, Ticket.id == TicketPart.ticket_id)
        .join(DepartmentMember, DepartmentMember.department_id == TicketPart.department_id)
        .where(DepartmentMember.user_id == user.id)
        .order_by(TicketPart.state.in_(["resolved", "rejected"]), TicketPart.dispatched_at.desc())
        .limit(500)
    ).all()
    return [part_out(p, t) for p, t in rows]


@router.post("/parts/{part_id}/actions", response_model=PartOut, openapi_extra=x_access("authenticated"))
def part_action(
    part_id: ObjectId, body: PartActionIn, session: SessionDep, user: CurrentUser, desk: DeskDep, bus: BusDep
) -> PartOut:
    """The department's handler accepts, rejects (with a note) or resolves (note, photos) its part; another
    department's part is a 404; a move its state does not allow is a 409 with the reason."""
    part, notices = parts.move_part(
        desk,
        session,
        part_id,
        actor=user,
        action=body.action,
        note=body.note,
        photos=decode_photos(body.photos),
    )
    session.commit()  # the loan ends with the part: the department's open streams re-check now
    publish(bus, notices)
    if part.state in {"resolved", "rejected"}:
        members = session.scalars(
            select(DepartmentMember.user_id).where(DepartmentMember.department_id == part.department_id)
        )
        publish_access_change(bus, user_ids=list(members), reason="grant")
    ticket = session.get(Ticket, part.ticket_id)
    assert ticket is not None
    return part_out(part, ticket)


# --- police clues -----------------------------------------------------------------------------------


def clue_out(session: Session, clue: PoliceClue) -> ClueOut:
    station = session.get(Department, clue.department_id) if clue.department_id else None
    return ClueOut(id=clue.id, state=clue.state, description=clue.description, lon=clue.lon, lat=clue.lat,
                   station=station.name if station else None, reporter=_name(session, clue.reporter_id), note=clue.note,
                   photos=len(clue.photos), created_at=clue.created_at)  # fmt: skip


@router.post("/clues", response_model=ClueOut, status_code=201, openapi_extra=x_access("authenticated"))
def report_clue(
    body: ClueIn, session: SessionDep, user: CurrentUser, scope: ScopeDep, desk: DeskDep
) -> ClueOut:
    """Report a public-security clue inside one's grids: it goes only to the police station of the place."""
    clue = clues.report_clue(session, reporter=user, scope=scope, lon=body.lon, lat=body.lat, description=body.description,
                             photos=decode_photos(body.photos), evidence=desk.evidence, now=utcnow())  # fmt: skip
    return clue_out(session, clue)


@router.get("/clues", response_model=list[ClueOut], openapi_extra=x_access("authenticated"))
def list_clues(session: SessionDep, user: CurrentUser) -> list[ClueOut]:
    """The clues this user may see: their own reports, and their police station's."""
    rows = session.scalars(
        select(PoliceClue)
        .where(clues.clue_filter(session, user))
        .order_by(PoliceClue.created_at.desc())
        .limit(500)
    )
    return [clue_out(session, c) for c in rows]


@router.get("/clues/{clue_id}", response_model=ClueOut, openapi_extra=x_access("authenticated"))
def get_clue(clue_id: ObjectId, session: SessionDep, user: CurrentUser) -> ClueOut:
    return clue_out(session, clues.visible_clue(session, user, clue_id))


@router.post("/clues/{clue_id}/state", response_model=ClueOut, openapi_extra=x_access("authenticated"))
def move_clue(clue_id: ObjectId, body: ClueStateIn, session: SessionDep, user: CurrentUser) -> ClueOut:
    """The station receives or closes the clue (its reporter only reads it; anyone else gets 404)."""
    return clue_out(
        session, clues.move_clue(session, user=user, clue_id=clue_id, state=body.state, note=body.note)
    )
