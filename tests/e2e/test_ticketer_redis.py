"""10,000 rule events through Redis Streams and two ticketer processes on PostgreSQL, with duplicates,
a consumer that dies holding entries, and one ticketer killed mid-stream: every episode ends up with
exactly one ticket and every event exactly once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select

from models.bus.messages import RULE_EVENTS, RuleEvent
from models.bus.redis_streams import RedisBus
from models.db.engine import make_engine, make_session_factory
from models.db.tables import Camera, Ticket, TicketEpisode, TicketOccurrence
from tests.conftest import seed
from tests.models.test_bus import REDIS_URL, redis_available
from tests.support.databases import truncate_all
from tests.support.procs import GRIDPATROL
from tests.support.require import require

EPISODES = 1000
EVENTS_PER_EPISODE = 10  # started, 8 x updated, ended


def episode_events(camera_id: int, i: int, start: datetime) -> list[RuleEvent]:
    kinds = ["started"] + ["updated"] * 8 + ["ended"]
    return [
        RuleEvent(
            event_id=f"ep{i}-{k}",
            type=kind,  # type: ignore[arg-type]
            camera_id=camera_id,
            zone=f"z{i}",
            rule="fire_lane_blockage",
            episode_start=start,
            at=start + timedelta(seconds=5 * k),
            count=1,
        )
        for k, kind in enumerate(kinds)
    ]


@pytest.fixture
def pg_url(_postgres_url: str | None, tmp_path: Path) -> str:
    require(_postgres_url is not None, "PostgreSQL on 127.0.0.1:5432")
    require(redis_available(), "Redis on 127.0.0.1:6379")
    assert _postgres_url is not None
    truncate_all(_postgres_url)
    return _postgres_url


def count(factory, model) -> int:  # type: ignore[no-untyped-def]
    with factory() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def test_ten_thousand_events_two_ticketers_one_killed(pg_url: str, tmp_path: Path) -> None:
    engine = make_engine(pg_url)
    factory = make_session_factory(engine)
    seed(factory, tmp_path)
    with factory() as s:
        cameras = list(s.scalars(select(Camera.id)))
    ns = f"test-{uuid.uuid4().hex[:8]}:"
    bus = RedisBus(REDIS_URL, namespace=ns)
    rng = random.Random(5)
    t0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
    episodes = [episode_events(cameras[i % len(cameras)], i, t0 + timedelta(seconds=i)) for i in range(EPISODES)]
    # interleave episodes, keep each one's own order, and repeat a tenth of the events (at-least-once)
    stream: list[RuleEvent] = []
    cursors = [0] * EPISODES
    live = list(range(EPISODES))
    while live:
        i = rng.choice(live)
        stream.append(episodes[i][cursors[i]])
        cursors[i] += 1
        if cursors[i] == EVENTS_PER_EPISODE:
            live.remove(i)
    dupes = rng.sample(stream, len(stream) // 10)
    stream += dupes

    half = len(stream) // 2
    bus.publish(RULE_EVENTS, stream[:half])
    # a ticketer that read 300 entries and died before acking them
    held = bus.consume(RULE_EVENTS, group="ticketer", consumer="ghost", count=300, block_ms=100)
    assert len(held) == 300

    env = {
        **os.environ,
        "GRIDPATROL_DATABASE_URL": pg_url,
        "GRIDPATROL_REDIS_URL": REDIS_URL,
        "GRIDPATROL_BUS_NAMESPACE": ns,
        "GRIDPATROL_DATA_DIR": str(tmp_path / "var"),
        "GRIDPATROL_TICKETER_STALE_MS": "2000",
        "GRIDPATROL_TICKETER_BATCH": "200",
    }
    logs = [open(tmp_path / f"ticketer-{n}.log", "w") for n in "ab"]  # noqa: SIM115
    procs = [subprocess.Popen([GRIDPATROL, "ticketer"], env=env, stdout=log, stderr=subprocess.STDOUT) for log in logs]
    try:
        deadline = time.monotonic() + 60
        while count(factory, TicketOccurrence) < 1500:
            assert time.monotonic() < deadline, "ticketers made no progress"
            assert all(p.poll() is None for p in procs), "a ticketer exited"
            time.sleep(0.1)
        procs[0].send_signal(signal.SIGKILL)  # mid-stream, holding whatever it had not acked
        procs[0].wait()
        bus.publish(RULE_EVENTS, stream[half:])
        deadline = time.monotonic() + 120
        while count(factory, TicketOccurrence) < EPISODES * EVENTS_PER_EPISODE:
            assert time.monotonic() < deadline, f"stuck at {count(factory, TicketOccurrence)} occurrences"
            assert procs[1].poll() is None, "the surviving ticketer exited"
            time.sleep(0.2)
        time.sleep(1.0)  # let anything else still in flight land before counting
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=15)
        for log in logs:
            log.close()
    assert count(factory, TicketOccurrence) == EPISODES * EVENTS_PER_EPISODE
    assert count(factory, Ticket) == EPISODES
    assert count(factory, TicketEpisode) == EPISODES
    with factory() as s:
        per_ticket = s.execute(select(Ticket.zone_name, Ticket.occurrence_count, Ticket.condition_active)).all()
    assert {row[0] for row in per_ticket} == {f"z{i}" for i in range(EPISODES)}
    assert all(row[1] == EVENTS_PER_EPISODE for row in per_ticket)  # effects applied exactly once
    assert not any(row[2] for row in per_ticket)  # every episode's "ended" was applied
    pending = redis.Redis.from_url(REDIS_URL).xpending(f"{ns}{RULE_EVENTS}", "ticketer")
    assert pending["pending"] == 0
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{ns}*"):
        client.delete(key)
    bus.close()
    engine.dispose()
