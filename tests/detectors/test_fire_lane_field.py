"""The fire lane as a new user draws it, with default settings, on real footage at 640x360.

A crate of about 70x55 px (1.5 m) is left for 30 s in a hatched lane of about 190x180 px while people
walk past it. It covers 12% of the lane: anything left in a fire passage is a violation, whatever share
of it it covers, so both backends report it within dwell + 5 s and end the episode when it is taken
away. People walking through the lane, a van driving through it and a lighting change raise nothing.
(Passers-by hiding the crate are a condition of the quality suite, ``detectors/scenes.py``.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import pytest

from detectors.pipeline import analyze_frames
from detectors.scenes import Sprite, cut_people, median_background, van_sprite

OUT_W, OUT_H = 640, 360
LANE = (190, 170, 380, 350)  # x1, y1, x2, y2 at 640x360: a hatched patch of grass the walkers cross
CRATE_AT = (255, 262)  # top-left of the 70x55 crate at 640x360
LEFT_T, TAKEN_T = 10.0, 40.0  # the crate stands there from LEFT_T to TAKEN_T
SCENE_W, SCENE_H = 768, 576  # the scene is composed on vtest.avi's own frames, then resized
SX, SY = SCENE_W / OUT_W, SCENE_H / OUT_H


@dataclass
class Placement:
    """A sprite shown from t0 to t1 at (x, y), moving vx pixels a second."""

    sprite: Sprite
    x: int
    y: int
    t0: float
    t1: float
    vx: float = 0.0


@dataclass
class Scene:
    duration_s: float
    placements: list[Placement] = field(default_factory=list)
    effect: Callable[[np.ndarray, float], np.ndarray] | None = None


def paste(img: np.ndarray, sprite: Sprite, x: int, y: int) -> None:
    h, w = sprite.bgr.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, img.shape[1]), min(y + h, img.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    a = sprite.alpha[y0 - y : y1 - y, x0 - x : x1 - x, None]
    src = sprite.bgr[y0 - y : y1 - y, x0 - x : x1 - x].astype(np.float32)
    img[y0:y1, x0:x1] = (a * src + (1 - a) * img[y0:y1, x0:x1].astype(np.float32)).astype(np.uint8)


def lane_zone() -> dict[str, Any]:
    """Only what a user draws: a name, the kind, the polygon. Every parameter at its default."""
    x1, y1, x2, y2 = LANE
    return {
        "name": "消防通道",
        "kind": "fire_lane",
        "polygon": [
            [x1 / OUT_W, y1 / OUT_H],
            [x2 / OUT_W, y1 / OUT_H],
            [x2 / OUT_W, y2 / OUT_H],
            [x1 / OUT_W, y2 / OUT_H],
        ],
    }


def crate_sprite() -> Sprite:
    """A cardboard crate with a lit lid, dark edges and a tape band, 70x55 px once resized to 640x360."""
    w, h = round(70 * SX), round(55 * SY)
    rng = np.random.default_rng(3)
    img = np.empty((h, w, 3), np.uint8)
    img[:] = (60, 110, 160)
    img = np.clip(img.astype(np.int16) + rng.integers(-12, 13, (h, w, 1)), 0, 255).astype(np.uint8)
    img[: h // 5] = (90, 150, 200)
    cv2.rectangle(img, (0, 0), (w - 1, h - 1), (30, 55, 80), 3)
    img[:, w // 2 - 5 : w // 2 + 5] = (150, 190, 210)
    return Sprite.solid(img)


def hatched(frame: np.ndarray) -> np.ndarray:
    """Yellow diagonal hatching and a border painted on the ground of the lane (768x576 coordinates)."""
    x1, y1, x2, y2 = (round(v) for v in (LANE[0] * SX, LANE[1] * SY, LANE[2] * SX, LANE[3] * SY))
    paint = frame.copy()
    cv2.rectangle(paint, (x1, y1), (x2, y2), (0, 215, 255), 3)
    for k in range(-(y2 - y1), x2 - x1, 30):
        cv2.line(paint, (x1 + k, y2), (x1 + k + (y2 - y1), y1), (0, 215, 255), 3)
    inside = np.zeros(frame.shape[:2], bool)
    inside[y1 : y2 + 1, x1 : x2 + 1] = True
    out = frame.copy()
    out[inside] = (0.6 * paint[inside] + 0.4 * frame[inside]).astype(np.uint8)
    return out


#: rows of the feet of people crossing the lane in the 768x576 scene (the lane spans rows 272-560)
PAST_THE_CRATE = (290, 330, 380, 410, 300, 350, 400)  # behind the crate (rows 419-507): never hiding it
THROUGH_THE_LANE = (300, 360, 440, 520, 470, 330, 555)


def walkers(people: Sequence[Sprite], rows: Sequence[int]) -> list[Placement]:
    """People crossing the lane left to right and back at the given rows, one every few seconds."""
    out = []
    for j, t0 in enumerate((3.0, 9.0, 15.0, 22.0, 28.0, 36.0, 44.0)):
        sprite = people[(3 * j) % len(people)]
        h, w = sprite.bgr.shape[:2]
        feet = rows[j]
        speed = 45.0 if j % 2 == 0 else -45.0
        x0 = 120 if speed > 0 else 560
        out.append(Placement(sprite, x0 - w // 2, feet - h, t0, t0 + 9.0, vx=speed))
    return out


def lighting(img: np.ndarray, t: float) -> np.ndarray:
    """The sun goes behind a cloud over 10 s: the whole picture darkens to 60%, then stays there."""
    gain = 1.0 if t < 30 else max(0.6, 1.0 - 0.04 * (t - 30))
    return np.clip(img.astype(np.float32) * gain, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def footage(vtest_2fps: list[tuple[np.ndarray, float]]) -> dict[str, Any]:
    """vtest.avi at 2 fps with the lane painted on, and the sprites cut from it."""
    frames = [f for f, _ in vtest_2fps]
    background = median_background(frames)
    people = cut_people(frames, background)
    assert len(people) >= 7
    return {"frames": [hatched(f) for f in frames], "people": people, "van": van_sprite(background)}


def scene_frames(footage: dict[str, Any], scene: Scene) -> Iterator[tuple[np.ndarray, float]]:
    """The scene at 2 fps (the worker's detect rate), at 640x360; the footage loops."""
    frames = footage["frames"]  # every 5th frame of the 10 fps clip: footage at 2 fps
    for i in range(int(scene.duration_s * 2)):
        t = i / 2
        img = frames[i % len(frames)].copy()
        for p in sorted(scene.placements, key=lambda p: p.y + p.sprite.bgr.shape[0]):
            if p.t0 <= t < p.t1:
                paste(img, p.sprite, round(p.x + p.vx * (t - p.t0)), p.y)
        if scene.effect is not None:
            img = scene.effect(img, t)
        yield cv2.resize(img, (OUT_W, OUT_H), interpolation=cv2.INTER_AREA), t


def crate_scene(footage: dict[str, Any]) -> Scene:
    x, y = round(CRATE_AT[0] * SX), round(CRATE_AT[1] * SY)
    return Scene(
        52,
        [
            Placement(crate_sprite(), x, y, LEFT_T, TAKEN_T),
            *walkers(footage["people"], PAST_THE_CRATE),
        ],
    )


NEGATIVES: dict[str, Callable[[dict[str, Any]], Scene]] = {
    "people walk through": lambda f: Scene(50, walkers(f["people"], THROUGH_THE_LANE)),
    "a van drives through, then a cloud darkens the picture": lambda f: Scene(
        50,
        [
            *walkers(f["people"], THROUGH_THE_LANE),
            Placement(f["van"], -160, round(LANE[3] * SY) - 140, 8, 28, vx=50.0),
        ],
        effect=lighting,
    ),
}


@pytest.fixture
def backend_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "classic":
        return {"type": "classic"}
    return {"type": "onnx", "model_path": str(request.getfixturevalue("yolov3_tiny_onnx"))}


@pytest.mark.parametrize("backend_config", ["classic", "onnx"], indirect=True)
def test_a_crate_left_in_the_lane_is_reported_with_default_settings(
    footage: dict[str, Any], backend_config: dict[str, Any]
) -> None:
    scene = crate_scene(footage)
    events = list(analyze_frames(scene_frames(footage, scene), {"zones": [lane_zone()]}, backend_config))
    lines = [e.to_json() for e in events]
    assert [(e["type"], e["rule"]) for e in lines] == [
        ("started", "fire_lane_blockage"),
        ("ended", "fire_lane_blockage"),
    ], lines
    started, ended = events
    assert LEFT_T + 10 <= started.t <= LEFT_T + 10 + 5  # default dwell_s 10, within dwell + 5 s
    assert started.details["coverage"] < 0.15  # what the old default area share asked for
    assert TAKEN_T <= ended.t <= TAKEN_T + 10 and not ended.details.get("end_of_stream")


@pytest.mark.parametrize("negative", sorted(NEGATIVES))
@pytest.mark.parametrize("backend_config", ["classic", "onnx"], indirect=True)
def test_nothing_left_in_the_lane_raises_nothing(
    footage: dict[str, Any], backend_config: dict[str, Any], negative: str
) -> None:
    scene = NEGATIVES[negative](footage)
    frames = list(scene_frames(footage, scene))
    assert len(frames) == scene.duration_s * 2
    assert list(analyze_frames(iter(frames), {"zones": [lane_zone()]}, backend_config)) == []
