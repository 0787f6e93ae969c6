"""Synthetic test scenes with known truth, composited onto real footage, for the quality benchmark.

The base is a real fixed outdoor camera (Debian's ``vtest.avi``: pedestrians walking, parked vans),
looped at the detect rate. Onto it we paste, at known times and places:
- people cut out of the same footage against its person-free median background (gathering crowds);
- a van cut out of the footage, enlarged, parked in the fire lane;
- a drawn market stall (umbrella over a table) set up on the road;
and build hard negatives where nothing may fire: the footage alone, a van driving through, a lighting
change, sensor noise, a group too small to be a crowd. The footage is never committed: the caller
decodes it from the installed package.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

W, H = 768, 576
LANE = [(460, 230), (740, 230), (740, 400), (460, 400)]
ROAD = [(0, 165), (420, 165), (420, 295), (0, 295)]
CROWD = [(15, 360), (345, 360), (345, 566), (15, 566)]


@dataclass
class Sprite:
    """A pasted thing: BGR pixels and a 0..1 alpha mask."""

    bgr: np.ndarray
    alpha: np.ndarray

    @classmethod
    def solid(cls, bgr: np.ndarray) -> Sprite:
        return cls(bgr, np.ones(bgr.shape[:2], np.float32))


@dataclass
class Placement:
    sprite: Sprite
    x: int
    y: int
    t0: float
    t1: float
    jitter: int = 0
    vx: float = 0.0  # pixels per second, for moving things


@dataclass
class Episode:
    rule: str
    zone: str
    onset_t: float
    end_t: float
    k: int | None = None


@dataclass
class Scene:
    name: str
    duration_s: float
    placements: list[Placement] = field(default_factory=list)
    truth: list[Episode] = field(default_factory=list)
    offset_s: float = 0.0
    effect: Callable[[np.ndarray, float], np.ndarray] | None = None

    @property
    def negative(self) -> bool:
        return not self.truth


def zones_file(*, person_area: float, min_people: int = 6) -> dict[str, Any]:
    """The zones every scene is analysed with (pixel polygons of the 768x576 view, normalised)."""

    def norm(poly: list[tuple[int, int]]) -> list[list[float]]:
        return [[round(x / W, 4), round(y / H, 4)] for x, y in poly]

    return {"zones": [
        {"name": "fire lane", "kind": "fire_lane", "polygon": norm(LANE), "dwell_s": 10, "clear_s": 8},
        {"name": "road", "kind": "road", "polygon": norm(ROAD), "dwell_s": 10, "clear_s": 8},
        {"name": "square", "kind": "crowd_area", "polygon": norm(CROWD), "dwell_s": 5, "clear_s": 4,
         "min_people": min_people, "person_area": round(person_area, 5)},
    ]}


def median_background(frames: Sequence[np.ndarray]) -> np.ndarray:
    return np.median(np.stack(frames[:: max(1, len(frames) // 40)]), axis=0).astype(np.uint8)


def cut_people(frames: Sequence[np.ndarray], background: np.ndarray, *, limit: int = 40) -> list[Sprite]:
    """Isolated walkers cut out against the median background, with their masks."""
    out: list[Sprite] = []
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    for frame in frames[:: max(1, len(frames) // 60)]:
        diff = cv2.absdiff(frame, background).max(axis=2)
        mask = cv2.morphologyEx((diff > 35).astype(np.uint8), cv2.MORPH_CLOSE, kernel)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
        for i in range(1, n):
            x, y, w, h, area = (int(v) for v in stats[i])
            if not (70 <= h <= 150 and 25 <= w <= 70 and 1.6 <= h / w <= 4.0 and area > 0.45 * w * h):
                continue
            if x < 3 or y < 3 or x + w > W - 3 or y + h > H - 3:
                continue
            alpha = cv2.GaussianBlur((labels[y : y + h, x : x + w] == i).astype(np.float32), (3, 3), 0)
            out.append(Sprite(frame[y : y + h, x : x + w].copy(), alpha))
            if len(out) >= limit:
                return out
    return out


def van_sprite(background: np.ndarray) -> Sprite:
    """The white van parked at the top right of vtest's view, enlarged as if nearer the camera."""
    return Sprite.solid(cv2.resize(background[50:100, 650:725], (150, 100), interpolation=cv2.INTER_CUBIC))


def stall_sprite(background: np.ndarray) -> Sprite:
    """A market stall: a striped umbrella over a table with goods."""
    s = np.zeros((120, 140, 3), np.uint8)
    alpha = np.zeros((120, 140), np.float32)
    cv2.ellipse(s, (70, 45), (68, 40), 0, 180, 360, (40, 40, 220), -1)
    for a in range(180, 360, 30):
        cv2.ellipse(s, (70, 45), (68, 40), 0, a, a + 15, (240, 240, 240), -1)
    cv2.ellipse(alpha, (70, 45), (68, 40), 0, 180, 360, 1.0, -1)
    cv2.line(s, (70, 45), (70, 80), (60, 60, 60), 3)
    cv2.line(alpha, (70, 45), (70, 80), 1.0, 3)
    cv2.rectangle(s, (15, 75), (125, 110), (30, 70, 120), -1)
    cv2.rectangle(alpha, (15, 75), (125, 110), 1.0, -1)
    for i, colour in enumerate([(0, 200, 255), (0, 160, 0), (200, 80, 0), (0, 0, 180)]):
        cv2.circle(s, (30 + 25 * i, 72), 9, colour, -1)
        cv2.circle(alpha, (30 + 25 * i, 72), 9, 1.0, -1)
    return Sprite(s, alpha)


