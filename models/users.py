"""Users, their roles and the grid nodes they answer for."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.domain import Assignment, GridNode, Role, User
from models.errors import Conflict, ValidationError
from models.passwords import hash_password, verify_password

USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{2,64}$")
SCOPED_ROLES = frozenset({Role.manager, Role.grid_leader, Role.patroller})


def parse_role(text: str) -> Role:
    try:
        return Role(text)
    except ValueError as err:
        allowed = ", ".join(r.value for r in Role)
        raise ValidationError(f"unknown role {text!r} (use {allowed})", field="role") from err


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
        raise ValidationError("use 2-64 letters, digits or _ . @ -", field="username")
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"user {username!r} already exists")
    codes = list(dict.fromkeys(grid_codes or []))
    if role in SCOPED_ROLES and not codes:
        raise ValidationError(f"a {role.value} needs at least one grid node (--grid CODE)", field="grid")
    nodes = {n.code: n for n in session.scalars(select(GridNode).where(GridNode.code.in_(codes)))}
    for code in codes:
        if code not in nodes:
            raise ValidationError(f"no grid node has code {code!r}", field="grid")
    user = User(username=username, role=role.value, password_hash=hash_password(password), display_name=display_name)
    session.add(user)
    session.flush()
    for code in codes:
        session.add(Assignment(user_id=user.id, grid_id=nodes[code].id))
    session.flush()
    return user


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The enabled user with this password, or None (same cost whether or not the user exists)."""
    user = session.scalar(select(User).where(User.username == username))
    ok = verify_password(user.password_hash if user else None, password)
    if user is None or not ok or not user.enabled:
        return None
    return user
