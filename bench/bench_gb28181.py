"""GB/T 28181 media benchmark: time from INVITE to the first decoded frame, and CPU per GB camera next
to an RTSP camera carrying the same stream.

    .venv/bin/python bench/bench_gb28181.py [--runs 5] [--cameras 4] [--window 10] [--out bench/out/gb28181.json]

1. INVITE → first frame: SIPp plays the device (register; INVITE answered with the SSRC echoed; after
   the ACK it replays a pcap of PS over RTP that starts on a keyframe, as cameras start a new session).
   The platform's feed sends INVITE, the reader's pipe hands the PS to PyAV; timed are INVITE → ACK
   sent, and INVITE → first decoded frame, with the fast probing we use (``probesize=4096``,
   ``analyzeduration=0``) and with FFmpeg's default probing, to show what the options save.
2. CPU per camera: N GB cameras (N SIPp devices, each replaying the same 768x576 25 fps H.264 stream,
   Debian's vtest.avi, a real street camera, as PS over RTP/UDP) read by ingest's StreamReader through
   the ``gb28181`` opener, against N readers
   of the same H.264 stream served by GStreamer's rtsp-server over RTSP/TCP. Full decode, 2 fps to BGR
   as the worker samples. CPU is this process's (all threads: RTP receivers, demux, decode) over a
   window of steady streaming, per camera, as % of one core; SIPp and the RTSP server run in other
   processes and are not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import av  # noqa: E402

from ingest.gb28181 import decode  # noqa: E402
from ingest.gb28181.media import ChannelFeeds, MediaOptions, channel_url  # noqa: E402
from ingest.gb28181.platform import GbPlatform, PlatformThread  # noqa: E402
from ingest.gb28181.settings import Gb28181Settings  # noqa: E402
from ingest.gb28181.ssrc import SsrcPool  # noqa: E402
from ingest.reader import StreamOptions, StreamReader  # noqa: E402
from ingest.sampling import SamplingOptions  # noqa: E402
from tests.ingest.gb28181 import pcap  # noqa: E402
from tests.ingest.gb28181.sipp import CHANNEL_1, SippDevice, free_port  # noqa: E402
from tests.support.rtsp_server import Clip, RtspServer  # noqa: E402

PASSWORD = "bench-gb-secret"
DOMAIN = "3402000000"
FPS = 25


def device_id(i: int) -> str:
    return f"3402000000132{i:07d}"


def ssrc_of(order: int) -> int:
    """The SSRC SsrcPool(DOMAIN) hands out ``order``-th (1-based): the pcap must carry it."""
    return int(f"0{DOMAIN[3:8]}{order:04d}")


class Platform:
    """The platform on its own thread, SIPp devices, and the shared feeds."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.settings = Gb28181Settings(
            sip_host="127.0.0.1",
            sip_port=free_port(),
            password=PASSWORD,
            domain=DOMAIN,
            catalog_on_register=False,
        )
        self.platform = GbPlatform(self.settings)
        self.thread = PlatformThread(self.platform).start()
        assert self.platform.loop is not None
        self.feeds = ChannelFeeds(
            self.platform,
            loop=self.platform.loop,
            ssrcs=SsrcPool(DOMAIN),
            options=MediaOptions(ip="127.0.0.1", bind_ip="127.0.0.1", linger_s=0.0, media_timeout_s=60.0),
            platform_id=self.settings.id,
        )
        self.devices: list[SippDevice] = []

    def add_device(self, i: int, packets: list[tuple[float, bytes]]) -> str:
        folder = self.workdir / f"device-{i}"
        folder.mkdir(parents=True, exist_ok=True)
        pcap.write_pcap(folder / "media.pcap", packets)
        dev = SippDevice(
            platform_port=self.platform.port,
            password=PASSWORD,
            workdir=folder,
            ooc="device_ooc_media.xml",
            device_id=device_id(i),
            keepalive_ms=5000,
        )
        self.platform.submit(dev.run()).result(10)
        self.devices.append(dev)
        deadline = time.monotonic() + 15
        while not self.platform.online(dev.device_id):
            if time.monotonic() > deadline:
                raise RuntimeError(f"device {dev.device_id} did not register:\n{dev.log()}")
            time.sleep(0.05)
        return dev.device_id

    def close(self) -> None:
        self.platform.submit(self.feeds.aclose()).result(10)
        for dev in self.devices:
            self.platform.submit(dev.stop()).result(10)
        self.thread.stop()


# -- 1. INVITE → first frame ---------------------------------------------------------------------------
def first_frame(gb: Platform, dev: str, *, fast: bool) -> tuple[float, float]:
    """(s to ACK, s to the first decoded frame) of one live play from scratch."""
    pipe = decode.PsPipe(read_timeout_s=15)
    t0 = time.perf_counter()
    handle = gb.feeds.subscribe(dev, CHANNEL_1, lambda p, _t, _m, _g: pipe.write(p))
    t_ack = time.perf_counter() - t0
    try:
        container = decode.open_ps(pipe) if fast else av.open(pipe, mode="r", format="mpeg")
        try:
            next(iter(decode.decode_frames(container)))
            t_frame = time.perf_counter() - t0
        finally:
            container.close()
    finally:
        pipe.close()
        handle.close()
    while gb.feeds.feed(dev, CHANNEL_1) is not None:  # BYE sent, the next run starts from nothing
        time.sleep(0.02)
    return t_ack, t_frame


