"""FastAPI dependencies, as ``Annotated`` aliases routes declare: ``SessionDep``, ``CurrentUser``, ``ScopeDep``.

Every route declares who may call it, for the authorisation matrix test (tests/security/test_matrix.py),
which reads it from the app's own OpenAPI schema and fails for a route that does not say:

    @router.get("/cameras/{camera_id}", openapi_extra=x_access("camera"))

=============== ================================================================================
kind            who gets an answer (everyone else: 401 anonymous, 403 wrong role, 404 out of scope)
=============== ================================================================================
public          anyone, even anonymous (login, health)
authenticated   any logged-in user; the answer is about themselves or already filtered by scope
camera          whoever may see ``{camera_id}`` (models/access.py); others 404 like a missing camera
ticket          whoever may see ``{ticket_id}``; others 404
configure       admin and operator. With ``{camera_id}``: a user who may see the camera but not
                configure it gets 403; one who may not see it gets 404 (use ``ConfigurableCamera``)
manager         admin and manager (lending cameras); an object out of a manager's subtree is 404
admin           admin only (users, API tokens of others, audit); others 403
=============== ================================================================================

Path parameters name the object kind: ``camera_id``, ``ticket_id``, ``grant_id``, ``user_id``,
``token_id``; the matrix test knows how to make one of each (and fails on a name it does not know).
Routes on one object take it through ``VisibleCamera`` / ``VisibleTicket`` (or ``ConfigurableCamera``):
a missing *or* invisible object is the same ``NotFound``, and every look, allowed or refused, is in the
access log.

Authentication: ``Authorization: Bearer <JWT access token>`` from ``POST /api/auth/token``, or a
long-lived API token ``Bearer gp_...`` (scope ``api:read`` for GET/HEAD, ``api:write`` otherwise), or
the browser's ``gp_session`` cookie with the ``X-CSRF-Token`` header on writes (api/session_cookies.py).
``CredentialDep`` is what the request was authenticated with: a stream (SSE, wall tile) keeps it and
polls ``models.users.credential_is_live`` every few seconds, stopping when it turns false.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Path, Query, Request, WebSocket
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session, sessionmaker

from api.client_address import client_address, parse_networks
from api.live import TicketFeed
from api.login_throttle import LoginThrottle
from api.session_cookies import check_csrf, session_token
from api.settings import ApiSettings
from api.tile_hub import TileHub
from api.tokens import read_access_token
from models.bus.health_board import HealthBoard
from models.bus.protocol import Bus
from models.db.tables import Camera, Role, Ticket, User
from models.errors import AccessDenied, AuthError, NotFound, Unavailable
from models.identity.access import AccessScope, load_scope, visible_camera, visible_ticket
from models.identity.audit import record_access, record_event
from models.identity.roles import CENTRE, LENDERS
from models.identity.stream_guard import StreamGuard
from models.identity.tokens import API_TOKEN_PREFIX, TokenScope, resolve_api_token
from models.identity.users import Credential, credential_is_live
from models.live.board import TileBoard
from models.tickets.desk import TicketDesk

#: the values of the ``x-access`` OpenAPI extension (see the module docstring)
ACCESS_KINDS = frozenset({"public", "authenticated", "camera", "ticket", "configure", "manager", "admin"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


#: object ids are 32-bit integers in every database: a larger one would be a 500 (driver overflow)
MAX_OBJECT_ID = 2**31 - 1
#: a path parameter ``..._id`` with its bound in the schema (the app also guards every route, below)
ObjectId = Annotated[int, Path(ge=1, le=MAX_OBJECT_ID, description="Object id")]
#: an optional query parameter naming an object (``?camera_id=``): out of range is a 422 naming it
ObjectIdQuery = Annotated[int | None, Query(ge=1, le=MAX_OBJECT_ID, description="Object id")]
#: time parameters take ``AwareDatetime`` (pydantic): a time without a zone is a 422 naming the
#: parameter, never a 500 from comparing it with the database's zoned times, e.g.
#: ``since: Annotated[AwareDatetime | None, Query(description=...)] = None``


def check_object_ids(request: Request) -> None:
    """App-wide guard: a path parameter named ``..._id`` outside 1..2^31-1 names nothing, so it is a
    404 before any query (the database driver would overflow on it), whether or not the route bounds it."""
    for name, value in request.path_params.items():
        if not name.endswith("_id"):
            continue
        try:
            number = int(value)
        except (TypeError, ValueError):
            continue  # not a number: the route's own validation answers 422
        if not 1 <= number <= MAX_OBJECT_ID:
            raise NotFound(f"{name.removesuffix('_id')} not found")


def x_access(kind: str) -> dict[str, str]:
    """``openapi_extra`` declaring who may call a route (a typo fails at import, not in production)."""
    if kind not in ACCESS_KINDS:
        raise ValueError(f"unknown access kind {kind!r}: use one of {sorted(ACCESS_KINDS)}")
    return {"x-access": kind}

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/auth/token", auto_error=False)


@dataclass(frozen=True)
class AppState:
    """What the factory was given; one instance per app, reached only through these dependencies."""

    settings: ApiSettings
    session_factory: sessionmaker[Session]
    #: failed-login counts; pass one on a shared store (Redis) when several API processes run
    login_throttle: LoginThrottle = field(default_factory=LoginThrottle)
    #: moves tickets (the same desk the ticketer uses); None when the app serves no tickets
    desk: TicketDesk | None = None
    #: where ticket notices are published for live views and other processes
    bus: Bus | None = None
    #: fans ticket notices out to server-sent-event streams
    feed: TicketFeed | None = None
    #: where workers post camera health
    health_board: HealthBoard | None = None
    #: where viewers' demand meets workers' wall tiles (models/live), and this process's fan-out of it
    tile_board: TileBoard | None = None
    tile_hub: TileHub | None = None


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.gridpatrol
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def get_ws_state(websocket: WebSocket) -> AppState:
    """``get_state`` for WebSocket routes."""
    state: AppState = websocket.app.state.gridpatrol
    return state


def get_session(state: StateDep) -> Iterator[Session]:
    """One session per request, committed once when the route returns: its changes and the access
    records of what it showed go in together (a refusal commits its own record before answering)."""
    with state.session_factory() as session:
        yield session
        session.commit()


SessionDep = Annotated[Session, Depends(get_session)]


def remote_addr(request: Request) -> str:
    """The client address: the peer, or the forwarded client when the peer is one of the configured
    ``GRIDPATROL_TRUSTED_PROXIES`` (api/client_address.py); always an IP address or the peer as seen."""
    peer = request.client.host if request.client else ""
    state: AppState = request.app.state.gridpatrol
    return client_address(
        peer, request.headers.getlist("x-forwarded-for"), trusted=parse_networks(tuple(state.settings.trusted_proxies))
    )


#: routes that raise someone's privileges (create or enable a user, change whose grids they answer
#: for, lend a camera): an API token needs the scope ``admin:users`` for them, besides ``api:write``.
#: Lowering privileges (disable, revoke a token or a grant) needs no more than ``api:write``.
PRIVILEGE_ROUTES = frozenset(
    {
        ("POST", "/api/admin/users"),
        ("POST", "/api/admin/users/{user_id}/enable"),
        ("PUT", "/api/admin/users/{user_id}/grids"),
        ("POST", "/api/grants"),
    }
)


def _check_privilege_scope(request: Request, session: Session, credential: Credential, username: str) -> None:
    """An API token on a :data:`PRIVILEGE_ROUTES` route: refused without ``admin:users`` (the refusal is
    audited by the AccessDenied handler), and every use of that scope is written to the access log."""
    route = (request.method, str(getattr(request.scope.get("route"), "path", request.url.path)))
    if route not in PRIVILEGE_ROUTES:
        return
    if TokenScope.admin_users.value not in credential.scopes:
        raise AccessDenied(
            f"an API token needs the scope {TokenScope.admin_users.value!r} to change users or lend cameras "
            "(log in with a password, or have an admin make a token with that scope)"
        )
    record_event(
        session,
        user_id=credential.user_id,
        username=username,
        action="change",
        channel="api",
        object_type="api_token",
        object_id=credential.api_token_id or "",
        remote_addr=remote_addr(request),
        detail={"op": "use_scope", "scope": TokenScope.admin_users.value, "route": " ".join(route)},
    )
    session.commit()


def get_credential(
    request: Request, state: StateDep, session: SessionDep, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> Credential:
    """Check the bearer token on every request: a JWT against the user's token version (a disable or
    password change cuts it), an API token against its row (revoked, expired, scope)."""
    if not token:  # a browser: the access token in the session cookie, writes double-submit the CSRF token
        token = session_token(request)
        if not token or token.startswith(API_TOKEN_PREFIX):
            raise AuthError("not authenticated")
        if request.method not in SAFE_METHODS:
            check_csrf(request)
    elif token.startswith(API_TOKEN_PREFIX):
        needed = TokenScope.api_read if request.method in SAFE_METHODS else TokenScope.api_write
        user, row = resolve_api_token(session, token, scope=needed)
        if session.is_modified(row):
            session.commit()  # last_used_at, at most once a minute
        request.state.credential = Credential(
            user_id=user.id, token_version=user.token_version, api_token_id=row.id, scopes=frozenset(row.scopes),
            expires_at=row.expires_at,
        )
        _check_privilege_scope(request, session, request.state.credential, user.username)
        return request.state.credential  # type: ignore[no-any-return]
    request.state.credential = _jwt_credential(session, token, secret_key=state.settings.secret_key)
    return request.state.credential  # type: ignore[no-any-return]


def _jwt_credential(session: Session, token: str, *, secret_key: str) -> Credential:
    """A JWT access token's credential, checked against the user's token version (a disable or a
    password change cuts every earlier token)."""
    claims = read_access_token(token, secret=secret_key)
    found = session.get(User, claims.user_id)
    if found is None or not found.enabled or found.token_version != claims.token_version:
        raise AuthError("invalid token")
    return Credential(user_id=claims.user_id, token_version=claims.token_version, expires_at=claims.expires_at)


CredentialDep = Annotated[Credential, Depends(get_credential)]


def get_current_user(session: SessionDep, credential: CredentialDep) -> User:
    user = session.get(User, credential.user_id)
    if user is None:
        raise AuthError("invalid token")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def _require_role(request: Request, session: Session, user: User, roles: frozenset[Role]) -> User:
    if Role(user.role) in roles:
        return user
    record_event(
        session,
        user_id=user.id,
        username=user.username,
        action="deny",
        channel="api",
        object_type="route",
        object_id=f"{request.method} {request.url.path}",
        remote_addr=remote_addr(request),
    )
    session.commit()
    request.state.refusal_audited = True  # written once (api/errors.py)
    raise AccessDenied("your role may not do this")


def get_admin(request: Request, session: SessionDep, user: CurrentUser) -> User:
    return _require_role(request, session, user, frozenset({Role.admin}))


def get_manager(request: Request, session: SessionDep, user: CurrentUser) -> User:
    return _require_role(request, session, user, LENDERS)


def get_configurer(request: Request, session: SessionDep, user: CurrentUser) -> User:
    return _require_role(request, session, user, CENTRE)


#: x-access "admin"
AdminUser = Annotated[User, Depends(get_admin)]
#: x-access "manager": admins and managers (object checks stay in the route)
ManagerUser = Annotated[User, Depends(get_manager)]
#: x-access "configure" without an object in the path
ConfigureUser = Annotated[User, Depends(get_configurer)]


def get_scope(session: SessionDep, user: CurrentUser) -> AccessScope:
    return load_scope(session, user)


ScopeDep = Annotated[AccessScope, Depends(get_scope)]


def get_configurable_camera(camera_id: ObjectId, request: Request, session: SessionDep, scope: ScopeDep) -> Camera:
    """x-access "configure" on ``{camera_id}``: 404 when the caller may not see the camera (as if it did
    not exist), 403 when they see it but may not change it (grid leaders, managers); both are logged."""
    cam = visible_camera(session, scope, camera_id)
    if cam is None or not scope.may_configure:
        record_access(
            session,
            scope=scope,
            allowed=False,
            channel="api",
            object_type="camera",
            object_id=camera_id,
            remote_addr=remote_addr(request),
            detail={"wanted": "configure"},
        )
        session.commit()
        if cam is None:
            raise NotFound("camera not found")
        request.state.refusal_audited = True  # written once (api/errors.py)
        raise AccessDenied("your role may not change cameras or zones")
    return cam


ConfigurableCamera = Annotated[Camera, Depends(get_configurable_camera)]


def _channel(request: Request) -> str:
    if request.url.path.endswith("/snapshot.jpg"):
        return "snapshot"
    return "evidence" if "/evidence/" in request.url.path else "api"


def _audit_lookup(request: Request, session: Session, scope: AccessScope, *, kind: str, object_id: int, found: bool) -> None:
    """Record the look (a view or a refusal, with the path asked for); a refusal is committed at once
    because the request ends with an error, a view with the request's own work."""
    record_access(
        session,
        scope=scope,
        allowed=found,
        channel=_channel(request),
        object_type=kind,
        object_id=object_id,
        remote_addr=remote_addr(request),
        detail={"path": request.url.path[:200], "method": request.method},
    )
    if not found:
        session.commit()
        raise NotFound(f"{kind} not found")


