"""Quality benchmark of the rules: episode precision/recall and delay per rule and backend.

Scenes come from detectors.scenes (real vtest.avi footage with people, a van and a stall pasted in at
known times; hard negatives where nothing may fire). Each scene runs through the worker's exact
pipeline (motion gate, detector, tracker, rules) at 2 fps.

    .venv/bin/python bench/bench_quality.py [--backends onnx,classic] [--json out.json]

Needs the assets of scripts/setup.d/20-detectors.sh (vtest.avi, yolov3-tiny.onnx).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import av
import numpy as np

from detectors.backends import ClassicConfig, OnnxConfig, build_detector
from detectors.pipeline import Pipeline
from detectors.rules import CrowdingRule, RuleHit
from detectors.scenes import Scene, build_scenes, render, zones_file
from models.grid.zonespec import parse_zones

ASSETS = Path(os.environ.get("GRIDPATROL_ASSETS", Path.home() / ".cache" / "gridpatrol"))
RULES = ("fire_lane_blockage", "road_occupation", "crowding")


def load_footage() -> list[np.ndarray]:
    with av.open(str(ASSETS / "vtest.avi")) as container:
        return [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]


def run_scene(scene: Scene, footage: list[np.ndarray], detector: Any, zones: Any) -> dict[str, Any]:
    pipeline = Pipeline(zones, detector, stream=scene.name)
    crowd_rule = next(r for r in pipeline.rules if isinstance(r, CrowdingRule))
    events: list[RuleHit] = []
    counts: list[tuple[float, int]] = []
    last_t = 0.0
    for frame, t in render(scene, footage):
        events += pipeline.process(frame, t)
        last_t = t
        if pipeline.last_tracked is not None:
            counts.append((t, crowd_rule.count(pipeline.last_tracked, (frame.shape[1], frame.shape[0]))[0]))
    events += pipeline.flush(last_t)
    detector.forget(scene.name)
    return {"events": events, "counts": counts, "frames": pipeline.frames, "detected": pipeline.detections_run}


def score(scenes: list[Scene], runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {r: {"tp": 0, "fp": 0, "fn": 0, "delays": [], "max_late": []} for r in RULES}
    count_ok: list[bool] = []
    negative_events = 0
    for scene, run in zip(scenes, runs, strict=True):
        started = [e for e in run["events"] if e.type == "started"]
        used: set[int] = set()
        for ep in scene.truth:
            dwell = 5.0 if ep.rule == "crowding" else 10.0
            match = next((i for i, e in enumerate(started) if i not in used and e.rule == ep.rule
                          and e.zone == ep.zone and ep.onset_t - 2 <= e.t <= ep.end_t + 5), None)
            if match is None:
                out[ep.rule]["fn"] += 1
                continue
            used.add(match)
            delay = started[match].t - ep.onset_t
            out[ep.rule]["tp"] += 1
            out[ep.rule]["delays"].append(delay)
            out[ep.rule]["max_late"].append(delay - dwell)
            if ep.k:
                hold = [c for t, c in run["counts"] if ep.onset_t + 4 <= t <= ep.end_t - 2]
                count_ok.extend(abs(c - ep.k) <= 0.2 * ep.k for c in hold)
        for i, e in enumerate(started):
            if i not in used:
                out[e.rule]["fp"] += 1
                negative_events += scene.negative
    for r in RULES:
        s = out[r]
        s["precision"] = s["tp"] / (s["tp"] + s["fp"]) if s["tp"] + s["fp"] else 1.0
        s["recall"] = s["tp"] / (s["tp"] + s["fn"]) if s["tp"] + s["fn"] else 1.0
        s["delay_max_s"] = max(s["delays"]) if s["delays"] else None
        s["late_vs_dwell_max_s"] = max(s["max_late"]) if s["max_late"] else None
    out["crowd_count_within_20pct"] = float(np.mean(count_ok)) if count_ok else None
    out["hard_negative_events"] = negative_events
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", default="onnx,classic")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    footage = load_footage()
    scenes, person_area = build_scenes(footage)
    zones = parse_zones(zones_file(person_area=person_area))
    report: dict[str, Any] = {"person_area": person_area}
    for backend in args.backends.split(","):
        config = (OnnxConfig(model_path=ASSETS / "yolov3-tiny.onnx") if backend == "onnx" else ClassicConfig())
        detector = build_detector(config)
        t0 = time.perf_counter()
        runs = [run_scene(s, footage, detector, zones) for s in scenes]
        elapsed = time.perf_counter() - t0
        result = score(scenes, runs)
        result["seconds"] = round(elapsed, 1)
        result["frames"] = sum(r["frames"] for r in runs)
        result["detector_runs"] = sum(r["detected"] for r in runs)
        report[backend] = result
        print(f"## {backend}  ({result['frames']} frames, detector on {result['detector_runs']}, {elapsed:.0f} s)")
        for scene, run in zip(scenes, runs, strict=True):
            evs = ", ".join(f"{e.type} {e.rule}@{e.zone} t={e.t:.1f}" for e in run["events"]) or "-"
            print(f"  {scene.name:<32} {evs}")
        print("| rule | precision | recall | delay from onset (max s) | started after dwell (max s) |")
        print("|---|---|---|---|---|")
        for r in RULES:
            s = result[r]
            print(f"| {r} | {s['precision']:.2f} | {s['recall']:.2f} | {s['delay_max_s']} | {s['late_vs_dwell_max_s']} |")
        print(f"crowd count within ±20% of K: {result['crowd_count_within_20pct']}; "
              f"events on hard negatives: {result['hard_negative_events']}")
    if args.json:
        for backend in args.backends.split(","):
            for r in RULES:
                report[backend][r].pop("delays"), report[backend][r].pop("max_late")
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
