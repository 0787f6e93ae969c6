"""The whole system as separate hosts: two workers, two ticketers, the API and the RTSP gateway, each a
``gridpatrol`` process in a network namespace of its own with a data directory of its own, over a
dedicated PostgreSQL and Redis (``GRIDPATROL_EVIDENCE_STORE=database``: no shared filesystem). The
gateway replays three recorded street clips as RTSP cameras; the fourth camera is a host of its own (a
replay-only gateway) so that a test can switch one camera off and on. Shared by tests/system and
bench/bench_faults.py, which inject the faults.
"""

from __future__ import annotations

import base64
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from gridpatrol.demo import CELL, LAT0, LON0, demo_tree
from gridpatrol.democlip import Crowd, LeftObject, write_clip, zones_document
from models.bus.health_board import RedisHealthBoard
from models.bus.messages import RULE_EVENTS, RuleEvent, decode
from models.db.engine import make_engine, make_session_factory, upgrade
from models.db.tables import Camera, Role, Ticket, TicketEpisode, TicketOccurrence
from models.grid.cameras import CameraSpec, register_cameras
from models.grid.tree import import_grids
from models.grid.zones import save_zones
from models.identity.users import add_user
from tests.support.procs import GRIDPATROL
from tests.system.hosts import Mosquitto, Network, Postgres, Redis, network

FEED_USER, FEED_PASSWORD = "system-feed", "Replay-Reader-7319"
ADMIN_PASSWORD = "Control-Room-4826"
RTSP_PORT, METRICS_PORT, API_PORT = 8554, 9100, 8000
CLIP_S = 30.0
#: the four cameras: (replay name, what the clip shows); the replay starts when a worker connects, and the
#: classic detector learns the empty scene first, so nothing appears before 8 s; clips loop every CLIP_S
CAMERAS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("fire-lane", {"left": LeftObject(8.0, 24.0)}),
    ("stall", {"left": LeftObject(8.0, 26.0, "stall")}),
    ("crowd", {"left": None, "crowd": Crowd(8.0, 24.0, people=8)}),
    ("quiet", {"left": None}),
)
#: the host that serves the last camera (stopped by the camera fault)
CAMERA_HOST = "camera"
#: a camera offline this long gets a camera.offline notice (the setting's smallest value)
OFFLINE_NOTICE_S = 10.0


def wait_until(cond: Callable[[], object], *, timeout: float, what: str, step: float = 0.25) -> float:
    """Poll ``cond`` until it is true; returns the seconds it took (raises after ``timeout``, a bound for a
    loaded machine, not an assertion on speed)."""
    t0 = time.monotonic()
    while True:
        try:
            if cond():
                return time.monotonic() - t0
        except Exception:  # a server in the middle of a restart: ask again
            pass
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        time.sleep(step)


