"""Login throttling: failed attempts counted per user and per address over a sliding window.

The counts live in a :class:`ThrottleStore`. :class:`MemoryThrottleStore` serves one process (the
embedded default); several API processes behind a load balancer share
:class:`models.throttle_redis.RedisThrottleStore`, handed to the API factory.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from models.errors import GridPatrolError


class Throttled(GridPatrolError):
    """Too many failed attempts: wait ``retry_after_s`` seconds (HTTP 429 with Retry-After)."""

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ThrottleStore(Protocol):
    """Timestamps of recent failures per key. Implementations drop entries older than the window."""

    def add(self, key: str, *, now: float, window_s: float) -> None: ...

    def recent(self, key: str, *, now: float, window_s: float) -> list[float]:
        """Failure times within ``window_s`` before ``now``, oldest first."""
        ...

    def clear(self, key: str) -> None: ...


class MemoryThrottleStore:
    """In-process store; bounded so that a flood of random usernames cannot exhaust memory."""

    def __init__(self, *, max_keys: int = 100_000) -> None:
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._max_keys = max_keys

    def add(self, key: str, *, now: float, window_s: float) -> None:
        with self._lock:
            if key not in self._hits and len(self._hits) >= self._max_keys:
                self._prune(now=now, window_s=window_s)
            hits = self._hits.setdefault(key, deque(maxlen=1000))
            hits.append(now)

    def recent(self, key: str, *, now: float, window_s: float) -> list[float]:
        with self._lock:
            hits = self._hits.get(key)
            if not hits:
                return []
            while hits and hits[0] <= now - window_s:
                hits.popleft()
            return list(hits)

    def clear(self, key: str) -> None:
        with self._lock:
            self._hits.pop(key, None)

    def _prune(self, *, now: float, window_s: float) -> None:
        stale = [k for k, v in self._hits.items() if not v or v[-1] <= now - window_s]
        for k in stale:
            del self._hits[k]
        if len(self._hits) >= self._max_keys:  # still full of live keys: forget the oldest half
            for k in sorted(self._hits, key=lambda k: self._hits[k][-1])[: self._max_keys // 2]:
                del self._hits[k]


@dataclass
class LoginThrottle:
    """At most ``max_per_user`` failures per username and ``max_per_address`` per client address in
    ``window_s``; past that, attempts are refused (without checking the password) until the oldest
    failure leaves the window. A successful login clears the username's count, not the address's."""

    store: ThrottleStore = field(default_factory=MemoryThrottleStore)
    max_per_user: int = 5
    max_per_address: int = 30
    window_s: float = 900.0
    clock: Callable[[], float] = time.time

    def _keys(self, *, username: str, remote_addr: str) -> list[tuple[str, int, str]]:
        keys = [(f"user:{username.strip().lower()}", self.max_per_user, "this user")]
        if remote_addr:
            keys.append((f"addr:{remote_addr}", self.max_per_address, "this address"))
        return keys

    def check(self, *, username: str, remote_addr: str) -> None:
        """Raise :class:`Throttled` when either key is over its limit."""
        now = self.clock()
        for key, limit, who in self._keys(username=username, remote_addr=remote_addr):
            hits = self.store.recent(key, now=now, window_s=self.window_s)
            if len(hits) >= limit:
                # the attempt that frees a slot is the (len - limit + 1)-th oldest leaving the window
                free_at = hits[len(hits) - limit] + self.window_s
                retry = max(1, math.ceil(free_at - now))
                raise Throttled(
                    f"too many failed logins for {who}: try again in {retry} s", retry_after_s=retry
                )

    def failed(self, *, username: str, remote_addr: str) -> None:
        now = self.clock()
        for key, _limit, _who in self._keys(username=username, remote_addr=remote_addr):
            self.store.add(key, now=now, window_s=self.window_s)

    def succeeded(self, *, username: str) -> None:
        self.store.clear(f"user:{username.strip().lower()}")
