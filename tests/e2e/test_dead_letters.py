"""Poison entries on the ticketer's bus: a rule event whose handling keeps raising, and an entry that is
not a message at all. Good events keep flowing past them; the bad one is given up on after N
deliveries (at once when it cannot be decoded), acknowledged, counted in the metrics, listed by
``gridpatrol bus dead-letters`` and brought back by ``--requeue``. On the real Redis and in-process."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from gridpatrol.ticketer import GROUP, Ticketer, TicketerCollector
from models.bus.memory import MemoryBus
from models.bus.messages import RULE_EVENTS, RuleEvent, decode
from models.bus.protocol import Bus
from models.bus.redis_streams import RedisBus
from models.db.engine import make_engine, make_session_factory
from models.db.tables import Camera, Ticket
from models.evidence.store import FileEvidenceStore
from models.tickets.categories import TicketSettings
from models.tickets.desk import TicketDesk
from models.tickets.ingest import IngestResult, ingest_events
from tests.conftest import seed
from tests.models.test_bus import REDIS_URL, redis_available
from tests.support.databases import sqlite_copy
from tests.support.events import Episode
from tests.support.procs import run_cli
from tests.support.require import require

MAX_DELIVERIES = 3
T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


@pytest.fixture
def factory(_sqlite_template: Path, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(sqlite_copy(_sqlite_template, tmp_path))
    f = make_session_factory(engine)
    seed(f, tmp_path)
    yield f
    engine.dispose()


@pytest.fixture
def ns() -> Iterator[str]:
    require(redis_available(), "Redis on 127.0.0.1:6379")
    namespace = f"test-{uuid.uuid4().hex[:8]}:"
    yield namespace
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{namespace}*"):
        client.delete(key)
    client.close()


@pytest.fixture(params=["memory", "redis"])
def bus(request: pytest.FixtureRequest) -> Iterator[Bus]:
    if request.param == "memory":
        yield MemoryBus()
        return
    b = RedisBus(REDIS_URL, namespace=request.getfixturevalue("ns"))
    yield b
    b.close()


class FlakyIngest:
    """The real ingest, except that it raises (not a database error) for the events named ``broken``."""

    def __init__(self, broken: set[str]) -> None:
        self.broken = broken

    def __call__(self, session: Session, desk: TicketDesk, events: Sequence[RuleEvent]) -> IngestResult:
        bad = sorted(e.event_id for e in events if e.event_id in self.broken)
        if bad:
            raise ValueError(f"cannot handle {bad[0]}")
        return ingest_events(session, desk, events)


def make_ticketer(bus: Bus, factory: sessionmaker[Session], tmp_path: Path, ingest: FlakyIngest) -> Ticketer:
    evidence = FileEvidenceStore(tmp_path / "evidence")
    return Ticketer(
        bus=bus, session_factory=factory, desk=TicketDesk(TicketSettings(), evidence=evidence), evidence=evidence,
        consumer="t1", batch=100, block_ms=20, stale_ms=100, sweep_every_s=3600, max_deliveries=MAX_DELIVERIES,
        ingest=ingest,
    )


def starts(factory: sessionmaker[Session], first: int, n: int) -> list[RuleEvent]:
    """``started`` events of ``n`` new episodes (each opens a ticket), zones z<first>..."""
    with factory() as s:
        cameras = list(s.scalars(select(Camera.id).order_by(Camera.id)))
    return [
        Episode(cameras[i % len(cameras)], zone=f"z{i}", start=T0 + timedelta(seconds=i)).event("started")
        for i in range(first, first + n)
    ]


def tickets(factory: sessionmaker[Session]) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(Ticket)) or 0


def run_until(ticketer: Ticketer, done: object, *, rounds: int = 400) -> None:
    """Step the ticketer until ``done()``; ``rounds`` only guards against a hang (each blocks <= 20 ms)."""
    for _ in range(rounds):
        if done():  # type: ignore[operator]
            return
        ticketer.step()
    raise AssertionError("the ticketer never got there")


def nothing_pending(bus: Bus) -> bool:
    return bus.claim_stale(RULE_EVENTS, group=GROUP, consumer="probe", min_idle_ms=0, count=1000) == []


def test_poison_event_is_isolated_dead_lettered_counted_and_requeued(
    bus: Bus, factory: sessionmaker[Session], tmp_path: Path
) -> None:
    events = starts(factory, 0, 6)
    poison = events[2]
    ingest = FlakyIngest({poison.event_id})
    ticketer = make_ticketer(bus, factory, tmp_path, ingest)
    bus.publish(RULE_EVENTS, events)

    ticketer.step()  # first delivery: the batch raises, is split, the five good events go through
    assert tickets(factory) == 5
    assert bus.dead_letter_count(RULE_EVENTS) == 0  # one failure is not yet a reason to give up
    bus.publish(RULE_EVENTS, starts(factory, 6, 2))  # good events keep flowing while the bad one retries
    run_until(ticketer, lambda: bus.dead_letter_count(RULE_EVENTS) == 1)
    run_until(ticketer, lambda: tickets(factory) == 7)

    [dead] = bus.dead_letters(RULE_EVENTS)
    assert (dead.topic, dead.group, dead.deliveries) == (RULE_EVENTS, GROUP, MAX_DELIVERIES)
    assert dead.error == f"ValueError: cannot handle {poison.event_id}"
    assert decode(dead.payload) == poison
    assert nothing_pending(bus)  # acknowledged: it no longer comes back
    assert ticketer.stats.dead_lettered == 1
    assert bus.dead_lettered() == {RULE_EVENTS: 1}
    registry = CollectorRegistry()
    TicketerCollector(ticketer).register(registry)
    metrics = generate_latest(registry).decode()
    assert f'gridpatrol_bus_dead_lettered_total{{topic="{RULE_EVENTS}"}} 1.0' in metrics
    assert f'gridpatrol_bus_dead_letters{{topic="{RULE_EVENTS}"}} 1.0' in metrics

    # the cause is fixed; an admin requeues it: a fresh entry, applied once, nothing left behind
    ingest.broken.clear()
    assert len(bus.requeue_dead(RULE_EVENTS)) == 1
    assert bus.dead_letters(RULE_EVENTS) == []
    run_until(ticketer, lambda: tickets(factory) == 8)
    assert nothing_pending(bus)
    assert bus.dead_letter_count(RULE_EVENTS) == 0


def test_undecodable_entry_and_the_cli_on_redis(ns: str, factory: sessionmaker[Session], tmp_path: Path) -> None:
    bus = RedisBus(REDIS_URL, namespace=ns)
    client = redis.Redis.from_url(REDIS_URL)
    events = starts(factory, 0, 4)
    poison = events[1]
    ingest = FlakyIngest({poison.event_id})
    ticketer = make_ticketer(bus, factory, tmp_path, ingest)
    bus.publish(RULE_EVENTS, events[:2])
    client.xadd(f"{ns}{RULE_EVENTS}", {"m": b"\xff\xfenot a message"})
    bus.publish(RULE_EVENTS, events[2:])

    ticketer.step()  # the undecodable entry is given up on at once: it can never succeed
    assert tickets(factory) == 3
    [raw] = bus.dead_letters(RULE_EVENTS)
    assert (raw.payload, raw.deliveries) == (b"\xff\xfenot a message", 1)
    assert raw.error.startswith("undecodable entry")
    run_until(ticketer, lambda: bus.dead_letter_count(RULE_EVENTS) == 2)
    assert client.xpending(f"{ns}{RULE_EVENTS}", GROUP)["pending"] == 0

    env = {"GRIDPATROL_REDIS_URL": REDIS_URL, "GRIDPATROL_BUS_NAMESPACE": ns, "GRIDPATROL_DATA_DIR": str(tmp_path / "var")}
    listed = run_cli(["bus", "dead-letters", "--json"], env)
    assert listed.returncode == 0, listed.stderr
    doc = json.loads(listed.stdout)
    assert [(d["topic"], d["deliveries"]) for d in doc["dead_letters"]] == [(RULE_EVENTS, 1), (RULE_EVENTS, MAX_DELIVERIES)]
    assert doc["dead_letters"][1]["error"] == f"ValueError: cannot handle {poison.event_id}"
    assert RuleEvent.model_validate_json(doc["dead_letters"][1]["payload"]) == poison
    assert "requeued" not in doc

    ingest.broken.clear()
    requeued = run_cli(["bus", "dead-letters", "--topic", RULE_EVENTS, "--requeue", "--json"], env)
    assert requeued.returncode == 0, requeued.stderr
    assert len(json.loads(requeued.stdout)["requeued"]) == 2
    assert bus.dead_letter_count(RULE_EVENTS) == 0
    run_until(ticketer, lambda: tickets(factory) == 4)
    ticketer.step()
    # the requeued event was applied; the undecodable one is back among the dead letters at once
    [again] = bus.dead_letters(RULE_EVENTS)
    assert (again.payload, again.deliveries) == (b"\xff\xfenot a message", 1)
    assert client.xpending(f"{ns}{RULE_EVENTS}", GROUP)["pending"] == 0
    text = run_cli(["bus", "dead-letters"], env)
    assert text.returncode == 0, text.stderr
    assert "1 dead letter(s)" in text.stdout
    client.close()
    bus.close()


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["bus", "dead-letters"], {"GRIDPATROL_REDIS_URL": ""}, "no GRIDPATROL_REDIS_URL"),
        (["bus", "dead-letters", "--topic", "nope"], {"GRIDPATROL_REDIS_URL": REDIS_URL}, "unknown topic 'nope'"),
    ],
)
def test_dead_letters_cli_refuses_clearly(args: list[str], env: dict[str, str], message: str, tmp_path: Path) -> None:
    result = run_cli(args, {**env, "GRIDPATROL_DATA_DIR": str(tmp_path / "var")})
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
