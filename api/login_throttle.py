"""Login throttling: failed attempts counted per user and address, per address and per user over a
sliding window (see :class:`LoginThrottle` for the limits and why).

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

    def __init__(self, message: str, *, retry_after_s: int, username: str = "") -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        #: the username tried (for the audit log of the refusal)
        self.username = username


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
    """Failed logins counted over a sliding ``window_s`` under three keys; past a key's limit, attempts
    are refused (without checking the password) until its oldest failure leaves the window:

    - this user from this address, ``max_per_user_address`` (5): stops one guesser quickly, and locks
      out only that guesser, not the user (the owner logs in from elsewhere);
    - this address, ``max_per_address`` (30): one address spraying guesses over many usernames;
    - this user from anywhere, ``max_per_user`` (50): the slower global limit against guessing from
      many addresses. One address adds at most ``max_per_user_address`` to it, so locking a user out
      takes ``max_per_user / max_per_user_address`` addresses (10), not one browser.

    Why limits rather than a progressive delay: a delay holds a worker per attempt and an attacker
    runs them in parallel; counts on a shared store (Redis) hold across API processes and restarts.
    A successful login clears the user's counts (not the address's). Usernames are counted without
    regard to case or surrounding spaces, like logins (``Admin1`` is ``admin1``)."""

    store: ThrottleStore = field(default_factory=MemoryThrottleStore)
    max_per_user: int = 50
    max_per_address: int = 30
    window_s: float = 900.0
    clock: Callable[[], float] = time.time
    max_per_user_address: int = 5

    @staticmethod
    def _user(username: str) -> str:
        return username.strip().lower()

    def _keys(self, *, username: str, remote_addr: str) -> list[tuple[str, int, str]]:
        user = self._user(username)
        keys = []
        if remote_addr:
            keys.append((f"useraddr:{user}|{remote_addr}", self.max_per_user_address, "this user from this address"))
            keys.append((f"addr:{remote_addr}", self.max_per_address, "this address"))
        keys.append((f"user:{user}", self.max_per_user, "this user"))
        return keys

    def check(self, *, username: str, remote_addr: str) -> None:
        """Raise :class:`Throttled` when any key is over its limit."""
        now = self.clock()
        for key, limit, who in self._keys(username=username, remote_addr=remote_addr):
            hits = self.store.recent(key, now=now, window_s=self.window_s)
            if len(hits) >= limit:
                # the attempt that frees a slot is the (len - limit + 1)-th oldest leaving the window
                free_at = hits[len(hits) - limit] + self.window_s
                retry = max(1, math.ceil(free_at - now))
                raise Throttled(
                    f"too many failed logins for {who}: try again in {retry} s",
                    retry_after_s=retry,
                    username=username,
                )

    def failed(self, *, username: str, remote_addr: str) -> None:
        now = self.clock()
        for key, _limit, _who in self._keys(username=username, remote_addr=remote_addr):
            self.store.add(key, now=now, window_s=self.window_s)

    def succeeded(self, *, username: str, remote_addr: str = "") -> None:
        user = self._user(username)
        self.store.clear(f"user:{user}")
        if remote_addr:
            self.store.clear(f"useraddr:{user}|{remote_addr}")
