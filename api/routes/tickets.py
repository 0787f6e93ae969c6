"""Grid tickets: list, report, detail with history and evidence, transitions, the live feed, stats.

Every answer is filtered by ``models.identity.access``: a ticket the caller may not see is a 404, exactly like
one that does not exist, and its evidence images go through the same check.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Literal, get_args
from urllib.parse import quote

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, joinedload

from api.deps import (
    BusDep,
    CredentialDep,
    CurrentUser,
    DeskDep,
    FeedDep,
    ObjectIdQuery,
    ScopeDep,
    SessionDep,
    TicketFeedGuard,
    VisibleTicket,
    x_access,
)
from api.ranges import parse_range
from api.ticket_schemas import (
    OccurrenceOut,
    TicketDetail,
    TicketOut,
    TicketPage,
    TicketReport,
    TransitionIn,
    TransitionOut,
)
from models.bus.messages import TICKET_NOTICES, TicketNotice
from models.bus.protocol import Bus
from models.db.tables import Camera, GridNode, Role, Ticket, TicketOccurrence, TicketTransition, User, utcnow
from models.errors import BusError, InvalidInput, NotFound
from models.identity.roles import CENTRE
from models.identity.tokens import TokenScope
from models.tickets.categories import MANUAL_SOURCES
from models.tickets.states import WAITING_ACCEPT, WAITING_RESOLVE, values
from models.tickets.stats import is_overdue

#: what GET /api/tickets?source= accepts: video detections and the manual intake channels
TICKET_SOURCES = frozenset({"camera", *MANUAL_SOURCES})

router = APIRouter(prefix="/api", tags=["tickets"])
ClipState = Literal["pending", "ready", "unavailable"]
#: the clip states an occurrence shows (``removed`` ones are gone: shown as no clip)
CLIP_STATES = frozenset(get_args(ClipState))
#: most bytes one open-ended range request of a clip returns (players ask for ``bytes=a-``)
CLIP_CHUNK_BYTES = 4 * 1024 * 1024


def _evidence_url(ticket_id: int, key: str | None) -> str | None:
    return f"/api/tickets/{ticket_id}/evidence/{quote(key)}" if key else None


def _occurrence(t: Ticket, o: TicketOccurrence, now: datetime) -> OccurrenceOut:
    clip: ClipState | None = o.clip_state if o.clip_state in CLIP_STATES else None  # type: ignore[assignment]
    if clip == "pending" and o.clip_due_at is not None and o.clip_due_at < now:
        clip = "unavailable"  # its worker is gone; the ticketer's sweep will record it so
    return OccurrenceOut(
        event_id=o.event_id,
        kind=o.kind,
        at=o.at,
        evidence_url=_evidence_url(t.id, o.evidence_key),
        detail=o.payload,
        clip=clip,
        clip_url=f"/api/tickets/{t.id}/clips/{quote(o.clip_key)}" if clip == "ready" and o.clip_key else None,
    )


def _out(t: Ticket, *, names: dict[int, str], cameras: dict[int, str], now: datetime) -> TicketOut:
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
        camera_name=cameras.get(t.camera_id) if t.camera_id else None,
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


def _camera_names(session: Session, tickets: Sequence[Ticket]) -> dict[int, str]:
    wanted = {t.camera_id for t in tickets if t.camera_id is not None}
    if not wanted:
        return {}
    return {row[0]: row[1] for row in session.execute(select(Camera.id, Camera.name).where(Camera.id.in_(wanted)))}


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
            raise InvalidInput(f"photo {i} is not valid base64", field="photos") from err
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
    camera_id: ObjectIdQuery = None,
    source: Annotated[
        list[str] | None,
        Query(description="One or more sources: camera (video detection), patrol, hotline_12345, police_110, api"),
    ] = None,
    since: Annotated[AwareDatetime | None, Query(description="Opened at or after (ISO 8601 with a zone)")] = None,
    until: Annotated[AwareDatetime | None, Query(description="Opened before (ISO 8601 with a zone)")] = None,
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
    if source:
        unknown = sorted(set(source) - TICKET_SOURCES)
        if unknown:
            raise InvalidInput(f"unknown source {unknown[0]!r} (one of {', '.join(sorted(TICKET_SOURCES))})", field="source")
        where.append(Ticket.source.in_(source))
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
    cameras = _camera_names(session, rows)
    return TicketPage(items=[_out(t, names=names, cameras=cameras, now=now) for t in rows], total=total, limit=limit, offset=offset)


@router.post("/tickets", response_model=TicketOut, status_code=201, openapi_extra=x_access("authenticated"))
def report_ticket(
    body: TicketReport,
    user: CurrentUser,
    credential: CredentialDep,
    scope: ScopeDep,
    session: SessionDep,
    desk: DeskDep,
    bus: BusDep,
) -> TicketOut:
    """Report a case (patroller on the street, 12345 hotline, 110 platform, another system): the grid is
    found from the location and the ticket enters the same loop as camera detections. A source other
    than ``patrol`` is the centre's (admin, operator, logged in) or an API token's with scope ``intake``."""
    if credential.api_token_id is None:
        intake = Role(user.role) in CENTRE
    else:
        intake = TokenScope.intake.value in credential.scopes
    photos = _decode_photos(body.photos)
    ticket, notices = desk.report(
        session,
        reporter=user,
        scope=scope,
        category=body.category,
        lon=body.lon,
        lat=body.lat,
        description=body.description,
        source=body.source,
        photos=photos,
        may_set_source=intake,
    )
    out = _out(ticket, names=_usernames(session, {ticket.assignee_id}), cameras={}, now=utcnow())
    session.commit()
    _publish(bus, notices)
    return out


@router.get("/tickets/stream", openapi_extra=x_access("authenticated"), response_class=StreamingResponse)
async def ticket_stream(feed: FeedDep, guard: TicketFeedGuard) -> StreamingResponse:
    """Server-sent events: one ``ticket`` event per change of a ticket the caller may see *now* (the
    scope is re-checked every few seconds and on access changes); a last ``end`` event says why it
    stopped (``expired``, ``revoked``). Start and end are in the access log (channel ``sse``)."""
    return StreamingResponse(
        feed.stream(guard),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _detail(session: Session, t: Ticket) -> TicketDetail:
    history = session.scalars(select(TicketTransition).where(TicketTransition.ticket_id == t.id).order_by(TicketTransition.id)).all()
    occ = session.scalars(
        select(TicketOccurrence).where(TicketOccurrence.ticket_id == t.id).order_by(TicketOccurrence.at.desc(), TicketOccurrence.id.desc()).limit(20)
    ).all()
    # the events with clips (a few per ticket) are listed even when older than the latest 20
    clipped = session.scalars(
        select(TicketOccurrence).where(
            TicketOccurrence.ticket_id == t.id, TicketOccurrence.clip_state.in_(("pending", "ready", "unavailable"))
        )
    ).all()
    occ = sorted({o.id: o for o in [*occ, *clipped]}.values(), key=lambda o: (o.at, o.id), reverse=True)
    now = utcnow()
    names = _usernames(session, {t.assignee_id, *(h.actor_id for h in history)})
    base = _out(t, names=names, cameras=_camera_names(session, [t]), now=now)
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
        occurrences=[_occurrence(t, o, now) for o in occ],
        photo_urls=[u for k in t.photos if (u := _evidence_url(t.id, k))],
    )


@router.get("/tickets/{ticket_id}", response_model=TicketDetail, openapi_extra=x_access("ticket"))
def get_ticket(ticket: VisibleTicket, session: SessionDep) -> TicketDetail:
    """One ticket with its full history, latest occurrences and evidence links."""
    return _detail(session, ticket)


@router.post("/tickets/{ticket_id}/transitions", response_model=TicketDetail, openapi_extra=x_access("ticket"))
def transition_ticket(
    body: TransitionIn,
    ticket: VisibleTicket,
    user: CurrentUser,
    scope: ScopeDep,
    session: SessionDep,
    desk: DeskDep,
    bus: BusDep,
) -> TicketDetail:
    """Move a ticket: 403 with a reason for a wrong role or grid, 409 for a move its state does not allow
    (of two people acting at once, the second gets the 409 with the state the first left)."""
    photos = _decode_photos(body.photos)
    notices = desk.transition(
        session, ticket, actor=user, scope=scope, action=body.action, note=body.note, photos=photos, to_grid=body.grid, to_user=body.assignee
    )
    session.flush()
    out = _detail(session, ticket)
    session.commit()
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
def get_evidence(key: str, ticket: VisibleTicket, session: SessionDep, desk: DeskDep) -> Response:
    """An evidence image of a ticket (annotated snapshot or photo); only keys attached to this ticket."""
    if key not in _ticket_keys(session, ticket):
        raise NotFound("evidence not found")
    data = desk.evidence.get(key)
    media = "image/png" if key.endswith(".png") else "image/jpeg"
    return Response(content=data, media_type=media, headers={"Cache-Control": "no-store"})  # a revoked viewer's cache


@router.get(
    "/tickets/{ticket_id}/clips/{key:path}",
    openapi_extra=x_access("ticket"),
    response_class=Response,
    responses={200: {"content": {"video/mp4": {}}}, 206: {"content": {"video/mp4": {}}}, 416: {}},
)
def get_clip(
    key: str,
    ticket: VisibleTicket,
    session: SessionDep,
    desk: DeskDep,
    range_header: Annotated[str | None, Header(alias="Range")] = None,
) -> Response:
    """An event clip of a ticket (MP4), with HTTP range requests so that a player can seek; only clips
    linked to this ticket's occurrences, through the same access check and log as evidence images."""
    linked = session.scalar(
        select(TicketOccurrence.id).where(
            TicketOccurrence.ticket_id == ticket.id, TicketOccurrence.clip_key == key, TicketOccurrence.clip_state == "ready"
        )
    )
    if linked is None:
        raise NotFound("clip not found")
    size = desk.evidence.size(key)
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "no-store"}  # a revoked viewer's cache
    if range_header is None:
        return Response(content=desk.evidence.read(key, start=0, length=size), media_type="video/mp4", headers=headers)
    first, last = parse_range(range_header, size, open_ended_max=CLIP_CHUNK_BYTES)
    data = desk.evidence.read(key, start=first, length=last - first + 1)
    headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    return Response(content=data, status_code=206, media_type="video/mp4", headers=headers)
