"""Ingest benchmark: decode cost and cameras per core, on streams served by GStreamer's rtsp-server.

    .venv/bin/python bench/bench_ingest.py [--quick] [--out bench/out/ingest.json]

What it measures (results go to bench/README.md, section "Ingest"):

1. decode frames per CPU-second of one live stream (1080p25 and 360p25, H.264, GOP 12 = 2
   keyframes/s, no B-frames), full and keyframe-only, for the worker's reader and for
   ``ffmpeg -threads 1 -f null`` on the same stream (the practical limit);
2. cameras one core sustains at 2 fps analysis: N cameras (the real ``CameraSupervisor`` with
   reader, sampling, health and hand-off, or a bare PyAV reader for reference) in one process pinned
   to core 1 (``taskset``), while the RTSP server runs on core 0; a step is healthy when every camera
   keeps >= 90% of its expected analysed rate with no reconnects;
3. memory per camera (RSS growth over the process with no camera, divided by N).

The driver runs each measurement in a fresh subprocess (``_measure``) so steps do not share state.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.rtsp_server import Loop, RtspServer, make_clip  # noqa: E402

ANALYSIS_FPS = 2.0


# -- the measured process ----------------------------------------------------------------------------
def _rss_kb() -> int:
    with open("/proc/self/status") as fh:
        return int(re.search(r"VmRSS:\s+(\d+)", fh.read()).group(1))  # type: ignore[union-attr]


def _bare_reader(url: str, *, keyframes_only: bool, counts: list[int], idx: int, stop: threading.Event) -> None:
    """The reference: what one thread per camera costs with nothing but PyAV."""
    import av

    with av.open(url, options={"rtsp_transport": "tcp", "timeout": "5000000"}, timeout=(10, 10)) as container:
        stream = container.streams.video[0]
        if keyframes_only:
            stream.codec_context.skip_frame = "NONKEY"
        next_t: float | None = None
        period = 1.0 / ANALYSIS_FPS
        for packet in container.demux(stream):
            if stop.is_set():
                return
            for frame in stream.decode(packet):
                t = frame.time  # the same schedule as ingest.sampling.Sampler: 2 fps of stream time
                if t is None or (next_t is not None and t < next_t - 0.02):
                    continue
                next_t = t + period if next_t is None or t > next_t + 4 * period else next_t + period
                w = min(640, frame.width)
                frame.to_ndarray(format="bgr24", width=w, height=frame.height * w // frame.width // 2 * 2)
                counts[idx] += 1


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``args.n`` cameras on ``args.url`` and report CPU, rates and memory over ``args.seconds``."""
    import numpy as np

    from ingest.leases import MemoryLeaseStore
    from ingest.reader import StreamOptions
    from ingest.sampling import SamplingOptions
    from ingest.supervisor import CameraSpec, CameraSupervisor

    base_rss = _rss_kb()
    n, kf = args.n, args.mode == "keyframes"
    counts = [0] * n
    stop = threading.Event()
    supervisor = None
    if args.reader == "bare":
        threads = []
        for i in range(n):
            th = threading.Thread(target=_bare_reader, args=(args.url,),
                                  kwargs={"keyframes_only": kf, "counts": counts, "idx": i, "stop": stop}, daemon=True)
            th.start()
            threads.append(th)
            time.sleep(args.stagger)

        def analysed() -> list[int]:
            return list(counts)

        def reconnects() -> int:
            return sum(1 for th in threads if not th.is_alive())
    else:
        index = {f"cam-{i:04d}": i for i in range(n)}

        def on_frame(camera_id: str, image: np.ndarray, capture_ts: float, stream_ts: float | None) -> None:
            counts[index[camera_id]] += 1

        supervisor = CameraSupervisor(worker_id="bench", leases=MemoryLeaseStore(), on_frame=on_frame,
                                      capacity=n, stagger_s=args.stagger)
        supervisor.start()
        supervisor.set_cameras(
            CameraSpec(cid, args.url, stream=StreamOptions(open_timeout_s=10, read_timeout_s=10),
                       sampling=SamplingOptions(analysis_fps=ANALYSIS_FPS, keyframes_only=kf, analysis_width=640,
                                                display_fps=0))
            for cid in index
        )

        def analysed() -> list[int]:
            return list(counts)

        def reconnects() -> int:
            return sum(int(s["reconnects"]) for s in supervisor.health_snapshot().values())

        def reader_side() -> tuple[int, int]:
            snaps = supervisor.health.snapshot().values()
            return sum(int(s["frames_in"]) for s in snaps), sum(int(s["frames_analysed"]) for s in snaps)

    deadline = time.monotonic() + args.ramp_timeout
    while time.monotonic() < deadline and min(analysed()) < 1:
        time.sleep(0.2)
    ramp_ok = min(analysed()) >= 1
    time.sleep(2.0)  # let the start-up bursts pass
    side0 = reader_side() if supervisor is not None else (0, 0)
    c0, cpu0, t0, r0 = analysed(), time.process_time(), time.monotonic(), reconnects()
    time.sleep(args.seconds)
    c1, cpu1, t1, r1 = analysed(), time.process_time(), time.monotonic(), reconnects()
    side1 = reader_side() if supervisor is not None else (0, 0)
    rss = _rss_kb()
    stop.set()
    if supervisor is not None:
        supervisor.stop()
    wall = t1 - t0
    rates = [(b - a) / wall for a, b in zip(c0, c1, strict=True)]
    return {
        "n": n, "reader": args.reader, "mode": args.mode, "ramp_ok": ramp_ok,
        "cpu_util": round((cpu1 - cpu0) / wall, 3),
        "fps_mean": round(sum(rates) / n, 3), "fps_min": round(min(rates), 3),
        "reconnects": r1 - r0, "rss_mb": round(rss / 1024, 1),
        "rss_per_camera_mb": round((rss - base_rss) / 1024 / n, 2),
        "frames": sum(c1) - sum(c0), "seconds": round(wall, 1),
        # worker only: what the readers decoded and sampled, before the hand-off to on_frame
        "reader_input_fps": round((side1[0] - side0[0]) / wall / n, 2),
        "reader_sampled_fps": round((side1[1] - side0[1]) / wall / n, 3),
        "superseded": supervisor.superseded_frames if supervisor else 0,
        "unleased": supervisor.unleased_frames if supervisor else 0,
    }  # fmt: skip


