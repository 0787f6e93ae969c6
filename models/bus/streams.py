"""The bus: at-least-once delivery of small messages between processes.

Two implementations of one protocol:
- :class:`RedisBus`: Redis Streams with consumer groups (explicit ack, re-claiming entries a dead
  consumer left pending, approximate length bound); survives a Redis restart by re-creating its group.
- :class:`MemoryBus`: the same semantics inside one process, for the embedded default and unit tests.

Consumers must be idempotent: an entry is redelivered when its consumer dies before acking it.
Besides groups (work sharing), ``read_broadcast`` lets every reader see every entry (the API's live
stream fans ticket notices out to its browsers this way).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis

from models.bus.messages import ConfigChange, RuleEvent, TicketNotice, decode, encode
from models.errors import BusError

logger = logging.getLogger(__name__)

AnyMessage = RuleEvent | ConfigChange | TicketNotice
DEFAULT_MAXLEN = 1_000_000


@dataclass(frozen=True)
class Delivery:
    id: str
    message: AnyMessage
    #: how many times this entry has been delivered (1 = first time)
    deliveries: int = 1


class Bus(Protocol):
    def publish(self, topic: str, messages: Sequence[AnyMessage]) -> list[str]: ...

    def consume(
        self, topic: str, *, group: str, consumer: str, count: int = 100, block_ms: int = 1000
    ) -> list[Delivery]: ...

    def ack(self, topic: str, *, group: str, ids: Sequence[str]) -> None: ...

    def claim_stale(
        self, topic: str, *, group: str, consumer: str, min_idle_ms: int, count: int = 100
    ) -> list[Delivery]: ...

    def read_broadcast(
        self, topic: str, *, after: str | None, count: int = 100, block_ms: int = 1000
    ) -> tuple[str, list[Delivery]]: ...

    def close(self) -> None: ...


@dataclass
class _Pending:
    consumer: str
    delivered_at: float
    deliveries: int


# --------------------------------------------------------------------------------------------------
class MemoryBus:
    """In-process streams with consumer-group semantics (pending entries, ack, stale claims)."""

    def __init__(self, *, maxlen: int = DEFAULT_MAXLEN) -> None:
        self._maxlen = maxlen
        self._cond = threading.Condition()
        self._seq = itertools.count(1)
        self._streams: dict[str, list[tuple[int, AnyMessage]]] = {}
        # topic -> group -> (last delivered seq, pending entries by seq)
        self._groups: dict[str, dict[str, tuple[int, dict[int, _Pending]]]] = {}

    def publish(self, topic: str, messages: Sequence[AnyMessage]) -> list[str]:
        with self._cond:
            stream = self._streams.setdefault(topic, [])
            ids = []
            for m in messages:
                seq = next(self._seq)
                stream.append((seq, m))
                ids.append(str(seq))
            if len(stream) > self._maxlen:
                del stream[: len(stream) - self._maxlen]
            self._cond.notify_all()
            return ids

    def _group(self, topic: str, group: str) -> tuple[int, dict[int, _Pending]]:
        groups = self._groups.setdefault(topic, {})
        if group not in groups:
            groups[group] = (0, {})
        return groups[group]

    def consume(
        self, topic: str, *, group: str, consumer: str, count: int = 100, block_ms: int = 1000
    ) -> list[Delivery]:
        deadline = time.monotonic() + block_ms / 1000
        with self._cond:
            while True:
                last, pending = self._group(topic, group)
                fresh = [(s, m) for s, m in self._streams.get(topic, []) if s > last][:count]
                if fresh:
                    now = time.monotonic()
                    for s, _ in fresh:
                        pending[s] = _Pending(consumer, now, 1)
                    self._groups[topic][group] = (fresh[-1][0], pending)
                    return [Delivery(str(s), m) for s, m in fresh]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._cond.wait(remaining)

    def ack(self, topic: str, *, group: str, ids: Sequence[str]) -> None:
        with self._cond:
            _, pending = self._group(topic, group)
            for i in ids:
                pending.pop(int(i), None)

    def claim_stale(
        self, topic: str, *, group: str, consumer: str, min_idle_ms: int, count: int = 100
    ) -> list[Delivery]:
        with self._cond:
            _, pending = self._group(topic, group)
            now = time.monotonic()
            by_seq = dict(self._streams.get(topic, []))
            out: list[Delivery] = []
            for seq, entry in sorted(pending.items()):
                if len(out) >= count:
                    break
                if now - entry.delivered_at >= min_idle_ms / 1000:
                    if seq not in by_seq:  # trimmed away: nothing left to redeliver
                        pending.pop(seq)
                        continue
                    entry.consumer, entry.delivered_at, entry.deliveries = consumer, now, entry.deliveries + 1
                    out.append(Delivery(str(seq), by_seq[seq], entry.deliveries))
            return out

    def read_broadcast(
        self, topic: str, *, after: str | None, count: int = 100, block_ms: int = 1000
    ) -> tuple[str, list[Delivery]]:
        deadline = time.monotonic() + block_ms / 1000
        with self._cond:
            stream = self._streams.setdefault(topic, [])
            cursor = int(after) if after is not None else (stream[-1][0] if stream else 0)
            while True:
                fresh = [(s, m) for s, m in stream if s > cursor][:count]
                if fresh:
                    return str(fresh[-1][0]), [Delivery(str(s), m) for s, m in fresh]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return str(cursor), []
                self._cond.wait(remaining)

    def pending_count(self, topic: str, *, group: str) -> int:
        with self._cond:
            return len(self._group(topic, group)[1])

    def close(self) -> None:
        with self._cond:
            self._cond.notify_all()


# --------------------------------------------------------------------------------------------------
class RedisBus:
    """Redis Streams: XADD (pipelined, MAXLEN ~), XREADGROUP, XACK, XAUTOCLAIM."""

    def __init__(
        self, url: str, *, maxlen: int = DEFAULT_MAXLEN, namespace: str = "", client: redis.Redis | None = None
    ) -> None:
        self._client = client or redis.Redis.from_url(url, socket_timeout=30, socket_connect_timeout=5)
        self._maxlen = maxlen
        #: prefixed to every stream key: several installations (or test runs) can share one Redis
        self._ns = namespace
        self._groups_ready: set[tuple[str, str]] = set()

    @staticmethod
    def _translate(err: redis.RedisError) -> BusError:
        return BusError(f"redis: {type(err).__name__}: {err}")

    def publish(self, topic: str, messages: Sequence[AnyMessage]) -> list[str]:
        if not messages:
            return []
        topic = self._ns + topic
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for m in messages:
                    pipe.xadd(topic, {"m": encode(m)}, maxlen=self._maxlen, approximate=True)
                return [i.decode() if isinstance(i, bytes) else str(i) for i in pipe.execute()]
        except redis.RedisError as err:
            raise self._translate(err) from err

    def _ensure_group(self, topic: str, group: str) -> None:
        if (topic, group) in self._groups_ready:
            return
        try:
            self._client.xgroup_create(topic, group, id="0", mkstream=True)
        except redis.ResponseError as err:
            if "BUSYGROUP" not in str(err):
                raise
        self._groups_ready.add((topic, group))

    def _decode(self, entries: list[tuple[bytes, dict[bytes, bytes]]], counts: dict[str, int] | None = None) -> list[Delivery]:
        out = []
        for raw_id, fields in entries:
            entry_id = raw_id.decode()
            if not fields or b"m" not in fields:  # deleted/trimmed entry returned by a claim
                continue
            try:
                message = decode(fields[b"m"])
            except ValueError:
                logger.error("bus entry %s is not a message we know; skipping it", entry_id)
                continue
            out.append(Delivery(entry_id, message, (counts or {}).get(entry_id, 1)))
        return out

    def consume(
        self, topic: str, *, group: str, consumer: str, count: int = 100, block_ms: int = 1000
    ) -> list[Delivery]:
        topic = self._ns + topic
        try:
            self._ensure_group(topic, group)
            try:
                reply: Any = self._client.xreadgroup(group, consumer, {topic: ">"}, count=count, block=block_ms)
            except redis.ResponseError as err:
                if "NOGROUP" not in str(err):
                    raise
                # Redis restarted without persistence (or the stream was deleted): re-create and go on.
                logger.warning("bus group %s on %s vanished (Redis restart?); re-creating it", group, topic)
                self._groups_ready.discard((topic, group))
                self._ensure_group(topic, group)
                return []
        except redis.RedisError as err:
            raise self._translate(err) from err
        if not reply:
            return []
        _, entries = reply[0]
        return self._decode(entries)

    def ack(self, topic: str, *, group: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        try:
            self._client.xack(self._ns + topic, group, *ids)
        except redis.RedisError as err:
            raise self._translate(err) from err

    def claim_stale(
        self, topic: str, *, group: str, consumer: str, min_idle_ms: int, count: int = 100
    ) -> list[Delivery]:
        topic = self._ns + topic
        try:
            self._ensure_group(topic, group)
            claimed: Any = self._client.xautoclaim(topic, group, consumer, min_idle_time=min_idle_ms, start_id="0-0", count=count)
            entries = claimed[1]
            if not entries:
                return []
            ids = [e[0] for e in entries]
            pend: Any = self._client.xpending_range(topic, group, min=ids[0], max=ids[-1], count=len(ids) * 2)
            counts = {
                (p["message_id"].decode() if isinstance(p["message_id"], bytes) else str(p["message_id"])): int(
                    p["times_delivered"]
                )
                for p in pend
            }
        except redis.ResponseError as err:
            if "NOGROUP" in str(err):
                self._groups_ready.discard((topic, group))
                return []
            raise self._translate(err) from err
        except redis.RedisError as err:
            raise self._translate(err) from err
        return self._decode(entries, counts)

    def read_broadcast(
        self, topic: str, *, after: str | None, count: int = 100, block_ms: int = 1000
    ) -> tuple[str, list[Delivery]]:
        topic = self._ns + topic
        cursor = after or "$"
        try:
            reply: Any = self._client.xread({topic: cursor}, count=count, block=block_ms)
        except redis.RedisError as err:
            raise self._translate(err) from err
        if not reply:
            if cursor == "$":
                try:
                    info: Any = self._client.xinfo_stream(topic)
                    last = info["last-generated-id"]
                    cursor = last.decode() if isinstance(last, bytes) else str(last)
                except redis.ResponseError:
                    cursor = "0-0"
            return cursor, []
        _, entries = reply[0]
        deliveries = self._decode(entries)
        return entries[-1][0].decode(), deliveries

    def close(self) -> None:
        self._client.close()


def make_bus(redis_url: str | None, *, namespace: str = "") -> Bus:
    """Redis Streams when a URL is configured, else the in-process bus (embedded mode)."""
    return RedisBus(redis_url, namespace=namespace) if redis_url else MemoryBus()
