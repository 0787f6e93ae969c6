"""``probe``: what an operator sees before registering a camera, through the worker's reader."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from ingest.probe import probe
from tests.support.rtsp_server import RtspServer, Synthetic


def test_probe_live_rtsp_full_and_keyframes_only(rtsp_server: Callable[..., RtspServer]) -> None:
    server = rtsp_server({"/live": Synthetic(width=640, height=360, fps=25, gop=25)})
    # ``seconds`` is the probe's reading window; 5 s leaves a loaded machine room to see the two
    # keyframes an interval needs. Everything asserted is stream time or counts, not how fast the
    # probe decoded (its wall-clock ``decode_fps`` and ``seconds`` are not checked).
    full = probe(server.url("/live"), seconds=5)
    assert full["ok"] and full["codec"] == "h264" and full["resolution_wh"] == [640, 360]
    assert full["keyframes"] >= 2
    assert 23 <= full["input_fps"] <= 27  # frames per second of stream time (pts), not of wall time
    assert full["keyframe_interval_s"] == 1.0  # GOP 25 at 25 fps, in stream time
    # counts: every decoded frame is one of a GOP of 25 opened by a keyframe
    assert 25 * (full["keyframes"] - 1) < full["frames_decoded"] <= 25 * full["keyframes"] + 25
    assert full["errors"] == [] and full["decode_errors"] == 0
    keys = probe(server.url("/live"), seconds=5, keyframes_only=True)
    assert keys["ok"] and keys["frames_decoded"] == keys["keyframes"] >= 2
    assert keys["keyframe_interval_s"] == 1.0
    json.dumps(keys)  # the CLI prints it with --json


def test_probe_file_counts_every_frame(clips: dict[str, Path]) -> None:
    report = probe(str(clips["mp4"]), seconds=10)
    assert (report["frames_decoded"], report["keyframes"], report["input_fps"]) == (200, 8, 25.0)
    assert report["reason"] == "eof"


def test_probe_refused_reports_a_redacted_error(refused_port: int) -> None:
    report = probe(f"rtsp://admin:hunter2@127.0.0.1:{refused_port}/x", seconds=1, open_timeout_s=2)
    assert not report["ok"] and (report["state"], report["reason"]) == ("failed", "refused")
    assert report["url"] == f"rtsp://***@127.0.0.1:{refused_port}/x"
    assert "hunter2" not in json.dumps(report)
