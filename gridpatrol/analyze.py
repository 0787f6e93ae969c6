"""``gridpatrol analyze CLIP --zones Z.json``: the worker's exact pipeline over a recorded clip.

The clip is decoded with PyAV and sampled at ``fps`` (the worker's detect rate); the frames go through
``detectors.pipeline.analyze_frames`` as fast as the machine allows. Events are written one JSON object
per line (``--json``) or as short text lines. Operators use it to tune zones on recorded footage.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import av
import numpy as np

from detectors.backends import BackendConfigBase, ClassicConfig, OnnxConfig, YoloConfig
from detectors.pipeline import analyze_frames
from gridpatrol.model_store import default_models_dir, resolve_model
from models.errors import ConfigError, GridPatrolError, StreamError
from models.grid.zonespec import ZonesFile, parse_zones

logger = logging.getLogger(__name__)
DEFAULT_ONNX_MODEL = "yolov3-tiny"


def sample_clip(path: Path, *, fps: float) -> Iterator[tuple[np.ndarray, float]]:
    """(BGR frame, seconds from the clip's start) at most ``fps`` times a second (0: every frame)."""
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as err:
        raise StreamError(f"{path}: cannot open the clip ({err})") from err
    with container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        start = None
        next_t = 0.0
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            start = frame.time if start is None else start
            t = frame.time - start
            if fps > 0 and t + 1e-6 < next_t:
                continue
            next_t = t + 1.0 / fps if fps > 0 else t
            yield frame.to_ndarray(format="bgr24"), t


def backend_config(backend: str, model: str | None, *, models_dir: Path | None = None) -> BackendConfigBase:
    """The detector config for ``--backend`` and ``--model``."""
    store = models_dir or default_models_dir()
    if backend == "classic":
        return ClassicConfig()
    if backend == "onnx":
        return OnnxConfig(model_path=resolve_model(model or DEFAULT_ONNX_MODEL, models_dir=store))
    if backend == "yolo":
        if not model:
            raise ConfigError("--backend yolo needs --model PATH.pt (weights are never downloaded)")
        return YoloConfig(weights=Path(model))
    raise ConfigError(f"unknown backend {backend!r} (classic, onnx or yolo)")


def load_zones(path: Path) -> ZonesFile:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: {err.strerror}") from err
    try:
        return parse_zones(json.loads(text))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from err


def run_analyze(
    clip_path: Path,
    zones_path: Path,
    *,
    backend: str = "classic",
    model: str | None = None,
    fps: float = 2.0,
    json_out: bool = False,
    models_dir: Path | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Analyse ``clip_path`` and write its rule events; returns the exit code (0 ok, 2 bad input).

    ``models_dir`` is where ``--model NAME`` is looked up (pass the settings' models folder).
    """
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        zones = load_zones(zones_path)
        config = backend_config(backend, model, models_dir=models_dir)
        count = 0
        for event in analyze_frames(sample_clip(clip_path, fps=fps), zones, config):
            count += 1
            if json_out:
                out.write(event.to_json_line() + "\n")
            else:
                extra = " ".join(f"{k}={v}" for k, v in event.details.items())
                out.write(f"{event.t:8.1f}s  {event.type:<8} {event.rule:<19} {event.zone}  {extra}".rstrip() + "\n")
            out.flush()
    except GridPatrolError as error:
        err.write(f"error: {error}\n")
        return 2
    logger.info("%s: %d events", clip_path, count)
    return 0