def measure_decode(args: argparse.Namespace) -> dict[str, Any]:
    """One camera through the worker's reader, every frame decoded (or every keyframe): frames per CPU-s."""
    from ingest.handoff import LatestFrameQueue
    from ingest.reader import StreamOptions, StreamReader
    from ingest.sampling import SamplingOptions

    reader = StreamReader("bench", args.url, stream=StreamOptions(decode_threads=1),
                          sampling=SamplingOptions(analysis_fps=ANALYSIS_FPS, keyframes_only=args.mode == "keyframes",
                                                   display_fps=0), output=LatestFrameQueue(1)).start()
    deadline = time.monotonic() + 20
    while reader.health.input.count < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    f0, cpu0 = reader.health.input.count, time.process_time()
    time.sleep(args.seconds)
    f1, cpu1 = reader.health.input.count, time.process_time()
    reader.stop(5)
    return {"frames": f1 - f0, "cpu_s": round(cpu1 - cpu0, 3)}


# -- the driver ---------------------------------------------------------------------------------------
def run_pinned(cmd: list[str], core: int, timeout: float) -> dict[str, Any]:
    done = subprocess.run(["taskset", "-c", str(core), *cmd], capture_output=True, text=True, timeout=timeout,
                          check=False)
    if done.returncode != 0:
        return {"error": done.stderr[-1500:]}
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def ffmpeg_decode(url: str, *, keyframes_only: bool, seconds: float, core: int) -> dict[str, Any]:
    """``ffmpeg -threads 1 -f null`` on the same stream, measured after it connected (like ours)."""
    cmd = ["taskset", "-c", str(core), "ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-threads", "1"]
    if keyframes_only:
        cmd += ["-skip_frame", "nokey"]
    cmd += ["-rtsp_transport", "tcp", "-i", url, "-fps_mode", "passthrough", "-f", "null",
            "-progress", "pipe:1", "-stats_period", "0.25", "-"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    frames = [0]

    def follow() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("frame="):
                frames[0] = int(line.split("=", 1)[1])

    threading.Thread(target=follow, daemon=True).start()
    try:
        time.sleep(3.0)
        f0, c0 = frames[0], _proc_cpu_s(proc.pid)
        time.sleep(seconds)
        f1, c1 = frames[0], _proc_cpu_s(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return {"frames": f1 - f0, "cpu_s": round(c1 - c0, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter steps")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "ingest.json")
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--only", choices=["decode", "scale"], default=None)
    parser.add_argument("--steps", default=None,
                        help="scale steps to run, worker then bare, e.g. 360p:full:40,1080p:keyframes:50")
    sub = parser.add_subparsers(dest="cmd")
    m = sub.add_parser("_measure")
    m.add_argument("--url", required=True)
    m.add_argument("--n", type=int, default=1)
    m.add_argument("--mode", choices=["full", "keyframes"], default="keyframes")
    m.add_argument("--reader", choices=["worker", "bare", "decode"], default="worker")
    m.add_argument("--seconds", type=float, default=12.0)
    m.add_argument("--stagger", type=float, default=0.05)
    m.add_argument("--ramp-timeout", type=float, default=90.0)
    args = parser.parse_args()
    if args.cmd == "_measure":
        result = measure_decode(args) if args.reader == "decode" else measure(args)
        sys.stdout.write(json.dumps(result) + "\n")
        return

    os.sched_setaffinity(0, {0})  # the driver and the RTSP server (its child) stay on core 0
    clips_dir = Path(tempfile.gettempdir()) / "gridpatrol-bench-clips"
    clips_dir.mkdir(exist_ok=True)
    clips = {
        "360p": make_clip(clips_dir / "b360.ts", width=640, height=360, fps=25, seconds=30, gop=12),
        "1080p": make_clip(clips_dir / "b1080.ts", width=1920, height=1080, fps=25, seconds=30, gop=12),
    }
    secs = 6.0 if args.quick else args.seconds
    steps = {
        ("360p", "keyframes"): [50, 100] if args.quick else [50, 100, 150, 200, 250],
        ("360p", "full"): [10, 20] if args.quick else [10, 20, 30, 40],
        ("1080p", "keyframes"): [10] if args.quick else [10, 25, 50],
        ("1080p", "full"): [2] if args.quick else [2, 4, 6],
    }
    bare_steps = {("360p", "keyframes"): [100] if args.quick else [150, 200, 250],
                  ("360p", "full"): [20] if args.quick else [30, 40],
                  ("1080p", "keyframes"): [] if args.quick else [50],
                  ("1080p", "full"): [] if args.quick else [6]}
    report: dict[str, Any] = {
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"Python {platform.python_version()}",
        "command": " ".join([os.path.relpath(sys.executable, ROOT), *sys.argv]),
        "decode": [], "scale": [],
    }  # fmt: skip
    me = [sys.executable, str(Path(__file__).resolve()), "_measure"]
    with RtspServer({f"/{k}": Loop(str(v)) for k, v in clips.items()}) as server:
        if args.only in (None, "decode"):
            for res in clips:
                for mode in ("full", "keyframes"):
                    ours = run_pinned([*me, "--url", server.url(f"/{res}"), "--reader", "decode", "--mode", mode,
                                       "--seconds", str(secs)], 1, secs + 60)
                    ref = ffmpeg_decode(server.url(f"/{res}"), keyframes_only=mode == "keyframes", seconds=secs, core=1)
                    row = {"res": res, "mode": mode, "ours": ours, "ffmpeg": ref}
                    for side in ("ours", "ffmpeg"):
                        d = row[side]
                        d["fps_per_core"] = round(d["frames"] / d["cpu_s"], 1) if d.get("cpu_s") else None
                        d["core_pct"] = round(100 * d["cpu_s"] / secs, 2) if "cpu_s" in d else None
                    if ours.get("fps_per_core") and ref.get("fps_per_core"):
                        row["ratio"] = round(ours["fps_per_core"] / ref["fps_per_core"], 2)
                    report["decode"].append(row)
                    sys.stderr.write(json.dumps(row) + "\n")
        if args.only in (None, "scale"):
            # the bare reference right after the worker at the same count, so both see the same load
            plan = [(k, n, r) for k, ns in steps.items() for n in ns
                    for r in (("worker", "bare") if n in bare_steps[k] else ("worker",))]
            if args.steps:
                picked = [step.split(":") for step in args.steps.split(",")]
                plan = [((res, mode), int(n), r) for res, mode, n in picked for r in ("worker", "bare")]
            for (res, mode), n, reader in plan:
                stagger = 0.5 if res == "1080p" else 0.05
                row = run_pinned([*me, "--url", server.url(f"/{res}"), "--n", str(n), "--mode", mode,
                                  "--reader", reader, "--seconds", str(secs), "--stagger", str(stagger)], 1, 400)
                row.update({"res": res, "mode": mode, "reader": reader, "n": n})
                row["healthy"] = bool(row.get("ramp_ok") and row.get("fps_min", 0) >= 0.9 * ANALYSIS_FPS
                                      and row.get("reconnects", 1) == 0)
                report["scale"].append(row)
                sys.stderr.write(json.dumps(row) + "\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    sys.stderr.write(f"wrote {args.out}\n")


if __name__ == "__main__":
    main()
