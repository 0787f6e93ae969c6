"""The bus on Redis Streams: consumer groups, XAUTOCLAIM with a kept cursor, dead letters by script."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import redis

from models.bus.messages import decode, encode
from models.bus.protocol import DEAD_MAXLEN, DEFAULT_MAXLEN, AnyMessage, DeadLetter, Delivery, clip_error
from models.errors import BusError

logger = logging.getLogger(__name__)


# Giving up on an entry, atomically: ack it, and only if it was still pending (nobody else applied or
# buried it meanwhile) keep its original payload among the dead letters.
# KEYS: stream, dead letters. ARGV: entry id, group, error, deliveries, at, fallback payload, maxlen.
_BURY = """
if redis.call('XACK', KEYS[1], ARGV[2], ARGV[1]) == 0 then return 0 end
local payload = ARGV[6]
local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if found[1] then
  local fields = found[1][2]
  for i = 1, #fields, 2 do
    if fields[i] == 'm' then payload = fields[i + 1] end
  end
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], '*', 'payload', payload, 'entry', ARGV[1],
  'group', ARGV[2], 'error', ARGV[3], 'deliveries', ARGV[4], 'at', ARGV[5])
return 1
"""

# Requeue one dead letter, atomically: two admins requeueing at once put it back once.
# KEYS: dead letters, stream. ARGV: dead-letter id, maxlen.
_REQUEUE = """
local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if not found[1] then return false end
local payload = nil
local fields = found[1][2]
for i = 1, #fields, 2 do
  if fields[i] == 'payload' then payload = fields[i + 1] end
