"""Which decoded frames go to analysis, at what size, and the latest-frame tap for the camera wall.

Sampling runs in the reader thread right after decode, so only the chosen frames pay for the
conversion to BGR and the downscale (one ``sws_scale`` call that releases the GIL). The display tap
keeps a reference to the newest decoded frame (no copy) and converts it only when someone looks.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import av
import numpy as np


@dataclass(frozen=True, slots=True)
class SamplingOptions:
    """Per-camera sampling: analysis rate and size, keyframe-only decode, display tap rate."""

    analysis_fps: float = 2.0  # frames per second of stream time handed to analysis; 0 = every frame
    analysis_width: int | None = 640  # detector input width (aspect kept, never upscaled); None = source
    keyframes_only: bool = False  # decoder skips non-key frames (skip_frame=NONKEY): cheapest mode
    display_fps: float = 5.0  # how often the wall tap takes the newest frame; 0 = off

    def __post_init__(self) -> None:
        if self.analysis_fps < 0 or self.display_fps < 0:
            raise ValueError("rates must be >= 0")
        if self.analysis_width is not None and self.analysis_width < 16:
            raise ValueError("analysis_width must be >= 16")


def scaled_size(width: int, height: int, target_width: int | None) -> tuple[int, int]:
    """(w, h) for ``target_width`` keeping the aspect ratio, even-sized, never larger than the source."""
    if target_width is None or target_width >= width:
        return width, height
    new_h = max(2, round(height * target_width / width / 2) * 2)
    return target_width, new_h


def to_bgr(frame: av.VideoFrame, width: int | None) -> np.ndarray:
    """BGR pixels of ``frame`` scaled to ``width`` (aspect kept) in one swscale pass."""
    w, h = scaled_size(frame.width, frame.height, width)
    return frame.to_ndarray(format="bgr24", width=w, height=h)


class Sampler:
    """Chooses frames for analysis at ``analysis_fps`` of stream time (wall time when there is none).

    Stream time makes a file read faster than real time still yield 2 frames per second of footage.
    A jump backwards or forwards by more than a few periods (reconnect, loop, timestamp wrap)
    restarts the schedule instead of bursting or starving.
    """

    __slots__ = ("_period", "_next_due", "_width", "_stream_clock")

    def __init__(self, options: SamplingOptions) -> None:
        self._period = 1.0 / options.analysis_fps if options.analysis_fps > 0 else 0.0
        self._next_due: float | None = None
        self._width = options.analysis_width
        self._stream_clock = False

    def reset(self) -> None:
        self._next_due = None
        self._stream_clock = False

    def due(self, stream_ts: float | None, wall_ts: float) -> bool:
        """Whether the frame with these clocks goes to analysis (call once per decoded frame)."""
        period = self._period
        if period == 0.0:
            return True
        if stream_ts is None:
            if self._stream_clock:
                return False  # an untimed frame inside a timed stream (RTSP before sync): skip it
            ts = wall_ts
        else:
            if not self._stream_clock:
                self._stream_clock = True
                if self._next_due is not None:  # switching from wall to stream clock: keep the wait
                    self._next_due = stream_ts + (self._next_due - wall_ts)
            ts = stream_ts
        nxt = self._next_due
        if nxt is None or ts < nxt - 4 * period or ts > nxt + 4 * period:
            self._next_due = ts + period
            return True
        # Half a frame of slack: 25 fps frames land on 0.48/0.52, and 0.5 is due.
        if ts >= nxt - 0.02:
            self._next_due = nxt + period
            return True
        return False

    def convert(self, frame: av.VideoFrame) -> np.ndarray:
        return to_bgr(frame, self._width)


class DisplayTap:
    """The newest decoded frame of a camera, taken at most ``display_fps`` times a second.

    Shares the analysis decode: ``offer`` stores a reference (cheap) from the reader thread;
    ``latest_bgr`` converts on demand from any thread and caches the result per width.
    """

    def __init__(self, display_fps: float) -> None:
        self._period = 1.0 / display_fps if display_fps > 0 else None
        self._next = 0.0
        self._latest: tuple[av.VideoFrame, float, int] | None = None  # (frame, capture_ts, generation)
        self._generation = 0
        self._lock = threading.Lock()
        self._cache: tuple[int, int | None, np.ndarray] | None = None

    @property
    def enabled(self) -> bool:
        return self._period is not None

    def offer(self, frame: av.VideoFrame, capture_ts: float) -> None:
        if self._period is None or capture_ts < self._next:
            return
        self._next = capture_ts + self._period
        self._generation += 1
        self._latest = (frame, capture_ts, self._generation)  # one atomic reference store

    def clear(self) -> None:
        self._latest = None
        self._cache = None

    def latest_bgr(self, width: int | None = None) -> tuple[np.ndarray, float] | None:
        """(BGR image, capture time) of the newest tapped frame, or None before the first one.

        The image is cached and shared by every caller asking for the same width: do not modify it.
        """
        latest = self._latest
        if latest is None:
            return None
        frame, ts, generation = latest
        with self._lock:
            cache = self._cache
            if cache is not None and cache[0] == generation and cache[1] == width:
                return cache[2], ts
            image = to_bgr(frame, width)
            self._cache = (generation, width, image)
            return image, ts
