"""Wall-tile benchmark: CPU per watched camera (the worker's JPEG encode) and per extra wall viewer (the
API's fan-out over WebSockets), for walls of 16 and 36 tiles at 1 fps.

    .venv/bin/python bench/bench_tiles.py [--walls 16 36] [--viewers 1 2 4 8] [--seconds 10]

- Worker side: ``models.live.publisher.encode_jpeg`` of a 1280×720 frame to the tile width (480 by
  default), i.e. what one watched camera costs per tile; at 1 fps that is ms of CPU per second.
- API side: a separate process serves the real app (uvicorn, SQLite, in-process tile board) and publishes
  one pre-encoded tile per wanted camera per second (the worker's cost is measured above, not twice).
  V clients in this process each subscribe to every camera and count tiles; the server's CPU (utime +
  stime from /proc) over the window, for V = 1, 2, 4, 8, gives the cost of each extra viewer (the slope).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.live.publisher import encode_jpeg  # noqa: E402
from models.live.tiles import Tile  # noqa: E402

SECRET = "bench-tiles-secret-key-with-at-least-32-characters"
CLK = os.sysconf("SC_CLK_TCK")


def frame_720p(i: int) -> np.ndarray:
    img = np.zeros((720, 1280, 3), np.uint8)
    cv2.randu(img, 0, 60)
    for k in range(12):
        cv2.rectangle(
            img,
            (40 + 100 * k, 200 + (i * 7 + k * 13) % 300),
            (120 + 100 * k, 320 + (i * 7 + k * 13) % 300),
            (40 + 17 * k, 200, 255 - 15 * k),
            -1,
        )
    cv2.putText(img, f"CAM {i:05d}", (60, 120), cv2.FONT_HERSHEY_SIMPLEX, 3, (255, 255, 255), 6)
    return img


def bench_encode(width: int, rounds: int = 60) -> tuple[float, int]:
    """Median CPU ms of one tile encode (a 720p frame to ``width``), and the JPEG's size."""
    frames = [frame_720p(i) for i in range(8)]
    samples, size = [], 0
    for i in range(rounds):
        t0 = time.thread_time()
        jpeg, _w, _h = encode_jpeg(frames[i % len(frames)], width=width)
        samples.append((time.thread_time() - t0) * 1000)
        size = len(jpeg)
    return statistics.median(samples), size


# --- the server process -------------------------------------------------------------------------------


def serve(port: int, cameras: int, data: Path) -> None:
    """Run the app with ``cameras`` cameras and a feeder publishing one tile per wanted camera per second."""
    import uvicorn

    from api.app import create_app
    from api.settings import ApiSettings
    from models.bus.health_board import MemoryHealthBoard
    from models.bus.memory import MemoryBus
    from models.db.engine import make_engine, make_session_factory, transaction, upgrade
    from models.db.tables import Camera, Role
    from models.identity.users import add_user

    engine = make_engine(f"sqlite:///{data / 'bench.db'}")
    upgrade(engine)
    factory = make_session_factory(engine)
    with transaction(factory) as s:
        add_user(s, username="bench", role=Role.admin, password="correct-horse-battery-staple-9")
        for i in range(cameras):
            s.add(Camera(name=f"cam-{i}", url=f"rtsp://127.0.0.1:1/{i}"))
    from models.live.board import MemoryTileBoard

    board, health = MemoryTileBoard(), MemoryHealthBoard()
    jpeg, w, h = encode_jpeg(frame_720p(0), width=480)
    ids = list(range(1, cameras + 1))

    def feed() -> None:
        while True:
            t0 = time.monotonic()
            health.publish("bench", {str(c): {"state": "streaming"} for c in ids})
            for cid in board.wanted(ids):
                board.publish(Tile(camera_id=cid, captured_at=time.time(), jpeg=jpeg, width=w, height=h))
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))

    threading.Thread(target=feed, daemon=True).start()
    app = create_app(
        ApiSettings(secret_key=SECRET),
        session_factory=factory,
        bus=MemoryBus(),
        health_board=health,
        tile_board=board,
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# --- the measuring side --------------------------------------------------------------------------------


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


async def viewer(
    url: str, token: str, cameras: list[int], counts: list[int], index: int, stop: asyncio.Event
) -> None:
    from websockets.asyncio.client import connect

    async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=2**22) as ws:
        await ws.send(json.dumps({"type": "subscribe", "cameras": cameras, "width": 480}))
        while not stop.is_set():
            try:
                message = await asyncio.wait_for(ws.recv(), timeout=0.5)
            except TimeoutError:
                continue
            if isinstance(message, bytes):
                counts[index] += 1


async def measure(
    port: int, pid: int, token: str, cameras: int, viewers: int, seconds: float
) -> tuple[float, float]:
    """(server CPU as % of one core, tiles per viewer per second) with ``viewers`` walls open."""
    url = f"ws://127.0.0.1:{port}/api/live/tiles"
    counts = [0] * viewers
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(viewer(url, token, list(range(1, cameras + 1)), counts, i, stop))
        for i in range(viewers)
    ]
    await asyncio.sleep(4.0)  # connect, subscribe, demand reaches the feeder
    c0, n0, t0 = cpu_s(pid), sum(counts), time.monotonic()
    await asyncio.sleep(seconds)
    c1, n1, t1 = cpu_s(pid), sum(counts), time.monotonic()
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return 100 * (c1 - c0) / (t1 - t0), (n1 - n0) / (t1 - t0) / viewers


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--walls", type=int, nargs="+", default=[16, 36])
    parser.add_argument("--viewers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cameras", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.cameras, args.data)
        return

    for width in (320, 480):
        ms, size = bench_encode(width)
        print(f"worker: one tile of a 1280x720 frame at {width} px: {ms:.2f} ms CPU, {size / 1024:.1f} KB "
              f"-> {ms / 10:.2f}% of a core per watched camera at 1 fps ({ms / 5:.2f}% at 2 fps)")  # fmt: skip

    from api.tokens import issue_access_token
    from models.db.tables import User

    for cameras in args.walls:
        with tempfile.TemporaryDirectory() as tmp:
            from tests.support.procs import free_port

            port = free_port()
            proc = subprocess.Popen(
                [sys.executable, __file__, "--serve", str(port), "--cameras", str(cameras), "--data", tmp],
                stdout=subprocess.DEVNULL,
            )
            try:
                deadline = time.monotonic() + 60
                import httpx

                while True:
                    try:
                        if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise SystemExit("the bench server did not start")
                    time.sleep(0.2)
                token = issue_access_token(
                    User(id=1, token_version=0), secret=SECRET, ttl_s=3600
                )  # the bench user
                results = []
                for v in args.viewers:
                    cpu, rate = asyncio.run(measure(port, proc.pid, token, cameras, v, args.seconds))
                    results.append((v, cpu, rate))
                    print(
                        f"api: {cameras} tiles, {v} viewer(s): server {cpu:.2f}% of a core, {rate:.1f} tiles/s per viewer"
                    )
                (v0, c0, _), (v1, c1, _) = results[0], results[-1]
                per_viewer = (c1 - c0) / (v1 - v0) if v1 != v0 else float("nan")
                print(f"api: {cameras} tiles: each extra viewer adds {per_viewer:.2f}% of a core "
                      f"({per_viewer / cameras:.3f}% per tile); fixed part at {v0} viewer: {c0:.2f}%")  # fmt: skip
            finally:
                proc.terminate()
                proc.wait(timeout=10)


if __name__ == "__main__":
    main()