end
redis.call('XDEL', KEYS[1], ARGV[1])
if not payload then return false end
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'm', payload)
"""


_STREAM_ID = re.compile(r"\d+-\d+")


def _text(value: bytes | str) -> str:
    return value.decode(errors="backslashreplace") if isinstance(value, bytes) else str(value)


class RedisBus:
    """Redis Streams: XADD (pipelined, MAXLEN ~), XREADGROUP, XACK, XAUTOCLAIM; dead letters in a stream
    of their own per topic."""

    def __init__(
        self, url: str, *, maxlen: int = DEFAULT_MAXLEN, namespace: str = "", client: redis.Redis | None = None
    ) -> None:
        self._client = client or redis.Redis.from_url(url, socket_timeout=30, socket_connect_timeout=5)
        self._maxlen = maxlen
        #: prefixed to every stream key: several installations (or test runs) can share one Redis
        self._ns = namespace
        self._groups_ready: set[tuple[str, str]] = set()
        #: where the next XAUTOCLAIM of (stream, group) starts: the walk goes on through the pending entries
        self._claim_cursor: dict[tuple[str, str], str] = {}
        self._bury_script = self._client.register_script(_BURY)
        self._requeue_script = self._client.register_script(_REQUEUE)
        self._dead_counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    @staticmethod
    def _translate(err: redis.RedisError) -> BusError:
        return BusError(f"redis: {type(err).__name__}: {err}")

    def _dead_key(self, topic: str) -> str:
        return f"{self._ns}dead:{topic}"

    def publish(self, topic: str, messages: Sequence[AnyMessage]) -> list[str]:
        if not messages:
            return []
        topic = self._ns + topic
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for m in messages:
                    pipe.xadd(topic, {"m": encode(m)}, maxlen=self._maxlen, approximate=True)
                return [_text(i) for i in pipe.execute()]
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

    def _bury(self, topic: str, group: str, entry_id: str, *, fallback: bytes, error: str, deliveries: int) -> bool:
        """Dead-letter one pending entry (``topic`` without the namespace); raises redis errors."""
        buried = self._bury_script(
            keys=[self._ns + topic, self._dead_key(topic)],
            args=[entry_id, group, clip_error(error), deliveries, datetime.now(UTC).isoformat(), fallback, DEAD_MAXLEN],
        )
        if not buried:
            return False
        with self._lock:
            self._dead_counts[topic] += 1
        logger.error("bus %s: group %s gave up on entry %s after %d deliveries: %s", topic, group, entry_id, deliveries, error)
        return True

    def _decode(
        self,
        topic: str,
        group: str | None,
        entries: list[tuple[bytes, dict[bytes, bytes]]],
        counts: dict[str, int] | None = None,
    ) -> list[Delivery]:
        """Messages of ``entries``; for a group, an entry that is not a message we know is dead-lettered
        at once (it can never succeed), a broadcast reader just skips it."""
        out = []
        for raw_id, fields in entries:
            entry_id = raw_id.decode()
            n = (counts or {}).get(entry_id, 1)
            if not fields:  # deleted/trimmed entry returned by a claim: nothing left to deliver
                if group is not None:
                    self._client.xack(self._ns + topic, group, entry_id)
                continue
            try:
                message = decode(fields[b"m"]) if b"m" in fields else None
                error = "undecodable entry: no 'm' field"
            except ValueError as err:
                message, error = None, f"undecodable entry: {err}"
            if message is None:
                if group is None:
                    logger.error("bus %s: entry %s is not a message we know; skipping it", topic, entry_id)
                else:
                    raw = json.dumps({_text(k): _text(v) for k, v in fields.items()}).encode()
                    self._bury(topic, group, entry_id, fallback=raw, error=error, deliveries=n)
                continue
            out.append(Delivery(entry_id, message, n))
        return out

    def consume(
        self, topic: str, *, group: str, consumer: str, count: int = 100, block_ms: int = 1000
    ) -> list[Delivery]:
        key = self._ns + topic
        try:
            self._ensure_group(key, group)
            try:
                reply: Any = self._client.xreadgroup(group, consumer, {key: ">"}, count=count, block=block_ms)
            except redis.ResponseError as err:
                if "NOGROUP" not in str(err):
                    raise
                # Redis restarted without persistence (or the stream was deleted): re-create and go on.
                logger.warning("bus group %s on %s vanished (Redis restart?); re-creating it", group, key)
                self._groups_ready.discard((key, group))
                self._ensure_group(key, group)
                return []
            if not reply:
                return []
            _, entries = reply[0]
            return self._decode(topic, group, entries)
        except redis.RedisError as err:
            raise self._translate(err) from err

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
        key = self._ns + topic
        try:
            self._ensure_group(key, group)
            start = self._claim_cursor.get((key, group), "0-0")
            claimed: Any = self._client.xautoclaim(key, group, consumer, min_idle_time=min_idle_ms, start_id=start, count=count)
            # the next start id ("0-0" once the walk has covered every pending entry)
            self._claim_cursor[(key, group)] = _text(claimed[0])
            entries = claimed[1]
            if not entries:
                return []
            with self._client.pipeline(transaction=False) as pipe:
                for e in entries:
                    pipe.xpending_range(key, group, min=e[0], max=e[0], count=1)
                pend: Any = pipe.execute()
            counts = {_text(p["message_id"]): int(p["times_delivered"]) for rows in pend for p in rows}
            return self._decode(topic, group, entries, counts)
        except redis.ResponseError as err:
            if "NOGROUP" in str(err):
                self._groups_ready.discard((key, group))
                self._claim_cursor.pop((key, group), None)
                return []
            raise self._translate(err) from err
        except redis.RedisError as err:
            raise self._translate(err) from err

    def read_broadcast(
        self, topic: str, *, after: str | None, count: int = 100, block_ms: int = 1000
    ) -> tuple[str, list[Delivery]]:
        key = self._ns + topic
        try:
            # A new reader starts after the newest entry, resolved *before* it blocks: reading from "$"
            # and asking for the last id only after an empty read skipped what came in between.
            cursor = after or self._last_id(key)
            reply: Any = self._client.xread({key: cursor}, count=count, block=block_ms)
        except redis.RedisError as err:
            raise self._translate(err) from err
        if not reply:
            return cursor, []
        _, entries = reply[0]
        return entries[-1][0].decode(), self._decode(topic, None, entries)

    def _last_id(self, key: str) -> str:
        newest: Any = self._client.xrevrange(key, "+", "-", count=1)
        return _text(newest[0][0]) if newest else "0-0"

    def dead_letter(self, topic: str, *, group: str, delivery: Delivery, error: str) -> bool:
        try:
            return self._bury(
                topic, group, delivery.id, fallback=encode(delivery.message), error=error, deliveries=delivery.deliveries
            )
        except redis.RedisError as err:
            raise self._translate(err) from err

    def dead_letters(self, topic: str, *, count: int = 1000) -> list[DeadLetter]:
        try:
            rows: Any = self._client.xrange(self._dead_key(topic), "-", "+", count=count)
        except redis.RedisError as err:
            raise self._translate(err) from err
        out = []
        for raw_id, fields in rows:
            f = {_text(k): v for k, v in fields.items()}
            out.append(
                DeadLetter(
                    id=_text(raw_id),
                    topic=topic,
                    entry_id=_text(f.get("entry", b"")),
                    group=_text(f.get("group", b"")),
                    payload=f.get("payload", b""),
                    error=_text(f.get("error", b"")),
                    deliveries=int(f.get("deliveries", b"0")),
                    at=datetime.fromisoformat(_text(f.get("at", b"1970-01-01T00:00:00+00:00"))),
                )
            )
        return out

    def dead_letter_count(self, topic: str) -> int:
        try:
            return int(self._client.xlen(self._dead_key(topic)))
        except redis.RedisError as err:
            raise self._translate(err) from err

    def requeue_dead(self, topic: str, *, ids: Sequence[str] | None = None) -> list[str]:
        new_ids: list[str] = []
        try:
            if ids is None:
                while batch := [d.id for d in self.dead_letters(topic, count=1000)]:
                    new_ids += self._requeue(topic, batch)
            else:
                new_ids = self._requeue(topic, ids)
        except redis.RedisError as err:
            raise self._translate(err) from err
        return new_ids

    def _requeue(self, topic: str, ids: Sequence[str]) -> list[str]:
        out = []
        for dead_id in ids:
            if not _STREAM_ID.fullmatch(dead_id):  # not an id Redis could have given: nothing to requeue
                continue
            new_id = self._requeue_script(keys=[self._dead_key(topic), self._ns + topic], args=[dead_id, self._maxlen])
            if new_id is not None:
                out.append(_text(new_id))
        return out

    def dead_lettered(self) -> dict[str, int]:
        with self._lock:
            return dict(self._dead_counts)

    def close(self) -> None:
        self._client.close()
