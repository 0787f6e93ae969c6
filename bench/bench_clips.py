"""Event-clip buffer benchmark: memory per camera of the packet ring (``ingest.clips``) over a long run
with many cameras, the cost of feeding it, and the time to remux a default clip to MP4.

    .venv/bin/python bench/bench_clips.py [--cameras-360p 200] [--cameras-1080p 50] [--minutes 10]

Each camera gets its own :class:`ClipRecorder` fed with the packets of a generated H.264 clip
(testsrc2, 25 fps, GOP 50, no B-frames, looped) at stream time, with a simulated clock, so that
``--minutes`` of stream time for hundreds of cameras run in seconds of CPU; every camera asks for a
default clip (10 s before, 20 s after) every two minutes of stream time (spread over the cameras; the
simulation waits for the clip writer, which live has 30 s of stream time per clip). Reported per resolution: the
stream's bitrate, the ring's bytes and seconds per camera (mean and maximum, sampled every stream
second in the last half of the run, and in the first half: bounded means the two agree), the process's
resident memory per camera after the run, the CPU to buffer one camera-second, and the time to remux
a 30 s clip (the writer thread's work per event). Resident memory is comparable only for the first
resolution of a run (the allocator reuses what the first one freed): run one resolution at a time for it.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import av

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.clips import (  # noqa: E402
    BufferedPacket,
    ClipOptions,
    ClipRecorder,
    ClipResult,
    ClipWriter,
    StreamTemplate,
    remux_mp4,
)
from tests.support.rtsp_server import make_clip  # noqa: E402

FPS = 25


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()


def load(
    path: Path,
) -> tuple[av.container.InputContainer, av.video.stream.VideoStream, list[av.Packet], float]:
    container = av.open(str(path))
    stream = container.streams.video[0]
    # the RTSP demuxer gives Annex-B packets; the file's are length-prefixed: the ring does not care
    packets = [p for p in container.demux(stream) if p.size]
    seconds = len(packets) / FPS
    return container, stream, packets, seconds


def run(
    label: str, *, width: int, height: int, cameras: int, minutes: float, folder: Path, options: ClipOptions
) -> dict[str, float]:
    clip = make_clip(
        folder / f"bench-clips-{height}p.mp4", width=width, height=height, fps=FPS, seconds=20, gop=50
    )
    container, stream, packets, clip_s = load(clip)
    bitrate = sum(p.size for p in packets) * 8 / clip_s
    writer = ClipWriter(temp_dir=str(folder)).start()
    now = [0.0]
    recorders = [ClipRecorder(f"cam-{i}", options, writer, clock=lambda: now[0]) for i in range(cameras)]
    for r in recorders:
        r.on_stream(stream)
    results: list[int] = []  # sizes of the clips written (0: failed); the bytes are not kept

    def done(result: ClipResult) -> None:
        results.append(len(result.data) if result.data is not None else 0)

    total = int(minutes * 60 * FPS)
    samples: dict[str, list[tuple[int, float]]] = {"first": [], "last": []}
    rss0 = rss_bytes()
    cpu0 = time.process_time()
    for n in range(total):
        now[0] = n / FPS
        packet = packets[n % len(packets)]
        packet.pts = packet.dts = n * 3600  # 90 kHz, like RTSP; monotonic across loops
        for r in recorders:
            r.on_packet(packet)
        if n % FPS == 0:
            half = "first" if n < total // 2 else "last"
            samples[half] += [(r.buffered_bytes, r.buffered_s) for r in recorders[:10]]
        if n % FPS == 0:  # each camera asks for a clip every two minutes, the cameras spread over them
            second = n // FPS
            for i, r in enumerate(recorders):
                if second >= 30 and (second - i * 120 // cameras) % 120 == 0:
                    r.request(at=now[0], on_done=done)
            # the run is much faster than real time: let the writer keep up as it does live (a 30 s
            # clip takes it tens of milliseconds, see remux_ms)
            while writer.queued:
                time.sleep(0.005)
    cpu = time.process_time() - cpu0
    writer.stop(timeout=600)
    rss = rss_bytes() - rss0
    last = [b for b, _ in samples["last"]]
    first = [b for b, _ in samples["first"] if b]
    # one default clip's remux (30 s), timed alone: the writer thread's work per event
    template = StreamTemplate(stream)
    items = [
        BufferedPacket(bytes(p), i * 3600, i * 3600, bool(p.is_keyframe), i / FPS)
        for i, p in ((i, packets[i % len(packets)]) for i in range(30 * FPS))
    ]
    t_mux = []
    for _ in range(3):
        t0 = time.perf_counter()
        remux_mp4(template, items, temp_dir=str(folder))
        t_mux.append(time.perf_counter() - t0)
    container.close()
    out = {
        "bitrate_mbps": bitrate / 1e6,
        "bytes_mean": statistics.mean(last),
        "bytes_max": max(last),
        "bytes_first_half_max": max(first),
        "seconds_max": max(s for _, s in samples["last"]),
        "rss_per_camera": rss / cameras,
        "cpu_per_camera_s_us": cpu / (cameras * minutes * 60) * 1e6,
        "clips_written": sum(1 for n in results if n),
        "clips_asked": len(results),
        "clip_mb": statistics.mean(n for n in results if n) / 1e6 if any(results) else 0.0,
        "remux_ms": min(t_mux) * 1000,
    }
    print(
        f"{label}: {cameras} cameras x {minutes:g} min, {out['bitrate_mbps']:.2f} Mbit/s; ring per camera "
        f"{out['bytes_mean'] / 1e6:.2f} MB mean, {out['bytes_max'] / 1e6:.2f} MB max "
        f"(first half max {out['bytes_first_half_max'] / 1e6:.2f} MB), {out['seconds_max']:.1f} s max; "
        f"RSS +{out['rss_per_camera'] / 1e6:.2f} MB per camera; buffering {out['cpu_per_camera_s_us']:.0f} us CPU "
        f"per camera-second; {out['clips_written']}/{out['clips_asked']} clips written, {out['clip_mb']:.2f} MB each; "
        f"remux of a 30 s clip {out['remux_ms']:.0f} ms",
        flush=True,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cameras-360p", type=int, default=200)
    parser.add_argument("--cameras-1080p", type=int, default=50)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--buffer-mb", type=float, default=24.0, help="the byte bound per camera")
    args = parser.parse_args()
    options = ClipOptions(buffer_bytes=int(args.buffer_mb * 1024 * 1024))
    with tempfile.TemporaryDirectory(prefix="bench-clips-") as tmp:
        folder = Path(tmp)
        if args.cameras_360p:
            run(
                "360p",
                width=640,
                height=360,
                cameras=args.cameras_360p,
                minutes=args.minutes,
                folder=folder,
                options=options,
            )
        if args.cameras_1080p:
            run(
                "1080p",
                width=1920,
                height=1080,
                cameras=args.cameras_1080p,
                minutes=args.minutes,
                folder=folder,
                options=options,
            )


if __name__ == "__main__":
    main()
