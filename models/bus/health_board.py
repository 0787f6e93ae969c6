"""Where workers post their cameras' health for the API to read (one process or many).

Workers publish every few seconds; an entry expires when its worker stops posting, so a dead worker's
camera reads as ``unknown`` instead of a stale ``streaming``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

import redis

from models.errors import BusError

TTL_S = 30


class HealthBoard(Protocol):
    def publish(self, worker_id: str, snapshots: dict[str, dict[str, Any]]) -> None: ...

    def get(self, camera_id: str) -> dict[str, Any] | None: ...

    def get_many(self, camera_ids: Sequence[str]) -> dict[str, dict[str, Any] | None]:
        """Each camera's entry (None: nobody posts it), in one round trip where the board is remote."""
        ...


class MemoryHealthBoard:
    def __init__(self, *, ttl_s: float = TTL_S) -> None:
        self._ttl_s = ttl_s
        self._entries: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def publish(self, worker_id: str, snapshots: dict[str, dict[str, Any]]) -> None:
        now = time.monotonic()
        with self._lock:
            for camera_id, snap in snapshots.items():
                self._entries[camera_id] = (now, {**snap, "worker": worker_id})

    def get(self, camera_id: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._entries.get(camera_id)
        if entry is None or time.monotonic() - entry[0] > self._ttl_s:
            return None
        return entry[1]

    def get_many(self, camera_ids: Sequence[str]) -> dict[str, dict[str, Any] | None]:
        return {camera_id: self.get(camera_id) for camera_id in camera_ids}


class RedisHealthBoard:
    def __init__(self, url: str, *, namespace: str = "", ttl_s: int = TTL_S) -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._prefix = f"{namespace}gridpatrol:health:"
        self._ttl_s = ttl_s

    def publish(self, worker_id: str, snapshots: dict[str, dict[str, Any]]) -> None:
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for camera_id, snap in snapshots.items():
                    pipe.set(self._prefix + camera_id, json.dumps({**snap, "worker": worker_id}, default=str), ex=self._ttl_s)
                pipe.execute()
        except redis.RedisError as err:
            raise BusError(f"redis: {err}") from err

    def get(self, camera_id: str) -> dict[str, Any] | None:
        try:
            raw = self._client.get(self._prefix + camera_id)
        except redis.RedisError as err:
            raise BusError(f"redis: {err}") from err
        return json.loads(raw) if raw else None  # type: ignore[arg-type]

    def get_many(self, camera_ids: Sequence[str]) -> dict[str, dict[str, Any] | None]:
        """One MGET per 500 cameras: a ticketer looking at a thousand cameras every few seconds makes two
        round trips, not a thousand."""
        out: dict[str, dict[str, Any] | None] = {}
        ids = list(camera_ids)
        try:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                raws = self._client.mget([self._prefix + camera_id for camera_id in chunk])
                out.update({c: json.loads(raw) if raw else None for c, raw in zip(chunk, raws, strict=True)})  # type: ignore[arg-type]
        except redis.RedisError as err:
            raise BusError(f"redis: {err}") from err
        return out


def make_health_board(redis_url: str | None, *, namespace: str = "") -> HealthBoard:
    return RedisHealthBoard(redis_url, namespace=namespace) if redis_url else MemoryHealthBoard()
