"""The login-throttle store on Redis, shared by every API process: one sorted set per key."""

from __future__ import annotations

import math
import uuid
from typing import Any

from models.errors import ConfigError

KEY_PREFIX = "gridpatrol:throttle:"


class RedisThrottleStore:
    """Failure timestamps as sorted-set scores under ``<namespace><prefix><key>``; each key expires with
    its window. ``namespace`` is the installation's ``GRIDPATROL_BUS_NAMESPACE``, so installations that
    share a Redis keep their own counts."""

    def __init__(self, client: Any, *, prefix: str = KEY_PREFIX, namespace: str = "") -> None:
        self._redis = client
        self._prefix = namespace + prefix

    @classmethod
    def from_url(cls, url: str, *, namespace: str = "") -> RedisThrottleStore:
        import redis

        try:
            return cls(redis.Redis.from_url(url), namespace=namespace)
        except ValueError as err:
            raise ConfigError("redis URL is not valid") from err

    def add(self, key: str, *, now: float, window_s: float) -> None:
        name = self._prefix + key
        pipe = self._redis.pipeline()
        pipe.zadd(name, {f"{now:.6f}:{uuid.uuid4().hex[:8]}": now})
        pipe.zremrangebyscore(name, "-inf", now - window_s)
        pipe.expire(name, max(1, math.ceil(window_s)))
        pipe.execute()

    def recent(self, key: str, *, now: float, window_s: float) -> list[float]:
        entries = self._redis.zrangebyscore(self._prefix + key, f"({now - window_s}", "+inf", withscores=True)
        return [float(score) for _member, score in entries]

    def clear(self, key: str) -> None:
        self._redis.delete(self._prefix + key)
