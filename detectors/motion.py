"""A cheap motion gate: is this frame different enough from the last analysed one to run the detector?

Frames are shrunk to a thumbnail (area averaging also removes sensor noise) and compared with the
thumbnail of the frame the detector last saw. Comparing with the last *analysed* frame, not the previous
one, means slow changes add up until they trigger. Stationary objects are re-checked every
``recheck_s`` even without motion, so a latch or a dwell timer still advances.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class MotionConfig:
    thumb_w: int = 96
    pixel_delta: int = 18
    min_changed: float = 0.002
    recheck_s: float = 5.0


class MotionGate:
    """Per-camera gate; ``should_detect(frame, t)`` is True when the detector must run."""

    def __init__(self, config: MotionConfig | None = None) -> None:
        self.config = config or MotionConfig()
        self._ref: np.ndarray | None = None
        self._ref_t = float("-inf")
        self.last_changed = 0.0

    def _thumb(self, frame_bgr: np.ndarray) -> np.ndarray:
        h, w = frame_bgr.shape[:2]
        tw = self.config.thumb_w
        th = max(1, round(h * tw / w))
        gray = frame_bgr if frame_bgr.ndim == 2 else cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
        return cv2.resize(gray, (tw, th), interpolation=cv2.INTER_AREA)

    def should_detect(self, frame_bgr: np.ndarray, t: float) -> bool:
        thumb = self._thumb(frame_bgr)
        if self._ref is None or self._ref.shape != thumb.shape or t - self._ref_t >= self.config.recheck_s:
            self._accept(thumb, t)
            return True
        diff = cv2.absdiff(thumb, self._ref)
        self.last_changed = float(np.count_nonzero(diff > self.config.pixel_delta)) / diff.size
        if self.last_changed >= self.config.min_changed:
            self._accept(thumb, t)
            return True
        return False

    def _accept(self, thumb: np.ndarray, t: float) -> None:
        self._ref = thumb
        self._ref_t = t
