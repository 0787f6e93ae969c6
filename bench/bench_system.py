"""Whole-system capacity: how many replayed 360p street cameras two cores analyse at 2 fps, end to end.

    .venv/bin/python bench/bench_system.py [--backend classic onnx int8] [--ramp 16 24 32 40 48 64]
        [--onnx-ramp 8 12 16 20 24] [--workers 2] [--warmup 30] [--window 20] [--json OUT]

Every part runs as its own process over PostgreSQL (127.0.0.1:5432, a fresh database dropped at the end)
and Redis (127.0.0.1:6379, keys under a fresh namespace deleted at the end): the RTSP gateway serving
the clips as replays (``gridpatrol gateway --replay NAME=FILE``), two ``gridpatrol worker`` processes
sharing the cameras through leases, a ticketer and the API (``gridpatrol serve`` without the others).
The clips are Debian's ``vtest.avi`` (a real street: pedestrians, parked vans) re-encoded to 640x360
H.264 at 10 fps; one replay has a crate pile pasted in the fire lane and one a market stall on the
road, from 12 s to 60 s of each 79 s loop, so tickets flow. The cameras point at the replays with a
service user's credential, as the demo's do, and carry the fire lane and road zones.

For each N of the ramp the cameras are added, the system is given ``--warmup`` seconds, then for
``--window`` seconds the script reads each worker's ``/metrics``: frames each camera handed to analysis
(``gridpatrol_camera_analysed_frames``) and frames the detector analysed (``gridpatrol_detector_seconds``
count; a frame handed on while the detector is busy is dropped for a newer one). A camera's analysed fps
is its handed-on fps times its worker's analysed/handed ratio. Also: each process's CPU (utime+stime from
/proc, % of one core), tickets opened and the load average. The ramp stops after the first N where some
camera falls below 1.8 fps. int8 (a quantized copy of the onnx model) runs when ``gridpatrol models
quantize`` exists. Needs vtest.avi in $GRIDPATROL_ASSETS or ~/.cache/gridpatrol (scripts/setup.sh) and,
for onnx, yolov3-tiny.onnx there. Results: bench/README.md, "Whole system".
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import av  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from detectors import scenes  # noqa: E402

PG_ADMIN = os.environ.get("GRIDPATROL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("GRIDPATROL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
CLIP_SIZE = (640, 360)
CLIP_FPS = 10
FEED_USER, FEED_PASSWORD = "bench-feed", "Qx7-" + uuid.uuid4().hex[:16]
#: replay name → what is pasted in (None: the street as it is); cameras cycle through them
REPLAYS = {"street-a": None, "lane": "crate", "street-b": None, "stall": "stall"}
LEFT_FROM_S, LEFT_UNTIL_S = 12.0, 60.0
GOAL_FPS = 1.8
HZ = os.sysconf("SC_CLK_TCK")


def assets_dir() -> Path:
    env = os.environ.get("GRIDPATROL_ASSETS")
    return Path(env) if env else Path.home() / ".cache" / "gridpatrol"


# --- clips -----------------------------------------------------------------------------------------


def _paste(img: np.ndarray, sprite: scenes.Sprite, x: int, y: int) -> None:
    h, w = sprite.bgr.shape[:2]
    a = sprite.alpha[:, :, None]
    region = img[y : y + h, x : x + w].astype(np.float32)
    img[y : y + h, x : x + w] = (a * sprite.bgr.astype(np.float32) + (1 - a) * region).astype(np.uint8)


def write_clips(folder: Path) -> dict[str, Path]:
    """The replays (cached in ``folder``): vtest.avi at 640x360, with a crate pile in the fire lane or a
    stall on the road for part of the loop (pasted in the 768x576 view the zones are drawn for)."""
    from gridpatrol.democlip import _video_stream

    folder.mkdir(parents=True, exist_ok=True)
    clips = {name: folder / f"{name}.mp4" for name in REPLAYS}
    if all(p.is_file() for p in clips.values()):
        return clips
    source = assets_dir() / "vtest.avi"
    if not source.is_file():
        sys.exit(f"{source} is missing: run scripts/setup.sh (it puts Debian's vtest.avi there)")
    with av.open(str(source)) as src:
        frames = [f.to_ndarray(format="bgr24") for f in src.decode(video=0)]
    sprites = {"crate": (scenes.crate_pile(), 520, 250), "stall": (scenes.stall_sprite(), 150, 170)}
    for name, thing in REPLAYS.items():
        offset = 0 if name != "street-b" else len(frames) // 2  # not every plain camera in step
        partial = clips[name].with_suffix(".part.mp4")
        with av.open(str(partial), mode="w") as out:
            stream = _video_stream(out, codec="h264", fps=CLIP_FPS, size=CLIP_SIZE, gop=CLIP_FPS)
            for i in range(len(frames)):
                img = frames[(i + offset) % len(frames)].copy()
                if thing is not None and LEFT_FROM_S <= i / CLIP_FPS < LEFT_UNTIL_S:
                    _paste(img, *sprites[thing])
                frame = av.VideoFrame.from_ndarray(
                    cv2.resize(img, CLIP_SIZE, interpolation=cv2.INTER_AREA), format="bgr24"
                )
                frame.pts = i
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        partial.replace(clips[name])
    return clips


# --- processes -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its children that ended (/proc/PID/stat), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / HZ


@dataclass
class System:
    backend: str
    model: str | None
    clips: dict[str, Path]
    data_dir: Path
    log_dir: Path
    db_name: str = field(default_factory=lambda: f"gridpatrol_bench_{uuid.uuid4().hex[:10]}")
    namespace: str = field(default_factory=lambda: f"bench-{uuid.uuid4().hex[:8]}")
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    metrics_ports: dict[str, int] = field(default_factory=dict)
    cameras: int = 0
    workers: int = 2
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(48))

    @property
    def db_url(self) -> str:
        return PG_ADMIN.rsplit("/", 1)[0] + "/" + self.db_name

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDPATROL_")}
        env.update(
            PYTHONPATH=str(ROOT),
            GRIDPATROL_DATA_DIR=str(self.data_dir),
            GRIDPATROL_DATABASE_URL=self.db_url,
            GRIDPATROL_REDIS_URL=REDIS_URL,
            GRIDPATROL_BUS_NAMESPACE=self.namespace,
            GRIDPATROL_LEASE_PREFIX=f"{self.namespace}:lease:",
            GRIDPATROL_DETECTOR_BACKEND="classic" if self.backend == "classic" else "onnx",
            GRIDPATROL_ANALYSIS_FPS="2",
            GRIDPATROL_SECRET_KEY=self.secret_key,
            # one service user reads every replay: past the defaults (16 sessions a user, 64 viewers a stream)
            GRIDPATROL_GATEWAY_SESSIONS_PER_USER="1000",
            GRIDPATROL_GATEWAY_VIEWERS_PER_CAMERA="1000",
        )
        if self.model:
            env["GRIDPATROL_DETECTOR_MODEL"] = self.model
        return env

    def start(self, name: str, *args: str) -> None:
        log = (self.log_dir / f"{self.backend}-{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "gridpatrol", *args],
            cwd=ROOT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def up(self) -> None:
        from sqlalchemy import create_engine, text

        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.db_name}"'))
        admin.dispose()
        subprocess.run(
            [sys.executable, "-m", "gridpatrol", "db", "upgrade"],
            cwd=ROOT,
            env=self.env(),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        self._seed()
        self.gateway_port = free_port()
        replays = [a for name, path in self.clips.items() for a in ("--replay", f"{name}={path}")]
        self.start("gateway", "gateway", "--host", "127.0.0.1", "--port", str(self.gateway_port), *replays)
        self.start("ticketer", "ticketer")
        self.api_port = free_port()
        self.start(
            "api", "serve", "--no-worker", "--no-ticketer", "--no-gateway", "--port", str(self.api_port)
        )
        for i in range(1, self.workers + 1):
            self.metrics_ports[f"worker{i}"] = free_port()
            self.start(f"worker{i}", "worker", "--metrics-port", str(self.metrics_ports[f"worker{i}"]))
        ports = {"gateway": self.gateway_port, "api": self.api_port, **self.metrics_ports}
        deadline = time.monotonic() + 60
        while ports and time.monotonic() < deadline:  # every process up (a loaded machine: seconds each)
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {p.returncode}: see {self.log_dir}/{self.backend}-{name}.log"
                    )
            for name, port in list(ports.items()):
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        del ports[name]
            time.sleep(0.5)
        if ports:
            raise RuntimeError(f"not listening after 60 s: {sorted(ports)}")

    def _settings(self) -> Any:
        from gridpatrol.settings import Settings

        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(self.env())
        try:
            return Settings.from_env()
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def _seed(self) -> None:
        from sqlalchemy.orm import sessionmaker

        from gridpatrol.demo import demo_tree
        from models.db.engine import make_engine, transaction
        from models.db.tables import Role
        from models.grid.tree import import_grids
        from models.identity.users import add_user

        self.settings = self._settings()
        self.factory = sessionmaker(make_engine(self.db_url), expire_on_commit=False)
        with transaction(self.factory) as session:
            import_grids(session, demo_tree())
            add_user(
                session,
                username=FEED_USER,
                role=Role.operator,
                password=FEED_PASSWORD,
                display_name="bench feed",
            )

    def add_cameras(self, n: int) -> None:
        """Cameras ``self.cameras+1 .. n``, each on a replay, with the fire lane and road zones."""
        from sqlalchemy import select

        from gridpatrol.demo import CELL, LAT0, LON0
        from models.db.engine import transaction
        from models.db.tables import Camera
        from models.grid.cameras import CameraSpec, register_cameras
        from models.grid.credentials import prepare_credentials
        from models.grid.zones import save_zones

        names = list(self.clips)
        zones = scenes.zones_file(person_area=0.004)
        zones["zones"] = [z for z in zones["zones"] if z["kind"] != "crowd_area"]
        keyring = prepare_credentials(self.factory, self.settings.credentials, data_dir=self.data_dir)
        specs = []
        for i in range(self.cameras + 1, n + 1):
            replay = names[(i - 1) % len(names)]
            url = f"rtsp://{FEED_USER}:{FEED_PASSWORD}@127.0.0.1:{self.gateway_port}/replay/{replay}"
            lon = LON0 + (0.1 + 3.8 * ((i * 0.618) % 1.0)) * CELL
            lat = LAT0 + (0.1 + 1.8 * ((i * 0.382) % 1.0)) * CELL
            specs.append(CameraSpec(name=f"bench-{i:03d}-{replay}", url=url, lon=lon, lat=lat))
        with transaction(self.factory) as session:
            register_cameras(session, specs, credentials=keyring)
            for cam in session.scalars(select(Camera).where(Camera.name.in_([s.name for s in specs]))):
                save_zones(session, cam.id, zones, author=None, channel="cli")
        self.cameras = n

    def tickets(self) -> int:
        from sqlalchemy import func, select

        from models.db.tables import Ticket

        with self.factory() as session:
            return int(session.scalar(select(func.count(Ticket.id))) or 0)

    def scrape(self) -> dict[str, dict[str, Any]]:
        """Per worker: camera → analysed frames handed on, states, and the detector's frame count."""
        out: dict[str, dict[str, Any]] = {}
        for name, port in self.metrics_ports.items():
            handed: dict[str, float] = {}
            streaming: set[str] = set()
            analysed = 0.0
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
            except OSError:
                out[name] = {"handed": {}, "streaming": set(), "analysed": 0.0}
                continue
            for family in text_string_to_metric_families(body):
                for s in family.samples:
                    if s.name == "gridpatrol_camera_analysed_frames_total" or (
                        s.name == "gridpatrol_camera_analysed_frames" and family.type == "counter"
                    ):
                        handed[s.labels["camera"]] = s.value
                    elif (
                        s.name == "gridpatrol_camera_state"
                        and s.labels.get("state") == "streaming"
                        and s.value
                    ):
                        streaming.add(s.labels["camera"])
                    elif s.name == "gridpatrol_detector_seconds_count":
                        analysed += s.value
            out[name] = {"handed": handed, "streaming": streaming, "analysed": analysed}
        return out

    def cpu(self) -> dict[str, float]:
        return {name: cpu_seconds(p.pid) for name, p in self.procs.items()}

    def down(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        if hasattr(self, "factory"):
            self.factory.kw["bind"].dispose()
        from sqlalchemy import create_engine, text

        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)'))
        admin.dispose()
        import redis

        r = redis.Redis.from_url(REDIS_URL)
        keys = list(r.scan_iter(f"{self.namespace}*", count=1000))
        if keys:
            r.delete(*keys)
        r.close()


