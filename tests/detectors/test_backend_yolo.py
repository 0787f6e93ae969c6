"""The yolo backend (ultralytics + torch) on YOLO11n built offline from its YAML with random weights:
the plumbing, batching across cameras and the ONNX export path into the onnx backend.

torch and ultralytics live in their own environment (scripts/setup.d/20-detectors.sh makes it), so
the check runs there in a subprocess: tests/detectors/yolo_check.py.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.detectors.support import asset, assets_dir
from tests.support.require import require

ROOT = Path(__file__).resolve().parents[2]


def yolo_python() -> Path:
    return Path(os.environ.get("GRIDPATROL_YOLO_PYTHON", assets_dir() / "venv-yolo" / "bin" / "python"))


def test_yolo_backend_batches_and_exports(tmp_path: Path) -> None:
    python = yolo_python()
    require(python.is_file(), f"the yolo environment at {python} (run scripts/setup.d/20-detectors.sh)")
    asset("bus.jpg")
    env = {
        **os.environ, "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(tmp_path / "cfg"), "PYTHONPATH": str(ROOT),
    }
    run = subprocess.run(
        [str(python), "-m", "tests.detectors.yolo_check", str(assets_dir()), str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert f"put a YOLO11/YOLOv8 .pt file at {tmp_path / 'missing.pt'}" in report["missing_error"]
    assert report["names"] == 80
    assert report["batch_len"] == 3 and report["same_frame_same_result"]
    assert report["onnx_output_shape"] == [1, 84, 8400]
    assert report["onnx_names"] == 80 and len(report["onnx_counts"]) == 3
    assert (tmp_path / "yolo11n-random.onnx").is_file()
