"""A worker process for the lease tests: a CameraSupervisor on Redis leases, killed with SIGKILL.

Run as ``python -m tests.ingest.lease_worker '<json>'``; prints one JSON line a tick with the cameras
it owns and how many frames each has handed on.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter

import numpy as np

from ingest.leases import RedisLeaseStore
from ingest.reader import StreamOptions
from ingest.sampling import SamplingOptions
from ingest.supervisor import CameraSpec, CameraSupervisor


def main() -> None:
    cfg = json.loads(sys.argv[1])
    frames: Counter[str] = Counter()
    lock = threading.Lock()

    def on_frame(camera_id: str, image: np.ndarray, capture_ts: float, stream_ts: float | None) -> None:
        with lock:
            frames[camera_id] += 1

    supervisor = CameraSupervisor(
        worker_id=cfg["worker_id"],
        leases=RedisLeaseStore.from_url(cfg["redis_url"], prefix=cfg["prefix"]),
        on_frame=on_frame,
        capacity=cfg["capacity"],
        lease_ttl_s=cfg["ttl_s"],
    ).start()
    supervisor.set_cameras(
        CameraSpec(cid, url, stream=StreamOptions(loop=True, realtime=True),
                   sampling=SamplingOptions(keyframes_only=True, analysis_width=64))
        for cid, url in cfg["cameras"].items()
    )
    while True:
        with lock:
            counts = dict(frames)
        sys.stdout.write(json.dumps({"owned": sorted(supervisor.owned()), "frames": counts}) + "\n")
        sys.stdout.flush()
        time.sleep(0.2)


if __name__ == "__main__":
    main()
