"""The classic backend on generated frames: how long a blob has stood, and what counts as occupancy."""

from __future__ import annotations

import numpy as np

from detectors.backends import ClassicConfig, build_detector
from tests.detectors.support import pasted_object

H, W = 240, 320


def textured(seed: int = 0) -> np.ndarray:
    """A paved road: coarse grey patches of modest contrast, the texture a plain object hides."""
    rng = np.random.default_rng(seed)
    patches = rng.integers(95, 150, (H // 8, W // 8, 1), np.uint8)
    return np.repeat(np.repeat(np.repeat(patches, 8, axis=0), 8, axis=1), 3, axis=2)


def test_blob_reports_how_long_it_has_stood() -> None:
    detector = build_detector(ClassicConfig(work_width=W))
    road = textured()
    crate = pasted_object()  # 60 x 90
    first = None
    for i in range(60):
        t = i * 0.5
        frame = road.copy()
        if t >= 10:
            frame[100:160, 120:210] = crate
        dets = detector.detect(frame, t=t, stream="s")
        if len(dets) and first is None:
            first = (t, float(dets.data["static_s"][0]))
    assert first is not None
    t, standing = first
    assert standing >= 2.0 and abs((t - standing) - 10.0) <= 1.0, first


def test_occupancy_counts_who_stays_not_who_walks_through() -> None:
    detector = build_detector(ClassicConfig(work_width=W, occupancy_s=2.0))
    road = textured()
    walker, stander = [], []
    for i in range(60):
        t = i * 0.5
        frame = road.copy()
        if 10 <= t < 20:  # a walker crossing at 32 px/s
            x = int(32 * (t - 10))
            frame[60:120, x : x + 20] = (30, 30, 30)
        if t >= 20:  # someone who stays
            frame[150:210, 200:220] = (30, 30, 30)
        occupancy = detector.detect(frame, t=t, stream="s").metadata["occupancy_mask"]
        (walker if t < 20 else stander).append(int(occupancy.sum()))
    assert max(walker) == 0, walker
    assert stander[-1] >= 0.8 * 60 * 20, stander[-1]


def test_people_fidgeting_are_not_a_static_object_but_a_rigid_crate_is() -> None:
    """Two blobs stand still from t=10 s: a crate, and a person whose clothes keep changing (turning,
    gesturing). Only the crate's standing clock runs; the person's restarts while it fidgets."""
    from detectors.tracking import Tracker

    detector = build_detector(ClassicConfig(work_width=W))
    tracker = Tracker()
    road = textured()
    crate = pasted_object()  # 60 x 90
    rng = np.random.default_rng(5)
    palette = np.array([(40, 40, 160), (150, 40, 40), (40, 120, 40), (30, 30, 30), (170, 170, 60)], np.uint8)
    body = np.repeat(np.repeat(palette[rng.integers(0, 5, (8, 3))], 8, axis=0), 8, axis=1)  # 64 x 24
    crate_still: list[float] = []
    person_still: list[float] = []
    for i in range(70):
        t = i * 0.5
        frame = road.copy()
        if t >= 10:
            frame[100:160, 30:120] = crate
            for _ in range(4):  # a few patches of the body change each frame
                r, c = int(rng.integers(0, 8)), int(rng.integers(0, 3))
                body[r * 8 : r * 8 + 8, c * 8 : c * 8 + 8] = palette[int(rng.integers(0, 5))]
            frame[120:184, 220:244] = body
        tracked = tracker.update(detector.detect(frame, t=t, stream="s"), t)
        for k in range(len(tracked)):
            cx = (tracked.xyxy[k, 0] + tracked.xyxy[k, 2]) / 2
            if cx < 160:
                crate_still.append(float(tracked.data["stationary_s"][k]))
            else:
                person_still.append(float(tracked.data["stationary_s"][k]))
    assert crate_still and max(crate_still) >= 20.0, crate_still[-5:]
    assert person_still, "the person's blob should still be seen (as restless)"
    assert max(person_still) < 10.0, person_still


def test_a_crate_keeps_standing_through_camera_shake_and_a_sudden_light_change() -> None:
    """The pole sways (the picture shifts up to 1 px each frame at the work width: 2-3 px of a 768 px
    camera) and at t=20 s the light drops to 55 %:
    the crate's standing clock runs on from when it was put down, and nothing else is reported."""
    detector = build_detector(ClassicConfig(work_width=W))
    road = textured()
    crate = pasted_object()  # 60 x 90
    rng = np.random.default_rng(3)
    standing: list[float] = []
    for i in range(80):
        t = i * 0.5
        frame = road.copy()
        if t >= 10:
            frame[100:160, 120:210] = crate
        dx, dy = (int(v) for v in rng.integers(-1, 2, 2))
        frame = np.roll(frame, (dy, dx), axis=(0, 1))
        if t >= 20:
            frame = (frame * 0.55).astype(np.uint8)
        dets = detector.detect(frame, t=t, stream="s")
        if t >= 14:
            # the crate's patches may come out as several blobs, but only ever inside the crate
            assert len(dets) >= 1, t
            x1, y1 = dets.xyxy[:, :2].min(axis=0)
            x2, y2 = dets.xyxy[:, 2:].max(axis=0)
            assert x1 >= 120 - 6 and y1 >= 100 - 6 and x2 <= 210 + 6 and y2 <= 160 + 6, (t, dets.xyxy)
            assert not dets.data["still_reset"].any(), (t, dets.data["restless"])
            standing.append(float(dets.data["static_s"].max()))
    assert standing[-1] >= 25.0, standing[-5:]


def test_a_drifting_cloud_shadow_is_not_an_object() -> None:
    """A soft shadow (35 % darker) crosses the road at 4 px/s, there from the first frame: no static
    object, and hardly any occupancy for the crowding rule (without the shadow test: 8839 px, 11 %
    of the frame; what is left is where the background learnt the shadow while warming up)."""
    detector = build_detector(ClassicConfig(work_width=W))
    road = textured().astype(np.float32)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    seen = []
    for i in range(80):
        t = i * 0.5
        cx = 60 + 4 * t
        shade = np.exp(-(((xx - cx) / 60) ** 2 + ((yy - 120) / 50) ** 2))
        frame = (road * (1 - 0.35 * np.clip(1.6 * shade, 0, 1))[..., None]).astype(np.uint8)
        dets = detector.detect(frame, t=t, stream="s")
        seen.append((len(dets), int(dets.metadata["occupancy_mask"].sum())))
    assert len(seen) == 80
    assert all(n == 0 for n, _ in seen), seen
    assert max(o for _, o in seen[20:]) < 0.02 * W * H, seen
