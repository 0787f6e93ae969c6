"""The bus inside one process: the embedded default and unit tests, with the Redis bus's semantics."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from models.bus.messages import decode, encode
from models.bus.protocol import DEAD_MAXLEN, DEFAULT_MAXLEN, AnyMessage, DeadLetter, Delivery, clip_error

logger = logging.getLogger(__name__)


@dataclass
class _Pending:
    consumer: str
    delivered_at: float
    deliveries: int


class MemoryBus:
    """In-process streams with consumer-group semantics (pending entries, ack, stale claims, dead letters).

    A stream item is a message, or raw bytes when a requeued dead letter could not be decoded (it is
    given up on again at its next delivery, as on Redis)."""

    def __init__(self, *, maxlen: int = DEFAULT_MAXLEN) -> None:
        self._maxlen = maxlen
        self._cond = threading.Condition()
        self._seq = itertools.count(1)
        self._streams: dict[str, list[tuple[int, AnyMessage | bytes]]] = {}
        # topic -> group -> (last delivered seq, pending entries by seq)
        self._groups: dict[str, dict[str, tuple[int, dict[int, _Pending]]]] = {}
        self._claim_cursor: dict[tuple[str, str], int] = {}
        self._dead: dict[str, list[DeadLetter]] = {}
        self._dead_counts: Counter[str] = Counter()

    def _append(self, topic: str, items: Sequence[AnyMessage | bytes]) -> list[str]:
        stream = self._streams.setdefault(topic, [])
        ids = []
        for m in items:
            seq = next(self._seq)
            stream.append((seq, m))
            ids.append(str(seq))
        if len(stream) > self._maxlen:
            del stream[: len(stream) - self._maxlen]
        self._cond.notify_all()
        return ids

    def publish(self, topic: str, messages: Sequence[AnyMessage]) -> list[str]:
        with self._cond:
            return self._append(topic, messages)

    def _group(self, topic: str, group: str) -> tuple[int, dict[int, _Pending]]:
        groups = self._groups.setdefault(topic, {})
        if group not in groups:
            groups[group] = (0, {})
        return groups[group]

    def _deliveries(self, topic: str, group: str, items: list[tuple[int, AnyMessage | bytes, int]]) -> list[Delivery]:
        """Deliveries of (seq, item, times delivered); undecodable items are buried on the way."""
        out = []
        for seq, item, n in items:
            if isinstance(item, bytes):
                self._bury(topic, group, seq, item, error="undecodable entry: not a message we know", deliveries=n)
                continue
            out.append(Delivery(str(seq), item, n))
        return out

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
                    out = self._deliveries(topic, group, [(s, m, 1) for s, m in fresh])
                    if out:
                        return out
                    continue
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
            cursor = self._claim_cursor.get((topic, group), 0)
            claimed: list[tuple[int, AnyMessage | bytes, int]] = []
            next_cursor = 0  # like XAUTOCLAIM's 0-0: the walk reached the end, start over next time
            for seq, entry in sorted(pending.items()):
                if seq < cursor:
                    continue
                if len(claimed) >= count:
                    next_cursor = seq
                    break
                if now - entry.delivered_at >= min_idle_ms / 1000:
                    if seq not in by_seq:  # trimmed away: nothing left to redeliver
                        pending.pop(seq)
                        continue
                    entry.consumer, entry.delivered_at, entry.deliveries = consumer, now, entry.deliveries + 1
                    claimed.append((seq, by_seq[seq], entry.deliveries))
            self._claim_cursor[(topic, group)] = next_cursor
            return self._deliveries(topic, group, claimed)

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
                    deliveries = [Delivery(str(s), m) for s, m in fresh if not isinstance(m, bytes)]
                    return str(fresh[-1][0]), deliveries
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return str(cursor), []
                self._cond.wait(remaining)

    def _bury(self, topic: str, group: str, seq: int, item: AnyMessage | bytes, *, error: str, deliveries: int) -> bool:
        _, pending = self._group(topic, group)
        if pending.pop(seq, None) is None:
            return False
        payload = item if isinstance(item, bytes) else encode(item)
        dead = self._dead.setdefault(topic, [])
        dead.append(
            DeadLetter(
                id=str(next(self._seq)), topic=topic, entry_id=str(seq), group=group, payload=payload,
                error=clip_error(error), deliveries=deliveries, at=datetime.now(UTC),
            )
        )
        if len(dead) > DEAD_MAXLEN:
            del dead[: len(dead) - DEAD_MAXLEN]
        self._dead_counts[topic] += 1
        logger.error("bus %s: group %s gave up on entry %s after %d deliveries: %s", topic, group, seq, deliveries, error)
        return True

    def dead_letter(self, topic: str, *, group: str, delivery: Delivery, error: str) -> bool:
        with self._cond:
            seq = int(delivery.id)
            item = dict(self._streams.get(topic, [])).get(seq, delivery.message)
            return self._bury(topic, group, seq, item, error=error, deliveries=delivery.deliveries)

    def dead_letters(self, topic: str, *, count: int = 1000) -> list[DeadLetter]:
        with self._cond:
            return list(self._dead.get(topic, [])[:count])

    def dead_letter_count(self, topic: str) -> int:
        with self._cond:
            return len(self._dead.get(topic, []))

    def requeue_dead(self, topic: str, *, ids: Sequence[str] | None = None) -> list[str]:
        with self._cond:
            dead = self._dead.get(topic, [])
            wanted = set(ids) if ids is not None else None
            chosen = [d for d in dead if wanted is None or d.id in wanted]
            self._dead[topic] = [d for d in dead if wanted is not None and d.id not in wanted]
            items: list[AnyMessage | bytes] = []
            for d in chosen:
                try:
                    items.append(decode(d.payload))
                except ValueError:
                    items.append(d.payload)
            return self._append(topic, items)

    def dead_lettered(self) -> dict[str, int]:
        with self._cond:
            return dict(self._dead_counts)

    def close(self) -> None:
        with self._cond:
            self._cond.notify_all()
