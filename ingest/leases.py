"""Camera ownership leases: which worker reads which camera, with a TTL so a dead worker's cameras move.

One small protocol, two implementations: :class:`RedisLeaseStore` for the distributed mode (many
``gridpatrol worker`` processes on many machines) and :class:`MemoryLeaseStore` for the embedded mode
(one process). A lease is a key holding its owner's id with an expiry; claims are atomic
(``SET NX`` or a Lua check-and-set), so a camera never has two owners in the store. Workers also
heartbeat into a membership set so that each can compute its fair share of the fleet.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Protocol

import redis

from models.errors import GridPatrolError


class LeaseStoreError(GridPatrolError):
    """The lease store could not be reached; held leases lapse at their TTL."""


class LeaseStore(Protocol):
    """Camera leases and worker membership."""

    def heartbeat(self, worker_id: str, ttl_s: float, *, capacity: int) -> None:
        """Mark ``worker_id`` alive for ``ttl_s`` seconds, able to read ``capacity`` cameras."""

    def leave(self, worker_id: str) -> None:
        """Remove ``worker_id`` from the live workers at once (clean shutdown)."""

    def live_workers(self) -> dict[str, int]:
        """Workers whose heartbeat has not expired, with their capacity."""

    def claim(self, camera_id: str, worker_id: str, ttl_s: float) -> bool:
        """Take the camera if it is free (or already ours, which renews it); True when we hold it."""

    def renew(self, camera_ids: Iterable[str], worker_id: str, ttl_s: float) -> set[str]:
        """Extend our leases; returns the cameras still held (the others were lost)."""

    def release(self, camera_ids: Iterable[str], worker_id: str) -> None:
        """Give up our leases (someone else's are left alone)."""

    def owners(self, camera_ids: Iterable[str]) -> dict[str, str | None]:
        """Current owner of each camera, None when free."""


class MemoryLeaseStore:
    """In-process leases for the embedded mode (and for several supervisors in one process)."""

    def __init__(self) -> None:
        self._leases: dict[str, tuple[str, float]] = {}
        self._workers: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def _now(self) -> float:
        return time.monotonic()

    def _owner(self, camera_id: str, now: float) -> str | None:
        held = self._leases.get(camera_id)
        if held is None or held[1] <= now:
            return None
        return held[0]

    def heartbeat(self, worker_id: str, ttl_s: float, *, capacity: int) -> None:
        with self._lock:
            self._workers[worker_id] = (self._now() + ttl_s, capacity)

    def leave(self, worker_id: str) -> None:
        with self._lock:
            self._workers.pop(worker_id, None)

    def live_workers(self) -> dict[str, int]:
        now = self._now()
        with self._lock:
            return {w: cap for w, (until, cap) in self._workers.items() if until > now}

    def claim(self, camera_id: str, worker_id: str, ttl_s: float) -> bool:
        now = self._now()
        with self._lock:
            owner = self._owner(camera_id, now)
            if owner not in (None, worker_id):
                return False
            self._leases[camera_id] = (worker_id, now + ttl_s)
            return True

    def renew(self, camera_ids: Iterable[str], worker_id: str, ttl_s: float) -> set[str]:
        now = self._now()
        kept: set[str] = set()
        with self._lock:
            for camera_id in camera_ids:
                if self._owner(camera_id, now) == worker_id:
                    self._leases[camera_id] = (worker_id, now + ttl_s)
                    kept.add(camera_id)
        return kept

    def release(self, camera_ids: Iterable[str], worker_id: str) -> None:
        now = self._now()
        with self._lock:
            for camera_id in camera_ids:
                if self._owner(camera_id, now) == worker_id:
                    del self._leases[camera_id]

    def owners(self, camera_ids: Iterable[str]) -> dict[str, str | None]:
        now = self._now()
        with self._lock:
            return {c: self._owner(c, now) for c in camera_ids}


_CLAIM = """
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

_RENEW = """
local kept = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    kept[#kept + 1] = i
  end
end
return kept
"""

_RELEASE = """
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
end
return 0
"""

# Membership uses the server's clock, so workers on machines with skewed clocks agree.
_HEARTBEAT = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, w in ipairs(dead) do redis.call('HDEL', KEYS[2], w) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return now
"""

_LIVE = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
local out = {}
for _, w in ipairs(live) do
  out[#out + 1] = w
  out[#out + 1] = redis.call('HGET', KEYS[2], w) or '0'
end
return out
"""


class RedisLeaseStore:
    """Leases as Redis keys ``<namespace><prefix>lease:<camera_id>`` = worker id with a PX expiry.

    ``namespace`` is the installation's ``GRIDPATROL_BUS_NAMESPACE``: two installations sharing one Redis
    must not take each other's cameras (their camera ids overlap: both count from 1)."""

    def __init__(self, client: redis.Redis, *, prefix: str = "gridpatrol:", namespace: str = "") -> None:
        self._r = client
        self._prefix = prefix = namespace + prefix
        self._workers_key = f"{prefix}workers"
        self._capacity_key = f"{prefix}worker-capacity"
        self._claim = client.register_script(_CLAIM)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._heartbeat = client.register_script(_HEARTBEAT)
        self._live = client.register_script(_LIVE)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "gridpatrol:", namespace: str = "") -> RedisLeaseStore:
        return cls(redis.Redis.from_url(url, decode_responses=True, socket_timeout=5), prefix=prefix, namespace=namespace)

    def _key(self, camera_id: str) -> str:
        return f"{self._prefix}lease:{camera_id}"

    def heartbeat(self, worker_id: str, ttl_s: float, *, capacity: int) -> None:
        try:
            self._heartbeat(
                keys=[self._workers_key, self._capacity_key], args=[worker_id, int(ttl_s * 1000), capacity]
            )
        except redis.RedisError as err:
            raise LeaseStoreError(f"heartbeat of {worker_id} failed: {err}") from err

    def leave(self, worker_id: str) -> None:
        try:
            self._r.zrem(self._workers_key, worker_id)
            self._r.hdel(self._capacity_key, worker_id)
        except redis.RedisError as err:
            raise LeaseStoreError(f"leave of {worker_id} failed: {err}") from err

    def live_workers(self) -> dict[str, int]:
        try:
            flat = self._live(keys=[self._workers_key, self._capacity_key])
            return {_text(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)}
        except redis.RedisError as err:
            raise LeaseStoreError(f"listing workers failed: {err}") from err

    def claim(self, camera_id: str, worker_id: str, ttl_s: float) -> bool:
        try:
            return bool(self._claim(keys=[self._key(camera_id)], args=[worker_id, int(ttl_s * 1000)]))
        except redis.RedisError as err:
            raise LeaseStoreError(f"{camera_id}: claim failed: {err}") from err

    def renew(self, camera_ids: Iterable[str], worker_id: str, ttl_s: float) -> set[str]:
        ids = list(camera_ids)
        if not ids:
            return set()
        try:
            kept = self._renew(keys=[self._key(c) for c in ids], args=[worker_id, int(ttl_s * 1000)])
        except redis.RedisError as err:
            raise LeaseStoreError(f"renewing {len(ids)} leases failed: {err}") from err
        return {ids[int(i) - 1] for i in kept}

    def release(self, camera_ids: Iterable[str], worker_id: str) -> None:
        ids = list(camera_ids)
        if not ids:
            return
        try:
            self._release(keys=[self._key(c) for c in ids], args=[worker_id])
        except redis.RedisError as err:
            raise LeaseStoreError(f"releasing {len(ids)} leases failed: {err}") from err

    def owners(self, camera_ids: Iterable[str]) -> dict[str, str | None]:
        ids = list(camera_ids)
        if not ids:
            return {}
        try:
            values = self._r.mget([self._key(c) for c in ids])
        except redis.RedisError as err:
            raise LeaseStoreError(f"reading owners failed: {err}") from err
        return {c: (_text(v) if v is not None else None) for c, v in zip(ids, values, strict=True)}


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