# -- 2. CPU per camera ----------------------------------------------------------------------------------
def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure_readers(readers: list[StreamReader], window_s: float, warmup_s: float) -> dict[str, Any]:
    for r in readers:
        r.start()
        time.sleep(0.3)
    time.sleep(warmup_s)
    frames0 = [r.health.input.count for r in readers]
    c0, t0 = cpu_s(), time.monotonic()
    time.sleep(window_s)
    c1, t1 = cpu_s(), time.monotonic()
    frames1 = [r.health.input.count for r in readers]
    for r in readers:
        r.stop(timeout=5)
    fps = [(b - a) / (t1 - t0) for a, b in zip(frames0, frames1, strict=True)]
    share = (c1 - c0) / (t1 - t0)
    return {
        "cameras": len(readers),
        "cpu_share_total": round(share, 4),
        "cpu_pct_per_camera": round(100 * share / len(readers), 2),
        "decoded_fps_per_camera": [round(f, 1) for f in fps],
    }


def write_mp4(frames: list[pcap.Frame], path: Path) -> Path:
    raw = path.with_suffix(".h264")
    raw.write_bytes(b"".join(f.es for f in frames))
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-r",
            str(FPS),
            "-i",
            str(raw),
            "-c",
            "copy",
            str(path),
        ],
        check=True,
        timeout=60,
    )
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--window", type=float, default=10.0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "gb28181.json")
    args = ap.parse_args()
    seconds = args.window + 8 + 0.3 * args.cameras
    results: dict[str, Any] = {"machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores"}
    with tempfile.TemporaryDirectory(prefix="bench-gb-") as tmp:
        work = Path(tmp)
        print(f"encoding {seconds:.0f} s of vtest.avi (768x576) at {FPS} fps, H.264 ...", flush=True)
        # real footage (a street camera), its 10 fps frames played at 25 fps: more motion, camera-like bitrate
        frames = pcap.encode(pcap.vtest_footage(seconds * FPS / 10), codec="h264", fps=FPS, gop=FPS)
        packs = pcap.ps_stream(frames, "h264")
        kbps = sum(len(f.es) for f in frames) * 8 / seconds / 1000
        results["stream"] = {"size": "768x576", "fps": FPS, "gop": FPS, "kbit_s": round(kbps)}

        gb = Platform(work)
        try:
            # 1. one device, many plays (each gets the first SSRC again: the previous one was released)
            dev = gb.add_device(0, pcap.rtp_packets(packs[: FPS * 8], ssrc=ssrc_of(1), fps=FPS))
            timings: dict[str, list[tuple[float, float]]] = {"fast": [], "default": []}
            for kind, runs in (("fast", args.runs), ("default", max(2, args.runs // 2))):
                for _ in range(runs):
                    timings[kind].append(first_frame(gb, dev, fast=kind == "fast"))
                    print(f"  {kind} probing: ACK {timings[kind][-1][0] * 1000:.0f} ms, first frame "
                          f"{timings[kind][-1][1] * 1000:.0f} ms", flush=True)  # fmt: skip
            results["invite_to_first_frame"] = {
                kind: {
                    "runs": len(ts),
                    "ack_ms_median": round(statistics.median(a for a, _ in ts) * 1000),
                    "first_frame_ms_median": round(statistics.median(f for _, f in ts) * 1000),
                    "first_frame_ms_range": [
                        round(min(f for _, f in ts) * 1000),
                        round(max(f for _, f in ts) * 1000),
                    ],
                }
                for kind, ts in timings.items()
            }
            # 2. N GB cameras, each its own device replaying the stream with the SSRC it will be given
            devices = [
                gb.add_device(i, pcap.rtp_packets(packs, ssrc=ssrc_of(i), fps=FPS))
                for i in range(1, args.cameras + 1)
            ]
            sampling = SamplingOptions(analysis_fps=2.0, analysis_width=640)
            readers = [
                StreamReader(
                    f"gb-{i}",
                    channel_url(d, CHANNEL_1),
                    stream=StreamOptions(read_timeout_s=20.0),
                    sampling=sampling,
                    openers={"gb28181": gb.feeds.open_source},
                )
                for i, d in enumerate(devices)
            ]
            print(f"CPU: {args.cameras} GB cameras ...", flush=True)
            results["cpu_gb"] = measure_readers(readers, args.window, 3.0)
            print(f"  {results['cpu_gb']}", flush=True)
        finally:
            gb.close()

        mp4 = write_mp4(frames, work / "clip.mp4")
        with RtspServer({"/cam": Clip(str(mp4))}) as server:
            readers = [
                StreamReader(f"rtsp-{i}", server.url("/cam"), sampling=sampling) for i in range(args.cameras)
            ]
            print(f"CPU: {args.cameras} RTSP cameras ...", flush=True)
            results["cpu_rtsp"] = measure_readers(readers, args.window, 3.0)
            print(f"  {results['cpu_rtsp']}", flush=True)
    results["load_average"] = [round(x, 1) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
