"""The RTSP gateway against GStreamer's rtsp-server relaying the same camera as a shared media.

One run, one machine: a 1080p25 H.264 camera at about 5 Mbit/s (GStreamer's rtsp-server looping a clip,
shared by every client), then each relay in turn pinned to core 0 (``taskset``):

* ``gateway``: ``gridpatrol gateway`` (media hub + RTSP server, Digest authentication of every viewer,
  access checks, audit), over a SQLite database made here;
* ``gst-relay``: ``rtspsrc location=CAMERA latency=0 ! rtph264depay ! rtph264pay name=pay0`` with
  ``set_shared(True)`` (a C implementation of the same job, no authentication).

Viewers run in one asyncio process pinned to core 1: N RTSP/TCP connections; most count bytes, a few
parse every interleaved packet (sequence gaps = loss), and one is a latency probe whose packets are
matched by payload to a viewer reading the camera directly (added latency per packet). For each N:
relay CPU seconds per viewer-minute, loss, p50/p99 added latency. The largest N without loss is the
relay's "viewers per core".

    .venv/bin/python bench/bench_gateway.py                       # 1,100,200,400,600,800,1000 viewers
    .venv/bin/python bench/bench_gateway.py --steps 1,100 --window 10
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.rtsp_server import SYSTEM_PYTHON, Loop, RtspServer, free_port  # noqa: E402

USER, PASSWORD = "bench-viewer", "Relay-bench-horse-42"
PARSED_VIEWERS = 4
CACHE = Path(tempfile.gettempdir()) / "gridpatrol-bench"
#: set by --profile: the gateway runs under cProfile and writes its profile here
PROFILE: Path | None = None

GST_RELAY = r"""
import sys
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer
Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(sys.argv[1])
server.set_backlog(4096)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch("( rtspsrc location=%s latency=0 protocols=tcp ! rtph264depay ! rtph264pay name=pay0 pt=96 )" % sys.argv[2])
factory.set_shared(True)
server.get_mount_points().add_factory("/relay", factory)
server.attach(None)
print("READY", flush=True)
GLib.MainLoop().run()
"""


# --- the viewer harness (runs in its own process, pinned to core 1) --------------------------------
class Viewer:
    def __init__(self, url: str, *, auth: tuple[str, str] | None, mode: str) -> None:
        self.url = url
        self.auth = auth
        self.mode = mode  # count | parse | probe
        self.bytes = 0
        self.window_bytes = 0
        self.gaps = 0
        self.packets = 0
        self.arrivals: dict[bytes, float] = {}
        self.failed: str | None = None
        self.ended = False
        self._nonce: str | None = None
        self._realm = ""
        self._cseq = 0

    def _authorization(self, method: str, url: str) -> str:
        if self.auth is None or self._nonce is None:
            return ""
        user, password = self.auth
        ha1 = hashlib.md5(f"{user}:{self._realm}:{password}".encode()).hexdigest()
        ha2 = hashlib.md5(f"{method}:{url}".encode()).hexdigest()
        response = hashlib.md5(f"{ha1}:{self._nonce}:{ha2}".encode()).hexdigest()
        return (
            f'Authorization: Digest username="{user}", realm="{self._realm}", nonce="{self._nonce}", '
            f'uri="{url}", response="{response}"\r\n'
        )

    async def _request(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        method: str,
        url: str,
        extra: str = "",
    ) -> tuple[int, dict[str, str], bytes]:
        for _ in range(2):
            self._cseq += 1
            writer.write(
                f"{method} {url} RTSP/1.0\r\nCSeq: {self._cseq}\r\n{extra}{self._authorization(method, url)}\r\n".encode()
            )
            while (await reader.readexactly(1)) == b"$":  # media or RTCP ahead of the answer: skip it
                size = int.from_bytes((await reader.readexactly(3))[1:], "big")
                await reader.readexactly(size)
            head = "R" + (await reader.readuntil(b"\r\n\r\n")).decode()
            lines = head.split("\r\n")
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                if k:
                    headers.setdefault(k.strip().lower(), v.strip())
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            status = int(lines[0].split(" ")[1])
            if status == 401 and self.auth is not None and self._nonce is None:
                self._nonce = re.search(r'nonce="([^"]+)"', head).group(1)  # type: ignore[union-attr]
                self._realm = re.search(r'realm="([^"]+)"', head).group(1)  # type: ignore[union-attr]
                continue
            return status, headers, body
        return status, headers, body

    async def run(self, window: dict[str, bool]) -> None:
        try:
            host, port = re.match(r"rtsp://([^:/]+):(\d+)", self.url).groups()  # type: ignore[union-attr]
            reader, writer = await asyncio.open_connection(host, int(port), limit=1 << 20)
            status, headers, sdp = await self._request(
                reader, writer, "DESCRIBE", self.url, "Accept: application/sdp\r\n"
            )
            if status != 200:
                raise RuntimeError(f"DESCRIBE {status}")
            base = headers.get("content-base", self.url + "/")
            control = [
                ln.split(":", 1)[1] for ln in sdp.decode().splitlines() if ln.startswith("a=control:")
            ][-1]
            track = control if control.startswith("rtsp://") else base.rstrip("/") + "/" + control
            status, headers, _ = await self._request(
                reader, writer, "SETUP", track, "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n"
            )
            if status != 200:
                raise RuntimeError(f"SETUP {status}")
            session = headers["session"].split(";")[0]
            status, _, _ = await self._request(
                reader, writer, "PLAY", base, f"Session: {session}\r\nRange: npt=0.000-\r\n"
            )
            if status != 200:
                raise RuntimeError(f"PLAY {status}")
            if self.mode == "count":
                while True:
                    data = await reader.read(1 << 18)
                    if not data:
                        break
                    self.bytes += len(data)
                    if window["on"]:
                        self.window_bytes += len(data)
            else:
                await self._parse(reader, window)
            self.ended = True
        except Exception as err:  # noqa: BLE001 - a bench reports every failure kind the same way
            self.failed = f"{type(err).__name__}: {err}"

    async def _parse(self, reader: asyncio.StreamReader, window: dict[str, bool]) -> None:
        last_seq: int | None = None
        while True:
            head = await reader.readexactly(4)
            if head[0] != 0x24:  # an RTSP answer in the stream (none expected): skip its head
                await reader.readuntil(b"\r\n\r\n")
                continue
            size = int.from_bytes(head[2:4], "big")
            data = await reader.readexactly(size)
            now = time.monotonic()
            self.bytes += 4 + size
            if window["on"]:
                self.window_bytes += 4 + size
            if head[1] != 0 or size < 12:
                continue
            self.packets += 1
            seq = int.from_bytes(data[2:4], "big")
            if last_seq is not None and window["on"] and seq != (last_seq + 1) & 0xFFFF:
                self.gaps += 1
            last_seq = seq
            if self.mode == "probe" and window["on"]:
                cc = data[0] & 0x0F
                self.arrivals[hashlib.blake2b(data[12 + 4 * cc :], digest_size=12).digest()] = now


async def harness(args: argparse.Namespace) -> None:
    window = {"on": False}
    auth = (USER, PASSWORD) if args.auth else None
    viewers = [Viewer(args.url, auth=auth, mode="probe")]
    viewers += [Viewer(args.url, auth=auth, mode="parse") for _ in range(min(PARSED_VIEWERS, args.n - 1))]
    viewers += [Viewer(args.url, auth=auth, mode="count") for _ in range(args.n - len(viewers))]
    direct = Viewer(args.direct, auth=None, mode="probe")
    tasks = [asyncio.create_task(direct.run(window))]
    for i, v in enumerate(viewers):
        tasks.append(asyncio.create_task(v.run(window)))
        if i % 20 == 19:
            await asyncio.sleep(0.05)  # a connect storm is not what is measured
    await asyncio.sleep(args.warmup)
    usage0 = os.times()
    wait0 = run_wait_seconds("self")
    print("WINDOW_START", flush=True)
    window["on"] = True
    await asyncio.sleep(args.window)
    window["on"] = False
    print("WINDOW_END", flush=True)
    usage1 = os.times()
    wait1 = run_wait_seconds("self")
    added = [(t - direct.arrivals[h]) * 1000 for h, t in viewers[0].arrivals.items() if h in direct.arrivals]
    counted = [v.window_bytes for v in viewers]
    result: dict[str, Any] = {
        "viewers": args.n,
        "failed": sum(1 for v in viewers if v.failed or v.ended),
        "failures": sorted({v.failed for v in viewers if v.failed})[:3],
        "direct_bytes": direct.window_bytes,
        "min_ratio": min(counted) / direct.window_bytes if direct.window_bytes else 0.0,
        "gaps": sum(v.gaps for v in viewers if v.mode != "count"),
        "matched": len(added),
        "p50_ms": statistics.median(added) if added else None,
        "p99_ms": statistics.quantiles(added, n=100)[98] if len(added) >= 100 else None,
        "harness_cpu": (usage1.user + usage1.system - usage0.user - usage0.system) / args.window,
        "harness_starved": (wait1 - wait0) / args.window,
    }
    print("RESULT " + json.dumps(result), flush=True)
    for t in tasks:
        t.cancel()


# --- the orchestration ---------------------------------------------------------------------------------
def run_wait_seconds(pid: int | str) -> float:
    """Seconds the process's threads spent runnable but waiting for a CPU (``/proc/PID/task/*/schedstat``):
    how much a relay was starved by other work on its core, not by its own."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its reaped children (seconds)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / tick


