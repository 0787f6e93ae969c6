"""The whole system on separate hosts (network namespaces) survives a worker crash and a Redis restart.

Two workers, two ticketers, the API and the RTSP gateway run as their own processes over PostgreSQL and
Redis with no shared data directory; four replayed street clips are the cameras. A killed worker's
cameras are streamed by the other one and tickets keep coming from them; after Redis restarts every
process is ready again without being restarted, every camera streams, and every rule event ever
published is a ticket occurrence exactly once. The other faults (a ticketer killed mid-stream, a
PostgreSQL restart, a camera switched off) and each recovery time are in bench/bench_faults.py.
"""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from models.db.tables import Ticket
from tests.support.require import require
from tests.support.rtsp_server import gstreamer_available
from tests.system.cluster import System, running_system, wait_until
from tests.system.hosts import PG_BIN, netns_available

pytestmark = pytest.mark.slow


def new_events_from(system: System, cameras: set[int], since: datetime) -> list[str]:
    """Rule events of ``cameras`` that happened after ``since`` and are ticket occurrences."""
    done = set(system.occurrence_ids())
    return [
        e.event_id
        for e in system.published_events()
        if e.camera_id in cameras and e.at > since and e.event_id in done
    ]


def test_a_worker_crash_and_a_redis_restart(tmp_path: Path) -> None:
    require(netns_available(), "root with iproute2 (ip netns) for hosts as network namespaces")
    require(shutil.which("redis-server") is not None, "redis-server (a dedicated one is started)")
    require(PG_BIN is not None, "PostgreSQL's initdb (a dedicated cluster is started)")
    require(gstreamer_available(), "GStreamer rtsp-server for /usr/bin/python3 (gir1.2-gst-rtsp-server-1.0)")
    with running_system(tmp_path) as system:
        # four cameras split between the two workers, and tickets from the clips
        workers = {w.pid for w in system.workers()}
        wait_until(
            lambda: set(system.holders().values()) == workers,
            timeout=90,
            what="both workers stream",
        )
        wait_until(lambda: system.tickets() >= 1, timeout=90, what="a first ticket")
        headers = system.admin_headers()
        listed = httpx.get(f"{system.api()}/api/tickets", headers=headers, timeout=10).json()["items"]
        assert len(listed) >= 1

        # a worker crashes: its cameras move to the survivor, which turns them into tickets
        victim = next(w for w in system.workers() if w.pid == system.holders()["fire-lane"])
        survivor = next(w for w in system.workers() if w is not victim)
        moved = {system.camera_ids[c] for c, pid in system.holders().items() if pid == victim.pid}
        assert moved
        crashed_at = datetime.now(UTC)
        victim.kill()
        wait_until(
            lambda: set(system.holders().values()) == {survivor.pid},
            timeout=60,
            what="the survivor streams every camera",
        )
        wait_until(
            lambda: new_events_from(system, moved, crashed_at),
            timeout=90,
            what="a ticket occurrence from a moved camera",
        )

        # Redis restarts: nobody is restarted, everyone reconnects, no event or ticket is lost
        tickets_before = system.tickets()
        system.redis.stop()
        time.sleep(2)  # a real outage: the processes notice
        system.redis.start()
        restarted_at = datetime.now(UTC)
        live = [p for p in system.procs.values() if p is not victim]
        assert all(p.alive() for p in live), system.logs()
        wait_until(lambda: all(p.ready() for p in live), timeout=60, what="every process ready again")
        wait_until(
            lambda: set(system.holders().values()) == {survivor.pid},
            timeout=60,
            what="every camera streams",
        )
        wait_until(
            lambda: new_events_from(system, set(system.camera_ids.values()), restarted_at),
            timeout=90,
            what="a ticket occurrence after the restart",
        )
        wait_until(system.handled, timeout=60, what="every published rule event is an occurrence")
        assert system.count(Ticket) >= tickets_before
        occurrences = system.occurrence_ids()
        assert len(occurrences) == len(set(occurrences))
        assert all(p.alive() for p in live), system.logs()