def measure(system: System, n: int, *, warmup: float, window: float) -> dict[str, Any]:
    tickets0 = system.tickets()
    system.add_cameras(n)
    deadline = time.monotonic() + warmup
    while time.monotonic() < deadline:  # the cameras connect (leases, stagger), the detectors warm up
        time.sleep(2.0)
    m0, c0, t0 = system.scrape(), system.cpu(), time.monotonic()
    time.sleep(window)
    m1, c1, t1 = system.scrape(), system.cpu(), time.monotonic()
    dt = t1 - t0
    fps: list[float] = []
    per_worker: dict[str, Any] = {}
    seen: set[str] = set()
    for w in system.metrics_ports:
        handed = sum(
            m1[w]["handed"].get(c, 0.0) - v for c, v in m0[w]["handed"].items() if c in m1[w]["handed"]
        )
        analysed = m1[w]["analysed"] - m0[w]["analysed"]
        ratio = min(1.0, analysed / handed) if handed > 0 else 0.0
        per_worker[w] = {
            "cameras": len(m1[w]["handed"]),
            "handed_fps": round(handed / dt, 1),
            "analysed_fps": round(analysed / dt, 1),
            "ratio": round(ratio, 3),
        }
        for cam, v1 in m1[w]["handed"].items():
            v0 = m0[w]["handed"].get(cam)
            if v0 is None or cam in seen:
                continue
            seen.add(cam)
            fps.append((v1 - v0) / dt * ratio)
    fps += [0.0] * max(0, n - len(fps))  # a camera no worker analysed the whole window
    cpu = {name: round(100 * (c1[name] - c0[name]) / dt, 1) for name in c0}
    row = {
        "backend": system.backend,
        "cameras": n,
        "min_fps": round(min(fps), 2),
        "median_fps": round(statistics.median(fps), 2),
        "cameras_ok": sum(f >= GOAL_FPS for f in fps),
        "cpu_pct": cpu,
        "cpu_total_pct": round(sum(cpu.values()), 1),
        "workers": per_worker,
        "tickets_opened": system.tickets() - tickets0,
        "tickets_total": system.tickets(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "window_s": round(dt, 1),
    }
    print(json.dumps(row), flush=True)
    return row


def run_backend(
    backend: str, ramp: list[int], clips: dict[str, Path], args: argparse.Namespace
) -> list[dict[str, Any]]:
    model: str | None = None
    if backend != "classic":
        model = str(assets_dir() / "yolov3-tiny.onnx")
        if not Path(model).is_file():
            sys.exit(f"{model} is missing: run scripts/setup.sh")
    with tempfile.TemporaryDirectory(prefix="bench-system-") as tmp:
        data_dir = Path(tmp)
        if backend == "int8":
            store = data_dir / "models"
            store.mkdir()
            shutil.copyfile(model, store / "yolov3-tiny.onnx")  # type: ignore[arg-type]
            env = {**os.environ, "PYTHONPATH": str(ROOT), "GRIDPATROL_DATA_DIR": str(data_dir)}
            env.pop("GRIDPATROL_MODELS_DIR", None)
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "gridpatrol",
                    "models",
                    "quantize",
                    "yolov3-tiny",
                    "--calibrate",
                    str(clips["lane"]),
                    "--frames",
                    "8",
                ],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                print(f"int8: quantize failed: {done.stdout}{done.stderr}", file=sys.stderr)
                return []
            model = "yolov3-tiny-int8"
        system = System(backend, model, clips, data_dir, args.logs, workers=args.workers)
        rows: list[dict[str, Any]] = []
        try:
            system.up()
            for n in ramp:
                row = measure(system, n, warmup=args.warmup, window=args.window)
                rows.append(row)
                if row["min_fps"] < GOAL_FPS:
                    break
        finally:
            system.down()
        return rows


