"""One prepared check for a machine with a GPU: the yolo backend at FP16 with batches of 1, 8 and 32
frames (one frame per camera), images/s and latency per batch, and PyAV hardware decoding of H.264
and H.265 against software decoding.

    .venv/bin/python bench/gpu_check.py --json $OUT/gpu.json            # on the GPU machine (~2 min)
    .venv/bin/python bench/gpu_check.py --dry-run                       # anywhere, on CPU (~20 s)

The yolo part needs torch and ultralytics: it runs in this interpreter when it has them, otherwise in
``--yolo-python`` (default: the yolo environment of scripts/setup.d/20-detectors.sh), a subprocess of
this script. Weights: ``--weights`` (a YOLO .pt); the default ``yolo11n.yaml`` builds YOLO11n with
random weights, which costs the same time per image as trained ones (nothing is downloaded). Each part
that cannot run says why in the report instead of failing the whole check.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ASSETS = Path(os.environ.get("GRIDPATROL_ASSETS", Path.home() / ".cache" / "gridpatrol"))


def street_frames(count: int, *, width: int = 640, height: int = 480) -> list[np.ndarray]:
    """vtest.avi frames when the assets are there, else a synthetic street (grey road, moving boxes)."""
    import cv2

    frames: list[np.ndarray] = []
    try:
        import av

        with av.open(str(ASSETS / "vtest.avi")) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i >= count:
                    break
                frames.append(cv2.resize(frame.to_ndarray(format="bgr24"), (width, height)))
    except (ImportError, OSError):
        pass
    rng = np.random.default_rng(0)
    while len(frames) < count:
        k = len(frames)
        img = np.full((height, width, 3), 110, np.uint8)
        for j in range(6):
            x = (40 + 97 * j + 7 * k) % (width - 40)
            cv2.rectangle(img, (x, 200 + 20 * j), (x + 30, 280 + 20 * j), (60 + 30 * j, 80, 140), -1)
        frames.append(np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8))
    return frames


def yolo_part(*, weights: str, device: str, batches: list[int], seconds: float, imgsz: int) -> dict[str, Any]:
    """Images/s and per-call latency of the yolo backend for each batch size (FP16 on CUDA)."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    import torch

    from detectors.backends import FrameInput, YoloConfig, build_detector

    report: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        report["gpu"] = {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1)}
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1)))
    frames = street_frames(max(batches))
    for batch in batches:
        detector = build_detector(
            YoloConfig(weights=Path(weights), device=device, half=True, batch=batch, imgsz=imgsz)
        )
        items = [FrameInput(frames[i % len(frames)], 0.0, f"cam{i}") for i in range(batch)]
        for _ in range(2):  # warm-up: CUDA kernels, cudnn autotuning
            detector.detect_batch(items)
        latencies: list[float] = []
        t_end = time.perf_counter() + seconds
        while time.perf_counter() < t_end or len(latencies) < 3:
            t0 = time.perf_counter()
            detector.detect_batch(items)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            latencies.append(time.perf_counter() - t0)
        lat = np.array(latencies) * 1000
        report[f"batch {batch}"] = {
            "device": detector.device,  # type: ignore[attr-defined]
            "half": detector.half,  # type: ignore[attr-defined]
            "images_per_s": round(batch * len(lat) / (lat.sum() / 1000), 1),
            "latency_ms_p50": round(float(np.percentile(lat, 50)), 1),
            "latency_ms_p95": round(float(np.percentile(lat, 95)), 1),
            "calls": len(lat),
        }
        detector.close()
    if torch.cuda.is_available():
        report["max_memory_allocated_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return report


def _encode(path: Path, codec: str, frames: list[np.ndarray]) -> None:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=25)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", **({"x265-params": "log-level=error"} if codec == "libx265" else {})}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _decode_fps(path: Path, hwaccel: Any = None) -> float:
    import av

    t0 = time.perf_counter()
    n = 0
    with av.open(str(path), hwaccel=hwaccel) as container:
        for frame in container.decode(video=0):
            frame.to_ndarray(format="bgr24")  # what the worker does with every analysed frame
            n += 1
    return round(n / (time.perf_counter() - t0), 1)


