"""Quality benchmark of the rules: precision, recall and onset-to-``started`` delay per rule, condition
and backend.

Scenes come from detectors.scenes: real vtest.avi footage with people, a crate, a van, a bus, a stall
and a pile of goods pasted in at known times, under thirteen conditions (clear, illumination drift,
sudden lighting change, sensor noise, low-bitrate H.264 and H.265, camera jitter, infrared night, rain,
headlights, moving shadows, far view, occlusion by passers-by), four scenes each (one per rule and a hard
negative). Each scene runs through the worker's exact pipeline (motion gate, detector, tracker, rules)
at 2 fps.

    .venv/bin/python bench/bench_quality.py [--backends onnx,classic] [--conditions night,rain]
        [--json out.json] [--verbose]

Needs the assets of scripts/setup.d/20-detectors.sh (vtest.avi, bus.jpg, yolov3-tiny.onnx).
Set GRIDPATROL_QUALITY_MODEL to try another ONNX model on the onnx backend.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from detectors.backends import ClassicConfig, OnnxConfig, build_detector
from detectors.scenes import CONDITIONS, RULES, build_props, build_suite, misses, play, score

ASSETS = Path(os.environ.get("GRIDPATROL_ASSETS", Path.home() / ".cache" / "gridpatrol"))
SHORT = {"fire_lane_blockage": "fire lane", "road_occupation": "road", "crowding": "crowding"}


def load_footage() -> list[np.ndarray]:
    with av.open(str(ASSETS / "vtest.avi")) as container:
        return [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]


def _cell(tally: dict[str, Any]) -> str:
    p, r, d = tally["precision"], tally["recall"], tally["delay_max_s"]
    fmt = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
    return f"{fmt(p)} / {fmt(r)} / {'–' if d is None else f'{d:.1f}'}"


def table(backend: str, result: dict[str, Any]) -> str:
    head = (
        "| "
        + backend
        + " | "
        + " | ".join(f"{SHORT[r]} P / R / delay s" for r in RULES)
        + " | negative events |"
    )
    lines = [head, "|---" * (len(RULES) + 2) + "|"]
    for condition, rules in result["per_condition"].items():
        cells = " | ".join(_cell(rules[r]) for r in RULES)
        lines.append(f"| {condition} | {cells} | {result['hard_negative_events'][condition]} |")
    cells = " | ".join(_cell(result["total"][r]) for r in RULES)
    lines.append(f"| **all** | {cells} | {sum(result['hard_negative_events'].values())} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", default="onnx,classic")
    parser.add_argument("--conditions", default=",".join(CONDITIONS))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--verbose", action="store_true", help="print every scene's events")
    args = parser.parse_args()
    footage = load_footage()
    props = build_props(footage, cv2.imread(str(ASSETS / "bus.jpg")))
    scenes = build_suite(props, args.conditions.split(","))
    model = Path(os.environ.get("GRIDPATROL_QUALITY_MODEL", ASSETS / "yolov3-tiny.onnx"))
    report: dict[str, Any] = {"person_area": props.person_area, "scenes": len(scenes)}
    for backend in args.backends.split(","):
        config = OnnxConfig(model_path=model) if backend == "onnx" else ClassicConfig()
        detector = build_detector(config)
        t0 = time.perf_counter()
        runs = []
        for scene in scenes:
            run = play(scene, footage, detector, person_area=props.person_area)
            runs.append(run)
            if args.verbose:
                evs = ", ".join(f"{e.type} {SHORT[e.rule]} t={e.t:.1f}" for e in run.events) or "-"
                print(f"  {scene.name:<40} {evs}", flush=True)
        elapsed = time.perf_counter() - t0
        result = score(runs)
        frames = sum(r.frames for r in runs)
        print(f"\n## {backend}: {len(scenes)} scenes, {frames} frames, {elapsed:.0f} s\n")
        print(table(backend, result))
        print(f"\ncrowd count within ±20 % of K: {result['crowd_count_within_20pct']}")
        skip = ("night",) if backend == "classic" else ()
        missed = misses(result, skip=skip)
        print(
            "goals met" + (f" (night excepted on {backend})" if skip else "")
            if not missed
            else "goals missed:\n  " + "\n  ".join(missed)
        )
        for tally in [
            *result["total"].values(),
            *(t for c in result["per_condition"].values() for t in c.values()),
        ]:
            tally.pop("delays"), tally.pop("late")
        report[backend] = {**result, "seconds": round(elapsed, 1), "frames": frames, "missed": missed}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
