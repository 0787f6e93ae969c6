"""Media hub fan-out benchmark: one camera stream (1080p25 H.264, about 5 Mbit/s, from GStreamer's
rtsp-server looping a clip) fanned out by ``MediaHub`` to N in-process subscribers, which take packets
from ``batches()`` (one task per subscriber, woken per upstream read; mode "queue") or through
``deliver_to()`` (a sink called in the fan-out itself; mode "sink").

    .venv/bin/python bench/bench_hub.py [--viewers 1,100,400,1000] [--modes queue,sink] [--seconds 20]

Per step, in a fresh process pinned to one core (``--core``, default the last one) while the camera
server runs elsewhere: CPU seconds per viewer-minute (the hub process's user+system time over the
measured window: RTSP client, rewriting and N consumers that take each batch), packets/s delivered in
total, per-packet added latency p50/p99 (from the upstream socket read, ``received_at``, to the
subscriber getting the packet; sampled on 50 subscribers spread over the fan-out order), and loss
(packets dropped or subscribers ended as slow). The end-to-end comparison with GStreamer's relay over
real viewer sockets is the RTSP server's benchmark (``bench/bench_gateway.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.rtsp_server import Loop, RtspServer  # noqa: E402

CACHE = Path(os.environ.get("GRIDPATROL_BENCH_CACHE", "/tmp/gridpatrol-bench"))
LATENCY_SAMPLED_VIEWERS = 50


def make_clip(path: Path, *, seconds: int = 20, bitrate_kbps: int = 5000) -> Path:
    """A 1080p25 H.264 MPEG-TS clip at a constant ``bitrate_kbps`` (GOP 50, no B-frames), made once."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.ts")
    rate = f"{bitrate_kbps}k"
    cmd = [
        "ffmpeg", "-nostdin", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=25", "-t", str(seconds),
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "50", "-bf", "0",
        "-b:v", rate, "-minrate", rate, "-maxrate", rate, "-bufsize", f"{bitrate_kbps // 2}k",
        "-x264-params", "nal-hrd=cbr:force-cfr=1", str(tmp),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, timeout=900)
    tmp.rename(path)
    return path


# -- the measured process ------------------------------------------------------------------------------


async def _measure(url: str, viewers: int, seconds: float, warmup_s: float, *, sink: bool) -> dict[str, Any]:
    from rtsp_gateway.hub import HubSettings, MediaHub
    from rtsp_gateway.media import HubError, RtpPacket, StreamKind

    async def resolve(camera_id: int, stream: StreamKind) -> str:
        return url

    hub = MediaHub(resolve, settings=HubSettings(max_viewers_per_camera=100_000, linger_s=1.0))
    counts = [0] * viewers
    latencies: list[float] = []
    measuring = False
    ended: list[str] = []

    async def consume(index: int) -> None:
        nonlocal measuring
        sub = await hub.subscribe(1, user_id=None, consumer="rtsp")
        sampled = index % max(1, viewers // LATENCY_SAMPLED_VIEWERS) == 0  # spread over the wake order
        if sink:

            def take(batch: list[RtpPacket]) -> bool:
                if measuring:
                    counts[index] += len(batch)
                    if sampled:
                        now = time.monotonic()
                        latencies.extend(now - p.received_at for p in batch)
                return True

            sub.deliver_to(take)
            try:
                await sub.ended()
            except HubError as err:
                ended.append(type(err).__name__)
            return
        try:
            async for batch in sub.batches():
                if not measuring:
                    continue
                counts[index] += len(batch)
                if sampled:
                    now = time.monotonic()
                    latencies.extend(now - p.received_at for p in batch)
        except HubError as err:
            ended.append(type(err).__name__)

    tasks = [asyncio.create_task(consume(i)) for i in range(viewers)]
    await asyncio.sleep(warmup_s)
    stats0 = hub.stats()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    wall0 = time.monotonic()
    measuring = True
    await asyncio.sleep(seconds)
    measuring = False
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.monotonic() - wall0
    stats1 = hub.stats()
    await hub.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    latencies.sort()

    def pct(q: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")
        )

    expected = max(counts) if counts else 0
    return {
        "mode": "sink" if sink else "queue",
        "viewers": viewers,
        "seconds": round(wall, 2),
        "cpu_s": round(cpu, 3),
        "cpu_share": round(cpu / wall, 3),
        "cpu_s_per_viewer_minute": round(cpu / (viewers * wall / 60), 5),
        "packets_per_s": round(sum(counts) / wall),
        "mbit_in": round((stats1.bytes_in - stats0.bytes_in) * 8 / wall / 1e6, 2),
        "latency_p50_ms": round(pct(0.50), 2),
        "latency_p99_ms": round(pct(0.99), 2),
        "dropped_packets": stats1.dropped_packets - stats0.dropped_packets,
        "slow_ended": stats1.slow_consumers_ended - stats0.slow_consumers_ended,
        "short_viewers": sum(1 for c in counts if c < 0.99 * expected),
        "ended": len(ended),
    }


# -- the driver ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--viewers", default="1,100,400,1000")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=4.0)
    parser.add_argument("--bitrate-kbps", type=int, default=5000)
    parser.add_argument("--core", type=int, default=(os.cpu_count() or 1) - 1)
    parser.add_argument("--modes", default="queue,sink", help="queue: batches(); sink: deliver_to()")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        url, viewers, mode = args.measure.rsplit("|", 2)
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {args.core})
        result = asyncio.run(_measure(url, int(viewers), args.seconds, args.warmup, sink=mode == "sink"))
        sys.stdout.write(json.dumps(result) + "\n")
        return
    clip = make_clip(CACHE / f"hub-1080p-{args.bitrate_kbps}k.ts", bitrate_kbps=args.bitrate_kbps)
    results: list[dict[str, Any]] = []
    with RtspServer({"/cam": Loop(str(clip))}) as server:
        url = server.url("/cam")
        steps = [(m, int(v)) for m in args.modes.split(",") for v in args.viewers.split(",")]
        for mode, viewers in steps:
            cmd = [
                sys.executable, __file__, "--measure", f"{url}|{viewers}|{mode}", "--seconds", str(args.seconds),
                "--warmup", str(args.warmup), "--core", str(args.core),
            ]  # fmt: skip
            done = subprocess.run(
                cmd, capture_output=True, text=True, timeout=args.seconds + 300, check=False
            )
            if done.returncode != 0:
                sys.stderr.write(done.stderr[-3000:])
                raise SystemExit(f"measurement with {viewers} viewers failed")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            results.append(result)
            sys.stdout.write(json.dumps(result) + "\n")
            sys.stdout.flush()
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "bitrate_kbps": args.bitrate_kbps,
        "results": results,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
    header = "| delivery | viewers | CPU share | CPU-s / viewer-min | packets/s | Mbit/s in | p50 ms | p99 ms | loss |"
    sys.stdout.write("\n" + header + "\n|" + "---|" * 9 + "\n")
    for r in results:
        loss = r["dropped_packets"] + r["slow_ended"] + r["short_viewers"]
        sys.stdout.write(
            f"| {r['mode']} | {r['viewers']} | {r['cpu_share']:.0%} | {r['cpu_s_per_viewer_minute']:.4f} | {r['packets_per_s']:,} "
            f"| {r['mbit_in']} | {r['latency_p50_ms']} | {r['latency_p99_ms']} | {'none' if not loss else loss} |\n"
        )


if __name__ == "__main__":
    main()
