"""REGISTER with Digest authentication, and keepalive tracking (GB/T 28181 9.1, 9.6).

A device registers with its 20-digit ID as the Digest username (its "SIP 用户认证 ID", which some set
apart from the ID) and the domain as the realm. Devices
compute HA2 over the ``uri=`` they put in the Authorization header, which is not always the
Request-URI (some send ``sip:<domain>``, others ``sip:<platform id>@<domain>``): the check uses that
parameter, as RFC 2617 says. A wrong password is answered 403 and registers nothing; ``Expires: 0``
unregisters. A registered device that sends neither keepalive nor REGISTER for ``misses`` intervals
is offline.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from enum import Enum

from ingest.gb28181.sip import SipMessage, auth_params, uri_host, uri_user
from ingest.gb28181.transport import Peer, Transport

logger = logging.getLogger(__name__)


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def digest_response(
    *,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None = None,
    nc: str = "",
    cnonce: str = "",
) -> str:
    """RFC 2617 ``response`` (MD5): with ``qop=auth`` or the RFC 2069 form without qop."""
    ha1 = md5_hex(f"{username}:{realm}:{password}")
    ha2 = md5_hex(f"{method}:{uri}")
    if qop:
        return md5_hex(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return md5_hex(f"{ha1}:{nonce}:{ha2}")


class Verdict(Enum):
    ok = "ok"
    challenge = "challenge"  # 401: no or unusable credentials
    stale = "stale"  # 401 stale=true: a nonce too old
    forbidden = "forbidden"  # 403: wrong password or wrong identity


class DigestAuth:
    """Stateless nonces (time and HMAC), so a restart or a second platform process need no shared table."""

    def __init__(self, *, realm: str, password: str, nonce_ttl_s: int) -> None:
        self.realm = realm
        self._password = password
        self._ttl_s = nonce_ttl_s
        self._key = secrets.token_bytes(32)

    def nonce(self) -> str:
        stamp = f"{int(time.time()):x}"
        mac = hmac.new(self._key, stamp.encode(), hashlib.sha256).hexdigest()[:24]
        return f"{stamp}{mac}"

    def _nonce_state(self, nonce: str) -> Verdict:
        stamp, mac = nonce[:-24], nonce[-24:]
        good = hmac.new(self._key, stamp.encode(), hashlib.sha256).hexdigest()[:24]
        if not stamp or not hmac.compare_digest(mac, good):
            return Verdict.challenge
        try:
            age = time.time() - int(stamp, 16)
        except ValueError:
            return Verdict.challenge
        return Verdict.stale if age > self._ttl_s or age < -60 else Verdict.ok

    def challenge(self, *, stale: bool = False) -> str:
        extra = ", stale=TRUE" if stale else ""
        return f'Digest realm="{self.realm}", nonce="{self.nonce()}", qop="auth", algorithm=MD5{extra}'

    def check(self, request: SipMessage, *, device_id: str) -> Verdict:
        header = request.get("authorization")
        if header is None:
            return Verdict.challenge
        scheme, p = auth_params(header)
        if scheme != "digest" or not p.get("nonce") or not p.get("response") or not p.get("uri"):
            return Verdict.challenge
        if p.get("algorithm", "MD5").upper() != "MD5":
            return Verdict.challenge
        state = self._nonce_state(p["nonce"])
        if state is not Verdict.ok:
            return state
        if p.get("realm", self.realm) != self.realm:
            return Verdict.forbidden  # credentials made for another domain
        # the username is the device's "SIP 用户认证 ID", which cameras let differ from the device ID
        # (usually it is the same); the password is the platform's, so the name is taken as given
        username = p.get("username") or device_id
        qop = p.get("qop") or None
        if qop is not None and qop.lower() != "auth":
            return Verdict.challenge
        expected = digest_response(
            username=username,
            realm=self.realm,
            password=self._password,
            method=request.method or "REGISTER",
            uri=p["uri"],
            nonce=p["nonce"],
            qop=qop,
            nc=p.get("nc", ""),
            cnonce=p.get("cnonce", ""),
        )
        return Verdict.ok if hmac.compare_digest(expected, p["response"].lower()) else Verdict.forbidden


@dataclass
class DeviceState:
    """What the platform knows of a registered device while it runs."""

    device_id: str
    peer: Peer
    domain: str
    expires_at: float
    last_seen: float
    online: bool = True
    #: devices often name themselves in the REGISTER's User-Agent
    user_agent: str = ""
    keepalive_at: float | None = None
    #: where its Contact says it listens (reached there when its TCP connection has gone)
    contact: Peer | None = None


def register_expires(request: SipMessage, *, max_s: int) -> int:
    """The expiry a REGISTER asks for (Contact ``expires=`` wins over ``Expires:``), capped at ``max_s``."""
    contact = request.get("contact") or ""
    value: str | None = None
    for part in contact.split(";")[1:]:
        name, _, val = part.strip().partition("=")
        if name.lower() == "expires":
            value = val
    if value is None:
        value = request.get("expires")
    try:
        expires = int((value or "3600").strip())
    except ValueError:
        expires = 3600
    return max(0, min(expires, max_s))


def contact_peer(contact: str, *, transport: Transport) -> Peer | None:
    """The host and port of a Contact (``<sip:id@10.0.0.5:5060>`` → 10.0.0.5:5060; port 5060 when absent)."""
    hostport = uri_host(contact)
    if not hostport:
        return None
    host, _, port = hostport.rpartition(":") if hostport.count(":") == 1 else (hostport, "", "")
    try:
        return Peer(transport, host, int(port) if port else 5060)
    except ValueError:
        return None


def device_id_of(request: SipMessage) -> str | None:
    """The device's ID: the user of its From URI (the To URI on a REGISTER is the same for devices)."""
    return uri_user(request.get("from") or "")


class Registry:
    """Registered devices in memory, keyed by device ID."""

    def __init__(self, *, offline_after_s: float) -> None:
        self.offline_after_s = offline_after_s
        self.devices: dict[str, DeviceState] = {}

    def register(self, state: DeviceState) -> bool:
        """Record a registration; True when the device was not registered and online before."""
        old = self.devices.get(state.device_id)
        self.devices[state.device_id] = state
        return old is None or not old.online

    def unregister(self, device_id: str) -> DeviceState | None:
        return self.devices.pop(device_id, None)

    def seen(self, device_id: str, peer: Peer, *, keepalive: bool) -> DeviceState | None:
        """A message from a registered device; returns its state (None when not registered)."""
        state = self.devices.get(device_id)
        if state is None:
            return None
        now = time.monotonic()
        state.last_seen = now
        if keepalive:
            state.keepalive_at = now
        state.peer = peer  # NAT rebinding: answer where it speaks from now
        return state

    def sweep(self, now: float | None = None) -> tuple[list[DeviceState], list[DeviceState]]:
        """(devices that fell silent, devices whose registration expired): both leave the online set;
        expired ones leave the registry."""
        now = time.monotonic() if now is None else now
        silent, expired = [], []
        for device_id, state in list(self.devices.items()):
            if state.expires_at <= now:
                del self.devices[device_id]
                expired.append(state)
            elif state.online and now - state.last_seen > self.offline_after_s:
                state.online = False
                silent.append(state)
        return silent, expired
