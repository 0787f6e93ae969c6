"""The local model store behind ``gridpatrol models import`` and ``gridpatrol models list``.

Models are ONNX files in one folder, named ``NAME.onnx``; Darknet ``.cfg`` + ``.weights`` are converted
on import (OpenCV 5 no longer reads Darknet), ultralytics ONNX exports are copied in.
"""

from __future__ import annotations

import ast
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from detectors.darknet import import_darknet
from models.errors import ConfigError, DetectorError


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

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "path": str(self.path), "size_bytes": self.size_bytes,
                "source": self.source, "classes": self.classes, "input_size": self.input_size}


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
    model = onnx.load(str(path), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    source = meta.get("format") or ("ultralytics" if "stride" in meta else "onnx")
    names = ast.literal_eval(meta["names"]) if "names" in meta else {}
    dims = model.graph.input[0].type.tensor_type.shape.dim
    size = "x".join(str(d.dim_value or d.dim_param or "?") for d in dims[2:])
    return ModelInfo(name=path.stem, path=path, size_bytes=path.stat().st_size, source=source,
                     classes=len(names), input_size=size)


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
