"""What every detector backend is, and the registry that maps a config's ``type`` to a backend.

Adding a backend is adding one file: it defines a pydantic config with a ``type`` literal and a class
decorated with ``@register``; ``detectors.backends`` imports the file so the config joins the union.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from detectors.detections import Detections


class BackendConfigBase(BaseModel):
    """Base of each backend's config; ``type`` is the discriminator."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    type: str


@dataclass
class FrameInput:
    """One frame to detect on: BGR pixels, its time in seconds and the camera it came from.

    ``regions_norm`` are boxes (x1, y1, x2, y2, normalised 0..1) where the caller needs small people
    counted (crowd zones); a backend may look at them closer (the onnx one zooms) or ignore them.
    ``static_regions_norm`` are boxes where objects left standing matter (road and fire-lane zones); the
    onnx backend also looks there for static foreground that no class of its model describes.
    """

    frame_bgr: np.ndarray
    t: float = 0.0
    stream: str = "default"
    regions_norm: tuple[tuple[float, float, float, float], ...] = ()
    static_regions_norm: tuple[tuple[float, float, float, float], ...] = ()


class Detector:
    """A backend. Stateless backends ignore ``t`` and ``stream``; the classic one keeps per-stream models."""

    config_type: ClassVar[type[BackendConfigBase]]
    class_names: tuple[str, ...] = ()

    def detect_batch(self, frames: Sequence[FrameInput]) -> list[Detections]:
        raise NotImplementedError

    def detect(self, frame_bgr: np.ndarray, *, t: float = 0.0, stream: str = "default") -> Detections:
        return self.detect_batch([FrameInput(frame_bgr, t, stream)])[0]

    def forget(self, stream: str) -> None:
        """Drop per-stream state (a camera was removed)."""

    def close(self) -> None:
        """Release the runtime (GPU memory, sessions)."""


_REGISTRY: dict[str, tuple[type[BackendConfigBase], Callable[[Any], Detector]]] = {}


def register(config_type: type[BackendConfigBase]) -> Callable[[type[Detector]], type[Detector]]:
    """Class decorator: make ``cls`` the backend built for configs of ``config_type``."""

    def wrap(cls: type[Detector]) -> type[Detector]:
        name = config_type.model_fields["type"].default
        _REGISTRY[name] = (config_type, cls)
        cls.config_type = config_type
        return cls

    return wrap


def registered() -> dict[str, tuple[type[BackendConfigBase], Callable[[Any], Detector]]]:
    return dict(_REGISTRY)
