"""``gridpatrol analyze`` and the model store, on a real clip written with PyAV and the real weights."""

from __future__ import annotations

import io
import json
from pathlib import Path

import av
import numpy as np

from gridpatrol.analyze import run_analyze, sample_clip
from gridpatrol.model_store import describe, import_model, list_models
from tests.detectors.support import BOX, LANE, asset, pasted_object


def write_clip(path: Path, frames: list[tuple[np.ndarray, float]], *, fps: int) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 768, 576, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for frame, _ in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def test_analyze_clip_prints_json_events(tmp_path: Path, vtest_2fps: list[tuple[np.ndarray, float]]) -> None:
    obj = pasted_object()
    x1, y1, x2, y2 = BOX
    frames = []
    for frame, t in vtest_2fps[:100]:  # 50 s at 2 fps, object from 10 s to 40 s
        frame = frame.copy()
        if 10 <= t < 40:
            frame[y1:y2, x1:x2] = obj
        frames.append((frame, t))
    clip = tmp_path / "clip.mp4"
    write_clip(clip, frames, fps=2)
    assert [round(t, 2) for _, t in sample_clip(clip, fps=1)][:3] == [0.0, 1.0, 2.0]
    zones = tmp_path / "zones.json"
    zones.write_text(json.dumps({"zones": [LANE]}))
    out, err = io.StringIO(), io.StringIO()
    assert run_analyze(clip, zones, backend="classic", fps=2, json_out=True, out=out, err=err) == 0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(e["type"], e["rule"], e["zone"]) for e in lines] == [
        ("started", "fire_lane_blockage", "east lane"), ("ended", "fire_lane_blockage", "east lane"),
    ]
    assert 20 <= lines[0]["t"] <= 25 and 40 <= lines[1]["t"] <= 50


def test_analyze_reports_bad_zones(tmp_path: Path) -> None:
    zones = tmp_path / "zones.json"
    zones.write_text(json.dumps({"zones": [{**LANE, "polygon": [[0, 0], [2, 0], [1, 1]]}]}))
    err = io.StringIO()
    assert run_analyze(tmp_path / "none.mp4", zones, backend="classic", err=err) == 2
    assert "zone 'east lane'" in err.getvalue() and "polygon" in err.getvalue()


def test_models_import_and_list(tmp_path: Path) -> None:
    cfg, weights, names = asset("yolov3-tiny.cfg"), asset("yolov3-tiny.weights"), asset("coco.names")
    stored = import_model([cfg, weights], models_dir=tmp_path, names_path=names)
    assert stored == tmp_path / "yolov3-tiny.onnx"
    [info] = list_models(tmp_path)
    assert (info.name, info.source, info.classes, info.input_size) == ("yolov3-tiny", "darknet", 80, "416x416")
    assert describe(stored).size_bytes > 30_000_000
