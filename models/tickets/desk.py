"""Grid tickets: the state machine, who may move a ticket, deadlines, dispatch and manual reports.

open → dispatched → accepted → resolved → verified → closed, plus rejected (sent back by the grid) and
reopened (the problem came back, or a reviewer disagreed). Every move is a :class:`TicketTransition`
row: who, when, a note and optional photos. The ticketer (detections) and the API (people) both go
through :class:`TicketDesk`, so the rules are the same whoever acts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.bus.messages import TicketNotice
from models.db.engine import lock_rows
from models.db.tables import (
    Assignment,
    GridKind,
    GridNode,
    Role,
    Ticket,
    TicketPart,
    TicketState,
    TicketTransition,
    User,
    WebhookDelivery,
    utcnow,
)
from models.errors import AccessDenied, Conflict, InvalidInput
from models.evidence.store import EvidenceStore, image_suffix
from models.grid.geo import GridLocator
from models.identity.access import AccessScope
from models.identity.roles import CENTRE, TICKET_HANDLERS, TICKET_SUPERVISORS
from models.notify.outbox import queue_for_notices as queue_notifications
from models.tickets.categories import DEFAULT_CATEGORIES, MANUAL_SOURCES, S, TicketSettings
from models.tickets.states import LIVE


@dataclass(frozen=True)
class Move:
    sources: frozenset[TicketState]
    target: TicketState
    roles: frozenset[Role]



MOVES: dict[str, Move] = {
    "dispatch": Move(frozenset({S.open, S.rejected, S.reopened}), S.dispatched, TICKET_SUPERVISORS),
    "accept": Move(frozenset({S.dispatched, S.reopened}), S.accepted, TICKET_HANDLERS),
    "reject": Move(frozenset({S.dispatched, S.reopened}), S.rejected, TICKET_HANDLERS),
    "resolve": Move(frozenset({S.accepted}), S.resolved, TICKET_HANDLERS),
    "verify": Move(frozenset({S.resolved}), S.verified, TICKET_SUPERVISORS),
    "close": Move(frozenset({S.verified}), S.closed, TICKET_SUPERVISORS),
    # a false alarm: the centre closes it without handling
    "dismiss": Move(LIVE, S.closed, CENTRE),
    "reopen": Move(frozenset({S.resolved, S.verified, S.closed}), S.reopened, TICKET_SUPERVISORS),
}


def lock_tickets(session: Session, ids: Iterable[int]) -> dict[int, Ticket]:
    """The tickets, locked for a change (see :func:`models.db.engine.lock_rows`)."""
    return lock_rows(session, Ticket, ids)


#: cases from outside the grid wait in the centre's triage queue (统一受理、分流交办) instead of going
#: to a grid leader at once: the operators dispatch them to a grid and/or departments
TRIAGE_SOURCES = frozenset({"hotline_12345", "police_110"})
#: a department part still to be done (it holds the ticket's resolution and lends the ticket's camera)
OPEN_PARTS = ("accepted", "dispatched")


def lock_open_parts(session: Session, ticket_id: int) -> list[TicketPart]:
    """The ticket's open department parts, locked (callers lock the ticket first: ticket, then parts)."""
    ids = session.scalars(
        select(TicketPart.id).where(TicketPart.ticket_id == ticket_id, TicketPart.state.in_(OPEN_PARTS))
    ).all()
    return [p for p in lock_rows(session, TicketPart, ids).values() if p.state in OPEN_PARTS]


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def notice(ticket: Ticket, event: str, at: datetime, **detail: object) -> TicketNotice:
    return TicketNotice(
        ticket_id=ticket.id,
        event=event,
        state=ticket.state,
        category=ticket.category,
        grid_id=ticket.grid_id,
        grid_path=ticket.grid.path if ticket.grid is not None else None,
        camera_id=ticket.camera_id,
        at=at,
        detail=dict(detail),
    )


