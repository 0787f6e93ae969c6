"""Opaque bearer secrets stored hashed: long-lived API tokens and rotating refresh tokens.

An API token (``gp_...``) is shown once at creation; only its SHA-256 is kept. It acts as its user,
limited by its scopes, until it expires (at most :data:`MAX_API_TOKEN_LIFETIME` after its creation) or
is revoked; disabling the user revokes it for good (re-enabling does not revive it). The RTSP gateway
resolves the tokens viewers present with :func:`resolve_api_token` (scope ``rtsp``).

Two scopes are privileges of their own (:data:`PRIVILEGED_SCOPES`): ``admin:users`` lets a token create,
enable or re-assign users and lend cameras (an admin's only), ``intake`` lets it file cases as the
12345 hotline, the 110 platform or another system (the centre's only). Only a login session may put
them on a token (no token mints tokens).

A refresh token (``gpr_...``) belongs to one login session (a *family*): each use spends it and issues
the next one; a spent token presented again means a copy was stolen, and the whole family is revoked.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from models.db.tables import ApiToken, RefreshToken, Role, User, utcnow
from models.errors import AccessDenied, AuthError, InvalidInput
from models.identity.passwords import hash_api_token, new_api_token, rtsp_ha1
from models.identity.roles import CENTRE

API_TOKEN_PREFIX = "gp_"
REFRESH_TOKEN_PREFIX = "gpr_"
#: a token's last_used_at is written at most this often (not one write per request)
LAST_USED_RESOLUTION = timedelta(seconds=60)
#: the longest an API token lives; a token asked for without ``expires_at`` gets exactly this
MAX_API_TOKEN_LIFETIME = timedelta(days=366)


class TokenScope(enum.StrEnum):
    api_read = "api:read"
    api_write = "api:write"
    rtsp = "rtsp"
    #: create, enable, re-assign users and lend cameras through the API (see api/deps.py PRIVILEGE_ROUTES)
    admin_users = "admin:users"
    #: file cases with a source other than ``patrol`` (hotline_12345, police_110, api)
    intake = "intake"


#: scopes that are privileges: the roles whose users may put them on a token
PRIVILEGED_SCOPES: dict[TokenScope, frozenset[Role]] = {
    TokenScope.admin_users: frozenset({Role.admin}),
    TokenScope.intake: CENTRE,
}


class ScopeMissing(AccessDenied):
    """A good API token without the scope a request needs (403); names its user for the audit log."""

    def __init__(self, message: str, *, user_id: int, username: str) -> None:
        super().__init__(message)
        self.user_id = user_id
        self.username = username


def parse_scopes(names: Iterable[str]) -> list[TokenScope]:
    scopes: list[TokenScope] = []
    for name in names:
        try:
            scope = TokenScope(name)
        except ValueError as err:
            allowed = ", ".join(s.value for s in TokenScope)
            raise InvalidInput(f"unknown scope {name!r} (use {allowed})", field="scopes") from err
        if scope not in scopes:
            scopes.append(scope)
    if not scopes:
        raise InvalidInput("give at least one scope", field="scopes")
    return scopes


def create_api_token(
    session: Session,
    *,
    user: User,
    name: str,
    scopes: Iterable[str],
    expires_at: datetime | None = None,
) -> tuple[ApiToken, str]:
    """A new token row and the token itself (shown once: only its hash is stored). It lives until
    ``expires_at`` (with a time zone, at most :data:`MAX_API_TOKEN_LIFETIME` away; None: that maximum).
    A privileged scope needs a role allowed to hold it (AccessDenied otherwise)."""
    parsed = parse_scopes(scopes)
    for scope in parsed:
        roles = PRIVILEGED_SCOPES.get(scope)
        if roles is not None and Role(user.role) not in roles:
            allowed = ", ".join(sorted(r.value for r in roles))
            raise AccessDenied(f"only {allowed} may put the scope {scope.value!r} on a token")
    now = utcnow()
    if expires_at is None:
        expires_at = now + MAX_API_TOKEN_LIFETIME
    elif expires_at.tzinfo is None or expires_at.utcoffset() is None:
        raise InvalidInput("give a time with a time zone (e.g. 2026-05-01T08:00:00Z)", field="expires_at")
    if expires_at <= now:
        raise InvalidInput("must be in the future", field="expires_at")
    if expires_at > now + MAX_API_TOKEN_LIFETIME:
        raise InvalidInput(f"an API token lives at most {MAX_API_TOKEN_LIFETIME.days} days", field="expires_at")
    token, token_hash = new_api_token()
    row = ApiToken(
        user_id=user.id,
        name=name,
        token_hash=token_hash,
        scopes=[s.value for s in parsed],
        expires_at=expires_at,
        # an ``rtsp`` token is the RTSP password of its user: Digest needs its HA1 (a token without it has none)
        rtsp_ha1=rtsp_ha1(user.username, token) if TokenScope.rtsp in parsed else None,
    )
    session.add(row)
    session.flush()
    return row, token


def resolve_api_token(
    session: Session, token: str, *, scope: TokenScope, now: datetime | None = None
) -> tuple[User, ApiToken]:
    """The enabled user an unexpired, unrevoked token acts for; AuthError (401) when the token is not
    good, AccessDenied (403) when it is good but lacks ``scope``. The caller commits (last_used_at)."""
    now = now or utcnow()
    if not token.startswith(API_TOKEN_PREFIX):
        raise AuthError("invalid token")
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_api_token(token)))
    if row is None or row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        raise AuthError("invalid token")
    user = session.get(User, row.user_id)
    if user is None or not user.enabled:
        raise AuthError("invalid token")
    if scope.value not in row.scopes:
        raise ScopeMissing(
            f"this API token lacks the scope {scope.value!r}", user_id=user.id, username=user.username
        )
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        row.last_used_at = now
    return user, row


def api_token_is_live(session: Session, token_id: int, *, now: datetime | None = None) -> bool:
    now = now or utcnow()
    row = session.get(ApiToken, token_id, populate_existing=True)
    return row is not None and row.revoked_at is None and (row.expires_at is None or row.expires_at > now)


def revoke_api_token(session: Session, row: ApiToken, *, now: datetime | None = None) -> None:
    if row.revoked_at is None:
        row.revoked_at = now or utcnow()


def revoke_user_api_tokens(session: Session, user_id: int, *, now: datetime | None = None) -> int:
    """Revoke every live API token of a user (when they are disabled); returns how many."""
    result = session.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=now or utcnow())
        .execution_options(synchronize_session="fetch")
    )
    return int(getattr(result, "rowcount", 0) or 0)


# --- refresh tokens -------------------------------------------------------------------------------


def issue_refresh_token(
    session: Session, *, user: User, ttl_s: int, family: str | None = None, now: datetime | None = None
) -> str:
    """A new refresh token for ``user`` (a new login session unless ``family`` continues one)."""
    now = now or utcnow()
    token = REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(
        RefreshToken(
            user_id=user.id,
            family=family or secrets.token_hex(16),
            token_hash=hash_api_token(token),
            token_version=user.token_version,
            created_at=now,
            expires_at=now + timedelta(seconds=ttl_s),
        )
    )
    session.flush()
    return token


def rotate_refresh_token(session: Session, token: str, *, ttl_s: int, now: datetime | None = None) -> tuple[User, str]:
    """Spend ``token`` and return its user with the next token of the family. A spent token presented
    again revokes the family (the caller must commit even when this raises AuthError)."""
    now = now or utcnow()
    row = session.scalar(select(RefreshToken).where(RefreshToken.token_hash == hash_api_token(token)))
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        raise AuthError("invalid refresh token")
    if row.used_at is not None:
        revoke_refresh_family(session, row.family, now=now)
        raise AuthError("refresh token already used: this session is revoked")
    user = session.get(User, row.user_id)
    if user is None or not user.enabled or user.token_version != row.token_version:
        raise AuthError("invalid refresh token")
    row.used_at = now
    return user, issue_refresh_token(session, user=user, ttl_s=ttl_s, family=row.family, now=now)


def revoke_refresh_token(session: Session, token: str, *, now: datetime | None = None) -> None:
    """Log out: revoke the session ``token`` belongs to (silently nothing for an unknown token)."""
    row = session.scalar(select(RefreshToken).where(RefreshToken.token_hash == hash_api_token(token)))
    if row is not None:
        revoke_refresh_family(session, row.family, now=now)


def revoke_refresh_family(session: Session, family: str, *, now: datetime | None = None) -> None:
    session.execute(
        update(RefreshToken)
        .where(RefreshToken.family == family, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now or utcnow())
    )


def revoke_user_refresh_tokens(session: Session, user_id: int, *, now: datetime | None = None) -> None:
    session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now or utcnow())
    )
