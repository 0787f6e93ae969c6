"""Hand-off from decoder threads to consumers: bounded, latest-wins, never blocking the decoder.

A decoder thread ``put``\\s and moves on; when the consumer is slow the oldest frame is dropped (a
detector wants the newest picture, not a backlog). :class:`EndOfStream` is the sentinel that ends a
camera's stream; it is never dropped.

* :class:`LatestFrameQueue`: one camera, one consumer (``probe``, tests, a single reader).
* :class:`CameraSlots`: many cameras, shared consumers: one slot per camera holding its newest frame,
  served in the order cameras became ready, so a busy camera cannot starve a quiet one.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

import numpy as np


@dataclass(slots=True)
class SampledFrame:
    """A frame chosen for analysis: BGR pixels at the analysis size and its two clocks."""

    camera_id: str
    image_bgr: np.ndarray
    capture_ts: float  # wall clock (time.time()) when the frame left the decoder
    stream_ts: float | None  # presentation time in the stream, seconds; None when the source has none
    keyframe: bool
    seq: int  # analysed-frame counter of this camera


@dataclass(frozen=True, slots=True)
class EndOfStream:
    """Sentinel: the camera's reader ended (``reason`` says why: ``eof``, ``stopped``, ``failed: ...``)."""

    camera_id: str
    reason: str


Item = SampledFrame | EndOfStream


class LatestFrameQueue:
    """Bounded queue; ``put`` drops the oldest frame when full and never blocks."""

    def __init__(self, maxsize: int = 1) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self._items: deque[Item] = deque()
        self._maxsize = maxsize
        self._cond = threading.Condition()
        self.dropped = 0

    def put(self, item: Item) -> None:
        with self._cond:
            if isinstance(item, SampledFrame):
                while self._frames() >= self._maxsize:
                    self._drop_oldest_frame()
            self._items.append(item)
            self._cond.notify()

    def _frames(self) -> int:
        return sum(1 for it in self._items if isinstance(it, SampledFrame))

    def _drop_oldest_frame(self) -> None:
        for i, it in enumerate(self._items):
            if isinstance(it, SampledFrame):
                del self._items[i]
                self.dropped += 1
                return

    def get(self, timeout: float | None = None) -> Item:
        """The oldest kept item; raises :class:`queue.Empty` after ``timeout`` seconds."""
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._items), timeout):
                raise queue.Empty
            return self._items.popleft()

    def qsize(self) -> int:
        with self._cond:
            return len(self._items)


class CameraSlots:
    """One latest-frame slot per camera; ``get`` serves cameras in the order they became ready."""

    def __init__(self) -> None:
        self._ready: OrderedDict[str, Item] = OrderedDict()
        self._cond = threading.Condition()
        self.dropped = 0

    def put(self, item: Item) -> None:
        with self._cond:
            old = self._ready.get(item.camera_id)
            if isinstance(old, EndOfStream) and isinstance(item, SampledFrame):
                return  # the stream already ended; a straggler frame must not hide the sentinel
            if old is not None:
                self.dropped += isinstance(old, SampledFrame)
                self._ready[item.camera_id] = item  # keeps its place in line: fairness by first ready
            else:
                self._ready[item.camera_id] = item
            self._cond.notify()

    def get(self, timeout: float | None = None) -> Item:
        """The newest item of the camera waiting longest; raises :class:`queue.Empty` on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._ready:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise queue.Empty
                self._cond.wait(remaining)
            _, item = self._ready.popitem(last=False)
            return item

    def get_many(self, max_items: int | None = None, timeout: float | None = None) -> list[Item]:
        """Up to ``max_items`` (None: all) ready items, first ready first; raises :class:`queue.Empty`.

        One wake-up for many frames: with hundreds of decoder threads in one process, a consumer
        thread gets the GIL only a few times a second (measured: 200 cameras, one core), so it must
        take everything that is ready each time. A consumer that is slow per frame keeps frames
        fresh by asking :meth:`has_newer` before using each one.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._ready:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise queue.Empty
                self._cond.wait(remaining)
            count = len(self._ready) if max_items is None else min(max_items, len(self._ready))
            return [self._ready.popitem(last=False)[1] for _ in range(count)]

    def has_newer(self, camera_id: str) -> bool:
        """True when a newer item of ``camera_id`` arrived after the last ``get``: skip the older one."""
        return camera_id in self._ready  # a dict lookup is atomic under the GIL: no lock hand-off

    def discard(self, camera_id: str) -> None:
        with self._cond:
            self._ready.pop(camera_id, None)

    def __len__(self) -> int:
        with self._cond:
            return len(self._ready)