class TicketDesk:
    """Every change to a ticket goes through here (API and ticketer alike)."""

    def __init__(
        self,
        settings: TicketSettings,
        *,
        evidence: EvidenceStore,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.evidence = evidence
        self.clock = clock

    # --- helpers -----------------------------------------------------------------------------------
    def record(
        self,
        session: Session,
        ticket: Ticket,
        *,
        action: str,
        to_state: TicketState | str,
        actor: User | None,
        at: datetime,
        note: str = "",
        photos: Sequence[str] = (),
    ) -> None:
        session.add(
            TicketTransition(
                ticket_id=ticket.id,
                action=action,
                from_state=ticket.state if action != "open" else None,
                to_state=str(to_state),
                actor_id=actor.id if actor else None,
                note=note,
                photos=list(photos),
                at=at,
            )
        )
        ticket.state = str(to_state)
        ticket.updated_at = at

    def set_deadlines(self, ticket: Ticket, start: datetime) -> None:
        policy = self.settings.category(ticket.category)
        ticket.accept_by = start + timedelta(seconds=policy.accept_within_s)
        ticket.resolve_by = start + timedelta(seconds=policy.resolve_within_s)

    def leaders_by_grid(self, session: Session, grid_ids: Iterable[int | None]) -> dict[int, list[User]]:
        """The enabled grid leaders of each grid, in one query (a batch of events shares it)."""
        wanted = {g for g in grid_ids if g is not None}
        out: dict[int, list[User]] = {g: [] for g in wanted}
        if not wanted:
            return out
        rows = session.execute(
            select(Assignment.grid_id, User)
            .join(User, Assignment.user_id == User.id)
            .where(Assignment.grid_id.in_(wanted), User.role == Role.grid_leader.value, User.enabled.is_(True))
            .order_by(User.id)
        )
        for grid_id, user in rows:
            out[grid_id].append(user)
        return out

    def auto_dispatch(
        self, session: Session, ticket: Ticket, at: datetime, *, leaders: dict[int, list[User]] | None = None
    ) -> list[TicketNotice]:
        """Send a new or reopened ticket to its grid's leader (the first one; all of them are notified)."""
        if not self.settings.ticket_auto_dispatch or ticket.grid_id is None:
            return []
        if leaders is None or ticket.grid_id not in leaders:
            leaders = self.leaders_by_grid(session, [ticket.grid_id])
        return self._dispatch_to(session, ticket, at, leaders[ticket.grid_id])

    def _dispatch_to(self, session: Session, ticket: Ticket, at: datetime, leaders: list[User]) -> list[TicketNotice]:
        if not leaders:
            return []
        ticket.assignee_id = leaders[0].id
        names = ", ".join(u.username for u in leaders)
        self.record(session, ticket, action="dispatch", to_state=S.dispatched, actor=None, at=at, note=f"自动派遣 → {names}")
        return [notice(ticket, "dispatch", at, leaders=[u.id for u in leaders])]

    def queue_webhooks(self, session: Session, notices: Sequence[TicketNotice]) -> None:
        """Transactional outbox: a webhook row per notice and endpoint, committed with the change itself."""
        for n in notices:
            for url in self.settings.webhook_urls:
                payload = n.model_dump(mode="json", by_alias=True)
                payload["url"] = url
                session.add(WebhookDelivery(ticket_id=n.ticket_id, event=n.event, payload=payload, next_attempt_at=n.at))
        queue_notifications(session, notices)  # people's phones (models/notify), in the same transaction

    # --- people move tickets -----------------------------------------------------------------------
    def transition(
        self,
        session: Session,
        ticket: Ticket,
        *,
        actor: User,
        scope: AccessScope,
        action: str,
        note: str = "",
        photos: Sequence[bytes] = (),
        to_grid: str | None = None,
        to_user: str | None = None,
    ) -> list[TicketNotice]:
        """Apply one action; AccessDenied (403) or Conflict (409) with a reason when it is not allowed.
        ``dispatch`` may name where the ticket goes: a grid (by code) and/or a grid leader (by username),
        inside the dispatcher's scope; a rejected ticket is rerouted that way ("该点位属于第二网格").
        The caller has already checked that ``scope`` may see the ticket (404 otherwise). The ticket is
        locked and read again first: of two people acting at once, the second sees the first's result
        (a grid leader's accept and a manager's reject cannot both succeed)."""
        lock_tickets(session, [ticket.id])
        move = MOVES.get(action)
        if move is None:
            raise InvalidInput(f"unknown action {action!r} (use {', '.join(MOVES)})", field="action")
        role = Role(actor.role)
        if role not in move.roles:
            raise AccessDenied(f"{_article(role.value)} {role.value} may not {action} a ticket")
        if (to_grid or to_user) and action != "dispatch":
            raise InvalidInput(f"only a dispatch names where the ticket goes, not {action}", field="grid" if to_grid else "assignee")
        grid_path = ticket.grid.path if ticket.grid is not None else None
        if role not in CENTRE and (grid_path is None or not scope.allows_grid(grid_path)):
            raise AccessDenied(f"this ticket belongs to a grid outside your responsibility; you may not {action} it")
        if S(ticket.state) not in move.sources:
            raise Conflict(f"cannot {action} a ticket that is {ticket.state}")
        if action in {"dismiss", "reject", "reopen"} and not note.strip():
            raise InvalidInput(f"a note is required to {action} a ticket", field="note")
        route = self._route(session, ticket, scope=scope, to_grid=to_grid, to_user=to_user) if (to_grid or to_user) else None
        at = self.clock()
        keys = [self.evidence.put(p, prefix=f"ticket-{ticket.id}", suffix=image_suffix(p), at=at) for p in photos]
        if action == "resolve":
            waiting = lock_open_parts(session, ticket.id)
            if waiting:  # the lead is done; the ticket resolves when the last department part is (协办)
                names = "、".join(p.department.name for p in waiting)
                self.record(session, ticket, action="lead_resolve", to_state=ticket.state, actor=actor, at=at,
                            note=f"{note}（待协办部门办结：{names}）".lstrip(), photos=keys)  # fmt: skip
                out = [notice(ticket, "lead_resolved", at, actor=actor.username, waiting=[p.department_id for p in waiting])]
                self.queue_webhooks(session, out)
                return out
        if route is not None:
            grid, leader = route
            rerouted = grid.id != ticket.grid_id
            ticket.grid_id, ticket.grid, ticket.assignee_id = grid.id, grid, leader.id
            if rerouted:  # a new grid gets its own time to accept, and escalation starts again from it
                ticket.escalation_level = 0
                self.set_deadlines(ticket, at)
            where = f"派遣 → {grid.name}({grid.code}) · {leader.username}"
            note = f"{where}：{note}" if note.strip() else where
        out = self._apply(session, ticket, move=move, action=action, actor=actor, at=at, note=note, photos=keys)
        self.queue_webhooks(session, out)
        return out

    def _route(
        self, session: Session, ticket: Ticket, *, scope: AccessScope, to_grid: str | None, to_user: str | None
    ) -> tuple[GridNode, User]:
        """Where a dispatch sends the ticket: (grid, leader). The grid must be a grid (not a street) in the
        dispatcher's scope with an enabled leader; a named leader must lead that grid (or, with no grid
        named, the ticket's grid or one grid of theirs in scope, which the ticket then moves to)."""
        user: User | None = None
        if to_user:
            user = session.scalar(select(User).where(User.username == to_user))
            if user is None or not user.enabled or user.role != Role.grid_leader.value:
                raise InvalidInput(f"{to_user!r} is not an enabled grid leader", field="assignee")
        if to_grid:
            grid = session.scalar(select(GridNode).where(GridNode.code == to_grid))
            if grid is None:
                raise InvalidInput(f"no grid has code {to_grid!r}", field="grid")
            candidates = [grid]
        else:
            assert user is not None
            mine = session.scalars(
                select(GridNode).join(Assignment, Assignment.grid_id == GridNode.id).where(Assignment.user_id == user.id).order_by(GridNode.code)
            ).all()
            candidates = [g for g in mine if g.id == ticket.grid_id] or list(mine)
            if not candidates:
                raise InvalidInput(f"{to_user!r} leads no grid", field="assignee")
        for grid in candidates:
            if grid.kind != GridKind.grid.value:
                raise InvalidInput(f"{grid.code} is a {grid.kind}, not a grid: dispatch to one of its grids", field="grid")
            if not scope.allows_grid(grid.path):
                continue
            leaders = self.leaders_by_grid(session, [grid.id])[grid.id]
            if user is None:
                if not leaders:
                    raise InvalidInput(f"grid {grid.code} has no grid leader to dispatch to", field="grid")
                return grid, leaders[0]
            if any(u.id == user.id for u in leaders):
                return grid, user
            if to_grid:
                raise InvalidInput(f"{to_user!r} is not a leader of grid {grid.code}", field="assignee")
        raise AccessDenied("you may dispatch only to grids inside your responsibility")

    def _apply(
        self,
        session: Session,
        ticket: Ticket,
        *,
        move: Move,
        action: str,
        actor: User | None,
        at: datetime,
        note: str,
        photos: Sequence[str] = (),
    ) -> list[TicketNotice]:
        if move.target == S.reopened and ticket.camera_id is not None and ticket.active_key is None:
            self._take_live_slot(session, ticket)
        self.record(session, ticket, action=action, to_state=move.target, actor=actor, at=at, note=note, photos=photos)
        out = [notice(ticket, action, at, actor=actor.username if actor else "system")]
        if move.target == S.accepted:
            ticket.accepted_at = at
            if actor is not None and actor.role == Role.grid_leader.value:
                ticket.assignee_id = actor.id
        elif move.target == S.resolved:
            ticket.resolved_at = at
        elif move.target == S.verified:
            ticket.verified_at = at
        elif move.target == S.closed:
            ticket.closed_at = at
        elif move.target == S.reopened:
            ticket.resolved_at = ticket.verified_at = ticket.closed_at = ticket.accepted_at = None
            # new deadlines start a new escalation: the grid first, then the street, then the district
            ticket.escalation_level = 0
            self.set_deadlines(ticket, at)
            out += self.auto_dispatch(session, ticket, at)
        if move.target in {S.verified, S.closed}:
            ticket.active_key = None  # the zone may open a new ticket from now on
        return out

    def _take_live_slot(self, session: Session, ticket: Ticket) -> None:
        """A reopened camera ticket takes back its zone's live slot, unless a newer ticket holds it. The
        unique index decides a race with a ticketer opening that newer ticket at the same moment."""
        live_key = f"{ticket.camera_id}:{ticket.zone_name}:{ticket.rule}"
        other = session.scalar(select(Ticket.id).where(Ticket.active_key == live_key))
        if other is not None:
            raise Conflict(f"ticket {other} is already open for this camera zone; reopen is not possible")
        try:
            with session.begin_nested():
                ticket.active_key = live_key
                session.flush()
        except IntegrityError as err:
            raise Conflict("another ticket was opened for this camera zone just now; reopen is not possible") from err

    def system_move(
        self, session: Session, ticket: Ticket, *, action: str, at: datetime, note: str, photos: Sequence[str] = ()
    ) -> list[TicketNotice]:
        """A move made by the system (video verification, re-detection), outside role checks."""
        out = self._apply(session, ticket, move=MOVES[action], action=action, actor=None, at=at, note=note, photos=photos)
        return out

    # --- manual and external intake -----------------------------------------------------------------
    def report(
        self,
        session: Session,
        *,
        reporter: User,
        scope: AccessScope,
        category: str,
        lon: float,
        lat: float,
        description: str,
        source: str = "patrol",
        photos: Sequence[bytes] = (),
        may_set_source: bool = False,
    ) -> tuple[Ticket, list[TicketNotice]]:
        """A case reported by a patroller, the 12345 hotline, the 110 platform or another system. A
        source other than ``patrol`` is provenance only an intake channel may claim: the caller says
        whether this reporter may (``may_set_source``: the centre, or an API token with scope intake)."""
        if category not in self.settings.ticket_categories and category not in DEFAULT_CATEGORIES:
            raise InvalidInput(f"unknown category {category!r}", field="category")
        if source not in MANUAL_SOURCES:
            raise InvalidInput(f"unknown source {source!r} (use {', '.join(MANUAL_SOURCES)})", field="source")
        if source != "patrol" and not may_set_source:
            raise AccessDenied(
                f"only the command centre or an intake API token may file a case as {source!r} (source)"
            )
        hit = GridLocator.from_session(session).locate(lon, lat)
        if hit is None:
            raise InvalidInput("the location lies outside every grid", field="lon")
        grid = session.get(GridNode, hit[0])
        assert grid is not None
        if not scope.allows_grid(grid.path):
            raise AccessDenied("you may report cases only inside your own grids")
        at = self.clock()
        ticket = Ticket(
            category=category,
            case_code=self.settings.category(category).case_code,
            source=source,
            grid_id=grid.id,
            reporter_id=reporter.id,
            description=description,
            lon=lon,
            lat=lat,
            opened_at=at,
            state=S.open.value,
        )
        self.set_deadlines(ticket, at)
        session.add(ticket)
        session.flush()
        ticket.grid = grid
        keys = [self.evidence.put(p, prefix=f"ticket-{ticket.id}", suffix=image_suffix(p), at=at) for p in photos]
        ticket.photos = keys
        ticket.evidence_key = keys[0] if keys else None
        self.record(session, ticket, action="open", to_state=S.open, actor=reporter, at=at, note=description, photos=keys)
        out = [notice(ticket, "opened", at, source=source)]
        if source not in TRIAGE_SOURCES:  # a hotline or 110 case waits for the centre's triage
            out += self.auto_dispatch(session, ticket, at)
        self.queue_webhooks(session, out)
        return ticket, out
