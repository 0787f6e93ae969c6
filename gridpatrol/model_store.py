"""The local model store behind ``gridpatrol models import`` and ``gridpatrol models list``.

Models are ONNX files in one folder, named ``NAME.onnx``; Darknet ``.cfg`` + ``.weights`` are converted
on import (OpenCV 5 no longer reads Darknet), ultralytics ONNX exports are copied in.
``quantize_model`` adds ``NAME-int8.onnx`` next to ``NAME.onnx``: the INT8 version, calibrated on frames
decoded from the operator's own clips and prepared exactly as the onnx backend prepares them. A worker
picks a model by name (``GRIDPATROL_DETECTOR_MODEL=yolov3-tiny-int8``); the FP32 one stays stored.
"""

from __future__ import annotations

import ast
import os
import random
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detectors.darknet import import_darknet
from models.errors import ConfigError, DetectorError, StreamError

INT8_SUFFIX = "-int8"


def default_models_dir() -> Path:
    """``$GRIDPATROL_MODELS_DIR`` or ``var/models`` under the working directory."""
    return Path(os.environ.get("GRIDPATROL_MODELS_DIR", "var/models"))


@dataclass(frozen=True)
class ModelInfo:
    name: str
    path: Path
    size_bytes: int
    source: str
    classes: int
    input_size: str
    precision: str = "fp32"

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "path": str(self.path), "size_bytes": self.size_bytes,
                "source": self.source, "classes": self.classes, "input_size": self.input_size,
                "precision": self.precision}


def import_model(
    files: list[Path],
    *,
    models_dir: Path,
    name: str | None = None,
    names_path: Path | None = None,
    input_size: int = 416,
) -> Path:
    """Import ``NAME.cfg NAME.weights`` (Darknet, converted) or one ``.onnx`` file; returns the stored path."""
    cfgs = [f for f in files if f.suffix == ".cfg"]
    weights = [f for f in files if f.suffix == ".weights"]
    onnxs = [f for f in files if f.suffix == ".onnx"]
    for f in files:
        if not f.is_file():
            raise ConfigError(f"{f}: no such file")
    if len(cfgs) == 1 and len(weights) == 1 and not onnxs:
        target = models_dir / f"{name or weights[0].stem}.onnx"
        if names_path is None:
            sibling = [p for p in (cfgs[0].with_suffix(".names"), cfgs[0].parent / "coco.names") if p.is_file()]
            names_path = sibling[0] if sibling else None
        return import_darknet(cfgs[0], weights[0], target, names_path=names_path, input_size=input_size)
    if len(onnxs) == 1 and not cfgs and not weights:
        target = models_dir / f"{name or onnxs[0].stem}.onnx"
        models_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(onnxs[0], target)
        return target
    raise ConfigError("give either NAME.cfg and NAME.weights (Darknet) or one NAME.onnx file")


