"""RTSP authentication: Digest (RFC 2617, MD5, with and without ``qop=auth``) and, where configured, Basic.

A nonce carries its own issue time and an HMAC of it under a key every gateway process shares, so any
process checks any nonce without shared state; an old nonce with a right answer gets ``stale=TRUE`` and
the client answers again without asking the user. Replays of a fresh nonce are bounded by its lifetime
(nonce counts are not tracked across processes). The secrets are checked by ``models.identity.rtsp_auth``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.orm import Session, sessionmaker

from models.identity.rtsp_auth import DigestAnswer, resolve_basic, resolve_digest
from models.identity.users import Credential

NonceState = Literal["ok", "stale", "bad"]
_PARAM = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


class NonceKeeper:
    """Makes and checks nonces: ``<issued ms, hex>.<random>.<HMAC>``."""

    def __init__(self, secret: bytes, *, ttl_s: float, clock: Callable[[], float] = time.time) -> None:
        self._key = hashlib.sha256(b"gridpatrol rtsp nonce\0" + secret).digest()
        self.ttl_s = ttl_s
        self._clock = clock

    def _mac(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()[:32]

    def make(self) -> str:
        body = f"{int(self._clock() * 1000):x}.{secrets.token_hex(8)}"
        return f"{body}.{self._mac(body)}"

    def check(self, nonce: str) -> NonceState:
        """``ok`` (ours and fresh), ``stale`` (ours, expired) or ``bad`` (not ours)."""
        body, _, mac = nonce.rpartition(".")
        if not body or not hmac.compare_digest(self._mac(body), mac):
            return "bad"
        try:
            issued_ms = int(body.split(".", 1)[0], 16)
        except ValueError:
            return "bad"
        age = self._clock() - issued_ms / 1000
        return "ok" if -5 <= age <= self.ttl_s else "stale"


@dataclass(frozen=True)
class BasicAnswer:
    username: str
    password: str


def parse_authorization(header: str) -> DigestAnswer | BasicAnswer | None:
    """The answer in an ``Authorization`` header; None when it is neither well-formed Digest nor Basic."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() == "basic":
        try:
            user, sep, password = base64.b64decode(rest.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return BasicAnswer(user, password) if sep else None
    if scheme.lower() != "digest":
        return None
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if m is None or m.end() == pos:
            return None
        quoted, bare = m.group(2), m.group(3)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        pos = m.end()
    try:
        return DigestAnswer(
            username=params["username"],
            realm=params["realm"],
            nonce=params["nonce"],
            uri=params["uri"],
            response=params["response"],
            qop=params.get("qop") or None,
            nc=params.get("nc"),
            cnonce=params.get("cnonce"),
            algorithm=params.get("algorithm") or "MD5",
        )
    except KeyError:
        return None


def answer_username(header: str) -> str | None:
    """The username an ``Authorization`` header names (None: not a well-formed answer)."""
    answer = parse_authorization(header)
    return answer.username if answer is not None else None


def challenges(realm: str, nonce: str, *, stale: bool = False, allow_basic: bool = False) -> list[str]:
    """``WWW-Authenticate`` values, strongest first. Both Digest forms are offered: ``qop="auth"`` for the
    clients that speak it; clients that ignore qop (ffmpeg's RTSP, many NVRs) answer in RFC 2069 form."""
    digest = f'Digest realm="{realm}", nonce="{nonce}", algorithm=MD5, qop="auth"'
    if stale:
        digest += ", stale=TRUE"
    out = [digest]
    if allow_basic:
        out.append(f'Basic realm="{realm}"')
    return out


@dataclass(frozen=True)
class AuthResult:
    """Who answered (None: nobody: challenge again), and whether the refusal is only a stale nonce."""

    credential: Credential | None
    username: str = ""
    stale: bool = False


class Authenticator:
    """Checks one ``Authorization`` header against the database (blocks: run it in a worker thread)."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        nonces: NonceKeeper,
        *,
        realm: str,
        allow_basic: bool = False,
    ) -> None:
        self._factory = session_factory
        self.nonces = nonces
        self.realm = realm
        self.allow_basic = allow_basic

    def challenges(self, *, stale: bool = False) -> list[str]:
        return challenges(self.realm, self.nonces.make(), stale=stale, allow_basic=self.allow_basic)

    def authenticate(self, header: str | None, *, method: str) -> AuthResult:
        if not header:
            return AuthResult(None)
        answer = parse_authorization(header)
        if isinstance(answer, BasicAnswer):
            if not self.allow_basic:
                return AuthResult(None)
            with self._factory() as session:
                cred = resolve_basic(session, answer.username, answer.password)
                session.commit()  # a digest secret set on this first login, a token's last use
            return AuthResult(cred, answer.username if cred else "")
        if answer is None:
            return AuthResult(None)
        state = self.nonces.check(answer.nonce)
        if state == "bad":
            return AuthResult(None)
        with self._factory() as session:
            cred = resolve_digest(session, answer, method=method, realm=self.realm)
        if cred is None:
            return AuthResult(None)
        if state == "stale":  # the right secret on an old nonce: ask again without bothering the user
            return AuthResult(None, stale=True)
        return AuthResult(cred, answer.username)
