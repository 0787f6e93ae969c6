"""Building and running the processes: ``serve`` (everything in one process), ``worker``, ``ticketer``.

Each process builds its collaborators here from ``Settings`` and passes them down; nothing reads a
global. Embedded mode (no ``GRIDPATROL_REDIS_URL``) shares one in-process bus and lease store.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from gridpatrol.settings import Settings
from gridpatrol.ticketer import Ticketer, run_webhooks
from models.bus.health_board import HealthBoard, make_health_board
from models.bus.protocol import Bus, make_bus
from models.db.engine import make_engine, make_session_factory, upgrade
from models.errors import ConfigError
from models.evidence.database import DatabaseEvidenceStore
from models.evidence.store import EvidenceStore, FileEvidenceStore
from models.live.board import MemoryTileBoard, TileBoard, make_tile_board
from models.secrets import ensure_private_dir
from models.tickets.desk import TicketDesk

if TYPE_CHECKING:  # the worker pulls in the detectors: imported only by processes that run one
    from fastapi import FastAPI
    from prometheus_client import CollectorRegistry
    from prometheus_client.registry import Collector

    from api.live_view import LiveVideo
    from gridpatrol.mqtt import MqttPublisher
    from gridpatrol.worker import Worker
    from gridpatrol.zone_preview import ZonePreviewService
    from ingest.reader import SourceOpener
    from models.grid.credentials import CredentialKeyring

logger = logging.getLogger(__name__)


def refuse_demo_users(factory: sessionmaker[Session]) -> None:
    """Stop a start outside the demo when the database holds enabled demo users: their passwords are
    published (``gridpatrol demo`` marks them), so nothing may serve them logins, tokens or streams."""
    from sqlalchemy import select

    from models.db.tables import User

    with factory() as session:
        names = session.scalars(select(User.username).where(User.demo, User.enabled).order_by(User.id).limit(3)).all()
    if names:
        raise ConfigError(
            f"this database holds the demo's users ({', '.join(names)}, ...), whose passwords are published: "
            "it runs only as the demo (`gridpatrol demo`, GRIDPATROL_ENVIRONMENT=demo); use another database"
        )


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    bus: Bus
    evidence: EvidenceStore
    desk: TicketDesk
    health_board: HealthBoard
    #: wall tiles and snapshots: viewers' demand to the workers, their tiles back (models/live)
    tile_board: TileBoard = field(default_factory=MemoryTileBoard)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    #: the ticketer's MQTT connection when GRIDPATROL_MQTT_URL is set (gridpatrol/mqtt.py)
    mqtt: MqttPublisher | None = None

    @classmethod
    def build(cls, settings: Settings, *, migrate: bool = True) -> Runtime:
        ensure_private_dir(settings.storage.data_dir)  # before SQLite or the evidence store create it 0755
        engine = make_engine(settings.storage.resolved_database_url())
        if migrate:
            upgrade(engine)
        factory = make_session_factory(engine)
        if settings.api.environment != "demo":
            refuse_demo_users(factory)
        evidence: EvidenceStore
        if settings.storage.evidence_store == "database":  # no shared filesystem between the machines
            evidence = DatabaseEvidenceStore(factory)
        else:
            evidence = FileEvidenceStore(settings.storage.data_dir / "evidence")
        return cls(
            settings=settings,
            engine=engine,
            factory=factory,
            bus=make_bus(settings.storage.redis_url, namespace=settings.storage.bus_namespace),
            evidence=evidence,
            desk=TicketDesk(settings.tickets, evidence=evidence),
            health_board=make_health_board(settings.storage.redis_url, namespace=settings.storage.bus_namespace),
            tile_board=make_tile_board(settings.storage.redis_url, namespace=settings.storage.bus_namespace),
        )

    def build_api(self, *, metrics: CollectorRegistry | None = None, live_video: LiveVideo | None = None) -> FastAPI:
        """The API app as ``serve`` runs it. ``settings`` must have passed through
        ``gridpatrol.signing_key.settings_with_signing_key`` (``create_app`` refuses an app without a key)."""
        from api.app import create_app
        from models.grid.credentials import prepare_credentials

        throttle = None
        url = self.settings.storage.redis_url
        if url:  # several API processes share the failed-login counts
            from api.login_throttle import LoginThrottle
            from api.login_throttle_redis import RedisThrottleStore

            throttle = LoginThrottle(store=RedisThrottleStore.from_url(url, namespace=self.settings.storage.bus_namespace))
        if metrics is not None and not self.settings.api.metrics_served:
            logger.warning("/metrics is not served in production without GRIDPATROL_METRICS_TOKEN (a bearer token for the scraper)")
        return create_app(
            self.settings.api,
            session_factory=self.factory,
            login_throttle=throttle,
            desk=self.desk,
            bus=self.bus,
            health_board=self.health_board,
            tile_board=self.tile_board,
            metrics=metrics,
            zone_previewer=self.zone_previewer(),
            live_video=live_video,
            # camera import from the UI stores stream URLs encrypted, as `gridpatrol cameras import` does
            camera_keyring=lambda: prepare_credentials(
                self.factory, self.settings.credentials, data_dir=self.settings.storage.data_dir
            ),
        )

    def zone_previewer(self) -> ZonePreviewService:
        """The zone editor's preview: the workers' detector backend over ``<data dir>/clips`` or the live stream."""
        from gridpatrol.analyze import backend_config
        from gridpatrol.zone_preview import ZonePreviewService
        from models.grid.credentials import load_keyring

        settings = self.settings

        def keyring() -> CredentialKeyring | None:
            try:
                return load_keyring(settings.credentials, data_dir=settings.storage.data_dir)
            except ConfigError:
                return None  # plain URLs (or none): camera_secret says which camera it cannot read

        return ZonePreviewService(
            clips_dir=settings.storage.data_dir / "clips",
            backend=lambda: backend_config(settings.worker.detector_backend, settings.worker.detector_model, models_dir=settings.models_dir),
            session_factory=self.factory,
            keyring=keyring,
            tz=settings.worker.tz,
        )

    def spawn(self, name: str, target: Callable[..., object], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    def start_ticketer(self) -> Ticketer:
        conf = self.settings.ticketer
        ticketer = Ticketer(
            bus=self.bus,
            session_factory=self.factory,
            desk=self.desk,
            evidence=self.evidence,
            consumer=process_name("ticketer"),
            batch=conf.ticketer_batch,
            stale_ms=conf.ticketer_stale_ms,
            sweep_every_s=conf.ticketer_sweep_s,
            max_deliveries=conf.bus_max_deliveries,
        )
        self.spawn("ticketer", ticketer.run, self.stop)
        if self.settings.tickets.webhook_urls:
            self.spawn("webhooks", lambda: run_webhooks(self.factory, secret=self.settings.tickets.webhook_secret, stop=self.stop))
        self.spawn("notify", self.run_notifier)  # people's phones: robots, e-mail, SMS (gridpatrol/notify.py)
        # patrol tasks from the points' schedules, missed tasks, weekly and monthly reports (idempotent)
        from gridpatrol.patrol_jobs import PatrolJobs, run_patrol_jobs
        from models.patrol.settings import PatrolSettings

        jobs = PatrolJobs(self.factory, PatrolSettings(), webhook_urls=list(self.settings.tickets.webhook_urls))
        self.spawn("patrol", run_patrol_jobs, jobs, self.stop)
        from gridpatrol.retention_job import RetentionJob

        retention = RetentionJob(
            self.factory, self.settings.retention, evidence=self.evidence, counts=ticketer.stats.retention
        )
        self.spawn("retention", retention.run, self.stop)
        if self.settings.mqtt.enabled:
            self.start_mqtt()
        self.start_camera_watch(ticketer)
        return ticketer

    def start_camera_watch(self, ticketer: Ticketer) -> None:
        """Cameras offline past GRIDPATROL_CAMERA_OFFLINE_NOTICE_S: one notice per outage (gridpatrol/camera_watch.py)."""
        from gridpatrol.camera_watch import CameraWatch
        from gridpatrol.mqtt_bridge import publish_camera_notice

        mqtt = self.mqtt
        watch = CameraWatch(
            self.factory,
            self.health_board,
            notice_after_s=self.settings.ticketer.camera_offline_notice_s,
            webhook_urls=list(self.settings.tickets.webhook_urls),
            publish=[lambda payload: publish_camera_notice(mqtt, payload)] if mqtt is not None else [],
            counts=ticketer.stats.camera_notices,
        )
        self.spawn("camera-watch", watch.run, self.stop)

    def start_mqtt(self) -> MqttPublisher:
        """Ticket notices, detection events and camera status to the MQTT broker (gridpatrol/mqtt_bridge.py)."""
        from sqlalchemy import select

        from gridpatrol.mqtt import MqttPublisher
        from gridpatrol.mqtt_bridge import MqttBridge
        from models.db.tables import Camera

        def camera_ids() -> list[int]:
            with self.factory() as session:
                return list(session.scalars(select(Camera.id).order_by(Camera.id)))

        name = process_name("ticketer")
        self.mqtt = MqttPublisher(self.settings.mqtt, client_id=name).start()
        bridge = MqttBridge(self.mqtt, self.bus, consumer=name, health_board=self.health_board, camera_ids=camera_ids)
        self.threads += bridge.start(self.stop)
        return self.mqtt

    def ticketer_collectors(self) -> list[Collector]:
        """Scrape-time metrics of a ticketer process besides its own (docs/metrics.md)."""
        from gridpatrol.mqtt import MqttCollector
        from gridpatrol.process_metrics import BusGroupCollector, TicketCollector

        out: list[Collector] = [TicketCollector(self.factory)]
        if self.settings.storage.redis_url:
            out.append(BusGroupCollector(self.settings.storage.redis_url, namespace=self.settings.storage.bus_namespace))
        if self.mqtt is not None:
            out.append(MqttCollector(self.mqtt))
        return out

    def run_notifier(self) -> None:
        """Deliver the notification outbox until ``stop``; channel secrets are opened with the credentials key."""
        from gridpatrol.notify import start_notifier
        from models.grid.credentials import load_keyring

        settings = self.settings

        def keyring() -> CredentialKeyring | None:
            try:
                return load_keyring(settings.credentials, data_dir=settings.storage.data_dir)
            except ConfigError:
                return None  # no key: a channel with a secret fails with a message saying so

        start_notifier(self.factory, settings.notify, keyring=keyring, stop=self.stop)

    def start_worker(self, *, capacity: int | None = None, openers: Mapping[str, SourceOpener] | None = None) -> Worker:
        from detectors.evidence import case_codes
        from gridpatrol.analyze import backend_config
        from gridpatrol.worker import Worker
        from ingest.leases import MemoryLeaseStore, RedisLeaseStore
        from models.grid.credentials import prepare_credentials
        from models.live.publisher import TilePublisher

        ingest = self.settings.ingest
        if capacity is not None:
            ingest = ingest.model_copy(update={"worker_capacity": capacity})
        url = self.settings.storage.redis_url
        leases = (
            RedisLeaseStore.from_url(url, prefix=ingest.lease_prefix, namespace=self.settings.storage.bus_namespace)
            if url
            else MemoryLeaseStore()
        )
        backend = backend_config(self.settings.worker.detector_backend, self.settings.worker.detector_model, models_dir=self.settings.models_dir)
        worker = Worker(
            worker_id=process_name("worker"),
            session_factory=self.factory,
            bus=self.bus,
            leases=leases,
            evidence=self.evidence,
            backend=backend,
            ingest=ingest,
            health_board=self.health_board,
            # the key, and plain-text URLs of older versions encrypted, before any camera is read
            credentials=prepare_credentials(self.factory, self.settings.credentials, data_dir=self.settings.storage.data_dir),
            timezone=self.settings.worker.tz,
            case_codes=case_codes(self.settings.tickets.ticket_categories),
            tiles=TilePublisher(self.tile_board, worker_id=process_name("worker")),
            openers=openers,  # gb28181:// cameras, when the GB/T 28181 platform runs in this process
        )
        return worker.start()

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=10)
        if self.mqtt is not None:
            self.mqtt.close()
        self.bus.close()
        self.tile_board.close()
        self.engine.dispose()


def bind_listeners(host: str, port: int) -> list[socket.socket]:
    """Bind the API's port before anything else starts, on every address ``host`` resolves to (as asyncio
    would), so that a busy port is one clear error rather than ``[Errno 98]`` among camera-reader logs;
    uvicorn then serves on these very sockets (nobody can take the port in between)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    socks: list[socket.socket] = []
    try:
        for family, kind, proto, _name, addr in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a TIME_WAIT port is free
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(addr)
            sock.set_inheritable(True)
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