def has_quantize() -> bool:
    done = subprocess.run(
        [sys.executable, "-m", "gridpatrol", "models", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return "quantize" in done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--backend", nargs="+", default=["classic", "onnx", "int8"], choices=["classic", "onnx", "int8"]
    )
    parser.add_argument(
        "--ramp", nargs="+", type=int, default=[16, 24, 32, 40, 48, 64], help="classic: cameras per step"
    )
    parser.add_argument(
        "--onnx-ramp", nargs="+", type=int, default=[8, 12, 16, 20, 24], help="onnx/int8: cameras per step"
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes (one per core by default)")
    parser.add_argument(
        "--warmup", type=float, default=30.0, help="seconds after adding cameras before measuring"
    )
    parser.add_argument("--window", type=float, default=20.0, help="seconds measured per step")
    parser.add_argument("--clips", type=Path, default=ROOT / "bench" / "out" / "system-clips")
    parser.add_argument("--logs", type=Path, default=ROOT / "bench" / "out" / "system-logs")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    args.logs.mkdir(parents=True, exist_ok=True)
    clips = write_clips(args.clips)
    results: dict[str, Any] = {"machine": f"{os.cpu_count()} cores", "workers": args.workers, "steps": []}
    for backend in args.backend:
        if backend == "int8" and not has_quantize():
            print("int8: no `gridpatrol models quantize` here: skipped", file=sys.stderr)
            continue
        rows = run_backend(backend, args.ramp if backend == "classic" else args.onnx_ramp, clips, args)
        results["steps"] += rows
        ok = [r["cameras"] for r in rows if r["min_fps"] >= GOAL_FPS]
        results[backend] = max(ok) if ok else 0
        print(f"{backend}: {results[backend]} cameras sustained at >= {GOAL_FPS} fps each", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
