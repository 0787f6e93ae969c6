"""Camera grants: a manager lends a camera of their subtree (an admin, any camera) to a grid leader or
patroller for a time window, e.g. a cross-grid incident. The policy honours [starts_at, ends_at), so a
grant expires by itself; revoking one ends its window now. Creating, revoking and using are logged."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import aliased

from api.deps import BusDep, CurrentUser, ManagerUser, ObjectId, ScopeDep, SessionDep, remote_addr, x_access
from api.schemas import ErrorOut, GrantIn, GrantOut
from models.db.tables import Camera, CameraGrant, Role, User, utcnow
from models.errors import InvalidInput, NotFound
from models.identity.access import visible_camera
from models.identity.access_changes import publish_access_change
from models.identity.audit import record_access, record_change
from models.identity.roles import GRANTEES

router = APIRouter(prefix="/api", tags=["grants"])

MAX_GRANT = timedelta(days=30)

_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorOut, "description": "Not authenticated"},
    403: {"model": ErrorOut, "description": "Only managers and admins lend cameras"},
    404: {"model": ErrorOut, "description": "No such camera or grant (in your subtree)"},
    422: {"model": ErrorOut, "description": "Invalid input"},
}


def _grant_out(grant: CameraGrant, *, camera_name: str, grantee: str, granted_by: str | None) -> GrantOut:
    now = utcnow()
    return GrantOut(
        id=grant.id,
        camera_id=grant.camera_id,
        camera_name=camera_name,
        grantee=grantee,
        granted_by=granted_by,
        starts_at=grant.starts_at,
        ends_at=grant.ends_at,
        reason=grant.reason,
        active=grant.starts_at <= now < grant.ends_at,
        created_at=grant.created_at,
    )


@router.post("/grants", response_model=GrantOut, status_code=201, openapi_extra=x_access("manager"), responses=_ERRORS)
def create_grant(
    body: GrantIn, request: Request, session: SessionDep, scope: ScopeDep, user: ManagerUser, bus: BusDep
) -> GrantOut:
    """Lend ``camera_id`` to ``grantee`` from ``starts_at`` (default now) until ``ends_at``."""
    addr = remote_addr(request)
    camera = visible_camera(session, scope, body.camera_id)
    if camera is None:
        record_access(
            session, scope=scope, allowed=False, channel="api", object_type="camera", object_id=body.camera_id,
            remote_addr=addr, detail={"wanted": "grant"},
        )  # fmt: skip
        session.commit()
        raise NotFound("camera not found")
    grantee = session.scalar(select(User).where(User.username == body.grantee))
    if grantee is None or not grantee.enabled or Role(grantee.role) not in GRANTEES:
        raise InvalidInput("must be an enabled grid leader or patroller", field="grantee")
    starts_at = body.starts_at or utcnow()
    if starts_at.tzinfo is None or body.ends_at.tzinfo is None:
        raise InvalidInput("give times with a time zone (e.g. 2026-05-01T08:00:00Z)", field="ends_at")
    if body.ends_at <= starts_at:
        raise InvalidInput("must be after starts_at", field="ends_at")
    if body.ends_at - starts_at > MAX_GRANT:
        raise InvalidInput(f"a grant lasts at most {MAX_GRANT.days} days", field="ends_at")
    if body.ends_at <= utcnow():
        raise InvalidInput("must be in the future", field="ends_at")
    grant = CameraGrant(
        camera_id=camera.id,
        grantee_id=grantee.id,
        granted_by_id=user.id,
        starts_at=starts_at,
        ends_at=body.ends_at,
        reason=body.reason,
    )
    session.add(grant)
    session.flush()
    record_change(
        session,
        user=user,
        channel="api",
        object_type="grant",
        object_id=grant.id,
        detail={
            "op": "create",
            "camera_id": camera.id,
            "grantee": grantee.username,
            "starts_at": starts_at.isoformat(),
            "ends_at": body.ends_at.isoformat(),
        },
        remote_addr=addr,
    )
    session.commit()
    publish_access_change(bus, user_ids=[grantee.id], reason="grant")
    return _grant_out(grant, camera_name=camera.name, grantee=grantee.username, granted_by=user.username)


@router.get("/grants", response_model=list[GrantOut], openapi_extra=x_access("authenticated"), responses=_ERRORS)
def list_grants(
    session: SessionDep,
    scope: ScopeDep,
    user: CurrentUser,
    active: bool = Query(default=False, description="Only grants in force now"),
    camera_id: int | None = Query(default=None, ge=1, le=2**31 - 1),
    limit: int = Query(default=200, ge=1, le=1000),
    offset: int = Query(default=0, ge=0, le=10_000_000),
) -> list[GrantOut]:
    """Admins and operators see every grant, managers those on cameras of their subtree, grid leaders
    and patrollers the grants lent to them."""
    grantee, granter = aliased(User), aliased(User)
    stmt = (
        select(CameraGrant, Camera.name, grantee.username, granter.username)
        .join(Camera, Camera.id == CameraGrant.camera_id)
        .join(grantee, grantee.id == CameraGrant.grantee_id)
        .outerjoin(granter, granter.id == CameraGrant.granted_by_id)
    )
    role = Role(user.role)
    if role is Role.manager:
        stmt = stmt.where(scope.camera_filter())
    elif not scope.sees_everything:
        stmt = stmt.where(CameraGrant.grantee_id == user.id)
    if active:
        now = utcnow()
        stmt = stmt.where(CameraGrant.starts_at <= now, CameraGrant.ends_at > now)
    if camera_id is not None:
        stmt = stmt.where(CameraGrant.camera_id == camera_id)
    rows = session.execute(stmt.order_by(CameraGrant.id.desc()).limit(limit).offset(offset)).all()
    return [_grant_out(g, camera_name=c, grantee=ge, granted_by=gb) for g, c, ge, gb in rows]


@router.delete("/grants/{grant_id}", status_code=204, openapi_extra=x_access("manager"), responses=_ERRORS)
def revoke_grant(
    grant_id: ObjectId, request: Request, session: SessionDep, scope: ScopeDep, user: ManagerUser, bus: BusDep
) -> Response:
    """End a grant now (it stays in the history). A grant on a camera outside the caller's subtree is 404."""
    grant = session.get(CameraGrant, grant_id)
    if grant is None or visible_camera(session, scope, grant.camera_id) is None:
        raise NotFound("grant not found")
    now = utcnow()
    if grant.ends_at > now:
        grant.ends_at = max(now, grant.starts_at)
        record_change(
            session, user=user, channel="api", object_type="grant", object_id=grant.id,
            detail={"op": "revoke", "camera_id": grant.camera_id}, remote_addr=remote_addr(request),
        )  # fmt: skip
        session.commit()
        publish_access_change(bus, user_ids=[grant.grantee_id], reason="grant")  # their streams re-check now
    return Response(status_code=204)
