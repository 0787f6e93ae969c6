"""The bus contract, on the real Redis and on the in-process implementation alike: groups share work,
unacknowledged entries are re-claimed after they go stale, broadcast readers see everything, and a
Redis restart (it keeps nothing on disk here) costs a re-created group, not a crash."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from models.bus.memory import MemoryBus
from models.bus.messages import ConfigChange, RuleEvent, decode
from models.bus.protocol import Bus
from models.bus.redis_streams import RedisBus
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
    """A blocked consumer gets what is published while it waits (how fast: bench/bench_bus.py)."""
    import threading

    assert bus.consume("slow", group="g", consumer="c", block_ms=10) == []  # group exists, nothing yet
    threading.Timer(0.2, lambda: bus.publish("slow", [event(1)])).start()
    got = bus.consume("slow", group="g", consumer="c", block_ms=5000)
    assert [d.message.event_id for d in got] == ["e1"]  # type: ignore[union-attr]
    assert [d.deliveries for d in got] == [1]


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


def test_claims_walk_on_through_the_pending_entries(bus: Bus) -> None:
    """Each claim goes on where the last one stopped (XAUTOCLAIM's cursor), so entries that keep failing
    at the head of the pending list cannot hide the ones behind them; at the end the walk starts over."""
    bus.publish("t", [event(i) for i in range(3)])
    assert len(bus.consume("t", group="g", consumer="dead", count=10, block_ms=100)) == 3
    walk = [bus.claim_stale("t", group="g", consumer="a", min_idle_ms=0, count=1) for _ in range(4)]
    assert [[(d.message.event_id, d.deliveries) for d in w] for w in walk] == [  # type: ignore[union-attr]
        [("e0", 2)], [("e1", 2)], [("e2", 2)], [("e0", 3)]
    ]


def test_dead_letter_acks_keeps_the_payload_and_requeues(bus: Bus) -> None:
    bus.publish("t", [event(i) for i in range(3)])
    got = bus.consume("t", group="g", consumer="a", count=10, block_ms=100)
    assert len(got) == 3
    bad = got[1]
    assert bus.dead_letter("t", group="g", delivery=bad, error="ValueError: boom") is True
    assert bus.dead_letter("t", group="g", delivery=bad, error="again") is False  # no longer pending: once only
    bus.ack("t", group="g", ids=[got[0].id, got[2].id])
    assert bus.claim_stale("t", group="g", consumer="a", min_idle_ms=0) == []  # the bad one was acked too
    [dead] = bus.dead_letters("t")
    assert (dead.topic, dead.entry_id, dead.group, dead.error, dead.deliveries) == ("t", bad.id, "g", "ValueError: boom", 1)
    assert decode(dead.payload) == bad.message
    assert bus.dead_letter_count("t") == 1
    assert bus.dead_lettered() == {"t": 1}
    assert bus.requeue_dead("t", ids=["no-such-id", "1-1"]) == []
    new_ids = bus.requeue_dead("t", ids=[dead.id])
    assert len(new_ids) == 1
    assert bus.dead_letters("t") == []
    again = bus.consume("t", group="g", consumer="a", count=10, block_ms=100)
    assert [(d.id, d.message, d.deliveries) for d in again] == [(new_ids[0], bad.message, 1)]


class LateWriterClient(redis.Redis):
    """A real Redis client; when its XREAD comes back empty, another process publishes right then,
    before the bus goes on (the race a broadcast reader must not lose)."""

    on_empty: Callable[[], object] | None = None

    def xread(self, *args: Any, **kwargs: Any) -> Any:
        reply = super().xread(*args, **kwargs)
        if not reply and self.on_empty is not None:
            hook, self.on_empty = self.on_empty, None
            hook()
        return reply


def test_new_broadcast_reader_misses_nothing_published_after_it_started() -> None:
    require(redis_available(), "Redis on 127.0.0.1:6379")
    ns = f"test-{uuid.uuid4().hex[:8]}:"
    client = LateWriterClient.from_url(REDIS_URL)
    reader, writer = RedisBus(REDIS_URL, namespace=ns, client=client), RedisBus(REDIS_URL, namespace=ns)
    writer.publish("cfg", [ConfigChange(kind="zones", camera_id=1, version=1)])  # before the reader: not seen
    client.on_empty = lambda: writer.publish("cfg", [ConfigChange(kind="zones", camera_id=7, version=2)])
    cursor, first = reader.read_broadcast("cfg", after=None, block_ms=50)
    assert first == []
    assert client.on_empty is None  # the late write did happen
    _, late = reader.read_broadcast("cfg", after=cursor, block_ms=500)
    assert [(d.message.camera_id, d.message.version) for d in late] == [(7, 2)]  # type: ignore[union-attr]
    # a reader on a stream that does not exist yet sees its first entry too
    cursor, none = reader.read_broadcast("fresh", after=None, block_ms=10)
    assert none == []
    writer.publish("fresh", [ConfigChange(kind="cameras")])
    assert len(reader.read_broadcast("fresh", after=cursor, block_ms=500)[1]) == 1
    for key in client.scan_iter(f"{ns}*"):
        client.delete(key)
    reader.close()
    writer.close()


def test_undecodable_entry_is_dead_lettered_at_once_and_acked() -> None:
    require(redis_available(), "Redis on 127.0.0.1:6379")
    ns = f"test-{uuid.uuid4().hex[:8]}:"
    bus, client = RedisBus(REDIS_URL, namespace=ns), redis.Redis.from_url(REDIS_URL)
    bus.publish("t", [event(1)])
    client.xadd(f"{ns}t", {"m": b"\xff{not json"})
    client.xadd(f"{ns}t", {"other": b"field"})
    bus.publish("t", [event(2)])
    got = bus.consume("t", group="g", consumer="a", count=10, block_ms=100)
    assert [d.message.event_id for d in got] == ["e1", "e2"]  # type: ignore[union-attr]
    assert client.xpending(f"{ns}t", "g")["pending"] == 2  # the two good ones, until their consumer acks
    dead = bus.dead_letters("t")
    assert [(d.payload, d.deliveries, d.group) for d in dead] == [
        (b"\xff{not json", 1, "g"),
        (b'{"other": "field"}', 1, "g"),
    ]
    assert all(d.error.startswith("undecodable entry") for d in dead)
    assert bus.dead_lettered() == {"t": 2}
    # a broadcast reader skips it without burying it (it owns nothing)
    assert len(bus.read_broadcast("t", after="0-0", block_ms=10)[1]) == 2
    assert bus.dead_letter_count("t") == 2
    for key in client.scan_iter(f"{ns}*"):
        client.delete(key)
    client.close()
    bus.close()
