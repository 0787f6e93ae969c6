"""Lease takeover benchmark: how long after a worker dies its cameras run again on a survivor.

    .venv/bin/python bench/bench_takeover.py [--rounds 5] [--ttl 3] [--cameras 8] [--json OUT]

Each round: a worker process (``tests/ingest/lease_worker.py``, a real ``CameraSupervisor`` on Redis
leases) and a local supervisor split N looping file cameras; the process is killed with SIGKILL; the
figures are kill → the survivor owns every camera, and kill → every taken-over camera has handed on a
frame. Bound the design aims for: TTL + two renewal periods (TTL/3 each) + 1 s. This used to be a
wall-clock assertion in ``tests/ingest/test_supervisor.py``; the test now checks the states only.
Needs Redis on 127.0.0.1:6379 and ffmpeg (for the clip). Results: bench/README.md, "Ingest".
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import redis  # noqa: E402

from ingest.leases import RedisLeaseStore  # noqa: E402
from ingest.reader import StreamOptions  # noqa: E402
from ingest.sampling import SamplingOptions  # noqa: E402
from ingest.supervisor import CameraSpec, CameraSupervisor  # noqa: E402
from tests.support.rtsp_server import make_clip  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/0"


def _wait(pred: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return bool(pred())


def one_round(clip: Path, *, ttl: float, n: int) -> dict[str, float]:
    prefix = f"bench:takeover:{uuid.uuid4().hex[:8]}:"
    cameras = {f"cam-{i}": str(clip) for i in range(n)}
    cfg = {"redis_url": REDIS_URL, "prefix": prefix, "worker_id": "proc", "capacity": n, "ttl_s": ttl, "cameras": cameras}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.ingest.lease_worker", json.dumps(cfg)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    remote: dict[str, Any] = {"owned": []}

    def follow() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            remote.update(json.loads(line))

    threading.Thread(target=follow, daemon=True).start()
    frames: Counter[str] = Counter()
    lock = threading.Lock()

    def on_frame(camera_id: str, image: np.ndarray, capture_ts: float, stream_ts: float | None) -> None:
        with lock:
            frames[camera_id] += 1

    local = CameraSupervisor(
        worker_id="local", leases=RedisLeaseStore.from_url(REDIS_URL, prefix=prefix), on_frame=on_frame,
        capacity=n, lease_ttl_s=ttl,
    )  # fmt: skip
    try:
        if not _wait(lambda: len(remote["owned"]) == n, 60):
            raise RuntimeError("the worker process never owned its cameras")
        local.start()
        local.set_cameras(
            CameraSpec(cid, url, stream=StreamOptions(loop=True, realtime=True),
                       sampling=SamplingOptions(keyframes_only=True, analysis_width=64))
            for cid, url in cameras.items()
        )  # fmt: skip
        if not _wait(lambda: len(local.owned()) == n // 2 and len(remote["owned"]) == n - n // 2, 60):
            raise RuntimeError("the two workers never split the cameras")
        theirs = set(remote["owned"])
        proc.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        proc.wait(5)
        with lock:
            before = {c: frames[c] for c in theirs}
        if not _wait(lambda: len(local.owned()) == n, 120):
            raise RuntimeError("the survivor never took every camera")
        owned_s = time.monotonic() - killed_at

        def delivering() -> bool:
            with lock:
                return all(frames[c] > before[c] for c in theirs)

        if not _wait(delivering, 120):
            raise RuntimeError("a taken-over camera never delivered a frame")
        frame_s = time.monotonic() - killed_at
    finally:
        if proc.poll() is None:
            proc.kill()
        local.stop()
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
    return {"owned_s": owned_s, "first_frame_s": frame_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ttl", type=float, default=3.0)
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_clip(Path(tmp) / "c180.mp4", width=320, height=180, fps=25, seconds=8, gop=25)
        rounds = [one_round(clip, ttl=args.ttl, n=args.cameras) for _ in range(args.rounds)]
    bound = args.ttl + 2 * (args.ttl / 3) + 1.0
    report = {
        "ttl_s": args.ttl, "cameras": args.cameras, "rounds": rounds, "design_bound_s": bound,
        "owned_s": {"median": statistics.median(r["owned_s"] for r in rounds), "max": max(r["owned_s"] for r in rounds)},
        "first_frame_s": {
            "median": statistics.median(r["first_frame_s"] for r in rounds), "max": max(r["first_frame_s"] for r in rounds)
        },
    }  # fmt: skip
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n", encoding="utf-8")
    sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