def _paste(img: np.ndarray, sprite: Sprite, x: int, y: int) -> None:
    h, w = sprite.bgr.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if x1 <= x0 or y1 <= y0:
        return
    a = sprite.alpha[y0 - y : y1 - y, x0 - x : x1 - x, None]
    src = sprite.bgr[y0 - y : y1 - y, x0 - x : x1 - x].astype(np.float32)
    dst = img[y0:y1, x0:x1].astype(np.float32)
    img[y0:y1, x0:x1] = (a * src + (1 - a) * dst).astype(np.uint8)


def render(scene: Scene, footage: Sequence[np.ndarray], *, fps: float = 2.0, footage_fps: float = 10.0) -> Iterator[
    tuple[np.ndarray, float]
]:
    """(BGR frame, t) pairs of ``scene`` at ``fps``; the footage loops."""
    # crc32, not hash(): str hashes change per process (PYTHONHASHSEED), and so did every run's jitter.
    rng = np.random.default_rng(zlib.crc32(scene.name.encode()))
    for i in range(int(scene.duration_s * fps)):
        t = i / fps
        index = int((t + scene.offset_s) * footage_fps) % len(footage)
        img = footage[index].copy()
        for p in sorted(scene.placements, key=lambda p: p.y + p.sprite.bgr.shape[0]):
            if p.t0 <= t < p.t1:
                dx, dy = (rng.integers(-p.jitter, p.jitter + 1, 2) if p.jitter else (0, 0))
                _paste(img, p.sprite, int(p.x + p.vx * (t - p.t0) + dx), int(p.y + dy))
        if scene.effect is not None:
            img = scene.effect(img, t)
        yield img, t


def _crowd(people: list[Sprite], k: int, *, t0: float, t1: float, seed: int, step_s: float = 1.0) -> list[Placement]:
    """k people walking up one by one from t0, standing close together, leaving one by one before t1."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(people), size=k, replace=len(people) < k)
    cols = 5
    out = []
    for j, idx in enumerate(picks):
        sprite = people[int(idx)]
        h, w = sprite.bgr.shape[:2]
        cx = 50 + (j % cols) * 60 + int(rng.integers(-8, 9))
        bottom = 450 + (j // cols) * 70 + int(rng.integers(-8, 9))
        out.append(Placement(sprite, cx - w // 2, bottom - h, t0 + j * step_s, t1 - j * step_s, jitter=2))
    return out


def _lighting(img: np.ndarray, t: float) -> np.ndarray:
    gain = 1.0 if t < 15 else max(0.55, 1.0 - 0.045 * (t - 15)) if t < 40 else 0.8
    return np.clip(img.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def _noise(img: np.ndarray, t: float) -> np.ndarray:
    rng = np.random.default_rng(int(t * 1000))
    return np.clip(img.astype(np.int16) + rng.normal(0, 8, img.shape).astype(np.int16), 0, 255).astype(np.uint8)


def build_scenes(footage: Sequence[np.ndarray]) -> tuple[list[Scene], float]:
    """The benchmark's scenes and the mean person area (fraction of the frame) for classic crowding."""
    background = median_background(footage)
    people = cut_people(footage, background)
    if len(people) < 10:
        raise ValueError(f"only {len(people)} people could be cut out of the footage")
    person_area = float(np.mean([p.alpha.sum() for p in people])) / (W * H)
    van, stall = van_sprite(background), stall_sprite(background)
    fire, road, crowd = "fire_lane_blockage", "road_occupation", "crowding"
    scenes = [
        Scene("fire lane: van parked", 70, [Placement(van, 520, 250, 15, 50)],
              [Episode(fire, "fire lane", 15, 50)]),
        Scene("fire lane: van parked, later", 75, [Placement(van, 575, 290, 25, 60)],
              [Episode(fire, "fire lane", 25, 60)], offset_s=30),
        Scene("road: stall set up", 70, [Placement(stall, 100, 165, 10, 45)],
              [Episode(road, "road", 10, 45)], offset_s=10),
        Scene("road: stall set up, elsewhere", 75, [Placement(stall, 240, 170, 20, 55)],
              [Episode(road, "road", 20, 55)], offset_s=45),
        Scene("crowd of 8 gathers", 70, _crowd(people, 8, t0=10, t1=50, seed=1),
              [Episode(crowd, "square", 15, 45, k=8)], offset_s=20),
        Scene("crowd of 10 gathers", 70, _crowd(people, 10, t0=10, t1=55, seed=2),
              [Episode(crowd, "square", 15, 50, k=10)], offset_s=55),
        Scene("negative: walkers only", 79),
        Scene("negative: van drives through", 70, [
            Placement(van, -150, 250, 10, 25, vx=60.0), Placement(van, -150, 170, 35, 50, vx=60.0),
        ], offset_s=15),
        Scene("negative: lighting change", 70, offset_s=25, effect=_lighting),
        Scene("negative: sensor noise", 70, offset_s=40, effect=_noise),
        Scene("negative: three people chat", 70, _crowd(people, 3, t0=10, t1=60, seed=3), offset_s=5),
    ]
    return scenes, person_area
