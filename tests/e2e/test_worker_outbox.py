"""Issue 9: a Redis outage never stalls analysis. The worker's frame path only queues events; its
publisher thread retries while Redis (a redis-server of this test, on its own port) is stopped; the
full outbox drops the oldest ``updated`` events first and counts them; when Redis is back every
``started``/``ended`` arrives, in the order each zone produced them."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy.orm import Session, sessionmaker

from detectors.backends import ClassicConfig, Detector
from detectors.backends.base import FrameInput
from detectors.detections import Detections
from gridpatrol.worker import Worker
from ingest.health import HealthCollector
from ingest.leases import MemoryLeaseStore
from ingest.settings import IngestSettings
from models.bus.messages import RULE_EVENTS, decode
from models.bus.redis_streams import RedisBus
from models.db.engine import make_engine, make_session_factory, transaction
from models.evidence.store import FileEvidenceStore
from models.grid.zones import save_zones
from tests.conftest import seed
from tests.support.databases import sqlite_copy
from tests.support.procs import free_port
from tests.support.require import require

W, H = 64, 48
ZONES = ("left", "right")
SOFT, HARD = 10, 200
FRAMES = 63


def present(zone: str, i: int) -> bool:
    """The script: which zone is crowded on frame ``i`` (episodes of different lengths and phases)."""
    return i % 7 < 5 if zone == "left" else (i + 3) % 9 < 6


def expected_events() -> list[tuple[str, str, float]]:
    """(zone, type, t) in the order the worker produces them (dwell 0, clear 0, an update a second)."""
    out: list[tuple[str, str, float]] = []
    active = dict.fromkeys(ZONES, False)
    for i in range(FRAMES):
        t = float(1_000 + i)
        for zone in ZONES:
            if present(zone, i):
                out.append((zone, "updated" if active[zone] else "started", t))
                active[zone] = True
            elif active[zone]:
                out.append((zone, "ended", t))
                active[zone] = False
    return out


def frame(i: int) -> np.ndarray:
    img = np.zeros((H, W, 3), np.uint8)
    if present("left", i):
        img[:, : W // 2] = 255
    if present("right", i):
        img[:, W // 2 :] = 255
    return img


class LitHalfDetector(Detector):
    """Sees a person in each bright half of the frame: the rules, tracker and outbox downstream are real."""

    class_names = ("person",)

    def detect_batch(self, frames: Sequence[FrameInput]) -> list[Detections]:
        out = []
        for f in frames:
            boxes = [
                (x0 + 8, 8, x0 + 24, 40)
                for x0 in (0, W // 2)
                if f.frame_bgr[:, x0 : x0 + W // 2].mean() > 127
            ]
            out.append(Detections(np.array(boxes, np.float32).reshape(-1, 4), [0.9] * len(boxes), [0] * len(boxes), self.class_names))
        return out


class RedisServer:
    """A redis-server of this test only, that the test can stop and start again on the same port."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory), "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        assert wait_for(lambda: _pings(client), 30), "redis-server did not start"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.proc = None


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def wait_for(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return bool(cond())


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    require(shutil.which("redis-server") is not None, "redis-server on PATH")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def factory(_sqlite_template: Path, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(sqlite_copy(_sqlite_template, tmp_path))
    f = make_session_factory(engine)
    seed(f, tmp_path)
    half = [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]
    other = [[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]]
    rule: dict[str, Any] = {"kind": "crowd_area", "min_people": 1, "dwell_s": 0, "clear_s": 0, "update_every_s": 1}
    with transaction(f) as session:
        save_zones(session, 1, {"zones": [{"name": "left", "polygon": half, **rule}, {"name": "right", "polygon": other, **rule}]}, author=None)
    yield f
    engine.dispose()


def delivered(client: redis.Redis, ns: str) -> list[tuple[str, str, float]]:
    out = []
    for _, fields in client.xrange(ns + RULE_EVENTS):
        m = decode(fields[b"m"])
        out.append((m.zone, m.type, m.at.timestamp()))  # type: ignore[union-attr]
    return out


def test_outage_keeps_analysing_drops_updated_first_and_delivers_every_lifecycle_event(
    redis_server: RedisServer, factory: sessionmaker[Session], tmp_path: Path
) -> None:
    ns = f"outbox-{uuid.uuid4().hex[:8]}:"
    client = redis.Redis.from_url(redis_server.url, socket_timeout=2, socket_connect_timeout=1)
    bus = RedisBus(redis_server.url, namespace=ns, client=client)
    worker = Worker(
        worker_id="w-outbox",
        session_factory=factory,
        bus=bus,
        leases=MemoryLeaseStore(),
        evidence=FileEvidenceStore(tmp_path / "evidence"),
        backend=ClassicConfig(),
        ingest=IngestSettings(worker_capacity=0),  # frames come from this test, not from a camera reader
        detector=LitHalfDetector(),
        outbox_limits=(SOFT, HARD),
    )
    worker.start()
    expected = expected_events()
    lifecycle = [e for e in expected if e[1] != "updated"]
    updated = [e for e in expected if e[1] == "updated"]
    assert len(lifecycle) > SOFT and len(updated) > SOFT  # the outbox must fill and grow past its bound
    try:
        redis_server.stop()
        # the first frame's two `started` events are taken by the publisher, which now fails and retries
        worker.on_frame("1", frame(0), 1_000.0, None)
        assert wait_for(lambda: worker.outbox.publish_failures >= 1, 60)
        for i in range(1, FRAMES):
            worker.on_frame("1", frame(i), float(1_000 + i), None)
        # every frame was analysed while Redis was down, and nothing reached it
        assert worker.frames_analysed == FRAMES
        stats = worker.outbox.stats()
        assert stats["published"] == 0 and stats["publish_failures"] >= 1
        assert stats["dropped_lifecycle"] == 0
        # only `updated` events were dropped; all lifecycle events wait, past the soft bound
        kept_updated = len(updated) - stats["dropped_updated"]
        assert stats["dropped_updated"] > 0
        assert stats["depth"] == len(lifecycle) + kept_updated
        assert stats["depth"] > SOFT and stats["state"] == "overflow"
        assert worker.outbox.camera_health("1") == {
            "outbox_depth": stats["depth"], "outbox_dropped": stats["dropped_updated"], "outbox_state": "overflow",
        }
        metrics = CollectorRegistry()
        HealthCollector(worker.supervisor.health).register(metrics)
        text = generate_latest(metrics).decode()
        assert (
            f'gridpatrol_worker_outbox_dropped_events_total{{type="updated",worker="w-outbox"}} {float(stats["dropped_updated"])}'
            in text
        )
        assert f'gridpatrol_camera_outbox_depth{{camera="1"}} {float(stats["depth"])}' in text

        redis_server.start()
        assert wait_for(lambda: len(worker.outbox) == 0, 120), worker.outbox.stats()
        got = delivered(client, ns)
        # every started/ended arrived, in order, with the newest `updated` that were kept
        assert len(got) == len(lifecycle) + kept_updated
        kept = set(updated[len(updated) - kept_updated :])
        assert got == [e for e in expected if e[1] != "updated" or e in kept]
        for zone in ZONES:
            kinds = [k for z, k, _ in got if z == zone and k != "updated"]
            assert kinds and kinds == [e[1] for e in lifecycle if e[0] == zone]
        assert worker.outbox.stats()["state"] == "ok" and worker.events_published == len(got)
    finally:
        worker.stop()
        bus.close()
