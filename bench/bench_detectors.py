"""Detector speed: frames/s per core for each backend at 640 px, and cameras per core at 2 fps
through the whole pipeline (motion gate, detector, tracker, rules) on a street scene (vtest.avi).

    .venv/bin/python bench/bench_detectors.py [--seconds 20]
    .venv/bin/python bench/bench_detectors.py --int8 [--rounds 5]   # onnxruntime FP32 vs INT8 only

``--int8`` quantises YOLOv3-tiny as ``gridpatrol models quantize`` does (calibrated on vtest.avi) and
measures, in the same run on the same frames, alternating FP32 and INT8 rounds, all in CPU time (the
machine is shared: wall time would measure the neighbours): the raw model time (onnxruntime's ``run`` on
prepared blobs), the backend's frames per CPU second, and the whole pipeline's CPU time per frame over
the raw model time (the overhead of motion gate, crowd zoom, static pass, tracker and rules), with the
cameras one core sustains.

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


def raw_model_ms(session: Any, blobs: list[np.ndarray]) -> float:
    """CPU milliseconds of onnxruntime's ``run`` alone per prepared input blob (one intra-op thread:
    the calling thread does the work, so CPU time is what one core spends, however loaded the machine)."""
    name = session.get_inputs()[0].name
    session.run(None, {name: blobs[0]})
    cpu0 = time.process_time()
    for blob in blobs:
        session.run(None, {name: blob})
    return 1000 * (time.process_time() - cpu0) / len(blobs)


def backend_cpu_fps(detector: Any, frames: list[np.ndarray], *, count: int) -> float:
    """Frames per CPU second of the backend's whole ``detect`` (letterbox, model, decoding, NMS)."""
    detector.detect(frames[0])
    cpu0 = time.process_time()
    for n in range(count):
        detector.detect(frames[(n * 5) % len(frames)])
    return count / (time.process_time() - cpu0)


def pipeline_cpu_ms(config: Any, frames: list[np.ndarray], *, cameras: int, video_s: float) -> dict[str, Any]:
    """CPU ms per analysed frame through the whole pipeline, and per detector run."""
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
    runs = sum(p.detections_run for p in pipes)
    return {"cpu_ms_per_frame": 1000 * cpu / (cameras * steps), "cpu_ms_per_detect": 1000 * cpu / max(runs, 1),
            "cameras_per_core": cameras * video_s / cpu}


def int8_vs_fp32(frames: list[np.ndarray], *, rounds: int, seconds: float) -> dict[str, Any]:
    """FP32 and INT8 YOLOv3-tiny in alternating rounds on the same frames (a loaded machine drifts)."""
    import tempfile

    import onnxruntime as ort

    from detectors.backends import OnnxConfig, build_detector
    from detectors.backends.onnx import letterbox
    from gridpatrol.model_store import quantize_model

    store = Path(tempfile.mkdtemp(prefix="gridpatrol-int8-"))
    fp32 = ASSETS / "yolov3-tiny.onnx"
    t0 = time.perf_counter()
    int8 = quantize_model(str(fp32), [ASSETS / "vtest.avi"], models_dir=store, frames=64)
    quantize_s = time.perf_counter() - t0
    blobs = [letterbox(f, 416)[0] for f in frames[3::40]]
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    sessions = {k: ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
                for k, p in (("fp32", fp32), ("int8", int8))}
    rows: dict[str, dict[str, list[float]]] = {k: {"raw_ms": [], "fps": [], "pipeline_ms": [], "cameras": []}
                                               for k in sessions}
    for _ in range(rounds):
        for k, path in (("fp32", fp32), ("int8", int8)):
            row = rows[k]
            row["raw_ms"].append(raw_model_ms(sessions[k], blobs))
            plain = OnnxConfig(model_path=path, zoom=False, static_foreground=False)
            row["fps"].append(backend_cpu_fps(build_detector(plain), frames, count=len(blobs)))
            piped = pipeline_cpu_ms(OnnxConfig(model_path=path), frames, cameras=4, video_s=seconds / 2)
            row["pipeline_ms"].append(piped["cpu_ms_per_frame"])
            row["cameras"].append(piped["cameras_per_core"])
    out: dict[str, Any] = {"quantize_s": round(quantize_s, 1), "rounds": rounds}
    for k, row in rows.items():
        out[k] = {
            "raw model CPU ms (median of rounds)": round(float(np.median(row["raw_ms"])), 1),
            "raw model CPU ms per round": [round(v, 1) for v in row["raw_ms"]],
            "backend frames per CPU second (no zoom, no static pass)": round(float(np.median(row["fps"])), 1),
            "pipeline CPU ms per frame": round(float(np.median(row["pipeline_ms"])), 1),
            "pipeline / raw model": round(float(np.median(np.array(row["pipeline_ms"]) / np.array(row["raw_ms"]))), 2),
            "cameras per core at 2 fps": round(float(np.median(row["cameras"])), 1),
        }
    ratio = np.array(rows["fp32"]["raw_ms"]) / np.array(rows["int8"]["raw_ms"])
    out["int8 speed-up, raw model (per round)"] = [round(float(v), 2) for v in ratio]
    out["int8 speed-up, backend frames/s"] = round(
        float(np.median(np.array(rows["int8"]["fps"]) / np.array(rows["fp32"]["fps"]))), 2)
    out["int8 speed-up, cameras per core"] = round(
        float(np.median(np.array(rows["int8"]["cameras"]) / np.array(rows["fp32"]["cameras"]))), 2)
    return out


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
    parser.add_argument("--int8", action="store_true", help="onnxruntime FP32 vs INT8 YOLOv3-tiny only")
    parser.add_argument("--rounds", type=int, default=5, help="alternating FP32/INT8 rounds (--int8)")
    args = parser.parse_args()
    one_core()
    if args.yolo_only:
        print(json.dumps(yolo_only(args.seconds, args.yolo_only)))
        return 0
    if args.int8:
        print(json.dumps(int8_vs_fp32(footage(), rounds=args.rounds, seconds=args.seconds), indent=2))
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
