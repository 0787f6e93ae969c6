"""The RTSP gateway process: the media hub and the RTSP server over the same database as the API.

``gridpatrol gateway`` runs it alone; ``gridpatrol serve`` runs it in a thread of its own event loop in
the same process. Camera URLs are decrypted here (the hub's source resolver) and never leave the hub;
viewers' access-change notices reach their sessions through the bus.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy.orm import Session, sessionmaker

from models.bus.protocol import Bus
from models.db.tables import Camera
from models.grid.credentials import CredentialKeyring, CredentialsError, camera_secret
from models.identity.access_changes import AccessChangeWatch
from rtsp_gateway.digest import Authenticator, NonceKeeper
from rtsp_gateway.hub import HubSettings, MediaHub
from rtsp_gateway.media import HubStats, NoSuchStream, StreamKind, UpstreamGone
from rtsp_gateway.server import RtspServer
from rtsp_gateway.sessions import ViewerSessions
from rtsp_gateway.settings import GatewaySettings
from rtsp_gateway.upstream import MediaSource

if TYPE_CHECKING:
    from ingest.gb28181.media import ChannelFeeds

logger = logging.getLogger(__name__)


def camera_source(
    factory: sessionmaker[Session], keyring: CredentialKeyring | None, camera_id: int, stream: StreamKind
) -> str:
    """The decrypted stream URL of a camera (its sub-stream for ``sub``); NoSuchStream when there is
    none. Blocks (database): the hub's resolver runs it in a worker thread."""
    column = "sub_url" if stream == "sub" else "url"
    with factory() as session:
        cam = session.get(Camera, camera_id)
        if cam is None:
            raise NoSuchStream(f"camera {camera_id} does not exist")
        stored = getattr(cam, column)
        name = cam.name
    if not stored:
        raise NoSuchStream(f"camera {camera_id} has no {stream} stream")
    try:
        url = camera_secret(name, column, stored, keyring)
    except CredentialsError as err:
        logger.error("camera %s: %s", camera_id, err)
        raise UpstreamGone(f"camera {camera_id}: its stream URL cannot be decrypted") from err
    if not url:
        raise NoSuchStream(f"camera {camera_id} has no {stream} stream")
    return url


def hub_settings(conf: GatewaySettings) -> HubSettings:
    return HubSettings(
        linger_s=conf.linger_s,
        max_viewers_per_camera=conf.viewers_per_camera,
        max_sessions_per_user=conf.sessions_per_user,
        queue_bytes=conf.viewer_buffer_bytes,
    )


@dataclass(frozen=True)
class GatewaySnapshot:
    hub: HubStats
    sessions: int = 0
    auth_failures: int = 0
    sessions_cut: int = 0


@dataclass
class Gateway:
    """The hub, the RTSP server and the access-change watch of one process, on one event loop."""

    conf: GatewaySettings
    factory: sessionmaker[Session]
    hub: MediaHub
    server: RtspServer
    sessions: ViewerSessions
    bus: Bus | None = None
    watch: AccessChangeWatch | None = field(default=None)
    loop: asyncio.AbstractEventLoop | None = field(default=None)

    def snapshot(self) -> GatewaySnapshot:
        """The figures /metrics shows, read on the gateway's own loop (its dicts change only there)."""

        def read() -> GatewaySnapshot:
            return GatewaySnapshot(
                hub=self.hub.stats(),
                sessions=len(self.sessions),
                auth_failures=self.server.auth_failures,
                sessions_cut=self.sessions.cut_total,
            )

        async def read_there() -> GatewaySnapshot:
            return read()

        loop = self.loop
        if loop is None or loop.is_closed():
            return GatewaySnapshot(hub=HubStats())
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is loop:
            return read()
        return asyncio.run_coroutine_threadsafe(read_there(), loop).result(timeout=5)

    @classmethod
    def build(
        cls,
        conf: GatewaySettings,
        *,
        factory: sessionmaker[Session],
        keyring: CredentialKeyring | None,
        nonce_secret: str,
        bus: Bus | None = None,
        gb_feeds: ChannelFeeds | None = None,
    ) -> Gateway:
        async def resolve(camera_id: int, stream: StreamKind) -> str | MediaSource:
            url = await asyncio.to_thread(camera_source, factory, keyring, camera_id, stream)
            if url.startswith("gb28181://"):  # a GB/T 28181 channel: the platform's shared live feed
                from gridpatrol.gb_source import source_for_url

                return source_for_url(gb_feeds, url, label=f"camera {camera_id} {stream}")
            if url.startswith("file://"):  # a recorded clip registered as a camera (the demo's): looped live
                from rtsp_gateway.replay import ReplaySource

                return ReplaySource(Path(url.removeprefix("file://")), label=f"camera {camera_id} {stream}")
            return url

        hub = MediaHub(resolve, settings=hub_settings(conf), replays=dict(conf.replays))
        secret = conf.nonce_secret.get_secret_value() if conf.nonce_secret else nonce_secret
        auth = Authenticator(
            factory,
            NonceKeeper(secret.encode(), ttl_s=conf.nonce_ttl_s),
            realm=conf.realm,
            allow_basic=conf.allow_basic,
        )
        sessions = ViewerSessions(factory, recheck_s=conf.recheck_s)
        server = RtspServer(hub, authenticator=auth, sessions=sessions, settings=conf)
        return cls(conf=conf, factory=factory, hub=hub, server=server, sessions=sessions, bus=bus)

    async def start(self, *, sock: socket.socket | None = None) -> Gateway:
        self.loop = asyncio.get_running_loop()
        await self.server.start(sock=sock)
        if self.bus is not None:
            self.watch = AccessChangeWatch(self.bus, self.sessions.notify_threadsafe, name="rtsp-access")
            self.watch.start()
        for name, path in sorted(self.conf.replays.items()):
            logger.info("replay %s (%s) at rtsp://HOST:%d/replay/%s", name, path, self.server.port, name)
        return self

    async def stop(self) -> None:
        if self.watch is not None:
            self.watch.stop()
        await self.server.stop()
        await self.hub.close()


