"""Police clues (治安线索): a public-security clue from a patroller or grid leader goes only to the police
station whose jurisdiction covers the place. Its reporter and that station see it; nobody else does —
not the grid's manager, not other departments, not the centre (a 404, as if it did not exist)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, false, or_, select
from sqlalchemy.orm import Session

from models.db.tables import DepartmentMember, GridNode, PoliceClue, Role, User
from models.errors import AccessDenied, Conflict, InvalidInput, NotFound
from models.evidence.store import EvidenceStore, image_suffix
from models.grid.geo import GridLocator
from models.identity.access import AccessScope
from models.identity.roles import REPORTERS
from models.org.departments import covering

CLUE_STATES = {"received": frozenset({"new"}), "closed": frozenset({"new", "received"})}


def _station_of(session: Session, user_id: int) -> int | None:
    return session.scalar(select(DepartmentMember.department_id).where(DepartmentMember.user_id == user_id))


def clue_filter(session: Session, user: User) -> ColumnElement[bool]:
    """A WHERE clause on the clues this user may see: their own, and their police station's."""
    clauses: list[ColumnElement[bool]] = [PoliceClue.reporter_id == user.id]
    if user.role == Role.department.value:
        station = _station_of(session, user.id)
        if station is not None:
            clauses.append(PoliceClue.department_id == station)
    return or_(*clauses) if clauses else false()


def visible_clue(session: Session, user: User, clue_id: int) -> PoliceClue:
    clue = session.scalar(select(PoliceClue).where(PoliceClue.id == clue_id, clue_filter(session, user)))
    if clue is None:
        raise NotFound("no such clue")
    return clue


def report_clue(
    session: Session,
    *,
    reporter: User,
    scope: AccessScope,
    lon: float,
    lat: float,
    description: str,
    photos: Sequence[bytes],
    evidence: EvidenceStore,
    now: datetime,
) -> PoliceClue:
    """File a clue inside one's own grids; it goes to the police station covering the place (none: only
    the reporter sees it until a station's jurisdiction covers it)."""
    if Role(reporter.role) not in REPORTERS:
        raise AccessDenied(f"a {reporter.role} may not report a police clue")
    if not description.strip():
        raise InvalidInput("describe the clue", field="description")
    hit = GridLocator.from_session(session).locate(lon, lat)
    if hit is None:
        raise InvalidInput("the location lies outside every grid", field="lon")
    grid = session.get(GridNode, hit[0])
    assert grid is not None
    if not scope.allows_grid(grid.path):
        raise AccessDenied("you may report clues only inside your own grids")
    stations = covering(session, grid_path=grid.path, kind="police")
    clue = PoliceClue(reporter_id=reporter.id, grid_id=grid.id, department_id=stations[0].id if stations else None,
                      lon=lon, lat=lat, description=description.strip(), created_at=now)  # fmt: skip
    session.add(clue)
    session.flush()
    clue.photos = [evidence.put(p, prefix=f"clue-{clue.id}", suffix=image_suffix(p), at=now) for p in photos]
    return clue


def move_clue(session: Session, *, user: User, clue_id: int, state: str, note: str) -> PoliceClue:
    """The station receives or closes a clue (the reporter only reads it)."""
    clue = visible_clue(session, user, clue_id)
    if user.role != Role.department.value or clue.department_id != _station_of(session, user.id):
        raise AccessDenied("only the police station of the place handles a clue")
    if state not in CLUE_STATES:
        raise InvalidInput(f"unknown state {state!r} (use {', '.join(CLUE_STATES)})", field="state")
    locked = session.scalar(
        select(PoliceClue)
        .where(PoliceClue.id == clue.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert locked is not None
    if locked.state not in CLUE_STATES[state]:
        raise Conflict(f"cannot mark a {locked.state} clue {state}")
    locked.state = state
    if note.strip():
        locked.note = (locked.note + "\n" if locked.note else "") + note.strip()
    return locked
