"""The hub's connection to a camera: an asyncio RTSP client (RFC 2326) that receives the video track as
RTP interleaved over the RTSP TCP connection and hands it on in chunks, never decoding.

OPTIONS, DESCRIBE, SETUP, PLAY; Basic or Digest authentication with the credentials of the camera URL;
GET_PARAMETER (or OPTIONS) keep-alives; RTCP sender reports passed through; every wait has a timeout.
A :class:`MediaSource` is what the hub reads from: this client and the replay source both are one.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import re
import time
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

from models.errors import StreamError
from rtsp_gateway.media import Codec, TrackInfo

logger = logging.getLogger(__name__)

USER_AGENT = "GridPatrol"
_READ_SIZE = 256 * 1024
_MAX_HEADER = 64 * 1024
_SDP_CODECS: dict[str, Codec] = {"H264": "h264", "H265": "h265", "HEVC": "h265"}


@dataclass(slots=True)
class SourceChunk:
    """Packets that arrived together (one socket read): ``(bytes, is_rtcp)`` in arrival order."""

    received_at: float
    packets: list[tuple[bytes, bool]] = field(default_factory=list)


class MediaSource(Protocol):
    """One session with a camera (or a replayed clip): open, read chunks until it fails, close."""

    async def open(self) -> TrackInfo:
        """Connect and start the video; the track as the source sends it. Raises StreamError."""
        ...

    async def read(self) -> SourceChunk:
        """The next packets; raises StreamError when the source is lost or ends."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class UpstreamTimeouts:
    """How long each step may take before the camera counts as lost."""

    connect_s: float = 5.0
    response_s: float = 10.0
    #: no packet at all for this long ends the session
    idle_s: float = 10.0
    #: used when the camera's Session header names no timeout
    default_session_timeout_s: float = 60.0


@dataclass
class _Response:
    status: int
    reason: str
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None


@dataclass(frozen=True)
class SdpVideo:
    """The video section of a camera's SDP."""

    codec: Codec
    payload_type: int
    clock_rate: int
    control: str
    fmtp: dict[str, str]
    parameter_sets: tuple[bytes, ...]


