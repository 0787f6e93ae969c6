"""The yolo backend: ultralytics on torch, CUDA when present. Half precision and batching on GPU.

The weights come from a configured path (a YOLO11/YOLOv8 ``.pt`` the operator provides, or a model
``.yaml`` for random weights in tests); nothing is downloaded at run time. Set ``YOLO_OFFLINE=1`` in the
environment so that ultralytics makes no network probes at import.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from detectors.backends.base import BackendConfigBase, Detector, FrameInput, register
from detectors.detections import Detections
from models.errors import DetectorError

logger = logging.getLogger(__name__)


class YoloConfig(BackendConfigBase):
    type: Literal["yolo"] = "yolo"
    weights: Path = Field(description="A YOLO .pt file (or a model .yaml: random weights, for tests).")
    device: Literal["auto", "cuda", "cpu"] = Field("auto", description="auto: CUDA when torch sees a GPU.")
    half: bool = Field(True, description="FP16 on GPU (ignored on CPU).")
    imgsz: int = Field(640, ge=32, le=4096, description="Inference size in pixels.")
    batch: int = Field(16, ge=1, le=256, description="Most frames per forward pass across cameras.")
    conf: float = Field(0.25, ge=0.0, le=1.0, description="Minimum score kept.")
    iou: float = Field(0.45, ge=0.0, le=1.0, description="NMS IoU threshold.")


@register(YoloConfig)
class YoloDetector(Detector):
    def __init__(self, config: YoloConfig) -> None:
        path = config.weights
        if path.suffix not in {".yaml", ".yml"} and not path.is_file():
            raise DetectorError(
                f"YOLO weights not found: put a YOLO11/YOLOv8 .pt file at {path} "
                "(GridPatrol never downloads weights; copy them there from a machine that has them)"
            )
        os.environ.setdefault("YOLO_OFFLINE", "1")
        try:
            import torch
            from ultralytics import YOLO
        except ImportError as err:
            raise DetectorError(
                "the yolo backend needs ultralytics and torch: pip install 'gridpatrol[yolo]'"
            ) from err
        if config.device == "cuda" and not torch.cuda.is_available():
            raise DetectorError("device 'cuda' asked but torch sees no CUDA device")
        self.device = "cuda:0" if config.device != "cpu" and torch.cuda.is_available() else "cpu"
        self.half = config.half and self.device != "cpu"
        self.config = config
        try:
            self.model: Any = YOLO(str(path), task="detect")
        except Exception as err:  # ultralytics raises many kinds for a bad file
            raise DetectorError(f"cannot load YOLO model {path}: {err}") from err
        names = self.model.names
        self.class_names = tuple(names[i] for i in range(len(names)))
        logger.info("yolo model %s on %s (half=%s), %d classes", path, self.device, self.half, len(names))

    def detect_batch(self, frames: Sequence[FrameInput]) -> list[Detections]:
        out: list[Detections] = []
        size = self.config.batch
        for start in range(0, len(frames), size):
            chunk = [f.frame_bgr for f in frames[start : start + size]]
            extra = {"half": True} if self.half else {}  # newer ultralytics warns on half=False
            results = self.model.predict(
                chunk, imgsz=self.config.imgsz, conf=self.config.conf, iou=self.config.iou,
                device=self.device, verbose=False, **extra,
            )
            out.extend(Detections.from_ultralytics(r) for r in results)
        return out

    def export_onnx(self, out_path: Path, *, opset: int = 18) -> Path:
        """Export the model to ONNX for the onnx backend (needs the onnx and onnxslim packages)."""
        made = Path(self.model.export(format="onnx", imgsz=self.config.imgsz, opset=opset, simplify=True))
        if made.resolve() != out_path.resolve():
            out_path.parent.mkdir(parents=True, exist_ok=True)
            made.replace(out_path)
        return out_path