def get_visible_camera(camera_id: ObjectId, request: Request, session: SessionDep, scope: ScopeDep) -> Camera:
    """x-access "camera": the camera when the caller may see it; 404 as if it did not exist otherwise.
    Both outcomes are in the access log."""
    cam = visible_camera(session, scope, camera_id)
    _audit_lookup(request, session, scope, kind="camera", object_id=camera_id, found=cam is not None)
    assert cam is not None
    return cam


def get_visible_ticket(ticket_id: ObjectId, request: Request, session: SessionDep, scope: ScopeDep) -> Ticket:
    """x-access "ticket": the ticket when the caller may see it; 404 otherwise; both logged."""
    ticket = visible_ticket(session, scope, ticket_id)
    _audit_lookup(request, session, scope, kind="ticket", object_id=ticket_id, found=ticket is not None)
    assert ticket is not None
    return ticket


VisibleCamera = Annotated[Camera, Depends(get_visible_camera)]
VisibleTicket = Annotated[Ticket, Depends(get_visible_ticket)]


def get_desk(state: StateDep) -> TicketDesk:
    if state.desk is None:
        raise Unavailable("tickets are not served by this process")
    return state.desk


DeskDep = Annotated[TicketDesk, Depends(get_desk)]


def get_bus(state: StateDep) -> Bus | None:
    return state.bus


