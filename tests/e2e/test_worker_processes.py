"""``gridpatrol worker --processes 2`` uses both cores: two worker processes share the cameras through
Redis leases (each camera read by exactly one), and a worker process that dies is started again while
its cameras move to the other."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from gridpatrol.democlip import write_clip
from models.bus.health_board import RedisHealthBoard
from tests.models.test_bus import REDIS_URL, redis_available
from tests.support import sample
from tests.support.procs import GRIDPATROL, run_cli
from tests.support.require import require


def children(pid: int) -> set[int]:
    """Live child processes of ``pid`` (from /proc: no extra package needed)."""
    out = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.add(int(entry.name))
    return out


def wait_for(cond, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.5)
    return False


def test_two_worker_processes_share_the_cameras(tmp_path: Path) -> None:
    require(redis_available(), "Redis on 127.0.0.1:6379")
    ns = f"wp-{uuid.uuid4().hex[:8]}:"
    env = {
        "GRIDPATROL_DATA_DIR": str(tmp_path / "var"),
        "GRIDPATROL_REDIS_URL": REDIS_URL,
        "GRIDPATROL_BUS_NAMESPACE": ns,
        "GRIDPATROL_LEASE_PREFIX": ns,
        "GRIDPATROL_LEASE_TTL_S": "3",
    }
    clip = write_clip(tmp_path / "clip.mp4", seconds=20, left=None)
    grids, _ = sample.write_files(tmp_path)
    lon, lat = sample.point_in("G1")
    rows = "".join(f"cam{i},file://{clip},{lon},{lat}\n" for i in range(4))
    (tmp_path / "cams.csv").write_text("name,url,lon,lat\n" + rows)
    for args in (["grids", "import", str(grids)], ["cameras", "import", str(tmp_path / "cams.csv")]):
        assert run_cli(args, env).returncode == 0
    board = RedisHealthBoard(REDIS_URL, namespace=ns)

    def holders() -> dict[str, str | None]:
        """camera id → the worker streaming it (None when no worker posts it as streaming)."""
        out: dict[str, str | None] = {}
        for cam in ("1", "2", "3", "4"):
            health = board.get(cam) or {}
            out[cam] = health.get("worker") if health.get("state") == "streaming" else None
        return out

    with open(tmp_path / "workers.log", "wb") as log:
        group = subprocess.Popen(
            [GRIDPATROL, "worker", "--processes", "2", "--capacity", "4"], env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            assert wait_for(lambda: all(holders().values()) and len(set(holders().values())) == 2, 60), holders()
            split = holders()
            assert sorted(list(split.values()).count(w) for w in set(split.values())) == [2, 2]
            first = children(group.pid)
            assert len(first) == 2
            victim = min(first)
            os.kill(victim, signal.SIGKILL)
            # the group starts a new process, and the cameras are all read again
            assert wait_for(lambda: len(children(group.pid)) == 2 and victim not in children(group.pid), 30)
            # every camera is streamed again by a live process, none by the dead one (its posts expire)
            assert wait_for(
                lambda: all(w is not None and int(w.rsplit("-", 1)[1]) in children(group.pid) for w in holders().values()), 60
            ), holders()
        finally:
            group.send_signal(signal.SIGTERM)
            try:
                group.wait(timeout=30)
            except subprocess.TimeoutExpired:
                group.kill()
                pytest.fail("the worker group did not stop on SIGTERM")
    assert group.returncode == 0
