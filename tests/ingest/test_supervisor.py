"""CameraSupervisor: ownership through leases (in-process and real Redis), live fleet changes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from ingest.leases import MemoryLeaseStore, RedisLeaseStore
from ingest.reader import StreamOptions
from ingest.sampling import SamplingOptions
from ingest.supervisor import CameraSpec, CameraSupervisor, fair_share
from tests.support.require import require

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/0"


def wait_for(pred: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


class Recorder:
    """An on_frame callback that counts frames per camera."""

    def __init__(self) -> None:
        self.frames: Counter[str] = Counter()
        self.shapes: set[tuple[int, ...]] = set()
        self._lock = threading.Lock()

    def __call__(self, camera_id: str, image: np.ndarray, capture_ts: float, stream_ts: float | None) -> None:
        assert capture_ts > 1e9
        with self._lock:
            self.frames[camera_id] += 1
            self.shapes.add(image.shape)


def file_camera(camera_id: str, path: Path, **sampling: object) -> CameraSpec:
    return CameraSpec(
        camera_id,
        str(path),
        stream=StreamOptions(loop=True, realtime=True),
        sampling=SamplingOptions(keyframes_only=True, analysis_width=64, **sampling),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("cameras", "capacities", "expected"),
    [(8, {"a": 8, "b": 8}, {"a": 4, "b": 4}), (10, {"a": 2, "b": 100}, {"a": 2, "b": 8}),
     (9, {"a": 8, "b": 8, "c": 8}, {"a": 3, "b": 3, "c": 3}), (100, {"a": 8, "b": 8}, {"a": 8, "b": 8}),
     (0, {"a": 8}, {"a": 0})],
)
def test_fair_share(cameras: int, capacities: dict[str, int], expected: dict[str, int]) -> None:
    assert {w: fair_share(cameras, capacities, w) for w in capacities} == expected


def test_in_process_supervisors_split_and_apply_changes_live(clips: dict[str, Path]) -> None:
    leases = MemoryLeaseStore()
    rec_a, rec_b = Recorder(), Recorder()
    sup_a = CameraSupervisor(worker_id="a", leases=leases, on_frame=rec_a, capacity=8, lease_ttl_s=1.5).start()
    sup_b = CameraSupervisor(worker_id="b", leases=leases, on_frame=rec_b, capacity=8, lease_ttl_s=1.5).start()
    fleet = [file_camera(f"cam-{i}", clips["mp4"]) for i in range(4)]
    try:
        sup_a.set_cameras(fleet)
        sup_b.set_cameras(fleet)
        assert wait_for(lambda: len(sup_a.owned()) == 2 and len(sup_b.owned()) == 2, 10)
        assert not sup_a.owned() & sup_b.owned()
        rec_a.frames.clear()  # frames from before the split settled may belong to either worker
        rec_b.frames.clear()
        assert wait_for(lambda: all((rec_a.frames | rec_b.frames)[c.camera_id] >= 1 for c in fleet), 10)
        assert rec_a.shapes | rec_b.shapes == {(36, 64, 3)}
        assert set(rec_a.frames) <= sup_a.owned() and set(rec_b.frames) <= sup_b.owned()

        # a camera is added and another's sampling changes, without restarting anything else
        owner = sup_a if "cam-0" in sup_a.owned() else sup_b
        before = owner._readers["cam-0"]
        for sup in (sup_a, sup_b):
            sup.upsert(file_camera("cam-4", clips["mp4"]))
            sup.upsert(file_camera("cam-0", clips["mp4"], analysis_fps=1.0))
        assert wait_for(lambda: len(sup_a.owned() | sup_b.owned()) == 5, 10)
        assert owner._readers["cam-0"] is not before
        assert owner._readers["cam-0"].sampling.analysis_fps == 1.0
        assert wait_for(lambda: owner.latest_display("cam-0", 32) is not None, 5)
        snap = owner.health_snapshot()["cam-0"]
        assert snap["worker_id"] == owner.worker_id and snap["state"] == "streaming"

        for sup in (sup_a, sup_b):
            sup.remove("cam-1")
        assert wait_for(lambda: "cam-1" not in sup_a.owned() | sup_b.owned(), 5)
        assert leases.owners(["cam-1"]) == {"cam-1": None}
    finally:
        sup_a.stop()
        sup_b.stop()
    assert leases.owners([f"cam-{i}" for i in range(5)]) == dict.fromkeys((f"cam-{i}" for i in range(5)), None)


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    try:
        ok = bool(redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping())
    except redis.RedisError:
        ok = False
    require(ok, "Redis on 127.0.0.1:6379")
    prefix = f"test:ingest:{uuid.uuid4().hex[:8]}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)


def test_redis_workers_split_eight_cameras_and_survive_a_kill(clips: dict[str, Path], redis_prefix: str) -> None:
    ttl = 3.0
    cameras = {f"cam-{i}": str(clips["mp4"]) for i in range(8)}
    cfg = {"redis_url": REDIS_URL, "prefix": redis_prefix, "worker_id": "proc", "capacity": 8,
           "ttl_s": ttl, "cameras": cameras}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.ingest.lease_worker", json.dumps(cfg)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    remote: dict[str, object] = {"owned": [], "frames": {}}

    def follow() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            remote.update(json.loads(line))

    threading.Thread(target=follow, daemon=True).start()
    leases = RedisLeaseStore.from_url(REDIS_URL, prefix=redis_prefix)
    rec = Recorder()
    local = CameraSupervisor(worker_id="local", leases=leases, on_frame=rec, capacity=8, lease_ttl_s=ttl)
    try:
        assert wait_for(lambda: len(remote["owned"]) == 8, 15)  # type: ignore[arg-type]
        local.start()
        local.set_cameras(file_camera(cid, Path(url)) for cid, url in cameras.items())

        def split() -> bool:
            mine, theirs = local.owned(), set(remote["owned"])  # type: ignore[arg-type]
            return len(mine) == 4 and len(theirs) == 4

        assert wait_for(split, 60)  # a safety bound: the split takes a few lease renewals
        for _ in range(10):  # never two owners while both run
            mine, theirs = local.owned(), set(remote["owned"])  # type: ignore[arg-type]
            assert not mine & theirs
            owners = leases.owners(cameras)
            assert {c for c, o in owners.items() if o == "local"} >= mine
            time.sleep(0.2)
        assert wait_for(lambda: len(rec.frames) == 4 and len(remote["frames"]) >= 4, 10)  # type: ignore[arg-type]

        assert len(set(remote["owned"])) == 4  # type: ignore[arg-type]
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        # the dead worker's leases lapse (TTL) and the survivor takes its cameras: the states, in order.
        # The deadline is a safety bound; how long a takeover takes is measured by bench/bench_takeover.py.
        assert wait_for(lambda: len(local.owned()) == 8, 60)
        assert set(leases.owners(cameras).values()) == {"local"}
        assert wait_for(lambda: len(rec.frames) == 8, 30)
        assert set(rec.frames) == set(cameras)  # every camera, including the four taken over, delivers
    finally:
        if proc.poll() is None:
            proc.kill()
        local.stop()
    assert set(leases.owners(cameras).values()) == {None}
