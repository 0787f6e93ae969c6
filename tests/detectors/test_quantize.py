"""INT8 models in the model store: ``gridpatrol models quantize`` on a real clip, with the real weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from detectors.backends import OnnxConfig, build_detector
from detectors.detections import box_iou
from gridpatrol.analyze import backend_config
from tests.detectors.support import asset
from tests.detectors.test_analyze import write_clip
from tests.detectors.test_backend_onnx import PEOPLE


@pytest.fixture(scope="module")
def store(
    tmp_path_factory: pytest.TempPathFactory, yolov3_tiny_onnx: Path, vtest_2fps: list[tuple[np.ndarray, float]]
) -> dict[str, Path]:
    """A data dir whose model store holds yolov3-tiny, and a 12 s street clip to calibrate on."""
    root = tmp_path_factory.mktemp("int8")
    (root / "models").mkdir()
    shutil.copyfile(yolov3_tiny_onnx, root / "models" / "yolov3-tiny.onnx")
    clip = root / "street.mp4"
    write_clip(clip, vtest_2fps[40:64], fps=2)
    return {"data": root, "models": root / "models", "clip": clip}


def cli(store: dict[str, Path], monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str]:
    from gridpatrol.cli import app

    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(store["data"]))
    monkeypatch.delenv("GRIDPATROL_MODELS_DIR", raising=False)
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def int8_model(store: dict[str, Path]) -> Path:
    mp = pytest.MonkeyPatch()
    try:
        code, out = cli(store, mp, "models", "quantize", "yolov3-tiny", "--calibrate", str(store["clip"]),
                        "--frames", "8")
    finally:
        mp.undo()
    assert code == 0, out
    assert "GRIDPATROL_DETECTOR_MODEL=yolov3-tiny-int8" in out
    return store["models"] / "yolov3-tiny-int8.onnx"


def test_quantize_stores_an_int8_model_next_to_the_fp32_one(
    store: dict[str, Path], int8_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out = cli(store, monkeypatch, "models", "list", "--json")
    assert code == 0, out
    listed = {m["name"]: m for m in map(json.loads, out.splitlines())}
    assert set(listed) == {"yolov3-tiny", "yolov3-tiny-int8"}
    assert listed["yolov3-tiny"]["precision"] == "fp32" and listed["yolov3-tiny-int8"]["precision"] == "int8"
    assert listed["yolov3-tiny-int8"]["classes"] == 80 and listed["yolov3-tiny-int8"]["input_size"] == "416x416"
    # a worker or `gridpatrol analyze` picks either by name
    config = backend_config("onnx", "yolov3-tiny-int8", models_dir=store["models"])
    assert isinstance(config, OnnxConfig) and config.model_path == int8_model
    assert backend_config("onnx", None, models_dir=store["models"]).model_path.name == "yolov3-tiny.onnx"


def test_int8_finds_the_people_fp32_finds(store: dict[str, Path], int8_model: Path) -> None:
    fp32 = build_detector(OnnxConfig(model_path=store["models"] / "yolov3-tiny.onnx", static_foreground=False))
    int8 = build_detector(OnnxConfig(model_path=int8_model, static_foreground=False))
    assert int8.class_names == fp32.class_names
    bus = cv2.imread(str(asset("bus.jpg")))
    people = int8.detect(bus)
    people = people[people.class_mask(["person"])]
    assert (box_iou(np.array(PEOPLE, np.float32), people.xyxy).max(axis=1) >= 0.5).all()
    assert people.confidence.max() > 0.9
    # Pictures unlike the calibration clip: the same people as FP32, in nearly the same boxes.
    zidane = cv2.imread(str(asset("zidane.jpg")))
    for frame in (bus, zidane):
        want, got = fp32.detect(frame), int8.detect(frame)
        want = want[want.class_mask(["person"]) & (want.confidence >= 0.3)]
        got = got[got.class_mask(["person"])]
        assert len(want) >= 3
        iou = box_iou(want.xyxy, got.xyxy).max(axis=1)
        assert (iou >= 0.5).all()
        assert (iou[want.confidence >= 0.5] >= 0.8).all()  # the confident ones in nearly the same boxes


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["nope", "--calibrate", "{clip}"], "model 'nope' not found"),
        (["yolov3-tiny", "--calibrate", "{missing}"], "--calibrate: {missing}: no such clip"),
        (["yolov3-tiny", "--calibrate", "{junk}"], "--calibrate: {junk}: cannot open the clip"),
        (["yolov3-tiny-int8", "--calibrate", "{clip}"], "is already int8: quantise its FP32 original"),
        (["yolov3-tiny", "--calibrate", "{clip}", "--frames", "0"], "--frames must be at least 1"),
    ],
)
def test_quantize_refuses_bad_input(
    store: dict[str, Path], int8_model: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    args: list[str], expected: str,
) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video")
    names = {"clip": str(store["clip"]), "missing": str(tmp_path / "gone.mp4"), "junk": str(junk)}
    code, out = cli(store, monkeypatch, "models", "quantize", *(a.format(**names) for a in args))
    assert code != 0
    assert expected.format(**names) in " ".join(out.split())


def test_import_can_quantize_on_import(store: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = cli(store, monkeypatch, "models", "import", str(store["models"] / "yolov3-tiny.onnx"),
                    "--name", "street", "--int8-calibrate", str(store["clip"]))
    assert code == 0, out
    assert (store["models"] / "street.onnx").is_file() and (store["models"] / "street-int8.onnx").is_file()
    code, out = cli(store, monkeypatch, "models", "import", str(store["models"] / "yolov3-tiny.onnx"),
                    "--name", "street2", "--int8-calibrate", str(store["data"] / "gone.mp4"))
    assert code != 0 and "--int8-calibrate" in out and "no such clip" in out
