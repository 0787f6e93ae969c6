"""The centre's triage desk (统一受理、分流交办): the queue of cases waiting for dispatch with how long each
has waited and its likely duplicates, one action sending a case to a grid and/or departments, merging a
duplicate into a kept ticket, and answering grid leaders' linkage requests. The centre's only."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.deps import BusDep, ConfigureUser, DeskDep, ObjectId, ScopeDep, SessionDep, VisibleTicket, x_access
from api.org_schemas import (
    AnswerIn,
    LinkageOut,
    MergeIn,
    TicketLinkageOut,
    TriageDispatchIn,
    TriageItemOut,
    TriageOut,
)
from api.routes.ticket_parts import linkage_of, linkage_out, publish
from models.db.tables import LinkageRequest, Role, Ticket, utcnow
from models.errors import AccessDenied, NotFound
from models.org import parts, triage

router = APIRouter(prefix="/api", tags=["triage"])


def _centre(user_role: str) -> None:
    if Role(user_role) not in {Role.admin, Role.operator}:
        raise AccessDenied("only the command centre triages cases")


def _pending(session: Session) -> list[LinkageOut]:
    rows = session.scalars(
        select(LinkageRequest).where(LinkageRequest.state == "pending").order_by(LinkageRequest.requested_at)
    )
    return [linkage_out(session, r) for r in rows]


@router.get("/triage", response_model=TriageOut, openapi_extra=x_access("configure"))
def triage_queue(session: SessionDep, user: ConfigureUser) -> TriageOut:
    """Cases waiting for triage, longest wait first, and linkage requests waiting for an answer."""
    now = utcnow()
    items = [
        TriageItemOut(
            id=i.ticket.id,
            category=i.ticket.category,
            source=i.ticket.source,
            sources=i.sources,
            description=i.ticket.description,
            grid=i.ticket.grid.code if i.ticket.grid else None,
            grid_name=i.ticket.grid.name if i.ticket.grid else None,
            lon=i.ticket.lon,
            lat=i.ticket.lat,
            opened_at=i.ticket.opened_at,
            waiting_s=i.waiting_s,
            duplicates=i.duplicates,
        )  # fmt: skip
        for i in triage.queue(session, now=now)
    ]
    return TriageOut(items=items, waiting=len(items), longest_wait_s=max((i.waiting_s for i in items), default=0),
                     pending_requests=_pending(session))  # fmt: skip


@router.post(
    "/triage/{ticket_id}/dispatch", response_model=TicketLinkageOut, openapi_extra=x_access("configure")
)
def triage_dispatch(
    body: TriageDispatchIn,
    ticket: VisibleTicket,
    user: ConfigureUser,
    scope: ScopeDep,
    session: SessionDep,
    desk: DeskDep,
    bus: BusDep,
) -> TicketLinkageOut:
    """One action: the case goes to a grid (its leader leads) and/or to departments (协办 parts)."""
    notices = triage.dispatch(desk, session, ticket, actor=user, scope=scope, grid_code=body.grid, department_codes=body.departments,
                              note=body.note)  # fmt: skip
    session.flush()
    publish(bus, notices)
    return linkage_of(session, ticket)


@router.post(
    "/triage/{ticket_id}/merge", response_model=TicketLinkageOut, openapi_extra=x_access("configure")
)
def triage_merge(
    body: MergeIn, ticket: VisibleTicket, user: ConfigureUser, session: SessionDep, desk: DeskDep, bus: BusDep
) -> TicketLinkageOut:
    """Merge a duplicate (same place, same problem) into this ticket: both sources stay on record."""
    duplicate = session.get(Ticket, body.duplicate_id)
    if duplicate is None:
        raise NotFound("no such duplicate ticket")
    notices = triage.merge(desk, session, keep=ticket, duplicate=duplicate, actor=user)
    session.flush()
    publish(bus, notices)
    return linkage_of(session, ticket)


@router.post(
    "/linkage-requests/{request_id}/answer", response_model=LinkageOut, openapi_extra=x_access("configure")
)
def answer_linkage(
    request_id: ObjectId, body: AnswerIn, user: ConfigureUser, session: SessionDep, desk: DeskDep, bus: BusDep
) -> LinkageOut:
    """Bring in the department asked for (a part), or decline with a note."""
    notices = parts.answer_request_by_code(
        desk, session, request_id, department_code=body.department, actor=user, note=body.note
    )
    session.flush()
    publish(bus, notices)
    req = session.get(LinkageRequest, request_id)
    assert req is not None
    return linkage_out(session, req)