def bind_gateway(conf: GatewaySettings) -> socket.socket:
    """Bind the RTSP port first, so that a busy port is one clear error before anything starts."""
    family = socket.AF_INET6 if ":" in conf.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((conf.host, conf.port))
    except OSError:
        sock.close()
        raise
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class GatewayThread:
    """A gateway on an event loop of its own thread (``serve`` runs it beside the API)."""

    def __init__(self, gateway: Gateway, sock: socket.socket) -> None:
        self.gateway = gateway
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="rtsp-gateway", daemon=True)
        self._thread.start()
        self._call(gateway.start(sock=sock))

    def _call(self, coro: Any, timeout: float = 30.0) -> Any:
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def stop(self) -> None:
        try:
            self._call(self.gateway.stop(), timeout=20)
        except Exception:
            logger.exception("rtsp gateway did not stop cleanly")
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)


class GatewayCollector(Collector):
    """Prometheus view of the gateway at scrape time: viewers, upstreams, bytes, drops."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    def register(self, registry: CollectorRegistry) -> GatewayCollector:
        registry.register(self)
        return self

    def collect(self) -> Iterator[Metric]:
        try:
            snap = self._gateway.snapshot()
        except (TimeoutError, RuntimeError) as err:  # a scrape must not fail because the loop is busy
            logger.warning("rtsp gateway metrics unavailable: %s", err)
            return
        stats = snap.hub
        viewers = GaugeMetricFamily(
            "gridpatrol_gateway_viewers", "Live subscribers of the media hub", labels=["consumer"]
        )
        for consumer, n in sorted(stats.viewers.items()):
            viewers.add_metric([consumer], n)
        yield viewers
        sessions = GaugeMetricFamily("gridpatrol_gateway_rtsp_sessions", "RTSP sessions playing")
        sessions.add_metric([], snap.sessions)
        yield sessions
        upstreams = GaugeMetricFamily(
            "gridpatrol_gateway_upstreams", "Camera streams with an upstream session open"
        )
        upstreams.add_metric([], stats.upstreams)
        yield upstreams
        for name, value, text in (
            ("gridpatrol_gateway_bytes_in", stats.bytes_in, "Bytes read from cameras"),
            ("gridpatrol_gateway_bytes_out", stats.bytes_out, "Bytes handed to viewers"),
            ("gridpatrol_gateway_dropped_packets", stats.dropped_packets, "Packets slow viewers skipped"),
            (
                "gridpatrol_gateway_slow_viewers_ended",
                stats.slow_consumers_ended,
                "Viewers ended for staying behind",
            ),
            (
                "gridpatrol_gateway_upstream_reconnects",
                stats.upstream_reconnects,
                "Upstream reconnect attempts",
            ),
            ("gridpatrol_gateway_auth_failures", snap.auth_failures, "Refused RTSP authentications"),
            (
                "gridpatrol_gateway_sessions_cut",
                snap.sessions_cut,
                "RTSP sessions ended because access ended",
            ),
        ):
            counter = CounterMetricFamily(name, text)
            counter.add_metric([], value)
            yield counter


def parse_replays(items: list[str]) -> dict[str, Path]:
    """``NAME=FILE`` options into a mapping; ValueError naming the bad one."""
    out: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--replay {item!r}: give NAME=FILE")
        if not all(c.isalnum() or c in "_.-" for c in name) or len(name) > 64:
            raise ValueError(f"--replay {item!r}: a name of letters, digits, _ . - (at most 64)")
        file = Path(path)
        if not file.is_file():
            raise ValueError(f"--replay {item!r}: no such file")
        out[name] = file
    return out
