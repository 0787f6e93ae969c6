"""Login and the caller's own profile."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.security import OAuth2PasswordRequestForm

from api.deps import CurrentUser, SessionDep, StateDep
from api.schemas import GridRef, MeOut, TokenOut
from api.tokens import issue_access_token
from models.errors import AuthError
from models.users import authenticate

router = APIRouter(prefix="/api", tags=["auth"])


@router.post("/auth/token", response_model=TokenOut, responses={401: {"description": "Wrong username or password"}})
def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], session: SessionDep, state: StateDep
) -> TokenOut:
    """OAuth2 password login: form fields ``username`` and ``password`` → a bearer access token."""
    user = authenticate(session, form.username, form.password)
    if user is None:
        raise AuthError("wrong username or password")
    ttl = state.settings.access_token_ttl_s
    token = issue_access_token(user, secret=state.settings.secret_key, ttl_s=ttl)
    return TokenOut(access_token=token, expires_in=ttl)


@router.get("/me", response_model=MeOut)
def me(user: CurrentUser) -> MeOut:
    grids = [GridRef(id=a.grid.id, code=a.grid.code, name=a.grid.name, kind=a.grid.kind) for a in user.assignments]
    return MeOut(id=user.id, username=user.username, display_name=user.display_name, role=user.role, grids=grids)
