"""The access policy: the one place that decides which cameras and tickets a user may see.

Every path that shows a camera or a ticket (API lists and details, snapshots, wall tiles, evidence,
SSE, stats, the RTSP gateway) asks here, either for a SQL filter (lists: stays one indexed query at
100k cameras) or for a predicate (one object in hand). Both come from the same :class:`AccessScope`,
and a test checks that they agree on every camera for every role.

Policy:
- admin, operator: everything.
- manager: everything under the grid nodes assigned to them (each node's whole subtree).
- grid_leader, patroller: the cameras of their grids (and below), plus cameras lent to them by an
  unexpired grant.
- department: the tickets their department has a part in (协办), and the camera of each such ticket while
  the part is open (a grant that starts and ends with the part); nothing else of the grid.
A camera with no grid is visible to admins and operators only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, false, or_, select, true
from sqlalchemy.orm import Session

from models.db.tables import (
    Assignment,
    Camera,
    CameraGrant,
    DepartmentMember,
    GridNode,
    Role,
    Ticket,
    TicketPart,
    User,
    utcnow,
)
from models.identity.roles import CENTRE


@dataclass(frozen=True)
class AccessScope:
    """What one user may see, resolved once per request from their role, assignments and grants."""

    user_id: int
    role: Role
    #: materialised paths of the assigned grid nodes ("/1/7/"): their subtrees are in scope
    grid_paths: tuple[str, ...] = ()
    #: cameras lent by a grant valid at ``at``
    granted_camera_ids: frozenset[int] = field(default_factory=frozenset)
    #: tickets a department user's department has a part in (any state: their own work record)
    part_ticket_ids: frozenset[int] = field(default_factory=frozenset)
    #: cameras of those tickets whose part is still open (dispatched or accepted)
    part_camera_ids: frozenset[int] = field(default_factory=frozenset)
    at: datetime = field(default_factory=utcnow)

    @property
    def sees_everything(self) -> bool:
        return self.role in CENTRE

    @property
    def may_configure(self) -> bool:
        return self.role in CENTRE

    # --- SQL filters -------------------------------------------------------------------------------
    def _grid_ids_in_scope(self) -> ColumnElement[bool] | None:
        if not self.grid_paths:
            return None
        return or_(*(GridNode.path.startswith(p, autoescape=True) for p in self.grid_paths))

    def camera_filter(self) -> ColumnElement[bool]:
        """A WHERE clause on :class:`Camera` rows this user may see."""
        if self.sees_everything:
            return true()
        clauses: list[ColumnElement[bool]] = []
        in_scope = self._grid_ids_in_scope()
        if in_scope is not None:
            clauses.append(Camera.grid_id.in_(select(GridNode.id).where(in_scope)))
        if self.granted_camera_ids:
            clauses.append(Camera.id.in_(sorted(self.granted_camera_ids)))
        if self.part_camera_ids:
            clauses.append(Camera.id.in_(sorted(self.part_camera_ids)))
        return or_(*clauses) if clauses else false()

    def ticket_filter(self) -> ColumnElement[bool]:
        """A WHERE clause on :class:`Ticket` rows: tickets of grids in scope or of granted cameras."""
        if self.sees_everything:
            return true()
        clauses: list[ColumnElement[bool]] = []
        in_scope = self._grid_ids_in_scope()
        if in_scope is not None:
            clauses.append(Ticket.grid_id.in_(select(GridNode.id).where(in_scope)))
        if self.granted_camera_ids:
            clauses.append(Ticket.camera_id.in_(sorted(self.granted_camera_ids)))
        if self.part_ticket_ids:
            clauses.append(Ticket.id.in_(sorted(self.part_ticket_ids)))
        return or_(*clauses) if clauses else false()

    # --- predicates --------------------------------------------------------------------------------
    def _path_in_scope(self, grid_path: str | None) -> bool:
        return grid_path is not None and any(grid_path.startswith(p) for p in self.grid_paths)

    def allows_camera(self, *, camera_id: int, grid_path: str | None) -> bool:
        if self.sees_everything:
            return True
        if camera_id in self.part_camera_ids:
            return True
        return camera_id in self.granted_camera_ids or self._path_in_scope(grid_path)

    def allows_ticket(self, *, camera_id: int | None, grid_path: str | None, ticket_id: int | None = None) -> bool:
        if self.sees_everything:
            return True
        if ticket_id is not None and ticket_id in self.part_ticket_ids:
            return True
        if camera_id is not None and camera_id in self.granted_camera_ids:
            return True
        return self._path_in_scope(grid_path)

    def allows_grid(self, grid_path: str) -> bool:
        """May this user act on tickets of this grid node (their own subtree)?"""
        return self.sees_everything or self._path_in_scope(grid_path)


def load_scope(session: Session, user: User, *, at: datetime | None = None) -> AccessScope:
    """Resolve a user's scope: two small indexed queries, whatever the number of cameras."""
    at = at or utcnow()
    role = Role(user.role)
    if role in CENTRE:
        return AccessScope(user_id=user.id, role=role, at=at)
    if role == Role.department:
        return _department_scope(session, user, at=at)
    paths = session.scalars(
        select(GridNode.path).join(Assignment, Assignment.grid_id == GridNode.id).where(Assignment.user_id == user.id)
    ).all()
    granted = session.scalars(
        select(CameraGrant.camera_id).where(
            CameraGrant.grantee_id == user.id, CameraGrant.starts_at <= at, CameraGrant.ends_at > at
        )
    ).all()
    return AccessScope(
        user_id=user.id,
        role=role,
        grid_paths=tuple(sorted(set(paths))),
        granted_camera_ids=frozenset(granted),
        at=at,
    )


#: part states that keep the ticket's camera open to the department (the grant lives as long as the part)
OPEN_PART_STATES = ("accepted", "dispatched")


def _department_scope(session: Session, user: User, *, at: datetime) -> AccessScope:
    """A department user's scope: no grid, only the tickets of their department's parts (one query)."""
    rows = session.execute(
        select(TicketPart.ticket_id, TicketPart.state, Ticket.camera_id)
        .join(Ticket, Ticket.id == TicketPart.ticket_id)
        .join(DepartmentMember, DepartmentMember.department_id == TicketPart.department_id)
        .where(DepartmentMember.user_id == user.id)
    ).all()
    return AccessScope(
        user_id=user.id,
        role=Role.department,
        part_ticket_ids=frozenset(r[0] for r in rows),
        part_camera_ids=frozenset(r[2] for r in rows if r[1] in OPEN_PART_STATES and r[2] is not None),
        at=at,
    )


def visible_camera(session: Session, scope: AccessScope, camera_id: int) -> Camera | None:
    """The camera when it exists and the scope allows it, else None (callers answer 404 either way)."""
    camera = session.get(Camera, camera_id)
    if camera is None:
        return None
    grid_path = camera.grid.path if camera.grid is not None else None
    return camera if scope.allows_camera(camera_id=camera.id, grid_path=grid_path) else None


def visible_ticket(session: Session, scope: AccessScope, ticket_id: int) -> Ticket | None:
    ticket = session.get(Ticket, ticket_id)
    if ticket is None:
        return None
    grid_path = ticket.grid.path if ticket.grid is not None else None
    return ticket if scope.allows_ticket(camera_id=ticket.camera_id, grid_path=grid_path, ticket_id=ticket.id) else None