def make_camera_clip(path: Path, *, kbps: int) -> Path:
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.ts")
    cmd = [
        "ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=25",
        "-t", "20", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "50", "-keyint_min", "50",
        "-sc_threshold", "0", "-bf", "0", "-b:v", f"{kbps}k", "-maxrate", f"{kbps}k", "-bufsize", f"{kbps}k", str(tmp),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, timeout=600)
    tmp.rename(path)
    return path


def start_gateway(folder: Path, camera: str) -> tuple[subprocess.Popen[str], str]:
    """``gridpatrol gateway`` on core 0 over a fresh SQLite database with one camera and one viewer."""
    from models.db.engine import make_engine, make_session_factory, transaction, upgrade
    from models.db.tables import Role
    from models.grid.cameras import parse_camera_text, register_cameras
    from models.grid.tree import import_grids
    from models.identity.users import add_user
    from tests.support import sample

    db = folder / "gateway.db"
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    factory = make_session_factory(engine)
    lon, lat = sample.point_in("G1")
    with transaction(factory) as session:
        import_grids(session, sample.grid_geojson())
        register_cameras(
            session,
            parse_camera_text(f"name,url,lon,lat\nbench-cam,{camera},{lon},{lat}\n", yaml_format=False),
        )
        add_user(session, username=USER, role=Role.admin, password=PASSWORD)
    engine.dispose()
    port = free_port()
    env = {
        **os.environ,
        "GRIDPATROL_DATA_DIR": str(folder),
        "GRIDPATROL_DATABASE_URL": f"sqlite:///{db}",
        "GRIDPATROL_SECRET_KEY": secrets.token_urlsafe(48),
        "GRIDPATROL_GATEWAY_VIEWERS_PER_CAMERA": "100000",
        "GRIDPATROL_GATEWAY_SESSIONS_PER_USER": "100000",
        "GRIDPATROL_GATEWAY_MAX_CONNECTIONS": "100000",
    }
    profile = ["-m", "cProfile", "-o", str(PROFILE)] if PROFILE else []
    exe = [sys.executable, *profile, "-m", "gridpatrol", "gateway", "--port", str(port)]
    log = (folder / "gateway.log").open("w")
    proc = subprocess.Popen(
        ["taskset", "-c", "0", *exe], env=env, stdout=subprocess.PIPE, stderr=log, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "rtsp gateway on" not in line:
        raise RuntimeError(f"gateway did not start: {line!r}")
    return proc, f"rtsp://127.0.0.1:{port}/cameras/1"


def start_gst_relay(folder: Path, camera: str) -> tuple[subprocess.Popen[str], str]:
    script = folder / "gst_relay.py"
    script.write_text(GST_RELAY)
    port = free_port()
    cmd = ["taskset", "-c", "0", SYSTEM_PYTHON, str(script), str(port), camera]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    if "READY" not in proc.stdout.readline():
        raise RuntimeError("gst relay did not start")
    return proc, f"rtsp://127.0.0.1:{port}/relay"


def run_step(
    relay_pid: int, url: str, direct: str, *, n: int, auth: bool, warmup: float, window: float
) -> dict[str, Any]:
    cmd = [
        "taskset", "-c", "1", sys.executable, __file__, "--harness", "--url", url, "--direct", direct, "--n", str(n),
        "--warmup", str(warmup), "--window", str(window),
    ] + (["--auth"] if auth else [])  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    cpu0 = cpu1 = wait0 = wait1 = 0.0
    result: dict[str, Any] = {}
    for line in proc.stdout:
        if line.startswith("WINDOW_START"):
            cpu0, wait0 = cpu_seconds(relay_pid), run_wait_seconds(relay_pid)
        elif line.startswith("WINDOW_END"):
            cpu1, wait1 = cpu_seconds(relay_pid), run_wait_seconds(relay_pid)
        elif line.startswith("RESULT "):
            result = json.loads(line[7:])
    proc.wait(timeout=120)
    cpu = cpu1 - cpu0
    result["load1"] = os.getloadavg()[0]  # the machine is shared: each row says how busy it was
    result["relay_core"] = cpu / window
    result["relay_starved"] = (wait1 - wait0) / window
    result["cpu_s_per_viewer_min"] = cpu / (n * window / 60)
    result["lossless"] = (
        result.get("failed") == 0 and result.get("gaps") == 0 and result.get("min_ratio", 0) >= 0.9
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--harness", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--direct", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--auth", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--steps", default="1,100,200,400,600,800,1000", help="Viewer counts to try, in order"
    )
    parser.add_argument("--relays", default="gateway,gst-relay", help="Which relays to measure")
    parser.add_argument("--kbps", type=int, default=5000, help="Camera bitrate")
    parser.add_argument("--warmup", type=float, default=4.0, help="Seconds before each measuring window")
    parser.add_argument("--window", type=float, default=15.0, help="Seconds measured per step")
    parser.add_argument(
        "--profile", type=Path, help="Run the gateway under cProfile, writing the profile here"
    )
    args = parser.parse_args()
    global PROFILE
    PROFILE = args.profile
    if args.harness:
        asyncio.run(harness(args))
        return
    if shutil.which("taskset") is None or os.cpu_count() is None or os.cpu_count() < 2:  # type: ignore[operator]
        sys.exit("needs taskset and two cores")
    clip = make_camera_clip(CACHE / f"cam1080p-{args.kbps}k.ts", kbps=args.kbps)
    steps = [int(s) for s in args.steps.split(",")]
    print(
        f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, {platform.python_version()}"
    )
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    print(f"camera: 1920x1080 25 fps H.264 {args.kbps} kbit/s (GStreamer rtsp-server, shared loop)")
    rows: list[tuple[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory() as tmp, RtspServer({"/cam": Loop(str(clip))}) as camera:
        direct = camera.url("/cam")
        for relay in args.relays.split(","):
            folder = Path(tmp) / relay
            folder.mkdir()
            proc, url = (
                start_gateway(folder, direct) if relay == "gateway" else start_gst_relay(folder, direct)
            )
            try:
                for n in steps:
                    r = run_step(
                        proc.pid,
                        url,
                        direct,
                        n=n,
                        auth=relay == "gateway",
                        warmup=args.warmup,
                        window=args.window,
                    )
                    rows.append((relay, r))
                    print(f"{relay} {json.dumps(r)}", flush=True)
                    if not r["lossless"]:
                        break
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    print()
    print(
        "| relay | viewers | lossless | relay core | relay waiting for a CPU | CPU-s / viewer-min | added p50 "
        "| added p99 | viewer process core | load average (1 min) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for relay, r in rows:
        p50 = f"{r['p50_ms']:.1f} ms" if r.get("p50_ms") is not None else "-"
        p99 = f"{r['p99_ms']:.1f} ms" if r.get("p99_ms") is not None else "-"
        print(
            f"| {relay} | {r['viewers']} | {'yes' if r['lossless'] else 'no'} | {r['relay_core']:.0%} | "
            f"{r['relay_starved']:.0%} | "
            f"{r['cpu_s_per_viewer_min']:.3f} | {p50} | {p99} | {r['harness_cpu']:.0%} | {r['load1']:.1f} |"
        )


if __name__ == "__main__":
    main()