def write_clips(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    clips = {name: folder / f"{name}.mp4" for name, _ in CAMERAS}
    with ThreadPoolExecutor(max_workers=4) as pool:  # the encoder releases the GIL
        for job in [pool.submit(write_clip, clips[name], seconds=CLIP_S, **kw) for name, kw in CAMERAS]:
            job.result()
    return clips


@dataclass
class Proc:
    host: str
    args: list[str]
    env: dict[str, str]
    log: Path
    netns: str
    health: str | None = None  # URL of /healthz
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            cmd = ["ip", "netns", "exec", self.netns, GRIDPATROL, *self.args]
            self.popen = subprocess.Popen(
                cmd, env={**os.environ, **self.env}, stdout=out, stderr=subprocess.STDOUT
            )

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed or acknowledged."""
        assert self.popen is not None
        self.popen.kill()
        self.popen.wait()

    def stop(self, grace_s: float = 15.0) -> None:
        if not self.alive():
            return
        assert self.popen is not None
        self.popen.terminate()
        try:
            self.popen.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()

    def healthy(self) -> bool:
        assert self.health is not None
        if not self.alive():
            raise AssertionError(f"{self.host} exited:\n{self.tail()}")
        try:
            return httpx.get(self.health, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def ready(self) -> bool:
        """``/readyz`` answers 200: the process can do its job (database, bus, ... reachable)."""
        assert self.health is not None
        try:
            return httpx.get(self.health.replace("/healthz", "/readyz"), timeout=3).status_code == 200
        except httpx.HTTPError:
            return False

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


@dataclass
class System:
    net: Network
    pg: Postgres
    redis: Redis
    mqtt: Mosquitto | None
    engine: Engine
    procs: dict[str, Proc] = field(default_factory=dict)
    camera_ids: dict[str, int] = field(default_factory=dict)

    # what a user or an operator sees ------------------------------------------------------------------
    def api(self) -> str:
        return f"http://{self.net.hosts['api']}:{API_PORT}"

    def admin_headers(self) -> dict[str, str]:
        token = httpx.post(
            f"{self.api()}/api/auth/token", data={"username": "admin", "password": ADMIN_PASSWORD}, timeout=10
        )
        token.raise_for_status()
        return {"Authorization": f"Bearer {token.json()['access_token']}"}

    def board(self) -> RedisHealthBoard:
        return RedisHealthBoard(self.redis.url)

    def camera_health(self) -> dict[str, dict[str, Any] | None]:
        board = self.board()
        return {name: board.get(str(cam)) for name, cam in self.camera_ids.items()}

    def holders(self) -> dict[str, int | None]:
        """Camera → pid of the worker streaming it (None when no live post says streaming)."""
        out: dict[str, int | None] = {}
        for name, snap in self.camera_health().items():
            streaming = snap is not None and snap.get("state") == "streaming"
            out[name] = int(str(snap["worker"]).rsplit("-", 1)[1]) if streaming and snap else None
        return out

    def count(self, model: Any) -> int:
        with self.engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(model)) or 0)

    def occurrence_ids(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.scalars(select(TicketOccurrence.event_id)))

    def episode_keys(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.scalars(select(TicketEpisode.episode_key)))

    def tickets(self) -> int:
        return self.count(Ticket)

    def published_events(self) -> list[RuleEvent]:
        """Every rule event the workers published (the stream is not trimmed at these volumes)."""
        client = redis.Redis.from_url(self.redis.url)
        try:
            entries = client.xrange(RULE_EVENTS)
        finally:
            client.close()
        events = [decode(fields[b"m"]) for _, fields in entries]
        return [e for e in events if isinstance(e, RuleEvent)]

    def pending(self) -> int:
        """Rule events read by a ticketer and not yet acknowledged."""
        client = redis.Redis.from_url(self.redis.url)
        try:
            return int(client.xpending(RULE_EVENTS, "ticketer")["pending"])
        finally:
            client.close()

    def workers(self) -> list[Proc]:
        return [p for h, p in self.procs.items() if h.startswith("worker")]

    def all_healthy(self) -> bool:
        return all(p.healthy() for p in self.procs.values())

    def all_ready(self) -> bool:
        return all(p.ready() for p in self.procs.values())

    def all_alive(self) -> bool:
        return all(p.alive() for p in self.procs.values())

    def handled(self) -> bool:
        """Every rule event published so far is an occurrence of a ticket, exactly once."""
        published = {e.event_id for e in self.published_events()}
        done = self.occurrence_ids()
        return len(done) == len(set(done)) and published <= set(done)

    def logs(self) -> str:
        return "\n".join(f"--- {h}\n{p.tail(1500)}" for h, p in self.procs.items())


def _setup_data(engine: Engine, *, gateway: str, camera_host: str) -> dict[str, int]:
    upgrade(engine)
    factory = make_session_factory(engine)
    with factory.begin() as session:
        import_grids(session, demo_tree())
        specs = []
        for i, (name, _) in enumerate(CAMERAS):
            host = camera_host if name == CAMERAS[-1][0] else gateway
            url = f"rtsp://{FEED_USER}:{FEED_PASSWORD}@{host}:{RTSP_PORT}/replay/{name}"
            specs.append(
                CameraSpec(name=name, url=url, lon=LON0 + (0.3 + 0.8 * i) * CELL, lat=LAT0 + 0.5 * CELL)
            )
        register_cameras(session, specs)
        cams = {c.name: c.id for c in session.scalars(select(Camera))}
        for name, kw in CAMERAS:
            save_zones(
                session,
                cams[name],
                zones_document(dwell_s=4.0, crowd="crowd" in kw),
                author=None,
                channel="cli",
            )
        add_user(session, username="admin", role=Role.admin, password=ADMIN_PASSWORD)
        # the cameras read the replays with a service credential (an operator: no grid needed)
        add_user(session, username=FEED_USER, role=Role.operator, password=FEED_PASSWORD)
    return cams


@contextmanager
def running_system(workdir: Path, *, with_mqtt: bool = False, lease_ttl_s: float = 4.0) -> Iterator[System]:
    """Start everything (about 20-40 s on a loaded 2-core machine) and stop it all afterwards."""
    workdir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack, ThreadPoolExecutor(max_workers=1) as clip_writer:
        clips_job = clip_writer.submit(write_clips, workdir / "clips")
        net = stack.enter_context(network())
        pg = Postgres(net.root_ip)
        stack.callback(pg.close)
        pg.start()
        rds = Redis(net.root_ip)
        stack.callback(rds.close)
        rds.start()
        mqtt = None
        if with_mqtt:
            mqtt = Mosquitto(net.root_ip)
            stack.callback(mqtt.close)
            mqtt.start()
        for host in ("gateway", CAMERA_HOST, "worker-1", "worker-2", "ticketer-1", "ticketer-2", "api"):
            net.add_host(host)
        engine = make_engine(pg.url)
        stack.callback(engine.dispose)
        cams = _setup_data(engine, gateway=net.hosts["gateway"], camera_host=net.hosts[CAMERA_HOST])
        clips = clips_job.result()
        system = System(net=net, pg=pg, redis=rds, mqtt=mqtt, engine=engine, camera_ids=cams)
        common = {
            "GRIDPATROL_DATABASE_URL": pg.url,
            "GRIDPATROL_REDIS_URL": rds.url,
            "GRIDPATROL_SECRET_KEY": "system-test-secret-key-with-at-least-32-characters",
            "GRIDPATROL_CREDENTIALS_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="),
            "GRIDPATROL_EVIDENCE_STORE": "database",
            "GRIDPATROL_ANALYSIS_FPS": "2",
            "GRIDPATROL_LEASE_TTL_S": str(lease_ttl_s),
            "GRIDPATROL_TICKETER_STALE_MS": "3000",
            "GRIDPATROL_CAMERA_OFFLINE_NOTICE_S": str(OFFLINE_NOTICE_S),
            **({"GRIDPATROL_MQTT_URL": mqtt.url, "GRIDPATROL_MQTT_STATUS_EVERY_S": "1"} if mqtt else {}),
        }

        def add(host: str, args: list[str], *, health_port: int = METRICS_PORT) -> None:
            ip = net.hosts[host]
            home = workdir / host
            home.mkdir(exist_ok=True)
            if args[0] != "serve":
                args = [*args, "--metrics-port", str(health_port), "--metrics-host", ip]
            env = {**common, "GRIDPATROL_DATA_DIR": str(home)}
            proc = Proc(
                host,
                args,
                env,
                workdir / f"{host}.log",
                net.namespace(host),
                f"http://{ip}:{health_port}/healthz",
            )
            system.procs[host] = proc

        replays = [f"{name}={clips[name]}" for name, _ in CAMERAS[:-1]]
        gw_args = ["gateway", "--host", net.hosts["gateway"], "--port", str(RTSP_PORT)]
        add("gateway", [*gw_args, *(a for r in replays for a in ("--replay", r))])
        last = CAMERAS[-1][0]
        add(
            CAMERA_HOST,
            [
                "gateway",
                "--host",
                net.hosts[CAMERA_HOST],
                "--port",
                str(RTSP_PORT),
                "--replay",
                f"{last}={clips[last]}",
            ],
        )
        for host in ("ticketer-1", "ticketer-2"):
            add(host, ["ticketer"])
        add(
            "api",
            [
                "serve",
                "--host",
                net.hosts["api"],
                "--port",
                str(API_PORT),
                "--no-worker",
                "--no-ticketer",
                "--no-gateway",
            ],
            health_port=API_PORT,
        )
        for host in ("worker-1", "worker-2"):
            add(host, ["worker", "--capacity", "4"])
        stack.callback(lambda: [p.stop() for p in reversed(system.procs.values())])
        for proc in system.procs.values():
            proc.start()
        try:
            wait_until(system.all_healthy, timeout=120, what="every process answers /healthz")
        except AssertionError as err:
            raise AssertionError(f"{err}\n{system.logs()}") from None
        yield system
