"""Login sessions (access + rotating refresh tokens, throttled), logout, the caller's profile and password."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import OAuth2PasswordRequestForm

from api.deps import BusDep, CredentialDep, CurrentUser, SessionDep, StateDep, remote_addr, x_access
from api.schemas import ErrorOut, GridRef, MeOut, PasswordChangeIn, RefreshIn, SessionTokensOut
from api.session_cookies import (
    check_csrf,
    clear_session_cookies,
    refresh_token,
    session_token,
    set_session_cookies,
    wants_cookies,
)
from api.tokens import REFRESH_TOKEN_TTL_S, issue_access_token
from models.db.tables import User
from models.errors import AccessDenied, AuthError, InvalidInput
from models.identity.access_changes import publish_access_change
from models.identity.audit import record_event
from models.identity.tokens import issue_refresh_token, revoke_refresh_token, rotate_refresh_token
from models.identity.users import authenticate, change_password

router = APIRouter(prefix="/api", tags=["auth"])

_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorOut, "description": "Not authenticated"},
    422: {"model": ErrorOut, "description": "Invalid input"},
}


def _session_tokens(session: SessionDep, state: StateDep, user: User, refresh_token: str) -> SessionTokensOut:
    ttl = state.settings.access_token_ttl_s
    return SessionTokensOut(
        access_token=issue_access_token(user, secret=state.settings.secret_key, ttl_s=ttl),
        expires_in=ttl,
        refresh_token=refresh_token,
        refresh_expires_in=REFRESH_TOKEN_TTL_S,
    )


def _with_cookies(tokens: SessionTokensOut, request: Request, response: Response) -> SessionTokensOut:
    """The same session in the browser's cookies (api/session_cookies.py); bearer clients ignore them."""
    set_session_cookies(
        response, request, access_token=tokens.access_token, access_ttl_s=tokens.expires_in,
        refresh=tokens.refresh_token, refresh_ttl_s=tokens.refresh_expires_in,
    )  # fmt: skip
    return tokens


def _refresh_of(body: RefreshIn | None, request: Request) -> str:
    """The refresh token from the body (API clients) or the cookie (the browser, with its CSRF token)."""
    if body is not None:
        return body.refresh_token
    token = refresh_token(request)
    if token is None:
        raise AuthError("no refresh token: log in again")
    check_csrf(request)
    return token


@router.post(
    "/auth/token",
    response_model=SessionTokensOut,
    openapi_extra=x_access("public"),
    responses={
        **_ERRORS,
        401: {"model": ErrorOut, "description": "Wrong username or password"},
        429: {"model": ErrorOut, "description": "Too many failed logins for this user or address (see Retry-After)"},
    },
)
def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    request: Request,
    response: Response,
    session: SessionDep,
    state: StateDep,
) -> SessionTokensOut:
    """OAuth2 password login: form fields ``username`` and ``password`` → an access and a refresh token;
    with ``X-GridPatrol-Session: cookie`` (the web UI) also set as the browser's session cookies
    (``gp_session``, ``gp_refresh``, ``gp_csrf``: api/session_cookies.py)."""
    addr = remote_addr(request)
    throttle = state.login_throttle
    throttle.check(username=form.username, remote_addr=addr)
    user = authenticate(session, form.username, form.password)
    if user is None:
        throttle.failed(username=form.username, remote_addr=addr)
        record_event(session, user_id=None, username=form.username, action="login_failed", channel="api", remote_addr=addr)
        session.commit()
        raise AuthError("wrong username or password")
    throttle.succeeded(username=form.username, remote_addr=addr)
    issued = issue_refresh_token(session, user=user, ttl_s=REFRESH_TOKEN_TTL_S)
    record_event(session, user_id=user.id, username=user.username, action="login", channel="api", remote_addr=addr)
    session.commit()
    tokens = _session_tokens(session, state, user, issued)
    return _with_cookies(tokens, request, response) if wants_cookies(request) else tokens