def decode_part(*, frames: int, width: int, height: int) -> dict[str, Any]:
    """PyAV decoding of H.264 and H.265 at ``width``x``height``: software, then each hardware device."""
    import av
    from av.codec.hwaccel import HWAccel, hwdevices_available

    available = list(hwdevices_available())
    report: dict[str, Any] = {"pyav": av.__version__, "hwdevices_in_ffmpeg": available}
    clip_frames = street_frames(frames, width=width, height=height)
    with tempfile.TemporaryDirectory(prefix="gridpatrol-gpu-") as tmp:
        for codec in ("libx264", "libx265"):
            path = Path(tmp) / f"clip-{codec}.mp4"
            try:
                _encode(path, codec, clip_frames)
            except (av.error.FFmpegError, ValueError) as err:
                report[codec] = {"error": f"cannot encode the test clip: {err}"}
                continue
            row: dict[str, Any] = {"software_fps": _decode_fps(path)}
            for device in ("cuda", "vaapi", "qsv"):
                if device not in available:
                    continue
                try:
                    row[f"{device}_fps"] = _decode_fps(
                        path, HWAccel(device_type=device, allow_software_fallback=False)
                    )
                except (av.error.FFmpegError, RuntimeError, OSError) as err:
                    row[f"{device}_fps"] = f"unavailable: {err}"
            report[f"{codec} {width}x{height}, {frames} frames"] = row
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="CPU, batches 1 and 2, tiny sizes: proves it runs")
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--seconds", type=float, default=10.0, help="per batch size")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--weights", default="yolo11n.yaml")
    parser.add_argument("--decode-frames", type=int, default=250)
    parser.add_argument("--yolo-python", type=Path, default=ASSETS / "venv-yolo" / "bin" / "python")
    parser.add_argument("--only", choices=["yolo", "decode"], default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = parser.parse_args()
    if args.dry_run:
        args.device, args.batches, args.seconds, args.imgsz, args.decode_frames = "cpu", "1,2", 0.5, 320, 20
    batches = [int(b) for b in args.batches.split(",")]
    report: dict[str, Any] = {}
    if args.only in (None, "yolo"):
        try:
            report["yolo"] = yolo_part(
                weights=args.weights, device=args.device, batches=batches, seconds=args.seconds, imgsz=args.imgsz
            )
        except ImportError as err:
            if args.only == "yolo" or not args.yolo_python.is_file():
                report["yolo"] = {"error": f"torch/ultralytics missing: {err}"}
            else:  # this interpreter has no torch: the yolo environment runs that part
                cmd = [str(args.yolo_python), __file__, "--only", "yolo", "--device", args.device,
                       "--batches", args.batches, "--seconds", str(args.seconds), "--imgsz", str(args.imgsz),
                       "--weights", args.weights]
                env = {**os.environ, "YOLO_OFFLINE": "1", "PYTHONPATH": str(ROOT),
                       "YOLO_CONFIG_DIR": tempfile.gettempdir() + "/gridpatrol-yolo-cfg"}
                run = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, cwd=tempfile.gettempdir())
                try:
                    report["yolo"] = json.loads(run.stdout.strip().splitlines()[-1])["yolo"]
                except (IndexError, KeyError, json.JSONDecodeError):
                    report["yolo"] = {"error": f"yolo environment failed (exit {run.returncode}): {run.stderr[-800:]}"}
        except Exception as err:  # a device check reports what broke rather than stopping the other part
            report["yolo"] = {"error": f"{type(err).__name__}: {err}"}
    if args.only in (None, "decode"):
        try:
            w, h = (320, 240) if args.dry_run else (1920, 1080)
            report["decode"] = decode_part(frames=args.decode_frames, width=w, height=h)
        except ImportError as err:
            report["decode"] = {"error": f"PyAV missing: {err}"}
    text = json.dumps(report, indent=2)
    print(text if args.only is None else json.dumps(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
