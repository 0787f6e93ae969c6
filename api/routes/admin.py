"""Users, for admins: list, create, disable (cutting every session at once), enable, assign grid nodes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import select

from api.deps import AdminUser, BusDep, ObjectId, SessionDep, remote_addr, x_access
from api.schemas import ErrorOut, UserGridsIn, UserIn, UserOut
from models.db.tables import User
from models.errors import Conflict, NotFound
from models.identity.access_changes import publish_access_change
from models.identity.audit import record_change
from models.identity.users import add_user, parse_role, set_assignments, set_enabled

router = APIRouter(prefix="/api/admin", tags=["admin"])

_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorOut, "description": "Not authenticated"},
    403: {"model": ErrorOut, "description": "Admins only"},
    404: {"model": ErrorOut, "description": "No such user"},
    409: {"model": ErrorOut, "description": "Conflicts with the current state"},
    422: {"model": ErrorOut, "description": "Invalid input"},
}


def user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        username=user.username,
        display_name=user.display_name,
        role=user.role,
        enabled=user.enabled,
        grid_codes=sorted(a.grid.code for a in user.assignments),
        created_at=user.created_at,
    )


def _user(session: SessionDep, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("user not found")
    return user


@router.get("/users", response_model=list[UserOut], openapi_extra=x_access("admin"), responses=_ERRORS)
def list_users(session: SessionDep, _admin: AdminUser) -> list[UserOut]:
    return [user_out(u) for u in session.scalars(select(User).order_by(User.username).limit(100_000))]


@router.post("/users", response_model=UserOut, status_code=201, openapi_extra=x_access("admin"), responses=_ERRORS)
def create_user(body: UserIn, request: Request, session: SessionDep, admin: AdminUser) -> UserOut:
    user = add_user(
        session,
        username=body.username,
        role=parse_role(body.role),
        password=body.password,
        grid_codes=body.grid_codes,
        display_name=body.display_name,
    )
    record_change(
        session,
        user=admin,
        channel="api",
        object_type="user",
        object_id=user.id,
        detail={"op": "create", "username": user.username, "role": user.role, "grids": body.grid_codes},
        remote_addr=remote_addr(request),
    )
    session.commit()
    session.refresh(user)
    return user_out(user)


@router.post("/users/{user_id}/disable", response_model=UserOut, openapi_extra=x_access("admin"), responses=_ERRORS)
def disable_user(user_id: ObjectId, request: Request, session: SessionDep, admin: AdminUser, bus: BusDep) -> UserOut:
    """Disable a user: their access and refresh tokens, API tokens and open streams stop at their next check."""
    user = _user(session, user_id)
    if user.id == admin.id:
        raise Conflict("you may not disable yourself")
    set_enabled(session, user=user, enabled=False)
    record_change(
        session, user=admin, channel="api", object_type="user", object_id=user.id,
        detail={"op": "disable"}, remote_addr=remote_addr(request),
    )  # fmt: skip
    session.commit()
    publish_access_change(bus, user_ids=[user.id], reason="enabled")  # their open streams end now
    return user_out(user)


@router.post("/users/{user_id}/enable", response_model=UserOut, openapi_extra=x_access("admin"), responses=_ERRORS)
def enable_user(user_id: ObjectId, request: Request, session: SessionDep, admin: AdminUser, bus: BusDep) -> UserOut:
    user = _user(session, user_id)
    set_enabled(session, user=user, enabled=True)
    record_change(
        session, user=admin, channel="api", object_type="user", object_id=user.id,
        detail={"op": "enable"}, remote_addr=remote_addr(request),
    )  # fmt: skip
    session.commit()
    publish_access_change(bus, user_ids=[user.id], reason="enabled")
    return user_out(user)


@router.put("/users/{user_id}/grids", response_model=UserOut, openapi_extra=x_access("admin"), responses=_ERRORS)
def assign_grids(
    user_id: ObjectId, body: UserGridsIn, request: Request, session: SessionDep, admin: AdminUser, bus: BusDep
) -> UserOut:
    """Replace the grid nodes a user answers for; their scope follows on their next request, and their
    open streams re-check at once (an access-change notice)."""
    user = _user(session, user_id)
    codes = set_assignments(session, user=user, grid_codes=body.grid_codes)
    record_change(
        session, user=admin, channel="api", object_type="user", object_id=user.id,
        detail={"op": "assign_grids", "grids": codes}, remote_addr=remote_addr(request),
    )  # fmt: skip
    session.commit()
    publish_access_change(bus, user_ids=[user.id], reason="assignments")
    session.refresh(user)
    return user_out(user)
