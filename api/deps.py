"""FastAPI dependencies, as ``Annotated`` aliases routes declare: ``SessionDep``, ``CurrentUser``, ``ScopeDep``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session, sessionmaker

from api.settings import ApiSettings
from api.tokens import decode_access_token
from models.access import AccessScope, load_scope
from models.domain import User
from models.errors import AuthError

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/auth/token", auto_error=False)


@dataclass(frozen=True)
class AppState:
    """What the factory was given; one instance per app, reached only through these dependencies."""

    settings: ApiSettings
    session_factory: sessionmaker[Session]


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.gridpatrol
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def get_session(state: StateDep) -> Iterator[Session]:
    with state.session_factory() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def get_current_user(
    state: StateDep, session: SessionDep, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> User:
    if not token:
        raise AuthError("not authenticated")
    user_id, token_version = decode_access_token(token, secret=state.settings.secret_key)
    user = session.get(User, user_id)
    if user is None or not user.enabled or user.token_version != token_version:
        raise AuthError("invalid token")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def get_scope(session: SessionDep, user: CurrentUser) -> AccessScope:
    return load_scope(session, user)


ScopeDep = Annotated[AccessScope, Depends(get_scope)]
