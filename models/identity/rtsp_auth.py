"""RTSP viewer authentication: a Digest (RFC 2617) or Basic answer resolved to a :class:`Credential`.

The password of an RTSP viewer is either the user's own password or an API token with the ``rtsp`` scope
(username: the user's name). Digest is checked against the stored HA1 of each (``users.rtsp_ha1``,
``api_tokens.rtsp_ha1``); a token without the ``rtsp`` scope has none and is refused. Nonce handling
(freshness, HMAC) is the server's business (``rtsp_gateway.digest``); these functions are pure checks
plus one small query.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.db.tables import ApiToken, User, utcnow
from models.errors import AuthError
from models.identity.passwords import RTSP_REALM, rtsp_ha1, verify_password
from models.identity.tokens import API_TOKEN_PREFIX, ScopeMissing, TokenScope, resolve_api_token
from models.identity.users import Credential, find_user

__all__ = ["RTSP_REALM", "DigestAnswer", "digest_response", "resolve_basic", "resolve_digest", "rtsp_ha1"]


@dataclass(frozen=True)
class DigestAnswer:
    """The fields of an ``Authorization: Digest ...`` header a viewer sent."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    qop: str | None = None
    nc: str | None = None
    cnonce: str | None = None
    algorithm: str = "MD5"


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def digest_response(ha1: str, answer: DigestAnswer, *, method: str) -> str:
    """The response a client knowing ``ha1`` computes for this request (RFC 2617 3.2.2.1, MD5)."""
    ha2 = _md5(f"{method}:{answer.uri}")
    if answer.qop == "auth":
        return _md5(f"{ha1}:{answer.nonce}:{answer.nc}:{answer.cnonce}:auth:{ha2}")
    return _md5(f"{ha1}:{answer.nonce}:{ha2}")


def _matches(ha1: str | None, answer: DigestAnswer, method: str) -> bool:
    return ha1 is not None and hmac.compare_digest(
        digest_response(ha1, answer, method=method), answer.response.lower()
    )


def resolve_digest(
    session: Session,
    answer: DigestAnswer,
    *,
    method: str,
    realm: str = RTSP_REALM,
    now: datetime | None = None,
) -> Credential | None:
    """The credential whose secret produced this Digest answer (the user's password, else one of their
    live ``rtsp`` tokens), or None. The nonce must have been checked already."""
    now = now or utcnow()
    if answer.realm != realm or answer.algorithm.upper() != "MD5" or answer.qop not in (None, "auth"):
        return None
    if answer.qop == "auth" and (not answer.nc or answer.cnonce is None):
        return None
    user = find_user(session, answer.username)
    if user is None or not user.enabled:
        return None
    # the client hashed the name as typed: the stored HA1 is for the stored spelling
    if answer.username == user.username and _matches(user.rtsp_ha1, answer, method):
        return Credential(user_id=user.id, token_version=user.token_version)
    if answer.username != user.username:
        return None
    tokens = session.scalars(
        select(ApiToken).where(
            ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None), ApiToken.rtsp_ha1.is_not(None)
        )
    )
    for token in tokens:
        live = token.expires_at is None or token.expires_at > now
        if live and TokenScope.rtsp.value in token.scopes and _matches(token.rtsp_ha1, answer, method):
            return _token_credential(user, token)
    return None


def resolve_basic(
    session: Session, username: str, password: str, *, now: datetime | None = None
) -> Credential | None:
    """The credential of a Basic answer (allowed only where configured): the user's password, or an API
    token with the ``rtsp`` scope of that user; None otherwise (a token without ``rtsp`` included)."""
    if password.startswith(API_TOKEN_PREFIX):
        try:
            user, row = resolve_api_token(session, password, scope=TokenScope.rtsp, now=now)
        except (AuthError, ScopeMissing):  # a bad token, or a good one without ``rtsp``
            return None
        if user.username.lower() != username.lower():
            return None
        return _token_credential(user, row)
    found = find_user(session, username)
    ok = verify_password(found.password_hash if found else None, password)
    if found is None or not ok or not found.enabled:
        return None
    user = found
    if user.rtsp_ha1 is None:  # set before this realm existed: the digest secret comes with this login
        user.rtsp_ha1 = rtsp_ha1(user.username, password)
    return Credential(user_id=user.id, token_version=user.token_version)


def _token_credential(user: User, token: ApiToken) -> Credential:
    return Credential(
        user_id=user.id,
        token_version=user.token_version,
        api_token_id=token.id,
        scopes=frozenset(token.scopes),
        expires_at=token.expires_at,
    )
