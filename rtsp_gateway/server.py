"""The RTSP 1.0 server facing viewers (RFC 2326, as VLC, ffmpeg, GStreamer's rtspsrc and NVRs speak it).

``rtsp://HOST:PORT/cameras/{id}`` (``/sub`` for the sub-stream) and ``/replay/{name}``: OPTIONS, DESCRIBE
(an SDP built from the hub's track, naming no upstream address), SETUP (RTP/AVP/TCP interleaved), PLAY
(with RTP-Info), PAUSE, TEARDOWN, GET_PARAMETER/SET_PARAMETER/OPTIONS keep-alives; pipelined requests are
answered in order. Every camera request is authenticated (Digest; Basic where configured) and authorised
by the access policy; an unknown or forbidden camera is 404 either way.

Media: a playing session hands the hub a sink (``Subscription.deliver_to``); the hub calls it with each
batch inside its fan-out and the sink writes the batch's ``$``-framed bytes (made once per batch for all
viewers on the same channels) to the viewer's transport: one write per viewer per upstream read, no task
wake-up, no await. When a viewer stops reading, its unsent bytes pass ``viewer_buffer_bytes``, the sink
refuses the batch, and the hub skips that viewer to a later keyframe or ends it: it never holds back the
others. One small task per session waits for the subscription's end (``Subscription.ended``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Protocol, cast
from urllib.parse import urlsplit

from models.identity.access import AccessScope
from models.identity.stream_guard import END_MESSAGES
from models.identity.users import Credential
from rtsp_gateway.digest import Authenticator, AuthResult, answer_username
from rtsp_gateway.media import (
    Hub,
    HubLimit,
    NoSuchStream,
    RtpPacket,
    SlowConsumer,
    StreamKind,
    Subscription,
    TrackInfo,
    UpstreamGone,
)
from rtsp_gateway.sessions import ViewerSession, ViewerSessions, new_session_id
from rtsp_gateway.settings import GatewaySettings

logger = logging.getLogger(__name__)

SERVER = "GridPatrol"
METHODS = ("OPTIONS", "DESCRIBE", "SETUP", "PLAY", "PAUSE", "TEARDOWN", "GET_PARAMETER", "SET_PARAMETER")
#: the one track of every stream
TRACK = "trackID=0"
#: pipelined requests queued on one connection before it is closed
MAX_PENDING_REQUESTS = 32
#: how long PLAY waits for the first keyframe before answering
FIRST_PACKET_TIMEOUT_S = 15.0
REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Request Entity Too Large",
    451: "Parameter Not Understood",
    453: "Not Enough Bandwidth",
    454: "Session Not Found",
    455: "Method Not Valid in This State",
    459: "Aggregate Operation Not Allowed",
    461: "Unsupported Transport",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "RTSP Version Not Supported",
}
_PATH = re.compile(
    r"^/(?:cameras/(?P<cam>\d{1,12})(?P<sub>/sub)?|replay/(?P<replay>[A-Za-z0-9_.-]{1,64}))(?P<track>/trackID=\d+)?/?$"
)


@dataclass(frozen=True)
class Target:
    """What a request URL names: a camera stream or a replay, and whether it names the track."""

    camera_id: int | None
    stream: StreamKind
    replay: str | None
    track: str | None

    @property
    def key(self) -> tuple[int | None, str, str | None]:
        return (self.camera_id, self.stream, self.replay)

    @property
    def path(self) -> str:
        if self.replay is not None:
            return f"/replay/{self.replay}"
        return f"/cameras/{self.camera_id}" + ("/sub" if self.stream == "sub" else "")


def parse_target(url: str) -> Target | None:
    """The target of an RTSP request URL (absolute ``rtsp://`` or a bare path); None: nothing served there."""
    try:
        path = urlsplit(url).path if "://" in url else url.split("?", 1)[0]
    except ValueError:
        return None
    m = _PATH.match(path)
    if m is None:
        return None
    track = m.group("track")
    track = track[1:] if track else None
    if track is not None and track != TRACK:
        return None
    if m.group("replay"):
        return Target(camera_id=None, stream="main", replay=m.group("replay"), track=track)
    return Target(
        camera_id=int(m.group("cam")), stream="sub" if m.group("sub") else "main", replay=None, track=track
    )


@dataclass
class Request:
    method: str
    url: str
    version: str
    headers: dict[str, str]
    body: bytes

    @property
    def cseq(self) -> str | None:
        return self.headers.get("cseq")


class RtspError(Exception):
    """Answer the request with this status (and reason phrase) instead."""

    def __init__(
        self, status: int, reason: str | None = None, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(reason or REASONS.get(status, "Error"))
        self.status = status
        self.reason = reason
        self.headers = headers or {}


def build_sdp(info: TrackInfo, *, session_id: str, server_addr: str) -> str:
    """The SDP a viewer gets: the hub's codec parameters, never the camera's address or credentials."""
    family = "IP6" if ":" in server_addr else "IP4"
    encoding = "H264" if info.codec == "h264" else "H265"
    lines = [
        "v=0",
        f"o=- {int(session_id[:8], 16)} 1 IN {family} {server_addr}",
        f"s={SERVER}",
        f"c=IN {family} {'::' if family == 'IP6' else '0.0.0.0'}",
        "t=0 0",
        "a=control:*",
        "a=range:npt=now-",
        "a=recvonly",
        f"m=video 0 RTP/AVP {info.payload_type}",
        f"a=rtpmap:{info.payload_type} {encoding}/{info.clock_rate}",
    ]
    if info.fmtp:
        lines.append(f"a=fmtp:{info.payload_type} {info.fmtp}")
    if info.width and info.height:
        lines.append(f"a=x-dimensions:{info.width},{info.height}")
    lines.append(f"a=control:{TRACK}")
    return "\r\n".join(lines) + "\r\n"


def parse_transport(value: str) -> tuple[int, int] | None:
    """The interleaved channels of the first TCP transport offered (0-1 when unnamed); None: no TCP offer."""
    for spec in value.split(","):
        parts = [p.strip() for p in spec.split(";")]
        if not parts or parts[0].upper() != "RTP/AVP/TCP":
            continue
        if any(p.lower() == "multicast" for p in parts[1:]):
            continue
        for p in parts[1:]:
            if p.lower().startswith("interleaved="):
                try:
                    lo, _, hi = p.split("=", 1)[1].partition("-")
                    rtp = int(lo)
                    rtcp = int(hi) if hi else rtp + 1
                except ValueError:
                    return None
                if not (0 <= rtp <= 255 and 0 <= rtcp <= 255):
                    return None
                return rtp, rtcp
        return 0, 1
    return None


class FailedLogins:
    """Refused answers per client address in a sliding window: past ``limit`` the address is answered
    401 without a check until the window passes (online password guessing costs minutes per guess batch)."""

    def __init__(self, *, limit: int, window_s: float = 300.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._times: dict[str, deque[float]] = {}

    def _recent(self, addr: str) -> deque[float]:
        times = self._times.get(addr)
        if times is None:
            times = self._times[addr] = deque()
        cutoff = time.monotonic() - self.window_s
        while times and times[0] < cutoff:
            times.popleft()
        return times

    def blocked(self, addr: str) -> bool:
        if addr not in self._times:
            return False
        times = self._recent(addr)
        if not times:
            del self._times[addr]
        return len(times) >= self.limit

    def failed(self, addr: str) -> None:
        self._recent(addr).append(time.monotonic())


class FrameCache:
    """The interleaved (``$``-framed) bytes of a hub batch, made once and shared by every viewer that gets
    the same batch: viewers that keep up all get each upstream chunk as the same batch, so fan-out costs
    one ``write`` per viewer and no per-packet work. Entries hold the batch's first and last payload
    objects, so an id is never reused while its entry lives."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[int, int, int, int, int], tuple[bytes, bytes, bytes]] = OrderedDict()

    def framed(self, batch: list[RtpPacket], rtp_ch: int, rtcp_ch: int) -> bytes:
        if not batch:
            return b""
        first, last = batch[0].data, batch[-1].data
        key = (id(first), id(last), len(batch), rtp_ch, rtcp_ch)
        hit = self._entries.get(key)
        if hit is not None and hit[0] is first and hit[1] is last:
            return hit[2]
        parts: list[bytes] = []
        for pkt in batch:
            data = pkt.data
            n = len(data)
            parts.append(bytes((0x24, rtcp_ch if pkt.rtcp else rtp_ch, n >> 8, n & 0xFF)))
            parts.append(data)
        framed = b"".join(parts)
        self._entries[key] = (first, last, framed)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return framed


#: what a method handler gives back: extra headers, body, and what to do once the answer is written
Handled = tuple[dict[str, str], bytes, Callable[[], None] | None]


def batches_of(sub: Subscription) -> AsyncIterator[list[RtpPacket]]:
    """The subscription's packets in batches (its own ``batches()`` when it has one)."""
    own = getattr(sub, "batches", None)
    if own is not None:
        return cast(AsyncIterator[list[RtpPacket]], own().__aiter__())

    async def singles() -> AsyncIterator[list[RtpPacket]]:
        async for pkt in sub.packets():
            yield [pkt]

    return singles()


class SinkSubscription(Protocol):
    """What the server needs of a subscription beyond :class:`Subscription`: delivery into a sink called
    from the hub's fan-out (False = could not take it: an overflow), and the wait for its end."""

    def deliver_to(self, sink: Callable[[list[RtpPacket]], bool]) -> None: ...

    async def ended(self) -> None: ...


class RtspServer:
    """Accepts viewer connections and serves them from the hub."""

    def __init__(
        self,
        hub: Hub,
        *,
        authenticator: Authenticator,
        sessions: ViewerSessions,
        settings: GatewaySettings,
    ) -> None:
        self.hub = hub
        self.auth = authenticator
        self.sessions = sessions
        self.settings = settings
        self.connections: set[RtspConnection] = set()
        #: every connection's request task, until it has written its session's end
        self.tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._reaper: asyncio.Task[None] | None = None
        self.bytes_out = 0
        self.auth_failures = 0
        self.frames = FrameCache()
        self.failed_logins = FailedLogins(limit=settings.failed_logins_per_address)

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, *, sock: socket.socket | None = None) -> RtspServer:
        loop = asyncio.get_running_loop()
        if sock is not None:
            self._server = await loop.create_server(lambda: RtspConnection(self), sock=sock)
        else:
            self._server = await loop.create_server(
                lambda: RtspConnection(self), self.settings.host, self.settings.port, reuse_address=True
            )
        self.sessions.start()
        self._reaper = asyncio.create_task(self._reap(), name="rtsp-session-timeouts")
        for s in self._server.sockets:
            logger.info("rtsp gateway on rtsp://%s:%d", *s.getsockname()[:2])
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._reaper is not None:
            self._reaper.cancel()
        for conn in list(self.connections):
            conn.close("server_stopped")
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=10)
        await self.sessions.stop()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _reap(self) -> None:
        """End the sessions nothing was heard from for the session timeout (RTCP and keep-alives count)."""
        timeout = self.settings.session_timeout_s
        while True:
            await asyncio.sleep(min(5.0, timeout / 4))
            now = time.monotonic()
            for conn in list(self.connections):
                if now - conn.last_heard > (timeout if conn.session_id else max(timeout, 60)):
                    conn.close("timeout")


class RtspConnection(asyncio.Protocol):
    """One viewer connection: its request parser, its one session, and the media pump."""

    def __init__(self, server: RtspServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.remote_addr = ""
        self.local_addr = "0.0.0.0"
        self._buf = bytearray()
        self._requests: asyncio.Queue[Request | None] = asyncio.Queue()
        self._handler: asyncio.Task[None] | None = None
        self.last_heard = time.monotonic()
        # authentication of this connection (the last header that passed, and who it was)
        self._auth_header: str | None = None
        self._credential: Credential | None = None
        self._username = ""
        # the one session: target, subscription, channels, state
        self.session_id: str | None = None
        self._target: Target | None = None
        self._scope: AccessScope | None = None
        self._sub: Subscription | None = None
        self._channels: tuple[int, int] = (0, 1)
        self._setup_done = False
        self._playing = False
        self._viewer: ViewerSession | None = None
        #: waits for the subscription's end once the hub delivers to this connection's sink
        self._watch: asyncio.Task[None] | None = None
        # media held back until the PLAY answer is written, then flushed before the next batch
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._flush_pending = False
        #: media held back until the PLAY answer is written
        self._hold = False
        self._start: asyncio.Future[RtpPacket] | None = None
        self._started_once = False
        self._closed = False

    # --- transport callbacks ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        sockname = transport.get_extra_info("sockname")
        self.remote_addr = str(peer[0]) if peer else ""
        self.local_addr = str(sockname[0]) if sockname else "0.0.0.0"
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport.set_write_buffer_limits(high=self.server.settings.viewer_buffer_bytes)
        if len(self.server.connections) >= self.server.settings.max_connections:
            self.transport.write(b"RTSP/1.0 503 Service Unavailable\r\nServer: GridPatrol\r\n\r\n")
            self.transport.close()
            self._closed = True
            return
        self.server.connections.add(self)
        self._handler = asyncio.create_task(self._serve(), name=f"rtsp-conn-{self.remote_addr}")
        self.server.tasks.add(self._handler)
        self._handler.add_done_callback(self.server.tasks.discard)

    def data_received(self, data: bytes) -> None:
        self.last_heard = time.monotonic()
        self._buf += data
        self._parse()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self.server.connections.discard(self)
        self._requests.put_nowait(None)
        if self._watch is not None:
            self._watch.cancel()

    def close(self, reason: str) -> None:
        """End the connection (and its session, with ``reason`` in the access log)."""
        if self._viewer is not None and self._viewer.end_reason is None:
            self._viewer.end_reason = reason
        if self.transport is not None and not self.transport.is_closing():
            self._hold = False
            self._flush()
            self.transport.close()

    # --- parsing ---------------------------------------------------------------------------------
    def _parse(self) -> None:
        buf = self._buf
        limit = self.server.settings.max_request_bytes
        while buf and not self._closed:
            if buf[0] == 0x24:  # '$': interleaved data from the viewer (RTCP receiver reports): liveness only
                if len(buf) < 4:
                    return
                size = 4 + int.from_bytes(buf[2:4], "big")
                if len(buf) < size:
                    return
                del buf[:size]
                continue
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > limit:
                    self._refuse(413)
                return
            head = bytes(buf[:end]).decode("utf-8", errors="replace")
            lines = head.split("\r\n")
            while lines and not lines[0]:  # stray CRLF between requests
                lines.pop(0)
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError:
                length = -1
            if length < 0 or end + 4 + length > limit:
                self._refuse(413 if length >= 0 else 400, cseq=headers.get("cseq"))
                return
            if len(buf) < end + 4 + length:
                return
            body = bytes(buf[end + 4 : end + 4 + length])
            del buf[: end + 4 + length]
            parts = lines[0].split(" ") if lines else []
            if len(parts) != 3:
                self._refuse(400, cseq=headers.get("cseq"))
                return
            if self._requests.qsize() >= MAX_PENDING_REQUESTS:
                self._refuse(503, cseq=headers.get("cseq"))
                return
            self._requests.put_nowait(Request(parts[0].upper(), parts[1], parts[2], headers, body))

    def _refuse(self, status: int, *, cseq: str | None = None) -> None:
        """Answer a request that cannot be parsed or is too large, and close: the stream is out of step."""
        self._write_response(status, cseq=cseq, headers={})
        self.close("bad_request")
        self._closed = True

    # --- requests --------------------------------------------------------------------------------
    async def _serve(self) -> None:
        try:
            while True:
                req = await self._requests.get()
                if req is None or self._closed:
                    break
                await self._handle(req)
        except Exception:
            logger.exception("rtsp connection from %s failed", self.remote_addr)
            self.close("error")
        finally:
            await self._end_session(
                self._viewer.end_reason if self._viewer and self._viewer.end_reason else "closed"
            )

    async def _handle(self, req: Request) -> None:
        if req.cseq is None:
            self._write_response(400, cseq=None, headers={})
            return
        if req.version != "RTSP/1.0":
            self._write_response(505, cseq=req.cseq, headers={})
            return
        handler = getattr(self, f"_on_{req.method.lower()}", None) if req.method in METHODS else None
        extra: dict[str, str] = {}
        body = b""
        try:
            if handler is None:
                status = 405 if req.method in ("ANNOUNCE", "RECORD", "REDIRECT") else 501
                raise RtspError(status, headers={"Allow": ", ".join(METHODS)} if status == 405 else None)
            self._touch(req)
            extra, body, after = await handler(req)
            status, reason = 200, None
        except RtspError as err:
            status, reason, extra, after = err.status, err.reason, err.headers, None
        self._write_response(status, cseq=req.cseq, headers=extra, body=body, reason=reason)
        if after is not None:
            after()

    def _touch(self, req: Request) -> None:
        sid = req.headers.get("session", "").split(";", 1)[0].strip()
        if sid and sid == self.session_id:
            self.last_heard = time.monotonic()

    def _write_response(
        self,
        status: int,
        *,
        cseq: str | None,
        headers: dict[str, str],
        body: bytes = b"",
        reason: str | None = None,
    ) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        phrase = (reason or REASONS.get(status, "Error")).replace("\r", " ").replace("\n", " ")
        lines = [f"RTSP/1.0 {status} {phrase}"]
        if cseq is not None:
            lines.append(f"CSeq: {cseq}")
        lines.append(f"Server: {SERVER}")
        for name, value in headers.items():
            if name == "WWW-Authenticate":
                lines.extend(f"{name}: {v}" for v in value.split("\n"))
            else:
                lines.append(f"{name}: {value}")
        if body:
            lines.append(f"Content-Length: {len(body)}")
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    # --- authentication and authorisation ------------------------------------------------------
    async def _authenticate(self, req: Request) -> Credential:
        header = req.headers.get("authorization")
        if header and header == self._auth_header and self._credential is not None:
            return self._credential
        if self._credential is not None and (
            (header is None and self.session_id is not None)
            or (header and answer_username(header) == self._username)
        ):
            # this connection proved who it is once (the next answers differ only by URI and nonce count);
            # the session's re-checks catch a credential that stops holding
            return self._credential
        guard = self.server.failed_logins
        if header and guard.blocked(self.remote_addr):  # password guessing: no more checks for a while
            result = AuthResult(None)
        else:
            result = await asyncio.to_thread(self.server.auth.authenticate, header, method=req.method)
        if result.credential is None:
            if header and not result.stale:
                self.server.auth_failures += 1
                guard.failed(self.remote_addr)
                logger.info("rtsp %s from %s: authentication refused", req.method, self.remote_addr)
            challenges = "\n".join(self.server.auth.challenges(stale=result.stale))
            raise RtspError(401, headers={"WWW-Authenticate": challenges})
        if self._credential is not None and result.credential.user_id != self._credential.user_id:
            raise RtspError(455, "one user per connection")
        self._auth_header, self._credential, self._username = header, result.credential, result.username
        return result.credential

    def _target_of(self, req: Request) -> Target:
        target = parse_target(req.url)
        if target is None:
            raise RtspError(404)
        return target

    async def _authorize(self, credential: Credential, target: Target) -> AccessScope:
        scope = await asyncio.to_thread(self.server.sessions.authorize, credential, target.camera_id)
        if scope is None:
            raise RtspError(404)
        return scope

    async def _subscribe(self, target: Target, credential: Credential) -> Subscription:
        hub = self.server.hub
        try:
            if target.replay is not None:
                return await hub.subscribe_replay(target.replay, user_id=credential.user_id, consumer="rtsp")
            assert target.camera_id is not None
            return await self.server.hub.subscribe(
                target.camera_id, stream=target.stream, user_id=credential.user_id, consumer="rtsp"
            )
        except NoSuchStream as err:
            raise RtspError(404) from err
        except HubLimit as err:
            raise RtspError(453, str(err)) from err
        except UpstreamGone as err:
            logger.warning("camera %s: %s: viewer %s refused", target.camera_id, err, self.remote_addr)
            raise RtspError(503, "camera unavailable") from err

    async def _prepare(self, req: Request, target: Target) -> Subscription:
        """Authenticate, authorise and subscribe (once per connection and target)."""
        credential = await self._authenticate(req)
        if self._sub is not None and self._target is not None:
            if self._target.key == target.key:
                return self._sub
            if self._setup_done:
                raise RtspError(459)  # one stream per session
            self._sub.close()
            self._sub = None
        self._scope = await self._authorize(credential, target)
        self._sub = await self._subscribe(target, credential)
        self._target = target
        if self._closed:  # the viewer left while the upstream opened
            self._sub.close()
            raise RtspError(503)
        return self._sub

    def _base_url(self, req: Request, target: Target) -> str:
        parts = urlsplit(req.url)
        host = parts.netloc.rsplit("@", 1)[-1] if parts.netloc else f"{self.local_addr}:{self.server.port}"
        return f"rtsp://{host}{target.path}/"

    # --- methods ---------------------------------------------------------------------------------
    async def _on_options(self, req: Request) -> Handled:
        return {"Public": ", ".join(METHODS)}, b"", None

    async def _on_get_parameter(self, req: Request) -> Handled:
        self._check_session(req, required=False)
        return self._session_header(), b"", None

    async def _on_set_parameter(self, req: Request) -> Handled:
        self._check_session(req, required=False)
        if req.body.strip():
            raise RtspError(451)
        return self._session_header(), b"", None

    async def _on_describe(self, req: Request) -> Handled:
        target = self._target_of(req)
        if target.track is not None:
            raise RtspError(404)
        accept = req.headers.get("accept", "application/sdp")
        if "application/sdp" not in accept and "*/*" not in accept:
            raise RtspError(406, "only application/sdp")
        sub = await self._prepare(req, target)
        sdp = build_sdp(sub.info, session_id=self.session_id or new_session_id(), server_addr=self.local_addr)
        headers = {"Content-Type": "application/sdp", "Content-Base": self._base_url(req, target)}
        return headers, sdp.encode(), None

    async def _on_setup(self, req: Request) -> Handled:
        target = self._target_of(req)
        if self.session_id is not None:
            self._check_session(req, required=True)
            if self._target is not None and self._target.key != target.key:
                raise RtspError(459)
        transport = req.headers.get("transport", "")
        channels = parse_transport(transport)
        if channels is None:
            raise RtspError(461, headers={"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"})
        sub = await self._prepare(req, target)
        if self._playing:
            raise RtspError(455)
        self._channels = channels
        self._setup_done = True
        if self.session_id is None:
            self.session_id = new_session_id()
        ssrc = sub.info.ssrc
        spec = f"RTP/AVP/TCP;unicast;interleaved={channels[0]}-{channels[1]}" + (
            f";ssrc={ssrc:08X}" if ssrc else ""
        )
        return {"Transport": spec, **self._session_header()}, b"", None

    async def _on_play(self, req: Request) -> Handled:
        self._check_session(req, required=True)
        target = self._target_of(req)
        if not self._setup_done or self._sub is None or self._target is None:
            raise RtspError(455)
        if target.key != self._target.key:
            raise RtspError(459)
        credential = await self._authenticate(req)
        if self._viewer is None:
            assert self._scope is not None and self.session_id is not None
            guard = self.server.sessions.guard(
                credential, scope=self._scope, camera_id=self._target.camera_id, remote_addr=self.remote_addr
            )
            self._viewer = ViewerSession(
                id=self.session_id,
                credential=credential,
                username=self._username,
                camera_id=self._target.camera_id,
                stream=self._target.stream
                if self._target.replay is None
                else f"replay:{self._target.replay}",
                remote_addr=self.remote_addr,
                guard=guard,
                cut=self.close,
            )
            await self.server.sessions.open(self._viewer)
        if self._playing:
            return {**self._session_header(), "Range": "npt=now-"}, b"", None
        first = await self._first_packet()
        base = self._base_url(req, self._target)
        seq = int.from_bytes(first.data[2:4], "big")
        rtptime = int.from_bytes(first.data[4:8], "big")
        headers = {
            **self._session_header(),
            "Range": "npt=now-",
            "RTP-Info": f"url={base}{TRACK};seq={seq};rtptime={rtptime}",
        }

        def release() -> None:  # the answer is out: the held media may follow
            self._hold = False
            self._schedule_flush()

        return headers, b"", release

    async def _first_packet(self) -> RtpPacket:
        """The packet PLAY starts from (a keyframe's first RTP packet; its seq and time go in RTP-Info).
        The sink finds it and holds the media until the PLAY answer is written."""
        loop = asyncio.get_running_loop()
        self._start = loop.create_future()
        self._hold = True
        if self._watch is None:
            assert self._sub is not None
            name = f"rtsp-session-{self.session_id}"
            if hasattr(self._sub, "deliver_to"):
                sub = cast(SinkSubscription, self._sub)
                self._watch = asyncio.create_task(self._watch_end(sub.ended), name=name)
                sub.deliver_to(self._deliver)  # the queued GOP comes at once, into the held buffer
            else:
                self._watch = asyncio.create_task(self._watch_end(partial(self._pull, self._sub)), name=name)
        try:
            return await asyncio.wait_for(asyncio.shield(self._start), timeout=FIRST_PACKET_TIMEOUT_S)
        except (TimeoutError, UpstreamGone, SlowConsumer) as err:
            self._hold = False
            raise RtspError(503, "camera unavailable") from err
        finally:
            self._start = None

    async def _on_pause(self, req: Request) -> Handled:
        self._check_session(req, required=True)
        if not self._setup_done:
            raise RtspError(455)
        self._playing = False
        return self._session_header(), b"", None

    async def _on_teardown(self, req: Request) -> Handled:
        self._check_session(req, required=True)
        await self._end_session("teardown")
        return {}, b"", None

    def _check_session(self, req: Request, *, required: bool) -> None:
        sid = req.headers.get("session", "").split(";", 1)[0].strip()
        if not sid:
            if required:
                raise RtspError(454)
            return
        if sid != self.session_id:
            raise RtspError(454)

    def _session_header(self) -> dict[str, str]:
        if self.session_id is None:
            return {}
        return {"Session": f"{self.session_id};timeout={self.server.settings.session_timeout_s}"}

    # --- media -----------------------------------------------------------------------------------
    def _deliver(self, batch: list[RtpPacket]) -> bool:
        """The hub's sink (called inside its fan-out, so a failure here ends this viewer, not the fan-out)."""
        try:
            return self._take(batch)
        except Exception:
            logger.exception("rtsp session %s: delivery to %s failed", self.session_id, self.remote_addr)
            self.close("error")
            return True

    def _take(self, batch: list[RtpPacket]) -> bool:
        """Write the batch to this viewer at once. False when the viewer's unsent bytes are over
        ``viewer_buffer_bytes``: the hub counts an overflow (skip to the next keyframe, then SlowConsumer).
        Paused, or waiting for a keyframe to resume at: dropped, True."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return True  # the connection is ending; its session closes the subscription
        if not self._playing:
            start = self._start
            if start is None or start.done():
                return True  # paused: keep the hub's fan-out moving
            resume = self._started_once
            at = next((i for i, p in enumerate(batch) if not p.rtcp and (p.keyframe or not resume)), None)
            if at is None:
                return True
            start.set_result(batch[at])
            self._playing = self._started_once = True
            if at:
                batch = batch[at:]
        limit = self.server.settings.viewer_buffer_bytes
        rtp_ch, rtcp_ch = self._channels
        if self._hold:  # the PLAY answer is not out yet
            if self._out_bytes > limit:
                return False
            framed = self.server.frames.framed(batch, rtp_ch, rtcp_ch)
            self._out.append(framed)
            self._out_bytes += len(framed)
            return True
        if transport.get_write_buffer_size() > limit:
            return False
        if self._out:
            self._flush()
        self._write(self.server.frames.framed(batch, rtp_ch, rtcp_ch))
        return True

    async def _pull(self, sub: Subscription) -> None:
        """Delivery for a subscription without ``deliver_to`` (the ``Hub`` protocol's minimum): pull its
        batches into the same sink; a refused batch skips this viewer to the next keyframe, as the hub does."""
        skipping = False
        async for batch in batches_of(sub):
            if skipping:
                at = next((i for i, p in enumerate(batch) if p.keyframe), None)
                if at is None:
                    continue
                batch = batch[at:]
            skipping = not self._deliver(batch)

    async def _watch_end(self, ended: Callable[[], Awaitable[None]]) -> None:
        """Wait for the hub to end the subscription, then end the connection with the reason."""
        reason = "upstream_ended"
        try:
            await ended()
        except UpstreamGone as err:
            reason = "upstream_gone"
            self._fail_start(err)
        except SlowConsumer as err:
            reason = "slow_consumer"
            self._fail_start(err)
        except asyncio.CancelledError:
            return
        else:
            self._fail_start(UpstreamGone("the stream ended"))
        cam = self._target.camera_id if self._target else None
        logger.info("camera %s: rtsp session %s ends: %s", cam, self.session_id, reason)
        self.close(reason)

    def _fail_start(self, err: Exception) -> None:
        if self._start is not None and not self._start.done():
            self._start.set_exception(err)

    def _schedule_flush(self) -> None:
        if not self._flush_pending:
            self._flush_pending = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        out = self._out
        if not out or self._hold:
            return
        self._out = []
        self._out_bytes = 0
        if self.transport is None or self.transport.is_closing():
            return
        self._write(b"".join(out))

    def _write(self, chunk: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing() or not chunk:
            return
        transport.write(chunk)
        self.server.bytes_out += len(chunk)
        if self._viewer is not None:
            self._viewer.bytes_sent += len(chunk)

    async def _end_session(self, reason: str) -> None:
        watch, self._watch = self._watch, None
        if watch is not None and watch is not asyncio.current_task():
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
        if self._sub is not None:
            self._sub.close()
            self._sub = None
        viewer, self._viewer = self._viewer, None
        self._playing = self._setup_done = False
        self.session_id = None
        self._target = None
        if viewer is not None:
            await self.server.sessions.close(viewer, reason=reason)


__all__ = ["END_MESSAGES", "RtspServer", "Target", "build_sdp", "parse_target", "parse_transport"]