def listen_error(host: str, port: int, err: OSError) -> str:
    """One line for a port that cannot be listened on, naming it and the option that changes it."""
    if err.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is already in use: stop what listens there or choose another port with --port"
    if err.errno == errno.EACCES:
        return f"port {port} on {host}: permission denied (ports below 1024 need privileges): choose another with --port"
    return f"cannot listen on {host} port {port}: {err.strerror or err} (--host and --port choose the address)"


def serve_http(app: FastAPI, listeners: list[socket.socket], *, settings: Settings, access_log: bool) -> None:
    """Serve ``app`` on the bound ``listeners`` until a signal. uvicorn's own access lines stay off; with
    ``access_log`` each request is one JSON line on stdout (gridpatrol.access_log)."""
    import uvicorn

    served: Any = app
    if access_log:
        from gridpatrol.access_log import AccessLog, log_to_stdout

        log_to_stdout()
        served = AccessLog(app, tz=settings.worker.tz, trusted_proxies=settings.api.trusted_proxies)
    # proxy_headers=False: forwarded headers are believed from GRIDPATROL_TRUSTED_PROXIES only (api/client_address.py)
    config = uvicorn.Config(served, log_level="info", proxy_headers=False, access_log=False)
    for sock in listeners:
        host, port = sock.getsockname()[:2]
        logger.info("serving on http://%s:%d", f"[{host}]" if ":" in host else host, port)
    # uvicorn re-raises the SIGTERM/SIGINT it caught once it has shut down: with our handler in place the
    # re-raised signal only sets an event, so the caller's cleanup runs (worker leases released, gateway
    # sessions' end written to the access log) instead of the process dying with 143
    with stop_on_signals(threading.Event()):
        uvicorn.Server(config).run(sockets=listeners)