BusDep = Annotated[Bus | None, Depends(get_bus)]


def get_feed(state: StateDep) -> TicketFeed:
    if state.feed is None:
        raise Unavailable("the live ticket feed is not served by this process")
    return state.feed


FeedDep = Annotated[TicketFeed, Depends(get_feed)]


def get_tile_board(state: StateDep) -> TileBoard:
    if state.tile_board is None or state.tile_hub is None:
        raise Unavailable("snapshots and wall tiles are not served by this process (no tile board)")
    return state.tile_board


TileBoardDep = Annotated[TileBoard, Depends(get_tile_board)]


def get_tile_hub(state: StateDep) -> TileHub:
    if state.tile_hub is None:
        raise Unavailable("snapshots and wall tiles are not served by this process (no tile board)")
    return state.tile_hub


TileHubDep = Annotated[TileHub, Depends(get_tile_hub)]


def get_liveness_check(state: StateDep, credential: CredentialDep) -> Callable[[], bool]:
    """For streams: a check, run every few seconds, that the caller's credential still holds."""

    def still_allowed() -> bool:
        with state.session_factory() as session:
            return credential_is_live(session, credential)

    return still_allowed


CredentialLive = Annotated[Callable[[], bool], Depends(get_liveness_check)]


def stream_guard(*, channel: str, object_type: str) -> Callable[..., StreamGuard]:
    """A dependency making the guard of one long-lived channel (models/identity/stream_guard.py): it
    re-resolves the caller's scope every ``GRIDPATROL_STREAM_RECHECK_S`` and on access-change notices,
    ends at the credential's expiry or revocation, and logs the channel's start and end."""

    def dependency(request: Request, state: StateDep, credential: CredentialDep, scope: ScopeDep) -> StreamGuard:
        return StreamGuard(
            state.session_factory,
            credential,
            scope=scope,
            channel=channel,
            object_type=object_type,
            remote_addr=remote_addr(request),
            recheck_s=state.settings.stream_recheck_s,
        )

    return dependency