@router.post("/auth/refresh", response_model=SessionTokensOut, openapi_extra=x_access("public"), responses=_ERRORS)
def refresh(
    request: Request, response: Response, session: SessionDep, state: StateDep, body: RefreshIn | None = None
) -> SessionTokensOut:
    """Spend a refresh token for a new access token and the next refresh token. A refresh token used
    twice revokes its whole session (someone else holds a copy). Without a body, the browser's
    ``gp_refresh`` cookie is spent (with ``X-CSRF-Token``) and the cookies are rotated."""
    from_cookie = body is None
    token = _refresh_of(body, request)
    try:
        user, next_token = rotate_refresh_token(session, token, ttl_s=REFRESH_TOKEN_TTL_S)
    finally:
        session.commit()  # keep the spend, or the revocation of a replayed family
    tokens = _session_tokens(session, state, user, next_token)
    return _with_cookies(tokens, request, response) if from_cookie else tokens


@router.post("/auth/logout", status_code=204, openapi_extra=x_access("public"), responses=_ERRORS)
def logout(request: Request, session: SessionDep, body: RefreshIn | None = None) -> Response:
    """End the login session of this refresh token (its access tokens expire on their own within minutes).
    Without a body: the browser's session (``gp_refresh`` cookie, with ``X-CSRF-Token``); its cookies are cleared."""
    answer = Response(status_code=204)
    if body is None and refresh_token(request) is None:  # nothing to end: just clear what the browser holds
        clear_session_cookies(answer, request)
        return answer
    revoke_refresh_token(session, _refresh_of(body, request))
    session.commit()
    if body is None:
        clear_session_cookies(answer, request)
    return answer


@router.get("/me", response_model=MeOut, openapi_extra=x_access("authenticated"), responses=_ERRORS)
def me(user: CurrentUser) -> MeOut:
    grids = [GridRef(id=a.grid.id, code=a.grid.code, name=a.grid.name, kind=a.grid.kind) for a in user.assignments]
    return MeOut(id=user.id, username=user.username, display_name=user.display_name, role=user.role, grids=grids)


@router.post(
    "/me/password",
    response_model=SessionTokensOut,
    openapi_extra=x_access("authenticated"),
    responses={
        **_ERRORS,
        403: {"model": ErrorOut, "description": "Called with an API token"},
        429: {"model": ErrorOut, "description": "Too many wrong current passwords"},
    },
)
def set_password(
    body: PasswordChangeIn,
    request: Request,
    response: Response,
    session: SessionDep,
    state: StateDep,
    user: CurrentUser,
    credential: CredentialDep,
    bus: BusDep,
) -> SessionTokensOut:
    """Change the caller's password. Every token issued before dies (other devices log in again);
    the answer carries a fresh session for this one."""
    if credential.api_token_id is not None:
        raise AccessDenied("log in with a password to change it (API tokens may not)")
    addr = remote_addr(request)
    state.login_throttle.check(username=user.username, remote_addr=addr)
    try:
        change_password(session, user=user, current_password=body.current_password, new_password=body.new_password)
    except InvalidInput as err:
        if err.field == "current_password":  # guessing the password through this route counts as a failed login
            state.login_throttle.failed(username=user.username, remote_addr=addr)
        raise
    issued = issue_refresh_token(session, user=user, ttl_s=REFRESH_TOKEN_TTL_S)
    record_event(
        session,
        user_id=user.id,
        username=user.username,
        action="change",
        channel="api",
        object_type="user",
        object_id=user.id,
        remote_addr=addr,
        detail={"field": "password"},
    )
    session.commit()
    publish_access_change(bus, user_ids=[user.id], reason="password")  # open streams end now, not at their next check
    tokens = _session_tokens(session, state, user, issued)
    if session_token(request) is not None and "authorization" not in request.headers:  # a browser: its new session
        return _with_cookies(tokens, request, response)
    return tokens
