"""Grid tickets: list, report, detail with history and evidence, transitions, the live feed, stats.

Every answer is filtered by ``models.identity.access``: a ticket the caller may not see is a 404, exactly like
one that does not exist, and its evidence images go through the same check.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, joinedload

from api.deps import (
    BusDep,
    CredentialLive,
    CurrentUser,
    DeskDep,
    FeedDep,
    ScopeDep,
    SessionDep,
    StateDep,
    remote_addr,
    x_access,
)
from api.ticket_schemas import (
    GridStats,
    LeaderStats,
    OccurrenceOut,
    StatsOut,
    TicketDetail,
    TicketOut,
    TicketPage,
    TicketReport,
    TransitionIn,
    TransitionOut,
)
from models.bus.messages import TICKET_NOTICES, TicketNotice
from models.bus.streams import Bus
from models.db.engine import transaction
from models.db.tables import GridNode, Ticket, TicketOccurrence, TicketTransition, User, utcnow
from models.errors import BusError, NotFound, ValidationError
from models.identity.access import AccessScope, visible_ticket
from models.identity.audit import record_access
from models.tickets.states import WAITING_ACCEPT, WAITING_RESOLVE, values
from models.tickets.stats import counts, evaluate, is_overdue

router = APIRouter(prefix="/api", tags=["tickets"])

MAX_PHOTO_BYTES = 4 * 1024 * 1024


def _evidence_url(ticket_id: int, key: str | None) -> str | None:
    return f"/api/tickets/{ticket_id}/evidence/{quote(key)}" if key else None


def _out(t: Ticket, *, names: dict[int, str], now: datetime) -> TicketOut:
    return TicketOut(
        id=t.id,
        category=t.category,
        case_code=t.case_code,
        source=t.source,
        state=t.state,
        grid_id=t.grid_id,
        grid_code=t.grid.code if t.grid else None,
        grid_name=t.grid.name if t.grid else None,
        camera_id=t.camera_id,
        zone=t.zone_name,
        rule=t.rule,
        description=t.description,
        lon=t.lon,
        lat=t.lat,
        assignee=names.get(t.assignee_id) if t.assignee_id else None,
        escalation_level=t.escalation_level,
        opened_at=t.opened_at,
        accept_by=t.accept_by,
        resolve_by=t.resolve_by,
        accepted_at=t.accepted_at,
        resolved_at=t.resolved_at,
        verified_at=t.verified_at,
        closed_at=t.closed_at,
        overdue=is_overdue(t, now),
        condition_active=t.condition_active,
        occurrence_count=t.occurrence_count,
        evidence_url=_evidence_url(t.id, t.evidence_key),
    )


def _usernames(session: Session, ids: set[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return {row[0]: row[1] for row in session.execute(select(User.id, User.username).where(User.id.in_(wanted)))}


def _decode_photos(photos: list[str]) -> list[bytes]:
    out = []
    for i, text in enumerate(photos):
        data = text.split(",", 1)[1] if text.startswith("data:") else text
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as err:
            raise ValidationError(f"photo {i} is not valid base64", field="photos") from err
        if len(raw) > MAX_PHOTO_BYTES:
            raise ValidationError(f"photo {i} is larger than {MAX_PHOTO_BYTES // (1024 * 1024)} MiB", field="photos")
        out.append(raw)
    return out


def _publish(bus: Bus | None, notices: list[TicketNotice]) -> None:
    if bus is not None and notices:
        try:
            bus.publish(TICKET_NOTICES, notices)
        except BusError:
            pass  # the change is committed; only live views miss the notice


@router.get("/tickets", response_model=TicketPage, openapi_extra=x_access("authenticated"))
def list_tickets(
    session: SessionDep,
    scope: ScopeDep,
    state: Annotated[list[str] | None, Query(description="One or more states")] = None,
    category: Annotated[str | None, Query(max_length=32)] = None,
    grid: Annotated[str | None, Query(max_length=64, description="Grid node code: its whole subtree")] = None,
    camera_id: Annotated[int | None, Query()] = None,
    since: Annotated[datetime | None, Query(description="Opened at or after")] = None,
    until: Annotated[datetime | None, Query(description="Opened before")] = None,
    overdue: Annotated[bool | None, Query(description="Only tickets past a deadline (or only not)")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> TicketPage:
    """Tickets the caller may see, newest first."""
    where = [scope.ticket_filter()]
    if state:
        where.append(Ticket.state.in_(state))
    if category:
        where.append(Ticket.category == category)
    if camera_id is not None:
        where.append(Ticket.camera_id == camera_id)
    if since is not None:
        where.append(Ticket.opened_at >= since)
    if until is not None:
        where.append(Ticket.opened_at < until)
    if grid:
        prefix = session.scalar(select(GridNode.path).where(GridNode.code == grid))
        if prefix is None:
            return TicketPage(items=[], total=0, limit=limit, offset=offset)
        where.append(Ticket.grid_id.in_(select(GridNode.id).where(GridNode.path.startswith(prefix))))
    now = utcnow()
    if overdue is not None:
        late = or_(
            and_(Ticket.state.in_(values(WAITING_ACCEPT)), Ticket.accept_by < now),
            and_(Ticket.state.in_(values(WAITING_RESOLVE)), Ticket.resolve_by < now),
        )
        where.append(late if overdue else ~late)
    total = session.scalar(select(func.count()).select_from(Ticket).where(*where)) or 0
    rows = session.scalars(
        select(Ticket).options(joinedload(Ticket.grid)).where(*where).order_by(Ticket.opened_at.desc(), Ticket.id.desc()).limit(limit).offset(offset)
    ).all()
    names = _usernames(session, {t.assignee_id for t in rows})
    return TicketPage(items=[_out(t, names=names, now=now) for t in rows], total=total, limit=limit, offset=offset)


@router.post("/tickets", response_model=TicketOut, status_code=201, openapi_extra=x_access("authenticated"))
def report_ticket(
    body: TicketReport, user: CurrentUser, scope: ScopeDep, state: StateDep, desk: DeskDep, bus: BusDep
) -> TicketOut:
    """Report a case (patroller on the street, 12345 hotline, 110 platform, another system): the grid is
    found from the location and the ticket enters the same loop as camera detections."""
    photos = _decode_photos(body.photos)
    with transaction(state.session_factory) as session:
        reporter = session.get(User, user.id)
        assert reporter is not None
        ticket, notices = desk.report(
            session,
            reporter=reporter,
            scope=scope,
            category=body.category,
            lon=body.lon,
            lat=body.lat,
            description=body.description,
            source=body.source,
            photos=photos,
        )
        out = _out(ticket, names=_usernames(session, {ticket.assignee_id}), now=utcnow())
    _publish(bus, notices)
    return out


@router.get("/tickets/stream", openapi_extra=x_access("authenticated"), response_class=StreamingResponse)
async def ticket_stream(scope: ScopeDep, feed: FeedDep, still_allowed: CredentialLive) -> StreamingResponse:
    """Server-sent events: one ``ticket`` event per change of a ticket the caller may see."""
    return StreamingResponse(
        feed.stream(scope, still_allowed=still_allowed),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _detail(session: Session, t: Ticket) -> TicketDetail:
    history = session.scalars(select(TicketTransition).where(TicketTransition.ticket_id == t.id).order_by(TicketTransition.id)).all()
    occ = session.scalars(
        select(TicketOccurrence).where(TicketOccurrence.ticket_id == t.id).order_by(TicketOccurrence.at.desc(), TicketOccurrence.id.desc()).limit(20)
    ).all()
    names = _usernames(session, {t.assignee_id, *(h.actor_id for h in history)})
    base = _out(t, names=names, now=utcnow())
    return TicketDetail(
        **base.model_dump(),
        history=[
            TransitionOut(
                action=h.action,
                from_state=h.from_state,
                to_state=h.to_state,
                actor=names.get(h.actor_id) if h.actor_id else None,
                note=h.note,
                photo_urls=[u for k in h.photos if (u := _evidence_url(t.id, k))],
                at=h.at,
            )
            for h in history
        ],
        occurrences=[
            OccurrenceOut(event_id=o.event_id, kind=o.kind, at=o.at, evidence_url=_evidence_url(t.id, o.evidence_key), detail=o.payload)
            for o in occ
        ],
        photo_urls=[u for k in t.photos if (u := _evidence_url(t.id, k))],
    )


def _visible(
    session: Session, scope: AccessScope, ticket_id: int, request: Request, *, channel: str = "api", detail: dict[str, Any] | None = None
) -> Ticket:
    ticket = visible_ticket(session, scope, ticket_id)
    record_access(
        session,
        scope=scope,
        allowed=ticket is not None,
        channel=channel,
        object_type="ticket",
        object_id=ticket_id,
        remote_addr=remote_addr(request),
        detail=detail,
    )
    session.commit()
    if ticket is None:
        raise NotFound("ticket not found")
    return ticket


@router.get("/tickets/{ticket_id}", response_model=TicketDetail, openapi_extra=x_access("ticket"))
def get_ticket(ticket_id: int, request: Request, session: SessionDep, scope: ScopeDep) -> TicketDetail:
    """One ticket with its full history, latest occurrences and evidence links."""
    return _detail(session, _visible(session, scope, ticket_id, request))


@router.post("/tickets/{ticket_id}/transitions", response_model=TicketDetail, openapi_extra=x_access("ticket"))
def transition_ticket(
    ticket_id: int,
    body: TransitionIn,
    user: CurrentUser,
    scope: ScopeDep,
    state: StateDep,
    desk: DeskDep,
    bus: BusDep,
) -> TicketDetail:
    """Move a ticket: 403 with a reason for a wrong role or grid, 409 for a move its state does not allow."""
    photos = _decode_photos(body.photos)
    with transaction(state.session_factory) as session:
        ticket = visible_ticket(session, scope, ticket_id)
        if ticket is None:
            raise NotFound("ticket not found")
        actor = session.get(User, user.id)
        assert actor is not None
        notices = desk.transition(session, ticket, actor=actor, scope=scope, action=body.action, note=body.note, photos=photos)
        session.flush()
        out = _detail(session, ticket)
    _publish(bus, notices)
    return out


def _ticket_keys(session: Session, t: Ticket) -> set[str]:
    keys = {k for k in [t.evidence_key, *t.photos] if k}
    keys.update(k for k in session.scalars(select(TicketOccurrence.evidence_key).where(TicketOccurrence.ticket_id == t.id)) if k)
    for photos in session.scalars(select(TicketTransition.photos).where(TicketTransition.ticket_id == t.id)):
        keys.update(photos)
    return keys


@router.get(
    "/tickets/{ticket_id}/evidence/{key:path}",
    openapi_extra=x_access("ticket"),
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}},
)
def get_evidence(ticket_id: int, key: str, request: Request, session: SessionDep, scope: ScopeDep, desk: DeskDep) -> Response:
    """An evidence image of a ticket (annotated snapshot or photo); only keys attached to this ticket."""
    ticket = _visible(session, scope, ticket_id, request, channel="evidence", detail={"key": key[:200]})
    if key not in _ticket_keys(session, ticket):
        raise NotFound("evidence not found")
    data = desk.evidence.get(key)
    media = "image/png" if key.endswith(".png") else "image/jpeg"
    return Response(content=data, media_type=media, headers={"Cache-Control": "private, max-age=3600"})


@router.get("/stats", response_model=StatsOut, openapi_extra=x_access("authenticated"))
def stats(
    session: SessionDep,
    scope: ScopeDep,
    since: Annotated[datetime | None, Query(description="Opened at or after (default: 30 days ago)")] = None,
    until: Annotated[datetime | None, Query(description="Opened before (default: now)")] = None,
) -> StatsOut:
    """Evaluation per grid and per grid leader (考核) over the tickets the caller may see."""
    now = utcnow()
    until = until or now
    since = since or until - timedelta(days=30)
    tickets = session.scalars(
        select(Ticket).options(joinedload(Ticket.grid)).where(scope.ticket_filter(), Ticket.opened_at >= since, Ticket.opened_at < until)
    ).all()
    users = {u.id: u for u in session.scalars(select(User).where(User.id.in_({t.assignee_id for t in tickets if t.assignee_id})))}
    grid_rows, leader_rows = evaluate(tickets, users, now=now)
    by_state, by_category = counts(tickets)
    return StatsOut(
        since=since,
        until=until,
        total=len(tickets),
        by_state=by_state,
        by_category=by_category,
        grids=[GridStats(**r.__dict__) for r in grid_rows],
        leaders=[LeaderStats(**r.__dict__) for r in leader_rows],
    )
