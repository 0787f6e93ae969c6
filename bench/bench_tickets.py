"""Ticketer benchmark: events per second through the ticketer, and the latency from a ``started`` event
on the bus to its ticket being readable, on the embedded default (in-process bus + SQLite) and on
Redis + PostgreSQL.

    .venv/bin/python bench/bench_tickets.py [--mode embedded|distributed|both] [--events 20000] [--rate 1000]

Throughput: ``--events`` rule events (1/10 ``started``, 8/10 ``updated``, 1/10 ``ended``, each episode
on its own zone, so a tenth of the events open a ticket) are published first, then one ticketer
drains them; events/s = events / time to the last occurrence committed.
Latency: events are published at ``--rate`` per second for 12 s while a reader polls the tickets
table every 2 ms; the latency of an episode is first-seen − publish time of its ``started``; episodes
started in the first 2 s (cold caches) are not counted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gridpatrol.ticketer import Ticketer  # noqa: E402
from models.bus.memory import MemoryBus  # noqa: E402
from models.bus.messages import RULE_EVENTS, RuleEvent  # noqa: E402
from models.bus.protocol import Bus  # noqa: E402
from models.bus.redis_streams import RedisBus  # noqa: E402
from models.db.engine import make_engine, make_session_factory, transaction, upgrade  # noqa: E402
from models.db.tables import Camera, Ticket, TicketOccurrence  # noqa: E402
from models.evidence.store import FileEvidenceStore  # noqa: E402
from models.grid.cameras import CameraSpec, register_cameras  # noqa: E402
from models.grid.tree import import_grids  # noqa: E402
from models.tickets.desk import TicketDesk, TicketSettings  # noqa: E402
from tests.support.sample import grid_geojson, point_in  # noqa: E402


def episode(camera_id: int, n: int, start: datetime) -> list[RuleEvent]:
    kinds = ["started"] + ["updated"] * 8 + ["ended"]
    return [
        RuleEvent(
            event_id=f"b{n}-{k}",
            type=kind,  # type: ignore[arg-type]
            camera_id=camera_id,
            zone=f"z{n}",
            rule="crowding",
            episode_start=start,
            at=start + timedelta(seconds=k),
            count=6,
        )
        for k, kind in enumerate(kinds)
    ]


def setup(mode: str):  # type: ignore[no-untyped-def]
    tmp = Path(tempfile.mkdtemp())
    cleanup = None
    if mode == "embedded":
        url = f"sqlite:///{tmp / 'bench.db'}"
        bus: Bus = MemoryBus()
    else:
        from sqlalchemy import create_engine, text

        name = f"gp_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        url = f"postgresql://postgres@127.0.0.1:5432/{name}"
        ns = f"bench-{uuid.uuid4().hex[:8]}:"
        bus = RedisBus("redis://127.0.0.1:6379/0", namespace=ns)

        def cleanup() -> None:
            import redis

            client = redis.Redis()
            for key in client.scan_iter(f"{ns}*"):
                client.delete(key)
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))

    engine = make_engine(url)
    upgrade(engine)
    factory = make_session_factory(engine)
    with transaction(factory) as s:
        import_grids(s, grid_geojson())
        lon, lat = point_in("G1")
        register_cameras(s, [CameraSpec(name=f"cam{i}", url=f"rtsp://127.0.0.1/{i}", lon=lon, lat=lat) for i in range(100)])
    with factory() as s:
        cams = list(s.scalars(select(Camera.id)))
    desk = TicketDesk(TicketSettings(), evidence=FileEvidenceStore(tmp / "evidence"))
    return engine, factory, bus, desk, cams, cleanup


def count(factory, model) -> int:  # type: ignore[no-untyped-def]
    with factory() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def run_ticketer(bus: Bus, factory, desk) -> tuple[Ticketer, threading.Event, threading.Thread]:  # type: ignore[no-untyped-def]
    t = Ticketer(bus=bus, session_factory=factory, desk=desk, evidence=desk.evidence, consumer="bench", batch=500, block_ms=50)
    stop = threading.Event()
    th = threading.Thread(target=t.run, args=(stop,), daemon=True)
    th.start()
    return t, stop, th


def ticketer_processes(n: int, url: str, namespace: str) -> list[subprocess.Popen[bytes]]:
    """``n`` real ``gridpatrol ticketer`` processes on the distributed set-up."""
    env = {
        **os.environ,
        "GRIDPATROL_DATABASE_URL": url,
        "GRIDPATROL_REDIS_URL": "redis://127.0.0.1:6379/0",
        "GRIDPATROL_BUS_NAMESPACE": namespace,
        "GRIDPATROL_DATA_DIR": tempfile.mkdtemp(),
    }
    exe = str(Path(sys.executable).parent / "gridpatrol")
    return [subprocess.Popen([exe, "ticketer"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(n)]


def throughput(mode: str, n_events: int, *, processes: int = 0) -> float:
    """Events/s through one in-process ticketer thread, or through ``processes`` ticketer processes."""
    engine, factory, bus, desk, cams, cleanup = setup(mode)
    t0 = datetime.now(UTC)
    events = [e for i in range(n_events // 10) for e in episode(cams[i % len(cams)], i, t0 + timedelta(seconds=i))]
    procs: list[subprocess.Popen[bytes]] = []
    if processes:
        procs = ticketer_processes(processes, engine.url.render_as_string(hide_password=False), bus._ns)  # type: ignore[attr-defined]
        time.sleep(3)  # let them start and join the group before the clock starts
    for k in range(0, len(events), 1000):
        bus.publish(RULE_EVENTS, events[k : k + 1000])
    start = time.perf_counter()
    if not processes:
        _, stop, th = run_ticketer(bus, factory, desk)
    while count(factory, TicketOccurrence) < len(events):
        time.sleep(0.05)
    elapsed = time.perf_counter() - start
    if processes:
        for p in procs:
            p.terminate()
            p.wait()
    else:
        stop.set()
        th.join()
    assert count(factory, Ticket) == len(events) // 10
    engine.dispose()
    if cleanup:
        cleanup()
    return len(events) / elapsed


WARMUP_S = 2.0


def latency(mode: str, rate: int, seconds: float = 12.0, *, processes: int = 0) -> tuple[float, float, float, int]:
    """started → ticket readable, with the ticketer as a thread here or as ``processes`` real processes
    (as deployed: then it does not share this process's GIL with the publisher and the reader)."""
    engine, factory, bus, desk, cams, cleanup = setup(mode)
    procs: list[subprocess.Popen[bytes]] = []
    if processes:
        procs = ticketer_processes(processes, engine.url.render_as_string(hide_password=False), bus._ns)  # type: ignore[attr-defined]
        time.sleep(3)
        stop, th = threading.Event(), threading.Thread(target=lambda: None)
        th.start()
    else:
        _, stop, th = run_ticketer(bus, factory, desk)
    published: dict[str, float] = {}
    seen: dict[str, float] = {}
    done = threading.Event()

    def reader() -> None:
        last = 0
        while not done.is_set():
            with factory() as s:
                rows = s.execute(select(Ticket.id, Ticket.zone_name).where(Ticket.id > last).order_by(Ticket.id)).all()
            now = time.perf_counter()
            for tid, zone in rows:
                seen.setdefault(zone, now)
                last = max(last, tid)
            time.sleep(0.002)

    rd = threading.Thread(target=reader, daemon=True)
    rd.start()
    t0 = datetime.now(UTC)
    n_episodes = int(rate * seconds / 10)
    # interleave: each tick publishes the k-th event of a sliding window of episodes
    schedule = []
    for i in range(n_episodes):
        for k, e in enumerate(episode(cams[i % len(cams)], i, t0 + timedelta(seconds=i))):
            schedule.append((i + 10 * k, e))  # event k of episode i goes out 10*k "slots" after its start
    schedule.sort(key=lambda x: x[0])
    interval = 1.0 / rate
    batch = max(1, rate // 100)  # publish in 10 ms ticks
    start = time.perf_counter()
    for j in range(0, len(schedule), batch):
        due = start + j * interval
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        chunk = [e for _, e in schedule[j : j + batch]]
        now = time.perf_counter()
        bus.publish(RULE_EVENTS, chunk)
        for e in chunk:
            if e.type == "started":
                published[e.zone] = now
    deadline = time.perf_counter() + 30
    while len(seen) < n_episodes and time.perf_counter() < deadline:
        time.sleep(0.05)
    done.set()
    rd.join()
    stop.set()
    th.join()
    for p in procs:
        p.terminate()
        p.wait()
    # steady state: the first WARMUP_S of episodes (cold statement caches, connection set-up) are not counted
    warm = start + WARMUP_S
    lat = sorted((seen[z] - published[z]) * 1000 for z in published if z in seen and published[z] >= warm)
    engine.dispose()
    if cleanup:
        cleanup()
    p50 = statistics.median(lat)
    p99 = lat[max(0, int(len(lat) * 0.99) - 1)]
    return p50, p99, lat[-1], len(lat)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["embedded", "distributed", "both"], default="both")
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--ticketers", type=int, default=2, help="distributed: also measure N ticketer processes")
    args = ap.parse_args()
    modes = ["embedded", "distributed"] if args.mode == "both" else [args.mode]
    print("| mode | events/s through one ticketer | started→ticket p50 ms | p99 ms | max ms | episodes |")
    print("|---|---|---|---|---|---|")
    for mode in modes:
        eps = throughput(mode, args.events)
        p50, p99, worst, n = latency(mode, args.rate)
        label = "embedded (in-process bus, SQLite WAL)" if mode == "embedded" else "Redis Streams + PostgreSQL"
        print(f"| {label} | {eps:,.0f} | {p50:.1f} | {p99:.1f} | {worst:.1f} | {n} |", flush=True)
        if mode == "distributed":
            for n in sorted({1, args.ticketers}):
                eps = throughput(mode, args.events, processes=n)
                p50, p99, worst, count_ = latency(mode, args.rate, processes=n)
                print(f"| {label}, {n} ticketer process(es) | {eps:,.0f} | {p50:.1f} | {p99:.1f} | {worst:.1f} | {count_} |", flush=True)


if __name__ == "__main__":
    main()
