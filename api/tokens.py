"""JWT access tokens: short-lived, bound to the user's token version so that a disable cuts them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from models.db.tables import User, utcnow
from models.errors import AuthError

ALGORITHM = "HS256"
#: lifetime of a refresh token (one login session between uses; each use rotates it)
REFRESH_TOKEN_TTL_S = 14 * 24 * 3600


def issue_access_token(user: User, *, secret: str, ttl_s: int, now: datetime | None = None) -> str:
    now = now or utcnow()
    claims: dict[str, Any] = {
        "sub": str(user.id),
        "tv": user.token_version,
        "role": user.role,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=ttl_s)).timestamp()),
        "typ": "access",
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


@dataclass(frozen=True)
class AccessClaims:
    """What a valid access token says: whose it is, the token version it is bound to, when it expires."""

    user_id: int
    token_version: int
    expires_at: datetime


def decode_access_token(token: str, *, secret: str) -> tuple[int, int]:
    """(user id, token version) of a valid token; AuthError otherwise."""
    claims = read_access_token(token, secret=secret)
    return claims.user_id, claims.token_version


def read_access_token(token: str, *, secret: str) -> AccessClaims:
    """The claims of a valid token, with its expiry (a stream ends then); AuthError otherwise."""
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "exp", "tv"]})
    except jwt.ExpiredSignatureError as err:
        raise AuthError("token expired") from err
    except jwt.PyJWTError as err:
        raise AuthError("invalid token") from err
    if claims.get("typ") != "access":
        raise AuthError("not an access token")
    try:
        return AccessClaims(
            user_id=int(claims["sub"]),
            token_version=int(claims["tv"]),
            expires_at=datetime.fromtimestamp(int(claims["exp"]), tz=UTC),
        )
    except (TypeError, ValueError, OverflowError, OSError) as err:
        raise AuthError("invalid token") from err
