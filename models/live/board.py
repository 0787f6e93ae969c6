"""The tile board: where viewers' demand meets workers' tiles (one process or many).

- ``want``: a viewer (the API) says "camera 7 at 480 px is watched" for ``ttl_s`` seconds and repeats
  it while watched; when nobody repeats it, the demand lapses and the worker stops encoding.
- ``wanted``: a worker asks which of its cameras are watched, and at what width.
- ``publish``: a worker posts a tile; ``latest`` keeps the newest per camera (snapshots);
  ``listen`` pushes every tile to a callback (the API's fan-out).

In-process (:class:`MemoryTileBoard`) for the embedded set-up; Redis (:class:`RedisTileBoard`: demand
keys with a TTL, the latest tile per camera with a TTL, tiles pushed on a pub/sub channel) when workers
run on other machines than the API.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol

import redis

from models.errors import BusError, InvalidInput
from models.live.tiles import WIDTHS, Tile, width_bucket

logger = logging.getLogger(__name__)

#: how long one ``want`` keeps a camera watched; viewers repeat it well within this
DEMAND_TTL_S = 6.0
#: how long the latest tile stays readable without a newer one (a stopped worker's frame goes stale)
LATEST_TTL_S = 15.0


class Subscription(Protocol):
    def close(self) -> None: ...


class TileBoard(Protocol):
    def want(self, camera_ids: Iterable[int], *, width: int, ttl_s: float = DEMAND_TTL_S) -> None: ...

    def wanted(self, camera_ids: Iterable[int]) -> dict[int, int]: ...

    def publish(self, tile: Tile) -> None: ...

    def latest(self, camera_id: int) -> Tile | None: ...

    def listen(self, on_tile: Callable[[Tile], None]) -> Subscription: ...

    def close(self) -> None: ...


class _Listener:
    def __init__(self, board: MemoryTileBoard, on_tile: Callable[[Tile], None]) -> None:
        self._board, self.on_tile = board, on_tile

    def close(self) -> None:
        self._board._drop(self)


class MemoryTileBoard:
    """The embedded board: dictionaries under a lock; ``listen`` callbacks run on the publisher's thread
    (keep them short: hand the tile to your own loop)."""

    def __init__(self, *, latest_ttl_s: float = LATEST_TTL_S) -> None:
        self._latest_ttl_s = latest_ttl_s
        self._demand: dict[tuple[int, int], float] = {}
        self._latest: dict[int, tuple[float, Tile]] = {}
        self._listeners: list[_Listener] = []
        self._lock = threading.Lock()

    def want(self, camera_ids: Iterable[int], *, width: int, ttl_s: float = DEMAND_TTL_S) -> None:
        until = time.monotonic() + ttl_s
        bucket = width_bucket(width)
        with self._lock:
            for cid in camera_ids:
                self._demand[(int(cid), bucket)] = until
            if len(self._demand) > 4096:  # forget lapsed demand now and then
                now = time.monotonic()
                self._demand = {k: v for k, v in self._demand.items() if v > now}

    def wanted(self, camera_ids: Iterable[int]) -> dict[int, int]:
        now = time.monotonic()
        found: dict[int, int] = {}
        with self._lock:
            for cid in camera_ids:
                for w in WIDTHS:
                    if self._demand.get((int(cid), w), 0.0) > now:
                        found[int(cid)] = w
        return found

    def publish(self, tile: Tile) -> None:
        with self._lock:
            self._latest[tile.camera_id] = (time.monotonic(), tile)
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener.on_tile(tile)
            except Exception:  # one broken listener must not stop the others or the worker
                logger.exception("camera %s: a tile listener failed", tile.camera_id)

    def latest(self, camera_id: int) -> Tile | None:
        with self._lock:
            entry = self._latest.get(camera_id)
        if entry is None or time.monotonic() - entry[0] > self._latest_ttl_s:
            return None
        return entry[1]

    def listen(self, on_tile: Callable[[Tile], None]) -> Subscription:
        listener = _Listener(self, on_tile)
        with self._lock:
            self._listeners.append(listener)
        return listener

    def _drop(self, listener: _Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def close(self) -> None:
        with self._lock:
            self._listeners.clear()


class _RedisListener:
    """A thread reading the tile channel and calling ``on_tile``; it resubscribes after Redis errors."""

    def __init__(self, client: redis.Redis, channel: str, on_tile: Callable[[Tile], None]) -> None:
        self._client, self._channel, self._on_tile = client, channel, on_tile
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tile-board-listener", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=5.0)  # subscribed before the caller raises any demand

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self._channel)
                self._ready.set()
                backoff = 0.5
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is None or message.get("type") != "message":
                        continue
                    try:
                        tile = Tile.unpack(message["data"])
                    except InvalidInput as err:
                        logger.warning("tile board: dropped a message: %s", err)
                        continue
                    try:
                        self._on_tile(tile)
                    except Exception:
                        logger.exception("camera %s: a tile listener failed", tile.camera_id)
            except redis.RedisError as err:
                if not self._stop.is_set():
                    logger.warning("tile board: listening failed (%s); again in %.1f s", err, backoff)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 10.0)
            finally:
                try:
                    pubsub.close()
                except redis.RedisError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)


class RedisTileBoard:
    """Demand as keys ``want:{camera}:{width}`` with a TTL, the latest tile per camera as a key with a
    TTL, and every tile published on one channel that each API process listens to."""

    def __init__(self, url: str, *, namespace: str = "", latest_ttl_s: float = LATEST_TTL_S) -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._prefix = f"{namespace}gridpatrol:tiles:"
        self._channel = self._prefix + "push"
        self._latest_ttl_ms = int(latest_ttl_s * 1000)
        self._listeners: list[_RedisListener] = []

    def _want_key(self, camera_id: int, width: int) -> str:
        return f"{self._prefix}want:{camera_id}:{width}"

    def want(self, camera_ids: Iterable[int], *, width: int, ttl_s: float = DEMAND_TTL_S) -> None:
        bucket = width_bucket(width)
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for cid in camera_ids:
                    pipe.set(self._want_key(int(cid), bucket), b"1", px=int(ttl_s * 1000))
                pipe.execute()
        except redis.RedisError as err:
            raise BusError(f"redis: {err}") from err

    def wanted(self, camera_ids: Iterable[int]) -> dict[int, int]:
        ids = [int(c) for c in camera_ids]
        if not ids:
            return {}
        keys = [self._want_key(cid, w) for cid in ids for w in WIDTHS]
        try:
            values = self._client.mget(keys)
        except redis.RedisError as err:
            raise BusError(f"redis: {err}") from err
        found: dict[int, int] = {}
        for i, value in enumerate(values):  # type: ignore[arg-type]
            if value is not None:
                found[ids[i // len(WIDTHS)]] = WIDTHS[i % len(WIDTHS)]  # widths ascend: the largest wins
        return found

    def publish(self, tile: Tile) -> None:
        packed = tile.pack()
        try:
            with self._client.pipeline(transaction=False) as pipe:
                pipe.set(f"{self._prefix}latest:{tile.camera_id}", packed, px=self._latest_ttl_ms)
                pipe.publish(self._channel, packed)
                pipe.execute()
        except redis.RedisError as err:
            raise BusError(f"redis: {err}") from err

    def latest(self, camera_id: int) -> Tile | None:
        try:
            raw = self._client.get(f"{self._prefix}latest:{camera_id}")
        except redis.RedisError as err:
            raise BusError(f"redis: {err}") from err
        if not raw:
            return None
        try:
            return Tile.unpack(raw)  # type: ignore[arg-type]
        except InvalidInput as err:
            logger.warning("camera %s: unreadable latest tile: %s", camera_id, err)
            return None

    def listen(self, on_tile: Callable[[Tile], None]) -> Subscription:
        listener = _RedisListener(self._client, self._channel, on_tile)
        self._listeners.append(listener)
        return listener

    def close(self) -> None:
        for listener in self._listeners:
            listener.close()
        self._listeners.clear()
        self._client.close()


def make_tile_board(redis_url: str | None, *, namespace: str = "") -> TileBoard:
    """Redis when a URL is configured (workers elsewhere), in-process otherwise."""
    return RedisTileBoard(redis_url, namespace=namespace) if redis_url else MemoryTileBoard()
