"""Run inside the yolo environment (torch + ultralytics) by test_backend_yolo.py; prints one JSON report.

Builds YOLO11n from its YAML with random weights (offline), runs the yolo backend batched across
"cameras", exports to ONNX and runs that export through the onnx backend.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from detectors.backends import FrameInput, OnnxConfig, YoloConfig, build_detector
from models.errors import DetectorError


def main(assets: Path, out_dir: Path) -> dict[str, object]:
    report: dict[str, object] = {}
    try:
        build_detector(YoloConfig(weights=out_dir / "missing.pt"))
    except DetectorError as err:
        report["missing_error"] = str(err)
    detector = build_detector(YoloConfig(weights=Path("yolo11n.yaml"), device="auto", batch=2, conf=0.0))
    report["device"] = detector.device  # type: ignore[attr-defined]
    report["names"] = len(detector.class_names)
    bus = cv2.imread(str(assets / "bus.jpg"))
    zidane = cv2.imread(str(assets / "zidane.jpg"))
    # batch=2: frames 0 and 1 share a forward pass, frame 2 gets its own.
    frames = [FrameInput(bus, 0.0, "cam1"), FrameInput(bus, 0.0, "cam2"), FrameInput(zidane, 0.0, "cam3")]
    t0 = time.perf_counter()
    batch = detector.detect_batch(frames)
    report["batch_s"] = time.perf_counter() - t0
    report["batch_len"] = len(batch)
    report["batch_counts"] = [len(d) for d in batch]
    report["same_frame_same_result"] = bool(
        len(batch[0]) == len(batch[1]) and np.allclose(batch[0].xyxy, batch[1].xyxy, atol=1e-2)
    )
    onnx_path = detector.export_onnx(out_dir / "yolo11n-random.onnx")  # type: ignore[attr-defined]
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    report["onnx_output_shape"] = list(session.get_outputs()[0].shape)
    onnx_detector = build_detector(OnnxConfig(model_path=onnx_path, conf=0.0, static_foreground=False))
    report["onnx_names"] = len(onnx_detector.class_names)
    report["onnx_counts"] = [len(d) for d in onnx_detector.detect_batch(frames)]
    return report


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), Path(sys.argv[2]))))
