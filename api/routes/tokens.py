"""Long-lived API tokens: each user manages their own; admins see and revoke everyone's."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import select

from api.deps import (
    AdminUser,
    BusDep,
    CredentialDep,
    CurrentUser,
    ObjectId,
    SessionDep,
    remote_addr,
    x_access,
)
from api.schemas import ApiTokenCreatedOut, ApiTokenIn, ApiTokenOut, ErrorOut
from models.bus.protocol import Bus
from models.db.tables import ApiToken, User
from models.errors import AccessDenied, NotFound
from models.identity.access_changes import publish_access_change
from models.identity.audit import record_change
from models.identity.tokens import create_api_token, revoke_api_token

router = APIRouter(prefix="/api", tags=["api tokens"])

_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorOut, "description": "Not authenticated"},
    403: {"model": ErrorOut, "description": "Not allowed"},
    404: {"model": ErrorOut, "description": "No such token (of yours)"},
    422: {"model": ErrorOut, "description": "Invalid input"},
}


def token_out(row: ApiToken) -> ApiTokenOut:
    return ApiTokenOut(
        id=row.id,
        user_id=row.user_id,
        name=row.name,
        scopes=list(row.scopes),
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


@router.get("/tokens", response_model=list[ApiTokenOut], openapi_extra=x_access("authenticated"), responses=_ERRORS)
def list_my_tokens(session: SessionDep, user: CurrentUser) -> list[ApiTokenOut]:
    """The caller's API tokens (never the tokens themselves: only their hashes are kept)."""
    rows = session.scalars(select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id)).all()
    return [token_out(r) for r in rows]


@router.post(
    "/tokens",
    response_model=ApiTokenCreatedOut,
    status_code=201,
    openapi_extra=x_access("authenticated"),
    responses=_ERRORS,
)
def create_my_token(
    body: ApiTokenIn, request: Request, session: SessionDep, user: CurrentUser, credential: CredentialDep
) -> ApiTokenCreatedOut:
    """A new API token acting as the caller within ``scopes``; the token is in this answer only."""
    if credential.api_token_id is not None:
        raise AccessDenied("log in with a password to create API tokens (API tokens may not)")
    row, token = create_api_token(session, user=user, name=body.name, scopes=body.scopes, expires_at=body.expires_at)
    record_change(
        session,
        user=user,
        channel="api",
        object_type="api_token",
        object_id=row.id,
        detail={"op": "create", "name": row.name, "scopes": list(row.scopes)},
        remote_addr=remote_addr(request),
    )
    session.commit()
    return ApiTokenCreatedOut(**token_out(row).model_dump(), token=token)


@router.delete("/tokens/{token_id}", status_code=204, openapi_extra=x_access("authenticated"), responses=_ERRORS)
def revoke_my_token(token_id: ObjectId, request: Request, session: SessionDep, user: CurrentUser, bus: BusDep) -> Response:
    row = session.get(ApiToken, token_id)
    if row is None or row.user_id != user.id:
        raise NotFound("token not found")
    _revoke(session, row, actor=user, addr=remote_addr(request), bus=bus)
    return Response(status_code=204)


@router.get("/admin/tokens", response_model=list[ApiTokenOut], openapi_extra=x_access("admin"), responses=_ERRORS)
def list_all_tokens(
    session: SessionDep,
    _admin: AdminUser,
    user: str | None = Query(default=None, max_length=64, description="Only this username's tokens"),
    active: bool = Query(default=False, description="Only tokens not revoked"),
) -> list[ApiTokenOut]:
    stmt = select(ApiToken).order_by(ApiToken.id)
    if user is not None:
        stmt = stmt.join(User, User.id == ApiToken.user_id).where(User.username == user)
    if active:
        stmt = stmt.where(ApiToken.revoked_at.is_(None))
    return [token_out(r) for r in session.scalars(stmt.limit(10_000))]


@router.delete("/admin/tokens/{token_id}", status_code=204, openapi_extra=x_access("admin"), responses=_ERRORS)
def revoke_any_token(token_id: ObjectId, request: Request, session: SessionDep, admin: AdminUser, bus: BusDep) -> Response:
    row = session.get(ApiToken, token_id)
    if row is None:
        raise NotFound("token not found")
    _revoke(session, row, actor=admin, addr=remote_addr(request), bus=bus)
    return Response(status_code=204)


def _revoke(session: SessionDep, row: ApiToken, *, actor: User, addr: str, bus: Bus | None) -> None:
    revoke_api_token(session, row)
    record_change(
        session,
        user=actor,
        channel="api",
        object_type="api_token",
        object_id=row.id,
        detail={"op": "revoke", "owner_id": row.user_id},
        remote_addr=addr,
    )
    session.commit()
    publish_access_change(bus, user_ids=[row.user_id], reason="token")  # streams opened with it end now
