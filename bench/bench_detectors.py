"""Detector speed: frames/s per core for each backend at 640 px, and cameras per core at 2 fps
through the whole pipeline (motion gate, detector, tracker, rules) on a street scene (vtest.avi).

    .venv/bin/python bench/bench_detectors.py [--seconds 20]

Pinned to one core (sched_setaffinity, one thread per runtime). Decoding is not counted: ingest owns
it (shared/FACTS.md has PyAV numbers). The yolo backend runs in the yolo environment made by
scripts/setup.d/20-detectors.sh (``--yolo-only`` is how this script calls itself there).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ASSETS = Path(os.environ.get("GRIDPATROL_ASSETS", Path.home() / ".cache" / "gridpatrol"))


def one_core() -> None:
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    cv2.setNumThreads(1)


def footage(width: int = 640) -> list[np.ndarray]:
    import av

    with av.open(str(ASSETS / "vtest.avi")) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    h = round(frames[0].shape[0] * width / frames[0].shape[1])
    return [cv2.resize(f, (width, h), interpolation=cv2.INTER_AREA) for f in frames]


def fps_of(
    detector: Any, frames: list[np.ndarray], *, seconds: float,
    static_regions: tuple[tuple[float, float, float, float], ...] = (),
) -> float:
    """Frames/s of one detector; ``static_regions`` (normalised boxes) as a pipeline with road or
    fire-lane zones names them (the onnx backend then also runs its static-foreground detector)."""
    from detectors.backends import FrameInput

    detector.detect(frames[0], t=0.0)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        item = FrameInput(frames[(n * 5) % len(frames)], n * 0.5, static_regions_norm=static_regions)
        detector.detect_batch([item])
        n += 1
    return n / (time.perf_counter() - t0)


def cameras_per_core(config: Any, frames: list[np.ndarray], *, cameras: int, video_s: float) -> dict[str, Any]:
    """CPU seconds the pipeline spends per camera-second at 2 fps → cameras one core sustains."""
    from detectors.backends import build_detector
    from detectors.pipeline import Pipeline
    from detectors.scenes import zones_file
    from models.grid.zonespec import parse_zones

    detector = build_detector(config)
    zones = parse_zones(zones_file(person_area=0.004))
    pipes = [Pipeline(zones, detector, stream=f"cam{i}") for i in range(cameras)]
    steps = int(video_s * 2)
    cpu0 = time.process_time()
    for k in range(steps):
        t = k * 0.5
        for i, p in enumerate(pipes):
            p.process(frames[(int(t * 10) + 97 * i) % len(frames)], t)
    cpu = time.process_time() - cpu0
    per_camera_second = cpu / (cameras * video_s)
    gated = 1 - sum(p.detections_run for p in pipes) / sum(p.frames for p in pipes)
    return {"cameras_per_core": round(1 / per_camera_second, 1), "detector_skipped": round(gated, 3)}


def yolo_only(seconds: float, frames_npy: Path) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    from detectors.backends import YoloConfig, build_detector

    frames = list(np.load(frames_npy))
    detector = build_detector(YoloConfig(weights=Path("yolo11n.yaml"), device="cpu"))
    return {"yolo (YOLO11n, random weights, torch CPU)": round(fps_of(detector, frames, seconds=seconds), 2)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--yolo-only", type=Path, default=None, help="frames .npy (internal)")
    args = parser.parse_args()
    one_core()
    if args.yolo_only:
        print(json.dumps(yolo_only(args.seconds, args.yolo_only)))
        return 0
    from detectors.backends import ClassicConfig, OnnxConfig, build_detector

    frames = footage()
    configs: dict[str, Any] = {
        "onnx (YOLOv3-tiny, 416 input)": OnnxConfig(model_path=ASSETS / "yolov3-tiny.onnx"),
        "onnx (YOLOv3-tiny, 416 input), static foreground off": OnnxConfig(
            model_path=ASSETS / "yolov3-tiny.onnx", static_foreground=False
        ),
        "classic (two-speed background)": ClassicConfig(),
    }
    export = ASSETS / "yolo11n-random.onnx"
    if export.is_file():
        configs["onnx (YOLO11n export, 640 input)"] = OnnxConfig(model_path=export)
    results: dict[str, Any] = {"frames/s per core at 640x480": {}, "pipeline at 2 fps, vtest street scene": {}}
    for name, config in configs.items():
        results["frames/s per core at 640x480"][name] = round(fps_of(build_detector(config), frames,
                                                                     seconds=args.seconds), 2)
    # The same with a road zone named: the onnx backend adds its static-foreground pass.
    road = ((0.0, 0.0, 0.6, 0.55),)
    for name in ("onnx (YOLOv3-tiny, 416 input)", "onnx (YOLOv3-tiny, 416 input), static foreground off"):
        results["frames/s per core at 640x480"][name + ", road zone"] = round(
            fps_of(build_detector(configs[name]), frames, seconds=args.seconds, static_regions=road), 2
        )
    yolo_py = ASSETS / "venv-yolo" / "bin" / "python"
    if yolo_py.is_file():
        env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": "/tmp/gridpatrol-yolo-cfg",
               "PYTHONPATH": str(ROOT)}
        npy = Path("/tmp/gridpatrol-bench-frames.npy")
        np.save(npy, np.stack(frames[::10]))
        run = subprocess.run([str(yolo_py), __file__, "--yolo-only", str(npy), "--seconds", str(args.seconds)],
                             env=env, capture_output=True, text=True, check=False, cwd="/tmp")
        if run.returncode == 0:
            results["frames/s per core at 640x480"].update(json.loads(run.stdout.strip().splitlines()[-1]))
        else:
            results["yolo error"] = run.stderr[-500:]
    # A quiet camera: the street's median background with sensor noise and nobody in view.
    rng = np.random.default_rng(0)
    empty = np.median(np.stack(frames[::20]), axis=0)
    quiet = [np.clip(empty + rng.normal(0, 2, empty.shape), 0, 255).astype(np.uint8) for _ in range(50)]
    results["pipeline at 2 fps, quiet camera (empty street, noise)"] = {}
    for name in (
        "onnx (YOLOv3-tiny, 416 input)", "onnx (YOLOv3-tiny, 416 input), static foreground off",
        "classic (two-speed background)",
    ):
        results["pipeline at 2 fps, vtest street scene"][name] = cameras_per_core(
            configs[name], frames, cameras=4, video_s=args.seconds
        )
        results["pipeline at 2 fps, quiet camera (empty street, noise)"][name] = cameras_per_core(
            configs[name], quiet, cameras=4, video_s=args.seconds
        )
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
