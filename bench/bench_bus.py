"""Bus benchmark: how soon a blocked consumer wakes up for an entry published while it waits (the figure
the bus tests used to assert on), on the in-process bus and on Redis Streams.

    .venv/bin/python bench/bench_bus.py [--rounds 200] [--redis redis://127.0.0.1:6379/0]

Each round: a consumer blocks in ``consume`` (block 5 s), another thread publishes one rule event after
20 ms, and the wake-up latency is the time from that publish to ``consume`` returning it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.bus.memory import MemoryBus  # noqa: E402
from models.bus.messages import RuleEvent  # noqa: E402
from models.bus.protocol import Bus  # noqa: E402
from models.bus.redis_streams import RedisBus  # noqa: E402


def event(i: int) -> RuleEvent:
    now = datetime.now(UTC)
    return RuleEvent(event_id=f"b{i}", type="started", camera_id=1, zone="z", rule="crowding", episode_start=now, at=now)


def wake_up_ms(bus: Bus, rounds: int) -> list[float]:
    bus.consume("bench", group="g", consumer="c", block_ms=10)  # create the group
    out = []
    for i in range(rounds):
        published: list[float] = []

        def publish(i: int = i, published: list[float] = published) -> None:
            published.append(time.perf_counter())
            bus.publish("bench", [event(i)])

        threading.Timer(0.02, publish).start()
        got = bus.consume("bench", group="g", consumer="c", block_ms=5000)
        done = time.perf_counter()
        assert len(got) == 1, got
        bus.ack("bench", group="g", ids=[got[0].id])
        out.append((done - published[0]) * 1000)
    return out


def report(name: str, samples: list[float]) -> None:
    q = statistics.quantiles(samples, n=100)
    print(f"{name}: wake-up p50 {q[49]:.2f} ms, p99 {q[98]:.2f} ms, max {max(samples):.2f} ms ({len(samples)} rounds)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    report("memory", wake_up_ms(MemoryBus(), args.rounds))
    ns = f"bench-{uuid.uuid4().hex[:8]}:"
    bus = RedisBus(args.redis, namespace=ns)
    try:
        report("redis", wake_up_ms(bus, args.rounds))
    finally:
        client = redis.Redis.from_url(args.redis)
        for key in client.scan_iter(f"{ns}*"):
            client.delete(key)
        bus.close()


if __name__ == "__main__":
    main()
