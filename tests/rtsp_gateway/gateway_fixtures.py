"""Fixtures for the RTSP server's own tests: the server in a thread of its own over a seeded SQLite
database, and a clip hub at the server's seam (the ``Hub`` protocol) that plays a real H.264/H.265
elementary stream as RTP packets, so real clients (ffprobe, PyAV, GStreamer) decode what they get.

Import them from a test module::

    from tests.rtsp_gateway.gateway_fixtures import gateway_db, clip_hub_streams  # noqa: F401
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import pytest
from sqlalchemy.orm import Session, sessionmaker

from models.db.engine import make_engine, make_session_factory, transaction
from models.db.tables import Role
from models.grid.cameras import parse_camera_file, register_cameras
from models.grid.tree import import_grids
from models.identity.users import add_user
from rtsp_gateway.digest import Authenticator, NonceKeeper
from rtsp_gateway.media import Codec, HubLimit, NoSuchStream, RtpPacket, StreamKind, TrackInfo
from rtsp_gateway.rtp import Packetizer, parameter_set_kind, sdp_fmtp, split_annexb
from rtsp_gateway.server import RtspServer
from rtsp_gateway.sessions import ViewerSessions
from rtsp_gateway.settings import GatewaySettings
from tests.support import sample
from tests.support.databases import sqlite_copy, sqlite_template
from tests.support.require import require

NONCE_SECRET = b"test nonce secret for the rtsp gateway"


# --- media ---------------------------------------------------------------------------------------
@dataclass
class AccessUnit:
    nals: list[bytes]
    keyframe: bool
    pts_90k: int


def make_elementary(path: Path, *, codec: Codec, seconds: int = 4, size: str = "320x180") -> Path:
    """A testsrc2 elementary stream (Annex B, a keyframe a second, no B-frames) made with ffmpeg."""
    if path.exists():
        return path
    encoder = (
        ["-c:v", "libx264", "-bf", "0"]
        if codec == "h264"
        else ["-c:v", "libx265", "-x265-params", "bframes=0:log-level=error"]
    )
    cmd = [
        "ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25",
        "-t", str(seconds), *encoder, "-pix_fmt", "yuv420p", "-g", "25", "-keyint_min", "25", "-sc_threshold", "0",
        "-f", "h264" if codec == "h264" else "hevc", str(path),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, timeout=120)
    return path


def read_units(path: Path, codec: Codec) -> list[AccessUnit]:
    units: list[AccessUnit] = []
    with av.open(str(path), format="h264" if codec == "h264" else "hevc") as box:
        for i, pkt in enumerate(box.demux(video=0)):
            data = bytes(pkt)
            if data:
                units.append(AccessUnit(split_annexb(data), bool(pkt.is_keyframe), i * 3600))
    return units


class ClipSubscription:
    def __init__(self, hub: ClipHub, camera_id: int, stream: StreamKind, queue_size: int) -> None:
        self.camera_id = camera_id
        self.stream: StreamKind = stream
        self._hub = hub
        self.queue: asyncio.Queue[RtpPacket | None] = asyncio.Queue(maxsize=queue_size)
        self.waiting_keyframe = True
        self.skipped = False
        self.closed = False
        self._bytes = 0

    @property
    def info(self) -> TrackInfo:
        return self._hub.info

    @property
    def bytes_sent(self) -> int:
        return self._bytes

    async def packets(self) -> AsyncIterator[RtpPacket]:
        while True:
            pkt = await self.queue.get()
            if pkt is None:
                return
            self._bytes += len(pkt.data)
            yield pkt

    def offer(self, pkt: RtpPacket) -> None:
        if self.closed:
            return
        if self.waiting_keyframe:
            if not pkt.keyframe:
                return
            self.waiting_keyframe = False
            if self.skipped:
                pkt = RtpPacket(pkt.data, pkt.received_at, keyframe=True, discontinuity=True)
        try:
            self.queue.put_nowait(pkt)
        except asyncio.QueueFull:  # a viewer that does not read: skip it to a later keyframe
            self.waiting_keyframe = self.skipped = True
            self._hub.dropped += 1

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._hub.subscribers.discard(self)
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(None)

    def end(self) -> None:
        """The hub ends this subscription (the stream is over)."""
        self.closed = True
        self._hub.subscribers.discard(self)
        while True:
            try:
                self.queue.put_nowait(None)
                return
            except asyncio.QueueFull:
                self.queue.get_nowait()


@dataclass
class ClipHub:
    """Plays one elementary stream in a loop at 25 fps to every subscriber of cameras ``camera_ids``."""

    codec: Codec
    units: list[AccessUnit]
    camera_ids: set[int]
    viewers_per_camera: int = 64
    queue_size: int = 2000
    subscribers: set[ClipSubscription] = field(default_factory=set)
    subscribe_calls: int = 0
    dropped: int = 0
    _task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        params = tuple(n for n in self.units[0].nals if parameter_set_kind(self.codec, n))
        self.info = TrackInfo(
            codec=self.codec,
            payload_type=96,
            clock_rate=90000,
            parameter_sets=params,
            fmtp=sdp_fmtp(self.codec, params),
            ssrc=0x1234ABCD,
        )

    async def subscribe(
        self, camera_id: int, *, stream: StreamKind = "main", user_id: int | None, consumer: str
    ) -> ClipSubscription:
        if camera_id not in self.camera_ids or stream != "main":
            raise NoSuchStream(f"camera {camera_id} has no {stream} stream")
        if sum(1 for s in self.subscribers if s.camera_id == camera_id) >= self.viewers_per_camera:
            raise HubLimit(
                f"camera {camera_id} already has {self.viewers_per_camera} viewers",
                limit="viewers_per_camera",
            )
        self.subscribe_calls += 1
        sub = ClipSubscription(self, camera_id, stream, self.queue_size)
        self.subscribers.add(sub)
        if self._task is None:
            self._task = asyncio.create_task(self._play())
        return sub

    async def _play(self) -> None:
        pay = Packetizer(self.codec, payload_type=96, ssrc=self.info.ssrc, first_seq=1000)
        ts0 = 0
        loop_len = len(self.units) * 3600
        start = time.monotonic()
        n = 0
        while True:
            for unit in self.units:
                now = time.monotonic()
                for i, data in enumerate(pay.packetize(unit.nals, ts0 + unit.pts_90k)):
                    pkt = RtpPacket(data, now, keyframe=unit.keyframe and i == 0)
                    for sub in list(self.subscribers):
                        sub.offer(pkt)
                n += 1
                await asyncio.sleep(max(0.0, start + n / 25 - time.monotonic()))
            ts0 += loop_len

    def viewers(self) -> int:
        return len(self.subscribers)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def end_all(self) -> None:
        for sub in list(self.subscribers):
            sub.end()


# --- the server in a thread ----------------------------------------------------------------------
class GatewayThread:
    """An event loop in a thread running the RTSP server; ``call`` runs a coroutine function there."""

    def __init__(
        self, hub_factory: Callable[[], Any], factory: sessionmaker[Session], settings: GatewaySettings
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="rtsp-gateway-test", daemon=True)
        self._thread.start()
        self.settings = settings
        self.factory = factory

        async def build() -> tuple[Any, RtspServer]:
            hub = hub_factory()
            auth = Authenticator(
                factory,
                NonceKeeper(NONCE_SECRET, ttl_s=settings.nonce_ttl_s),
                realm=settings.realm,
                allow_basic=settings.allow_basic,
            )
            sessions = ViewerSessions(factory, recheck_s=settings.recheck_s)
            server = RtspServer(hub, authenticator=auth, sessions=sessions, settings=settings)
            await server.start()
            return hub, server

        self.hub, self.server = self.run(build())
        self.port = self.server.port

    def run(self, coro: Any, timeout: float = 30.0) -> Any:
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def url(self, path: str, *, user: str | None = None, password: str | None = None) -> str:
        auth = f"{user}:{password}@" if user is not None else ""
        return f"rtsp://{auth}127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.run(self.server.stop(), timeout=15)
        if hasattr(self.hub, "aclose"):
            with contextlib.suppress(Exception):
                self.run(self.hub.aclose(), timeout=15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


def seed_database(url: str, directory: Path) -> sessionmaker[Session]:
    factory = make_session_factory(make_engine(url))
    grids, cams = sample.write_files(directory)
    with transaction(factory) as session:
        import_grids(session, json.loads(grids.read_text(encoding="utf-8")))
        register_cameras(session, parse_camera_file(cams))
        for username, (role, codes) in sample.USERS.items():
            if username in ("admin1", "leader-g1", "leader-g3"):
                add_user(
                    session, username=username, role=Role(role), password=sample.PASSWORD, grid_codes=codes
                )
    return factory


@pytest.fixture(scope="module")
def gateway_db(tmp_path_factory: pytest.TempPathFactory) -> sessionmaker[Session]:
    """A migrated SQLite database with the sample grids, cameras and three users (admin1, leader-g1, leader-g3)."""
    folder = tmp_path_factory.mktemp("gateway-db")
    return seed_database(sqlite_copy(sqlite_template(folder / "template"), folder), folder)


@pytest.fixture(scope="session")
def elementary_streams(tmp_path_factory: pytest.TempPathFactory) -> dict[Codec, list[AccessUnit]]:
    require(shutil.which("ffmpeg") is not None, "ffmpeg (Debian package ffmpeg)")
    folder = tmp_path_factory.mktemp("es")
    return {
        "h264": read_units(make_elementary(folder / "clip.h264", codec="h264"), "h264"),
        "h265": read_units(make_elementary(folder / "clip.h265", codec="h265"), "h265"),
    }


def camera_ids(factory: sessionmaker[Session]) -> dict[str, int]:
    from sqlalchemy import select

    from models.db.tables import Camera

    with factory() as session:
        return {c.name: c.id for c in session.scalars(select(Camera))}


@contextlib.contextmanager
def running_gateway(
    factory: sessionmaker[Session], hub_factory: Callable[[], Any], **settings: Any
) -> Iterator[GatewayThread]:
    conf = GatewaySettings(port=0, **settings)
    gw = GatewayThread(hub_factory, factory, conf)
    try:
        yield gw
    finally:
        gw.stop()


# --- a raw RTSP client for protocol details real players do not show -----------------------------
@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    #: every WWW-Authenticate value (one header line each)
    challenges: list[str]


class RawClient:
    """A minimal RTSP/1.0 client over one TCP connection: requests, Digest answers, interleaved frames."""

    def __init__(self, port: int, *, timeout: float = 15.0) -> None:
        import socket

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.cseq = 0
        self.frames: list[tuple[int, bytes]] = []
        self.auth: tuple[str, str] | None = None
        self._nonce: str | None = None
        self._realm = ""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def read_frame(self) -> tuple[int, bytes] | None:
        """The next interleaved frame (None: the server closed the connection)."""
        while True:
            if len(self.buf) >= 4 and self.buf[0] == 0x24:
                size = int.from_bytes(self.buf[2:4], "big")
                if len(self.buf) >= 4 + size:
                    frame = (self.buf[1], self.buf[4 : 4 + size])
                    self.buf = self.buf[4 + size :]
                    return frame
            elif self.buf and self.buf[0] != 0x24:
                raise AssertionError(f"expected a frame, got {self.buf[:40]!r}")
            if not self._fill():
                return None

    def read_response(self) -> Response:
        while True:
            while self.buf.startswith(b"$"):
                if len(self.buf) < 4:
                    break
                size = int.from_bytes(self.buf[2:4], "big")
                if len(self.buf) < 4 + size:
                    break
                self.frames.append((self.buf[1], self.buf[4 : 4 + size]))
                self.buf = self.buf[4 + size :]
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0 and not self.buf.startswith(b"$"):
                head = self.buf[:end].decode()
                lines = head.split("\r\n")
                headers: dict[str, str] = {}
                challenges: list[str] = []
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                    if name.strip().lower() == "www-authenticate":
                        challenges.append(value.strip())
                length = int(headers.get("content-length", "0"))
                while len(self.buf) < end + 4 + length:
                    if not self._fill():
                        raise ConnectionError("closed mid-body")
                body = self.buf[end + 4 : end + 4 + length]
                self.buf = self.buf[end + 4 + length :]
                return Response(int(lines[0].split(" ")[1]), headers, body, challenges)
            if not self._fill():
                raise ConnectionError("the server closed the connection")

    def _authorization(self, method: str, url: str) -> str | None:
        import hashlib

        if self.auth is None or self._nonce is None:
            return None
        user, password = self.auth

        def md5(text: str) -> str:
            return hashlib.md5(text.encode()).hexdigest()

        ha1 = md5(f"{user}:{self._realm}:{password}")
        response = md5(f"{ha1}:{self._nonce}:{md5(f'{method}:{url}')}")
        return f'Digest username="{user}", realm="{self._realm}", nonce="{self._nonce}", uri="{url}", response="{response}"'

    def request(
        self, method: str, url: str, headers: dict[str, str] | None = None, *, cseq: bool = True
    ) -> Response:
        """Send one request; answer a Digest challenge once when credentials are set."""
        import re

        for _attempt in range(2):
            self.cseq += 1
            lines = [f"{method} {url} RTSP/1.0"] + ([f"CSeq: {self.cseq}"] if cseq else [])
            lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
            answer = self._authorization(method, url)
            if answer:
                lines.append(f"Authorization: {answer}")
            self.send_raw(("\r\n".join(lines) + "\r\n\r\n").encode())
            resp = self.read_response()
            digest = next((c for c in resp.challenges if c.startswith("Digest")), None)
            retry = resp.status == 401 and self.auth is not None and digest is not None
            if not retry or (answer and "stale=TRUE" not in (digest or "")):
                return resp
            assert digest is not None
            self._nonce = re.search(r'nonce="([^"]+)"', digest).group(1)  # type: ignore[union-attr]
            self._realm = re.search(r'realm="([^"]+)"', digest).group(1)  # type: ignore[union-attr]
        return resp

    def play(self, url: str) -> Response:
        """DESCRIBE, SETUP (TCP interleaved 0-1) and PLAY; returns the PLAY answer."""
        resp = self.request("DESCRIBE", url, {"Accept": "application/sdp"})
        assert resp.status == 200, resp
        resp = self.request("SETUP", f"{url}/trackID=0", {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"})
        assert resp.status == 200, resp
        self.session = resp.headers["session"].split(";")[0]
        return self.request("PLAY", url, {"Session": self.session, "Range": "npt=0.000-"})
