"""Browser live view benchmark: CPU per viewer, added latency, time to first frame with and without the
GOP cache.

    .venv/bin/python bench/bench_live_view.py [--viewers 20] [--seconds 15] [--size 1280x720] [--kbps 2400]

The camera is GStreamer's rtsp-server (x264, 25 fps, a keyframe every 2 s); the server side is the API
app on uvicorn with the real media hub and ``rtsp_gateway.mse.LiveViewServer`` in this process; the
viewers are WebSocket clients in a child process (their CPU is not counted).

* CPU per viewer: this process's CPU time with 1 viewer and with 1 + N viewers, (difference / N) as a
  share of one core.
* Added latency: from the arrival of a frame's last RTP packet at the hub (``RtpPacket.received_at``)
  to the fragment's ``send`` returning on the viewer's socket, for every fragment sent.
* Time to first frame: a new viewer's connect → its first media fragment (after the init segment);
  "cold" opens the camera, "warm" joins a camera already watched, with the GOP cache and without it.
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rtsp_gateway import mse  # noqa: E402

CLIENT = "--client"


# --- viewers (child process) -----------------------------------------------------------------------
async def _viewer(url: str, token: str, seconds: float, out: dict[str, Any]) -> None:
    import websockets

    started = time.monotonic()
    async with websockets.connect(
        url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=None
    ) as ws:
        await ws.send(json.dumps({"type": "mse", "value": "avc1.640029"}))
        binaries = 0
        deadline = started + seconds
        while time.monotonic() < deadline:
            try:
                message = await asyncio.wait_for(ws.recv(), timeout=max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                break
            if isinstance(message, bytes):
                binaries += 1
                out["bytes"] = out.get("bytes", 0) + len(message)
                if binaries == 2:
                    out["first_frame_s"] = time.monotonic() - started
        out["fragments"] = max(0, binaries - 1)


async def _viewers(url: str, token: str, count: int, seconds: float) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = [{} for _ in range(count)]
    await asyncio.gather(*(_viewer(url, token, seconds, r) for r in results))
    return results


def client_main(argv: list[str]) -> None:
    url, token, count, seconds = argv[0], argv[1], int(argv[2]), float(argv[3])
    print(json.dumps(asyncio.run(_viewers(url, token, count, seconds))), flush=True)


def spawn_viewers(url: str, token: str, count: int, seconds: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, CLIENT, url, token, str(count), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )


def collect(proc: subprocess.Popen[str]) -> list[dict[str, Any]]:
    out, _ = proc.communicate(timeout=300)
    return list(json.loads(out))


# --- server side (this process) --------------------------------------------------------------------
STAMPS: dict[int, float] = {}
LATENCIES_MS: list[float] = []
_plain_offer = mse.Viewer.offer


def _stamped_offer(self: mse.Viewer, data: bytes, *, keyframe: bool, received_at: float = 0.0) -> None:
    if received_at:
        STAMPS[id(data)] = received_at
    _plain_offer(self, data, keyframe=keyframe, received_at=received_at)


class TimedChannel:
    def __init__(self, channel: Any) -> None:
        self._channel = channel

    def receive_text(self) -> Any:
        return self._channel.receive_text()

    def send_text(self, data: str) -> Any:
        return self._channel.send_text(data)

    async def send_bytes(self, data: bytes) -> None:
        await self._channel.send_bytes(data)
        stamp = STAMPS.get(id(data))
        if stamp is not None and RECORDING.is_set():
            LATENCIES_MS.append((time.monotonic() - stamp) * 1000)


RECORDING = threading.Event()


class SwitchableLive:
    """The API's live-video collaborator, with the server under test swappable between phases."""

    def __init__(self, inner: mse.LiveViewServer) -> None:
        self.inner = inner

    async def serve(self, *, camera_id: int, stream: Any, user_id: int | None, channel: Any) -> str:
        return await self.inner.serve(
            camera_id=camera_id, stream=stream, user_id=user_id, channel=TimedChannel(channel)
        )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--viewers", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--kbps", type=int, default=2400)
    parser.add_argument("--probes", type=int, default=5, help="new viewers timed per first-frame case")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))

    import uvicorn
    from sqlalchemy import select

    from api.app import create_app
    from api.settings import ApiSettings
    from api.tokens import issue_access_token
    from models.bus.memory import MemoryBus
    from models.db.engine import make_engine, make_session_factory
    from models.db.tables import Camera, User
    from rtsp_gateway.hub import HubSettings, MediaHub
    from tests.conftest import TEST_SECRET, seed
    from tests.rtsp_gateway.mse_fixtures import LaunchServer
    from tests.support.databases import sqlite_copy, sqlite_template
    from tests.support.rtsp_server import free_port

    mse.Viewer.offer = _stamped_offer  # type: ignore[method-assign]
    launch = (
        f"( videotestsrc is-live=true pattern=ball ! video/x-raw,width={width},height={height},framerate=25/1 ! "
        f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max=50 bframes=0 bitrate={args.kbps} ! "
        "h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    camera = LaunchServer({"/cam": launch})
    tmp = Path(tempfile.mkdtemp(prefix="bench-live-"))
    factory = make_session_factory(make_engine(sqlite_copy(sqlite_template(tmp / "tpl"), tmp)))
    seed(factory, tmp)
    with factory() as session:
        camera_id = session.scalars(select(Camera.id).order_by(Camera.id)).first()
        token = issue_access_token(
            session.scalars(select(User).where(User.username == "admin1")).one(),
            secret=TEST_SECRET,
            ttl_s=3600,
        )

    async def resolve(_camera_id: int, _stream: Any) -> str:
        return camera.url("/cam")

    hub = MediaHub(resolve, settings=HubSettings(linger_s=1.0))
    cached, uncached = mse.LiveViewServer(hub), mse.LiveViewServer(hub, gop_cache=False)
    live = SwitchableLive(cached)
    app = create_app(
        ApiSettings(secret_key=TEST_SECRET), session_factory=factory, bus=MemoryBus(), live_video=live
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"ws://127.0.0.1:{port}/api/cameras/{camera_id}/live"
    report: dict[str, Any] = {
        "camera": f"{width}x{height} 25 fps, x264 {args.kbps} kbit/s, GOP 2 s",
        "cores": os.cpu_count(),
    }
    try:
        # time to first frame: cold (camera not open), then warm with and without the GOP cache
        cold = []
        for _ in range(args.probes):
            time.sleep(3.0)  # past the hub's linger: the upstream is closed
            cold.append(collect(spawn_viewers(url, token, 1, 2.5))[0]["first_frame_s"])
        report["first_frame_cold_s"] = cold
        for name, server_under_test in (("warm_gop_cache", cached), ("warm_no_gop_cache", uncached)):
            live.inner = server_under_test
            background = spawn_viewers(url, token, 1, 4.0 + args.probes * 3.5)
            time.sleep(3.0)
            probes = []
            for _ in range(args.probes):
                probes.append(
                    collect(spawn_viewers(url, token, 1, 3.0))[0].get("first_frame_s", float("nan"))
                )
            collect(background)
            report[f"first_frame_{name}_s"] = probes
        live.inner = cached
        time.sleep(3.0)

        # CPU with one viewer, then with 1 + N, and the added latency in each
        def measure(count: int) -> dict[str, Any]:
            LATENCIES_MS.clear()
            procs = [spawn_viewers(url, token, 1, args.seconds + 4)]
            if count > 1:
                procs.append(spawn_viewers(url, token, count - 1, args.seconds + 4))
            time.sleep(2.0)
            RECORDING.set()
            cpu0, wall0 = time.process_time(), time.monotonic()
            time.sleep(args.seconds)
            cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
            RECORDING.clear()
            results = [r for p in procs for r in collect(p)]
            latencies = list(LATENCIES_MS)
            return {
                "viewers": count,
                "cpu_share": cpu / wall,
                "fragments_per_viewer": statistics.mean(r.get("fragments", 0) for r in results),
                "latency_ms_p50": percentile(latencies, 0.5),
                "latency_ms_p99": percentile(latencies, 0.99),
                "latency_samples": len(latencies),
            }

        one = measure(1)
        many = measure(1 + args.viewers)
        report["one_viewer"] = one
        report["many_viewers"] = many
        report["cpu_per_extra_viewer_share"] = (many["cpu_share"] - one["cpu_share"]) / args.viewers
    finally:
        server.should_exit = True
        thread.join(10)
        camera.stop()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == CLIENT:
        client_main(sys.argv[2:])
    else:
        main()