def describe(path: Path) -> ModelInfo:
    """Name, size, origin, class count and input size of a stored ONNX model."""
    try:
        import onnx
    except ImportError as err:
        raise DetectorError("listing models needs the onnx package: pip install onnx") from err
    from detectors.quantize import precision

    model = onnx.load(str(path), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    source = meta.get("format") or ("ultralytics" if "stride" in meta else "onnx")
    names = ast.literal_eval(meta["names"]) if "names" in meta else {}
    dims = model.graph.input[0].type.tensor_type.shape.dim
    size = "x".join(str(d.dim_value or d.dim_param or "?") for d in dims[2:])
    return ModelInfo(name=path.stem, path=path, size_bytes=path.stat().st_size, source=source,
                     classes=len(names), input_size=size, precision=precision(model))


def _input_size(path: Path) -> int:
    """The square input side the onnx backend letterboxes to for this model (640 when dynamic)."""
    import onnx

    dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    return int(dims[2].dim_value or 640) if len(dims) == 4 else 640


def _crop(frame: np.ndarray, rng: random.Random) -> np.ndarray:
    h, w = frame.shape[:2]
    share = rng.uniform(0.33, 0.5)
    cw, ch = max(16, int(w * share)), max(16, int(h * share))
    x, y = rng.randrange(max(1, w - cw)), rng.randrange(max(1, h - ch))
    return frame[y : y + ch, x : x + cw]


def calibration_blobs(clips: Sequence[Path], *, input_size: int, frames: int, seed: int = 0) -> list[np.ndarray]:
    """Up to ``frames`` frames drawn evenly at random from the clips (one a second), letterboxed to
    ``input_size`` as the onnx backend does. Each also gives a crop of a third to a half of its sides,
    as the backend's closer look at crowd zones feeds the model enlarged people, and a grey copy, as
    cameras send at night in infrared mode (a clip recorded by day has none)."""
    import cv2

    from detectors.backends.onnx import letterbox
    from gridpatrol.analyze import sample_clip

    rng = random.Random(seed)
    kept: list[np.ndarray] = []
    seen = 0
    for clip in clips:
        if not clip.is_file():
            raise StreamError(f"{clip}: no such clip")
        for frame, _t in sample_clip(clip, fps=1.0):
            seen += 1
            slot = len(kept) if len(kept) < frames else rng.randrange(seen)
            if slot >= frames:  # reservoir sampling: memory stays at ``frames`` frames for any clip length
                continue
            h, w = frame.shape[:2]
            if w > 1280:  # a crop of a third of 1280 px still fills the model's input
                frame = cv2.resize(frame, (1280, round(h * 1280 / w)), interpolation=cv2.INTER_AREA)
            if slot == len(kept):
                kept.append(frame)
            else:
                kept[slot] = frame
    if not kept:
        raise StreamError(f"no decodable frames in {', '.join(str(c) for c in clips)}")
    grey = [cv2.cvtColor(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR) for f in kept]
    return [letterbox(f, input_size)[0] for f in [*kept, *(_crop(f, rng) for f in kept), *grey]]


def quantize_model(
    name_or_path: str,
    clips: Sequence[Path],
    *,
    models_dir: Path,
    out_name: str | None = None,
    frames: int = 64,
) -> Path:
    """Store the INT8 version of a stored FP32 model as ``NAME-int8`` (or ``out_name``); returns its path.

    Calibrated on ``frames`` frames of ``clips``: recordings of the cameras it will watch are best.
    """
    from detectors.quantize import quantize_int8

    if not clips:
        raise ConfigError("--calibrate: give at least one clip to calibrate on")
    if frames < 1:
        raise ConfigError("--frames must be at least 1")
    src = resolve_model(name_or_path, models_dir=models_dir)
    if not src.is_file():
        raise ConfigError(f"model {name_or_path!r}: no such file")
    target = models_dir / f"{out_name or src.stem + INT8_SUFFIX}.onnx"
    if target.resolve() == src.resolve():
        raise ConfigError(f"--name: {target.stem!r} is the model being quantised")
    blobs = calibration_blobs(clips, input_size=_input_size(src), frames=frames)
    note = ", ".join(c.name for c in clips)
    return quantize_int8(src, target, blobs, note=note)


def list_models(models_dir: Path) -> list[ModelInfo]:
    if not models_dir.is_dir():
        return []
    return [describe(p) for p in sorted(models_dir.glob("*.onnx"))]


def resolve_model(name_or_path: str, *, models_dir: Path) -> Path:
    """A path as given, or a stored model's name."""
    path = Path(name_or_path)
    if path.suffix in {".onnx", ".pt", ".yaml", ".yml"} or path.exists():
        return path
    stored = models_dir / f"{name_or_path}.onnx"
    if stored.is_file():
        return stored
    known = ", ".join(m.stem for m in sorted(models_dir.glob("*.onnx"))) or "none"
    raise ConfigError(f"model {name_or_path!r} not found in {models_dir} (stored models: {known})")
