"""The worker's pipeline end to end: motion gate → detector → tracker → rules, on real footage."""

from __future__ import annotations

import json

import numpy as np
import pytest

from detectors.backends import ClassicConfig, build_detector
from detectors.motion import MotionGate
from detectors.pipeline import Pipeline, analyze_frames, crowd_region, process_many
from detectors.rules import RuleHit
from models.grid.zonespec import parse_zones
from tests.detectors.support import BOX, LANE, pasted_object


def with_object(frames: list[tuple[np.ndarray, float]], t0: float, t1: float) -> list[tuple[np.ndarray, float]]:
    obj = pasted_object()
    x1, y1, x2, y2 = BOX
    out = []
    for frame, t in frames:
        if t0 <= t < t1:
            frame = frame.copy()
            frame[y1:y2, x1:x2] = obj
        out.append((frame, t))
    return out


def test_analyze_finds_the_blocked_fire_lane(vtest_2fps: list[tuple[np.ndarray, float]]) -> None:
    events = list(analyze_frames(with_object(vtest_2fps, 20.0, 60.0), {"zones": [LANE]}, {"type": "classic"}))
    lines = [e.to_json() for e in events]
    assert [(e["type"], e["rule"], e["zone"]) for e in lines] == [
        ("started", "fire_lane_blockage", "east lane"), ("ended", "fire_lane_blockage", "east lane"),
    ], lines
    started, ended = events
    assert 20.0 + 10 <= started.t <= 20.0 + 10 + 5  # within dwell + 5 s of the true onset
    assert 60.0 <= ended.t <= 60.0 + 10
    assert json.loads(started.to_json_line())["t"] == started.t
    assert started.evidence is not None and started.evidence.shape == (576, 768, 3)


def test_walkers_alone_raise_nothing(vtest_2fps: list[tuple[np.ndarray, float]]) -> None:
    assert list(analyze_frames(vtest_2fps, {"zones": [LANE]}, {"type": "classic"})) == []


def test_motion_gate_skips_still_frames() -> None:
    gate = MotionGate()
    rng = np.random.default_rng(0)
    still = rng.integers(0, 255, (360, 640, 3), np.uint8)
    assert gate.should_detect(still, 0.0)
    noisy = np.clip(still.astype(np.int16) + rng.integers(-4, 5, still.shape), 0, 255).astype(np.uint8)
    assert not gate.should_detect(noisy, 0.5)  # sensor noise is not motion
    moved = still.copy()
    moved[100:160, 200:240] = 255 - moved[100:160, 200:240]
    assert gate.should_detect(moved, 1.0)
    assert not gate.should_detect(moved, 1.5)
    assert gate.should_detect(moved, 6.5)  # re-checked every recheck_s even without motion


def test_gated_pipeline_runs_the_detector_less_and_still_fires(vtest_2fps: list[tuple[np.ndarray, float]]) -> None:
    # A frozen camera image with an object: the detector runs on few frames yet the dwell advances.
    frame, _ = with_object(vtest_2fps[:1], 0.0, 1.0)[0]
    pipeline = Pipeline(parse_zones({"zones": [LANE]}), build_detector(ClassicConfig(warmup_s=0)))
    empty = vtest_2fps[0][0]
    events: list[RuleHit] = []
    for i in range(120):
        t = i * 0.5
        events += pipeline.process(empty if t < 5 else frame, t)
    assert pipeline.detections_run < 30
    assert [e.type for e in events] == ["started"]


def test_process_many_batches_cameras(vtest_2fps: list[tuple[np.ndarray, float]]) -> None:
    detector = build_detector(ClassicConfig())
    zones = parse_zones({"zones": [LANE]})
    cams = [Pipeline(zones, detector, stream=f"cam{i}") for i in range(3)]
    frames = with_object(vtest_2fps, 20.0, 60.0)
    started = [0, 0, 0]
    for k, (frame, t) in enumerate(frames[:110]):
        items = [(cams[0], frame, t), (cams[1], vtest_2fps[k][0], t), (cams[2], frame, t)]
        for i, events in enumerate(process_many(detector, items)):
            started[i] += sum(e.type == "started" for e in events)
    assert started == [1, 0, 1]


def test_crowd_zones_become_regions_for_the_detector() -> None:
    square = np.array([[0.1, 0.6], [0.5, 0.6], [0.5, 0.95], [0.1, 0.95]])
    assert crowd_region(square) == pytest.approx((0.05, 0.4, 0.55, 0.97))


def test_road_and_fire_lane_zones_become_static_regions_for_the_detector() -> None:
    square = [[0.1, 0.6], [0.5, 0.6], [0.5, 0.95], [0.1, 0.95]]
    zones = parse_zones({"zones": [
        LANE, {"name": "road", "kind": "road", "polygon": [[0.0, 0.3], [0.5, 0.3], [0.5, 0.5], [0.0, 0.5]]},
        {"name": "square", "kind": "crowd_area", "polygon": square},
    ]})
    pipeline = Pipeline(zones, build_detector(ClassicConfig()))
    item = pipeline.frame_input(np.zeros((576, 768, 3), np.uint8), 0.0)
    assert len(item.regions_norm) == 1 and len(item.static_regions_norm) == 2
    assert item.static_regions_norm[1] == pytest.approx((0.0, 0.1, 0.55, 0.52))