def process_name(role: str) -> str:
    return f"{role}-{socket.gethostname()}-{os.getpid()}"


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM/SIGINT set ``stop`` so the process shuts down cleanly (leases released, batches acked)."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def handler(signum: int, _frame: object) -> None:
        logger.info("signal %d: stopping", signum)
        stop.set()

    for s in previous:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def run_process_group(commands: list[list[str]], *, restart_backoff_s: float = 2.0) -> int:
    """Run ``gridpatrol <command>`` once per entry and keep them running: a child that dies is started
    again (after a pause); SIGTERM/SIGINT stop them all (TERM, then KILL after a grace period)."""
    import subprocess
    import sys
    import time

    exe = [sys.executable, "-m", "gridpatrol"]
    stop = threading.Event()
    children: list[subprocess.Popen[bytes] | None] = [None] * len(commands)
    with stop_on_signals(stop):
        while not stop.is_set():
            for i, cmd in enumerate(commands):
                child = children[i]
                if child is None or child.poll() is not None:
                    if child is not None:
                        logger.warning("worker process %d exited with %s; starting it again", i, child.returncode)
                        time.sleep(restart_backoff_s)
                    children[i] = subprocess.Popen([*exe, *cmd])
            stop.wait(1.0)
    for child in children:
        if child is not None and child.poll() is None:
            child.terminate()
    for child in children:
        if child is None:
            continue
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return 0