#: the guard of the SSE ticket feed (``GET /api/tickets/stream``)
TicketFeedGuard = Annotated[StreamGuard, Depends(stream_guard(channel="sse", object_type="ticket_feed"))]


# --- WebSocket authentication (wall tiles, live view) -------------------------------------------------

#: how long an accepted WebSocket may take to send its ``{"type": "auth"}`` message
WS_AUTH_TIMEOUT_S = 5.0


def credential_for_token(session: Session, token: str, *, secret_key: str) -> Credential:
    """A read-only channel's credential from a bearer token: a JWT access token checked against the
    user's token version, or an API token with the ``api:read`` scope (AuthError / AccessDenied)."""
    if token.startswith(API_TOKEN_PREFIX):
        user, row = resolve_api_token(session, token, scope=TokenScope.api_read)
        if session.is_modified(row):
            session.commit()  # last_used_at, at most once a minute
        return Credential(
            user_id=user.id, token_version=user.token_version, api_token_id=row.id, scopes=frozenset(row.scopes),
            expires_at=row.expires_at,
        )  # fmt: skip
    return _jwt_credential(session, token, secret_key=secret_key)


async def websocket_token(websocket: WebSocket, *, timeout_s: float = WS_AUTH_TIMEOUT_S) -> str:
    """The bearer token of an accepted WebSocket: the ``Authorization: Bearer`` header; else the
    ``gp_session`` cookie when the page's ``Origin`` is this host (a page on another site cannot ride
    the cookie); else a first text message ``{"type": "auth", "token": "..."}`` within ``timeout_s``."""
    scheme, _, value = websocket.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    cookie = session_token(websocket)
    if cookie:
        origin = websocket.headers.get("origin")
        if origin is None or urlsplit(origin).netloc != websocket.headers.get("host", ""):
            raise AuthError("the session cookie is accepted only from this site's own pages")
        return cookie
    try:
        text = await asyncio.wait_for(websocket.receive_text(), timeout=timeout_s)
    except TimeoutError as err:
        raise AuthError('not authenticated: send {"type": "auth", "token": "..."} first') from err
    try:
        message = json.loads(text)
    except ValueError:
        message = None
    token = message.get("token") if isinstance(message, dict) and message.get("type") == "auth" else None
    if not isinstance(token, str) or not token:
        raise AuthError('not authenticated: send {"type": "auth", "token": "..."} first')
    return token
