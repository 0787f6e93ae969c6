"""Detector backends: a registry and the discriminated-union config (``type``: yolo | onnx | classic).

Each backend module imports its heavy runtime (onnxruntime, torch) only when a detector is built, so
importing this package is cheap and works without the optional extras.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, TypeAdapter

from detectors.backends import classic, onnx, yolo
from detectors.backends.base import BackendConfigBase, Detector, FrameInput, registered
from detectors.backends.classic import ClassicConfig
from detectors.backends.onnx import OnnxConfig
from detectors.backends.yolo import YoloConfig

BackendConfig = Annotated[ClassicConfig | OnnxConfig | YoloConfig, Field(discriminator="type")]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(BackendConfig)


def parse_backend_config(data: Any) -> BackendConfigBase:
    """Validate a backend config dict (``{"type": "onnx", "model_path": ...}``)."""
    return _ADAPTER.validate_python(data)


def build_detector(config: BackendConfigBase) -> Detector:
    """Build the backend registered for ``config.type``; raises ``DetectorError`` when it cannot."""
    _, factory = registered()[config.type]
    return factory(config)


__all__ = [
    "BackendConfig", "BackendConfigBase", "ClassicConfig", "Detector", "FrameInput", "OnnxConfig",
    "YoloConfig", "build_detector", "classic", "onnx", "parse_backend_config", "yolo",
]
