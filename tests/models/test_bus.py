"""The bus contract, on the real Redis and on the in-process implementation alike: groups share work,
unacknowledged entries are re-claimed after they go stale, broadcast readers see everything, and a
Redis restart (it keeps nothing on disk here) costs a re-created group, not a crash."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis

from models.bus.messages import ConfigChange, RuleEvent
from models.bus.streams import Bus, MemoryBus, RedisBus
from tests.support.require import require

REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_available() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


@pytest.fixture(params=["memory", "redis"])
def bus(request: pytest.FixtureRequest) -> Iterator[Bus]:
    if request.param == "memory":
        yield MemoryBus()
        return
    require(redis_available(), "Redis on 127.0.0.1:6379")
    ns = f"test-{uuid.uuid4().hex[:8]}:"
    b = RedisBus(REDIS_URL, namespace=ns)
    yield b
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{ns}*"):
        client.delete(key)
    b.close()


def event(i: int) -> RuleEvent:
    now = datetime.now(UTC)
    return RuleEvent(event_id=f"e{i}", type="started", camera_id=1, zone="z", rule="crowding", episode_start=now, at=now, count=i)


def test_group_shares_work_and_acks(bus: Bus) -> None:
    bus.publish("t", [event(i) for i in range(10)])
    a = bus.consume("t", group="g", consumer="a", count=6, block_ms=100)
    b = bus.consume("t", group="g", consumer="b", count=6, block_ms=100)
    assert [d.message.event_id for d in a + b] == [f"e{i}" for i in range(10)]  # type: ignore[union-attr]
    assert bus.consume("t", group="g", consumer="b", count=6, block_ms=50) == []
    bus.ack("t", group="g", ids=[d.id for d in a])
    # b died without acking: after it goes stale its entries are claimed by a, marked as redelivered
    time.sleep(0.15)
    claimed = bus.claim_stale("t", group="g", consumer="a", min_idle_ms=100)
    assert sorted(d.message.event_id for d in claimed) == [f"e{i}" for i in range(6, 10)]  # type: ignore[union-attr]
    assert all(d.deliveries == 2 for d in claimed)
    bus.ack("t", group="g", ids=[d.id for d in claimed])
    time.sleep(0.15)
    assert bus.claim_stale("t", group="g", consumer="a", min_idle_ms=100) == []
    # another group sees every entry again
    assert len(bus.consume("t", group="other", consumer="x", count=100, block_ms=100)) == 10


def test_broadcast_readers_see_every_new_entry(bus: Bus) -> None:
    bus.publish("cfg", [ConfigChange(kind="zones", camera_id=1, version=1)])
    cursor, old = bus.read_broadcast("cfg", after=None, block_ms=50)
    assert old == []  # a new reader starts at the end
    bus.publish("cfg", [ConfigChange(kind="zones", camera_id=2, version=3)])
    cursor, new = bus.read_broadcast("cfg", after=cursor, block_ms=500)
    assert [(d.message.camera_id, d.message.version) for d in new] == [(2, 3)]  # type: ignore[union-attr]
    _, none = bus.read_broadcast("cfg", after=cursor, block_ms=50)
    assert none == []


def test_consume_blocks_until_a_message_arrives(bus: Bus) -> None:
    import threading

    threading.Timer(0.2, lambda: bus.publish("slow", [event(1)])).start()
    t0 = time.monotonic()
    got = bus.consume("slow", group="g", consumer="c", block_ms=3000)
    assert [d.message.event_id for d in got] == ["e1"]  # type: ignore[union-attr]
    assert time.monotonic() - t0 < 2.5


def test_redis_restart_recreates_the_group() -> None:
    require(redis_available(), "Redis on 127.0.0.1:6379")
    ns = f"test-{uuid.uuid4().hex[:8]}:"
    bus = RedisBus(REDIS_URL, namespace=ns)
    bus.publish("t", [event(1)])
    assert len(bus.consume("t", group="g", consumer="a", block_ms=100)) == 1
    # what a restart of a Redis without persistence looks like to us: the stream and its group vanish
    redis.Redis.from_url(REDIS_URL).delete(f"{ns}t")
    assert bus.consume("t", group="g", consumer="a", block_ms=100) == []
    bus.publish("t", [event(2)])
    assert [d.message.event_id for d in bus.consume("t", group="g", consumer="a", block_ms=500)] == ["e2"]  # type: ignore[union-attr]
    redis.Redis.from_url(REDIS_URL).delete(f"{ns}t")
    bus.close()
