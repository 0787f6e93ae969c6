"""Password and token hashing: argon2id for passwords, SHA-256 for high-entropy API tokens.

The password policy (API and CLI alike) asks for at least 8 characters and rejects what an attacker
tries first: common passwords, keyboard walks, repeats, dates, the username itself. It uses zxcvbn's
estimate (its dictionaries of common passwords, names and words ship in the package; nothing is
downloaded) and wants a score of at least :data:`MIN_PASSWORD_SCORE` (roughly 10^6 guesses).
"""

from __future__ import annotations

import functools
import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn import zxcvbn

from models.errors import InvalidInput

_hasher = PasswordHasher()

MIN_PASSWORD_LENGTH = 8
#: zxcvbn score (0-4) a password needs: 2 is "somewhat guessable", about a million guesses or more
MIN_PASSWORD_SCORE = 2
#: zxcvbn's cost grows with the length; a longer password is judged on its first characters
_SCORED_PREFIX = 100


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the user does not exist, so a wrong username costs as long as a wrong password."""
    return _hasher.hash("not-a-real-password")


def check_password_policy(password: str, *, username: str = "", field: str = "password") -> None:
    """InvalidInput naming ``field`` when the password is too short, common or trivial."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"must be at least {MIN_PASSWORD_LENGTH} characters", field=field)
    if not password.strip() or len(set(password)) == 1:
        raise InvalidInput("must not be one character repeated or only spaces", field=field)
    # a short name (``li``) inside a password says little; a longer one, or the name itself, is a giveaway
    name = username.lower()
    if name and (name == password.lower() or (len(name) >= 4 and name in password.lower())):
        raise InvalidInput("must not contain the username", field=field)
    result = zxcvbn(password[:_SCORED_PREFIX], user_inputs=[username] if username else [])
    if int(result["score"]) < MIN_PASSWORD_SCORE:
        warning = str(result.get("feedback", {}).get("warning") or "it is too easy to guess")
        raise InvalidInput(f"too weak: {warning.rstrip('.')} (use a longer phrase of uncommon words)", field=field)


def hash_password(password: str) -> str:
    check_password_policy(password)
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def new_api_token() -> tuple[str, str]:
    """A fresh token (shown once) and the hash that is stored."""
    token = "gp_" + secrets.token_urlsafe(32)
    return token, hash_api_token(token)


def hash_api_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


#: the RTSP Digest realm the stored ``rtsp_ha1`` values are computed for (the gateway announces it)
RTSP_REALM = "GridPatrol"


def rtsp_ha1(username: str, secret: str, *, realm: str = RTSP_REALM) -> str:
    """RFC 2617 HA1 = MD5(username:realm:secret): what RTSP Digest checks against, since an argon2 hash
    cannot give it. A password equivalent for the RTSP realm only: stored, never shown."""
    return hashlib.md5(f"{username}:{realm}:{secret}".encode(), usedforsecurity=False).hexdigest()
