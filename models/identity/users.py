"""Users, their roles and the grid nodes they answer for.

Usernames are unique without regard to case (``Admin1`` and ``admin1`` are one name: a unique index on
``lower(username)``, migration 0003), and login finds a user whatever the case typed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.db.tables import Assignment, GridNode, Role, User, utcnow
from models.errors import Conflict, InvalidInput
from models.identity.passwords import check_password_policy, hash_password, rtsp_ha1, verify_password
from models.identity.roles import SCOPED
from models.identity.tokens import api_token_is_live, revoke_user_api_tokens, revoke_user_refresh_tokens

USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{2,64}$")


def parse_role(text: str) -> Role:
    try:
        return Role(text)
    except ValueError as err:
        allowed = ", ".join(r.value for r in Role)
        raise InvalidInput(f"unknown role {text!r} (use {allowed})", field="role") from err


def add_user(
    session: Session,
    *,
    username: str,
    role: Role,
    password: str,
    grid_codes: list[str] | None = None,
    display_name: str = "",
) -> User:
    """Create a user with their grid assignments; scoped roles need at least one grid node."""
    if not USERNAME_RE.match(username):
        raise InvalidInput("use 2-64 letters, digits or _ . @ -", field="username")
    existing = find_user(session, username)
    if existing is not None:
        raise Conflict(f"user {existing.username!r} already exists (usernames ignore case)")
    nodes = _grid_nodes(session, role=role, grid_codes=grid_codes or [])
    check_password_policy(password, username=username)
    user = User(
        username=username,
        role=role.value,
        password_hash=hash_password(password),
        rtsp_ha1=rtsp_ha1(username, password),
        display_name=display_name,
    )
    session.add(user)
    try:
        session.flush()
    except IntegrityError as err:  # a concurrent add of the same name (or the same name in another case)
        raise Conflict(f"user {username!r} already exists (usernames ignore case)") from err
    for node in nodes:
        session.add(Assignment(user_id=user.id, grid_id=node.id))
    session.flush()
    return user


def find_user(session: Session, username: str) -> User | None:
    """The user of this name, whatever its case."""
    return session.scalar(select(User).where(func.lower(User.username) == username.lower()))


def _grid_nodes(session: Session, *, role: Role, grid_codes: list[str]) -> list[GridNode]:
    codes = list(dict.fromkeys(grid_codes))
    if role in SCOPED and not codes:
        raise InvalidInput(f"a {role.value} needs at least one grid node (--grid CODE)", field="grid")
    nodes = {n.code: n for n in session.scalars(select(GridNode).where(GridNode.code.in_(codes)))}
    for code in codes:
        if code not in nodes:
            raise InvalidInput(f"no grid node has code {code!r}", field="grid")
    return [nodes[c] for c in codes]


def set_assignments(session: Session, *, user: User, grid_codes: list[str]) -> list[str]:
    """Replace the user's grid nodes; returns the codes now assigned. Their scope changes on the next request."""
    nodes = _grid_nodes(session, role=Role(user.role), grid_codes=grid_codes)
    wanted = {n.id for n in nodes}
    for a in list(user.assignments):
        if a.grid_id not in wanted:
            user.assignments.remove(a)
    have = {a.grid_id for a in user.assignments}
    for node in nodes:
        if node.id not in have:
            user.assignments.append(Assignment(user_id=user.id, grid_id=node.id))
    session.flush()
    return [n.code for n in nodes]


def end_sessions(session: Session, user: User) -> None:
    """Cut every access and refresh token issued so far (API tokens stay: they are revoked one by one)."""
    user.token_version += 1
    revoke_user_refresh_tokens(session, user.id)


def set_enabled(session: Session, *, user: User, enabled: bool) -> None:
    """Disable or re-enable a user. Disabling ends every credential issued before it for good: access
    and refresh tokens (token version), API tokens (revoked), and streams at their next check;
    re-enabling revives none of them (the user logs in again and makes new API tokens)."""
    if not enabled:
        end_sessions(session, user)
        revoke_user_api_tokens(session, user.id)
    user.enabled = enabled
    session.flush()


def change_password(session: Session, *, user: User, current_password: str, new_password: str) -> None:
    """Check the current password, store the new one and end every other session of the user."""
    if not verify_password(user.password_hash, current_password):
        raise InvalidInput("the current password is wrong", field="current_password")
    check_password_policy(new_password, username=user.username, field="new_password")
    if new_password == current_password:
        raise InvalidInput("must differ from the current password", field="new_password")
    user.password_hash = hash_password(new_password)
    user.rtsp_ha1 = rtsp_ha1(user.username, new_password)
    end_sessions(session, user)
    session.flush()


@dataclass(frozen=True)
class Credential:
    """What a request or a long-lived stream (SSE, wall tile, RTSP session) was authenticated with."""

    user_id: int
    token_version: int
    #: set when the caller presented an API token rather than a login session
    api_token_id: int | None = None
    scopes: frozenset[str] = frozenset()
    #: when it stops holding by itself (an access token's ``exp``, an API token's ``expires_at``)
    expires_at: datetime | None = None


def credential_is_live(session: Session, credential: Credential, *, now: datetime | None = None) -> bool:
    """Whether a credential still holds: streaming paths poll this every few seconds and stop when it
    turns false (expired, user disabled, password changed, API token revoked or expired)."""
    now = now or utcnow()
    if credential.expires_at is not None and credential.expires_at <= now:
        return False
    user = session.get(User, credential.user_id, populate_existing=True)
    if user is None or not user.enabled:
        return False
    if credential.api_token_id is not None:
        return api_token_is_live(session, credential.api_token_id, now=now)
    return user.token_version == credential.token_version


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The enabled user with this password, or None (same cost whether or not the user exists). The
    username's case does not matter (usernames are unique without regard to case). A user whose RTSP
    digest secret predates it gets one now (the caller commits)."""
    user = find_user(session, username)
    ok = verify_password(user.password_hash if user else None, password)
    if user is None or not ok or not user.enabled:
        return None
    if user.rtsp_ha1 is None:
        user.rtsp_ha1 = rtsp_ha1(user.username, password)
    return user
