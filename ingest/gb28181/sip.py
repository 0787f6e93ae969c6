"""SIP messages (RFC 3261) as GB/T 28181 devices send them: parse, build, and frame on a TCP stream.

Only what a GB/T 28181 platform needs: requests and responses with their headers in order, compact
header names (``i:``, ``f:``, ``v:``...), ``name-addr`` values with their parameters, and Digest
parameter lists. Bodies stay bytes: MANSCDP bodies come in GB2312 as often as in UTF-8.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

from models.errors import GridPatrolError

SIP_VERSION = "SIP/2.0"
#: RFC 3261 7.3.3 compact forms
COMPACT = {
    "i": "call-id",
    "f": "from",
    "t": "to",
    "v": "via",
    "m": "contact",
    "l": "content-length",
    "c": "content-type",
    "s": "subject",
    "k": "supported",
    "e": "content-encoding",
}
CANONICAL = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "max-forwards": "Max-Forwards",
}
HEADER_END = b"\r\n\r\n"
#: the largest SIP message accepted (a catalog MESSAGE with many items stays far below)
MAX_MESSAGE_BYTES = 65_536
_USER_RE = re.compile(r"sips?:([^@;>]+)@", re.IGNORECASE)
_ADDR_RE = re.compile(r"<([^>]*)>")


class SipError(GridPatrolError):
    """A message that is not SIP, or lacks what the platform needs from it."""


def _key(name: str) -> str:
    low = name.strip().lower()
    return COMPACT.get(low, low)


def canonical_name(name: str) -> str:
    low = _key(name)
    return CANONICAL.get(low) or "-".join(part.capitalize() for part in low.split("-"))


@dataclass
class SipMessage:
    """A request (``method`` and ``uri`` set) or a response (``status`` and ``reason`` set)."""

    method: str | None = None
    uri: str | None = None
    status: int | None = None
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def is_request(self) -> bool:
        return self.method is not None

    def get(self, name: str, default: str | None = None) -> str | None:
        key = _key(name)
        for k, v in self.headers:
            if _key(k) == key:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        key = _key(name)
        return [v for k, v in self.headers if _key(k) == key]

    def set(self, name: str, value: str) -> None:
        """Replace every header ``name`` by one with ``value`` (appended when absent)."""
        key = _key(name)
        kept = [(k, v) for k, v in self.headers if _key(k) != key]
        self.headers = [*kept, (canonical_name(name), value)]

    def header(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise SipError(f"the message has no {canonical_name(name)} header")
        return value

    @property
    def call_id(self) -> str:
        return self.header("call-id").strip()

    @property
    def cseq(self) -> tuple[int, str]:
        number, _, method = self.header("cseq").strip().partition(" ")
        try:
            return int(number), method.strip().upper()
        except ValueError as err:
            raise SipError(f"CSeq {number!r} is not a number") from err

    @property
    def content_type(self) -> str:
        return (self.get("content-type") or "").strip()

    def encode(self) -> bytes:
        if self.is_request:
            start = f"{self.method} {self.uri} {SIP_VERSION}"
        else:
            start = f"{SIP_VERSION} {self.status} {self.reason}"
        lines = [start]
        for k, v in self.headers:
            if _key(k) != "content-length":
                lines.append(f"{canonical_name(k)}: {v}")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body


def parse(data: bytes) -> SipMessage:
    """One SIP message; :class:`SipError` when it is not one."""
    head, sep, body = data.partition(HEADER_END)
    if not sep:
        head, sep, body = data.partition(b"\n\n")  # some devices end lines with a bare LF
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = head.decode("gb18030", errors="replace")  # Chinese display names in From/To
    lines = text.replace("\r\n", "\n").split("\n")
    start = lines[0].strip()
    parts = start.split(" ", 2)
    if len(parts) < 3:
        raise SipError(f"not a SIP start line: {start[:80]!r}")
    msg = SipMessage()
    if parts[0].upper().startswith("SIP/"):
        try:
            msg.status = int(parts[1])
        except ValueError as err:
            raise SipError(f"not a SIP status: {parts[1][:20]!r}") from err
        msg.reason = parts[2]
    elif parts[2].upper().startswith("SIP/"):
        msg.method, msg.uri = parts[0].upper(), parts[1]
    else:
        raise SipError(f"not a SIP start line: {start[:80]!r}")
    for line in lines[1:]:
        if not line.strip():
            continue
        if line[0] in " \t" and msg.headers:  # folded continuation line
            k, v = msg.headers[-1]
            msg.headers[-1] = (k, f"{v} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise SipError(f"not a SIP header line: {line[:80]!r}")
        msg.headers.append((name.strip(), value.strip()))
    length = msg.get("content-length")
    if length is not None:
        try:
            n = int(length)
        except ValueError as err:
            raise SipError(f"Content-Length {length!r} is not a number") from err
        body = body[:n]
    msg.body = body
    return msg


def frame_length(buffer: bytes | bytearray) -> int | None:
    """On a TCP stream: the byte length of the first whole message in ``buffer``; minus the number of
    leading keepalive CRLF bytes to drop (RFC 5626); None while more bytes are needed."""
    lead = len(buffer) - len(bytes(buffer).lstrip(b"\r\n"))
    if lead:
        return -lead
    end = bytes(buffer).find(HEADER_END)
    if end < 0:
        if len(buffer) > MAX_MESSAGE_BYTES:
            raise SipError("a SIP header longer than the largest message accepted")
        return None
    head = bytes(buffer[:end]).decode("utf-8", errors="replace")
    length = 0
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if _key(name) == "content-length":
            try:
                length = int(value.strip())
            except ValueError as err:
                raise SipError(f"Content-Length {value.strip()!r} is not a number") from err
    total = end + len(HEADER_END) + length
    if total > MAX_MESSAGE_BYTES:
        raise SipError(f"a SIP message of {total} bytes (largest accepted: {MAX_MESSAGE_BYTES})")
    return total if len(buffer) >= total else None


# --- values ------------------------------------------------------------------------------------------------
def params(value: str) -> dict[str, str]:
    """The ``;name=value`` parameters after a ``name-addr`` (outside its angle brackets)."""
    tail = value.rsplit(">", 1)[1] if ">" in value else value.split(";", 1)[1] if ";" in value else ""
    out: dict[str, str] = {}
    for item in tail.split(";"):
        name, _, val = item.strip().partition("=")
        if name:
            out[name.lower()] = val.strip().strip('"')
    return out


def tag_of(value: str) -> str | None:
    return params(value).get("tag")


def addr_uri(value: str) -> str:
    """The URI of a ``name-addr`` (``"x" <sip:a@b>;tag=1`` → ``sip:a@b``) or of a bare ``addr-spec``."""
    m = _ADDR_RE.search(value)
    if m:
        return m.group(1).strip()
    return value.split(";", 1)[0].strip()


def uri_user(value: str) -> str | None:
    """The user part of the (first) SIP URI in ``value``: the 20-digit ID of a GB/T 28181 device."""
    m = _USER_RE.search(value)
    return m.group(1) if m else None


def uri_host(value: str) -> str | None:
    """The host[:port] part of a SIP URI: ``sip:3402...@3402000000`` → ``3402000000``."""
    uri = addr_uri(value)
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    rest = rest.split("@", 1)[1] if "@" in rest else rest
    return rest.split(";", 1)[0].split(">", 1)[0] or None


def via_params(via: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in via.split(";")[1:]:
        name, _, val = item.strip().partition("=")
        out[name.lower()] = val
    return out


def auth_params(value: str) -> tuple[str, dict[str, str]]:
    """``Digest username="a", realm="b", qop=auth`` → ("digest", {"username": "a", ...})."""
    scheme, _, rest = value.strip().partition(" ")
    out: dict[str, str] = {}
    for m in re.finditer(r'([A-Za-z0-9_-]+)\s*=\s*("((?:[^"\\]|\\.)*)"|[^,\s]*)', rest):
        out[m.group(1).lower()] = m.group(3) if m.group(3) is not None else m.group(2)
    return scheme.lower(), out


def new_tag() -> str:
    return secrets.token_hex(5)


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(8)


def new_call_id(host: str) -> str:
    return f"{secrets.token_hex(10)}@{host}"


def response_to(
    request: SipMessage,
    status: int,
    reason: str,
    *,
    to_tag: str | None = None,
    extra: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> SipMessage:
    """A response echoing the request's Via, From, To (with ``to_tag`` added when it has none), Call-ID, CSeq."""
    resp = SipMessage(status=status, reason=reason, body=body)
    for name in ("via", "from", "to", "call-id", "cseq"):
        for value in request.get_all(name):
            if name == "to" and to_tag and tag_of(value) is None:
                value = f"{value};tag={to_tag}"
            resp.headers.append((canonical_name(name), value))
    resp.headers.extend(extra or [])
    return resp
