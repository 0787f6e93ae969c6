"""Fixtures for the detectors tests: real footage decoded once per session."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from detectors.scenes import Props, build_props
from tests.detectors.support import asset
from tests.support.require import require


@pytest.fixture(scope="session")
def vtest_2fps() -> list[tuple[np.ndarray, float]]:
    """vtest.avi (768x576, 10 fps) sampled at 2 fps, as the worker samples a camera."""
    path = asset("vtest.avi")
    frames = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % 5 == 0:
                frames.append((frame.to_ndarray(format="bgr24"), i / 10.0))
    assert len(frames) == 159
    return frames


@pytest.fixture(scope="session")
def footage() -> list[np.ndarray]:
    """Every frame of vtest.avi, for the quality suite's scenes (detectors/scenes.py); a module may define
    its own ``footage`` instead."""
    with av.open(str(asset("vtest.avi"))) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    assert len(frames) == 795
    return frames


@pytest.fixture(scope="session")
def props(footage: list[np.ndarray]) -> Props:
    """The quality suite's cut-outs (vtest.avi's people and van, bus.jpg's bus and men)."""
    bus = cv2.imread(str(asset("bus.jpg")))
    assert bus is not None
    return build_props(footage, bus)


@pytest.fixture(scope="session")
def yolov3_tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real YOLOv3-tiny COCO weights converted by our Darknet importer (about a second)."""
    require(importlib.util.find_spec("onnx") is not None, "the onnx package")
    from detectors.darknet import import_darknet

    folder = tmp_path_factory.mktemp("models")
    # The shipped cfg gives the second head anchors 0,1,2 but the weights were trained with 1,2,3
    # (small objects come out at half size otherwise): the same fix as the set-up script.
    cfg = folder / "yolov3-tiny.cfg"
    cfg.write_text(asset("yolov3-tiny.cfg").read_text().replace("mask = 0,1,2\n", "mask = 1,2,3\n"))
    return import_darknet(cfg, asset("yolov3-tiny.weights"), folder / "yolov3-tiny.onnx",
                          names_path=asset("coco.names"))