def parse_sdp(text: str) -> SdpVideo:
    """The first H.264 or H.265 video section of an SDP; StreamError when there is none."""
    session_control = ""
    sections: list[list[str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
        elif line.startswith("a=control:"):
            session_control = line[len("a=control:") :]
    for section in sections:
        media = section[0][2:].split()
        if not media or media[0] != "video" or len(media) < 4:
            continue
        rtpmaps: dict[int, tuple[str, int]] = {}
        fmtps: dict[int, dict[str, str]] = {}
        control = session_control
        for line in section[1:]:
            if line.startswith("a=rtpmap:"):
                pt, _, enc = line[len("a=rtpmap:") :].partition(" ")
                name, _, rest = enc.partition("/")
                rate = rest.split("/")[0]
                if pt.isdigit() and rate.isdigit():
                    rtpmaps[int(pt)] = (name.upper(), int(rate))
            elif line.startswith("a=fmtp:"):
                pt, _, params = line[len("a=fmtp:") :].partition(" ")
                if pt.isdigit():
                    fmtps[int(pt)] = _parse_fmtp(params)
            elif line.startswith("a=control:"):
                control = line[len("a=control:") :]
        for fmt in media[3:]:
            if not fmt.isdigit() or int(fmt) not in rtpmaps:
                continue
            encoding, clock_rate = rtpmaps[int(fmt)]
            codec = _SDP_CODECS.get(encoding)
            if codec is None:
                continue
            fmtp = fmtps.get(int(fmt), {})
            return SdpVideo(
                codec=codec,
                payload_type=int(fmt),
                clock_rate=clock_rate,
                control=control,
                fmtp=fmtp,
                parameter_sets=_sprop_parameter_sets(codec, fmtp),
            )
    raise StreamError("the camera's SDP has no H.264 or H.265 video track")


def _parse_fmtp(params: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in params.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key:
            out[key.strip().lower()] = value.strip()
    return out


def _b64(value: str) -> bytes:
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4))
    except ValueError:
        return b""


def _sprop_parameter_sets(codec: Codec, fmtp: dict[str, str]) -> tuple[bytes, ...]:
    if codec == "h264":
        units = [_b64(v) for v in fmtp.get("sprop-parameter-sets", "").split(",") if v]
    else:
        units = [
            _b64(v)
            for key in ("sprop-vps", "sprop-sps", "sprop-pps")
            for v in fmtp.get(key, "").split(",")
            if v
        ]
    return tuple(u for u in units if u)


def _auth_params(header: str) -> dict[str, str]:
    """The ``key=value`` / ``key="value"`` parameters of a WWW-Authenticate challenge."""
    return {
        m.group(1).lower(): (m.group(2)[1:-1] if m.group(2).startswith('"') else m.group(2))
        for m in re.finditer(r'(\w+)=("[^"]*"|[^,\s]*)', header)
    }


class _Authenticator:
    """Answers a camera's 401 challenge with Basic or Digest (MD5, qop=auth or none)."""

    def __init__(self, user: str, password: str) -> None:
        self.user = user
        self.password = password
        self.scheme: str | None = None
        self.params: dict[str, str] = {}
        self.nc = 0

    def challenge(self, headers: list[str]) -> bool:
        """Take the challenge; False when none can be answered."""
        digest = next((h for h in headers if h.lower().startswith("digest")), None)
        basic = next((h for h in headers if h.lower().startswith("basic")), None)
        if digest is not None:
            self.scheme, self.params, self.nc = "digest", _auth_params(digest[6:]), 0
            return True
        if basic is not None:
            self.scheme = "basic"
            return True
        return False

    def header(self, method: str, uri: str) -> str | None:
        if self.scheme == "basic":
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            return f"Basic {token}"
        if self.scheme != "digest":
            return None
        realm = self.params.get("realm", "")
        nonce = self.params.get("nonce", "")
        ha1 = _md5(f"{self.user}:{realm}:{self.password}")
        ha2 = _md5(f"{method}:{uri}")
        fields = [f'username="{self.user}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"']
        qops = [q.strip() for q in self.params.get("qop", "").split(",") if q.strip()]
        if "auth" in qops:
            self.nc += 1
            nc = f"{self.nc:08x}"
            cnonce = os.urandom(8).hex()
            response = _md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
            fields += ["qop=auth", f"nc={nc}", f'cnonce="{cnonce}"']
        else:
            response = _md5(f"{ha1}:{nonce}:{ha2}")
        fields.append(f'response="{response}"')
        if "opaque" in self.params:
            fields.append(f'opaque="{self.params["opaque"]}"')
        fields.append("algorithm=MD5")
        return "Digest " + ", ".join(fields)


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def redact_url(url: str) -> str:
    """The URL without credentials, for logs and error messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, ""))


class RtspUpstream:
    """An RTSP session with one camera stream, RTP/RTCP interleaved over TCP (:class:`MediaSource`)."""

    def __init__(self, url: str, *, timeouts: UpstreamTimeouts | None = None, label: str = "") -> None:
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("rtsp", "rtsps") or not parts.hostname:
            raise StreamError(f"not an rtsp:// URL: {redact_url(url)}")
        self.url = redact_url(url)
        self.host = parts.hostname
        self.port = parts.port or 554
        self.label = label or self.url
        self.timeouts = timeouts or UpstreamTimeouts()
        user = unquote(parts.username) if parts.username else None
        self._auth = _Authenticator(user, unquote(parts.password or "")) if user is not None else None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._buf = bytearray()
        self._cseq = 0
        self._session: str | None = None
        self._session_timeout_s = self.timeouts.default_session_timeout_s
        self._keepalive_method = "OPTIONS"
        self._next_keepalive = 0.0
        self._rtp_channel = 0
        self._rtcp_channel = 1
        self._early: list[tuple[bytes, bool]] = []
        self._control_url = self.url
        self._play_url = self.url
        self.bytes_in = 0

    async def open(self) -> TrackInfo:
        try:
            async with asyncio.timeout(self.timeouts.connect_s):
                self._reader, self._writer = await asyncio.open_connection(
                    self.host, self.port, limit=_READ_SIZE
                )
        except (OSError, TimeoutError) as err:
            raise StreamError(f"cannot connect to {self.url}: {err or 'timeout'}") from err
        options = await self._request("OPTIONS", self.url)
        public = (options.header("public") or "").upper()
        if "GET_PARAMETER" in public:
            self._keepalive_method = "GET_PARAMETER"
        described = await self._request("DESCRIBE", self.url, {"Accept": "application/sdp"})
        base = described.header("content-base") or described.header("content-location") or self.url
        video = parse_sdp(described.body.decode("utf-8", "replace"))
        self._control_url = _control_url(base, video.control)
        setup = await self._request(
            "SETUP",
            self._control_url,
            {"Transport": f"RTP/AVP/TCP;unicast;interleaved={self._rtp_channel}-{self._rtcp_channel}"},
        )
        session = setup.header("session")
        if not session:
            raise StreamError(f"{self.url}: SETUP answered without a Session")
        self._session, _, rest = session.partition(";")
        self._session = self._session.strip()
        match = re.search(r"timeout=(\d+)", rest)
        if match:
            self._session_timeout_s = max(5.0, float(match.group(1)))
        match = re.search(r"interleaved=(\d+)(?:-(\d+))?", setup.header("transport") or "")
        if match:
            self._rtp_channel = int(match.group(1))
            self._rtcp_channel = int(match.group(2)) if match.group(2) else self._rtp_channel + 1
        await self._request("PLAY", base, {"Range": "npt=0.000-"})
        self._play_url = base
        self._next_keepalive = time.monotonic() + self._session_timeout_s / 2
        return TrackInfo(
            codec=video.codec,
            payload_type=video.payload_type,
            clock_rate=video.clock_rate,
            parameter_sets=video.parameter_sets,
        )

    async def read(self) -> SourceChunk:
        if self._early:
            chunk = SourceChunk(time.monotonic(), self._early)
            self._early = []
            return chunk
        while True:
            await self._receive(self.timeouts.idle_s)
            received_at = time.monotonic()
            packets = self._parse_frames()
            if received_at >= self._next_keepalive:
                self._send_keepalive()
            if packets:
                return SourceChunk(received_at, packets)

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        try:
            if self._session is not None and not writer.is_closing():
                writer.write(self._format("TEARDOWN", self._play_url_or_base(), {}))
                async with asyncio.timeout(1.0):
                    await writer.drain()
        except (OSError, TimeoutError):
            pass
        writer.close()
        try:
            async with asyncio.timeout(1.0):
                await writer.wait_closed()
        except (OSError, TimeoutError):
            pass

    def _play_url_or_base(self) -> str:
        return self._play_url

    # -- wire ------------------------------------------------------------------------------------

    async def _receive(self, wait_s: float) -> None:
        assert self._reader is not None
        try:
            async with asyncio.timeout(wait_s):
                data = await self._reader.read(_READ_SIZE)
        except TimeoutError as err:
            raise StreamError(f"{self.url}: no data for {wait_s:.0f} s") from err
        except OSError as err:
            raise StreamError(f"{self.url}: connection lost: {err}") from err
        if not data:
            raise StreamError(f"{self.url}: the camera closed the connection")
        self.bytes_in += len(data)
        self._buf += data

    def _parse_frames(self) -> list[tuple[bytes, bool]]:
        """Interleaved frames out of the buffer; RTSP responses (keep-alive answers) are consumed."""
        buf = self._buf
        out: list[tuple[bytes, bool]] = []
        pos = 0
        n = len(buf)
        while pos < n:
            if buf[pos] == 0x24:  # '$' channel length16 payload
                if pos + 4 > n:
                    break
                size = (buf[pos + 2] << 8) | buf[pos + 3]
                if pos + 4 + size > n:
                    break
                channel = buf[pos + 1]
                if channel == self._rtp_channel:
                    out.append((bytes(buf[pos + 4 : pos + 4 + size]), False))
                elif channel == self._rtcp_channel:
                    out.append((bytes(buf[pos + 4 : pos + 4 + size]), True))
                pos += 4 + size
            elif (
                buf.startswith(b"RTSP/", pos)
                or buf.startswith(b"ANNOUNCE", pos)
                or buf.startswith(b"GET_PARA", pos)
            ):
                end = buf.find(b"\r\n\r\n", pos)
                if end < 0:
                    if n - pos > _MAX_HEADER:
                        raise StreamError(f"{self.url}: malformed RTSP message")
                    break
                head = bytes(buf[pos:end]).decode("latin-1")
                match = re.search(r"(?im)^content-length:\s*(\d+)", head)
                body = int(match.group(1)) if match else 0
                if end + 4 + body > n:
                    break
                first = head.split("\r\n", 1)[0]
                if first.startswith("RTSP/") and " 200 " not in first + " ":
                    logger.debug("%s keep-alive answered %s", self.label, first)
                pos = end + 4 + body
            else:  # resynchronise on the next '$'
                nxt = buf.find(b"$", pos + 1)
                pos = n if nxt < 0 else nxt
        del buf[:pos]
        return out

    def _send_keepalive(self) -> None:
        self._next_keepalive = time.monotonic() + self._session_timeout_s / 2
        if self._writer is None or self._writer.is_closing():
            return
        method = self._keepalive_method
        self._writer.write(self._format(method, self._play_url_or_base(), {}))

    def _format(self, method: str, url: str, headers: dict[str, str]) -> bytes:
        self._cseq += 1
        lines = [f"{method} {url} RTSP/1.0", f"CSeq: {self._cseq}", f"User-Agent: {USER_AGENT}"]
        if self._auth is not None:
            auth = self._auth.header(method, url)
            if auth:
                lines.append(f"Authorization: {auth}")
        if self._session is not None:
            lines.append(f"Session: {self._session}")
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")

    async def _request(self, method: str, url: str, headers: dict[str, str] | None = None) -> _Response:
        for attempt in range(2):
            assert self._writer is not None
            self._writer.write(self._format(method, url, headers or {}))
            try:
                async with asyncio.timeout(self.timeouts.response_s):
                    await self._writer.drain()
                    response = await self._read_response()
            except TimeoutError as err:
                raise StreamError(f"{self.url}: no answer to {method}") from err
            except OSError as err:
                raise StreamError(f"{self.url}: connection lost during {method}: {err}") from err
            if response.status == 401 and attempt == 0 and self._auth is not None:
                if self._auth.challenge(response.headers.get("www-authenticate", [])):
                    continue
            if response.status == 401:
                raise StreamError(f"{self.url}: the camera refused the credentials (401 on {method})")
            if response.status >= 300:
                raise StreamError(f"{self.url}: {method} answered {response.status} {response.reason}")
            return response
        raise StreamError(f"{self.url}: {method} failed")  # pragma: no cover - the loop returns or raises

    async def _read_response(self) -> _Response:
        """The next RTSP response; interleaved frames arriving before it are kept for :meth:`read`."""
        while True:
            buf = self._buf
            if buf[:1] == b"$":
                self._early.extend(self._parse_frames_only())
                if buf[:1] == b"$":
                    await self._receive(self.timeouts.response_s)
                    continue
            end = buf.find(b"\r\n\r\n")
            if buf and not buf.startswith(b"RTSP/"[: len(buf)]) and buf[:1] != b"$":
                raise StreamError(f"{self.url}: not an RTSP answer: {bytes(buf[:40])!r}")
            if end >= 0:
                head = bytes(buf[:end]).decode("latin-1")
                lines = head.split("\r\n")
                parts = lines[0].split(" ", 2)
                if len(parts) < 2 or not parts[1].isdigit():
                    raise StreamError(f"{self.url}: malformed status line {lines[0]!r}")
                headers: dict[str, list[str]] = {}
                for line in lines[1:]:
                    name, sep, value = line.partition(":")
                    if sep:
                        headers.setdefault(name.strip().lower(), []).append(value.strip())
                length = int(headers.get("content-length", ["0"])[0] or 0)
                if len(buf) >= end + 4 + length:
                    body = bytes(buf[end + 4 : end + 4 + length])
                    del buf[: end + 4 + length]
                    return _Response(int(parts[1]), parts[2] if len(parts) > 2 else "", headers, body)
            elif len(buf) > _MAX_HEADER:
                raise StreamError(f"{self.url}: RTSP answer too long")
            await self._receive(self.timeouts.response_s)

    def _parse_frames_only(self) -> list[tuple[bytes, bool]]:
        """Whole interleaved frames at the head of the buffer (stops at anything else)."""
        buf = self._buf
        out: list[tuple[bytes, bool]] = []
        pos = 0
        while pos + 4 <= len(buf) and buf[pos] == 0x24:
            size = (buf[pos + 2] << 8) | buf[pos + 3]
            if pos + 4 + size > len(buf):
                break
            channel = buf[pos + 1]
            if channel in (self._rtp_channel, self._rtcp_channel):
                out.append((bytes(buf[pos + 4 : pos + 4 + size]), channel == self._rtcp_channel))
            pos += 4 + size
        del buf[:pos]
        return out


def _control_url(base: str, control: str) -> str:
    """The URL a SETUP/PLAY goes to: an absolute control, the base for ``*``, else base + control."""
    if not control or control == "*":
        return base
    if control.lower().startswith("rtsp://") or control.lower().startswith("rtsps://"):
        return control
    return base + ("" if base.endswith("/") else "/") + control
