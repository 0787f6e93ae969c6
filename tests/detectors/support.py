"""Helpers for the detectors tests: the real test assets (fetched by scripts/setup.d/20-detectors.sh) and generated detections."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from detectors.detections import Detections
from tests.support.require import require

BOX = (300, 450, 390, 510)  # on the grass in the walkers' path, vtest.avi pixels
W, H = 768, 576
LANE = {  # a fire lane around the spot where the object is left
    "name": "east lane", "kind": "fire_lane", "dwell_s": 10, "clear_s": 3, "coverage": 0.1,
    "polygon": [[250 / W, 430 / H], [450 / W, 430 / H], [450 / W, 540 / H], [250 / W, 540 / H]],
}
NAMES = ("person", "car", "truck", "umbrella", "static_object")


def assets_dir() -> Path:
    return Path(os.environ.get("GRIDPATROL_ASSETS", Path.home() / ".cache" / "gridpatrol"))


def asset(name: str) -> Path:
    """An asset file; skips locally / fails under CI when the set-up script has not fetched it."""
    path = assets_dir() / name
    require(path.is_file(), f"{path} (run scripts/setup.d/20-detectors.sh)")
    return path


def dets(boxes: Sequence[tuple[float, float, float, float, str]], *, score: float = 0.9) -> Detections:
    """Detections from (x1, y1, x2, y2, class name) rows over NAMES."""
    if not boxes:
        return Detections.empty(NAMES)
    return Detections(
        xyxy=np.array([b[:4] for b in boxes], np.float32),
        confidence=np.full(len(boxes), score, np.float32),
        class_id=np.array([NAMES.index(b[4]) for b in boxes], np.int64),
        class_names=NAMES,
    )


def pasted_object() -> np.ndarray:
    """A 90x60 box of coarse random patches, like a crate of goods."""
    rng = np.random.default_rng(1)
    patches = rng.integers(0, 255, (6, 9, 3), np.uint8)
    obj = np.repeat(np.repeat(patches, 10, axis=0), 10, axis=1)
    obj[:3], obj[-3:], obj[:, :3], obj[:, -3:] = 20, 20, 20, 20
    return obj
