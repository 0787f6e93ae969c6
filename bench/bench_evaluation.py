"""Evaluation benchmark: scores and a ranking report over a month of a district's records.

    .venv/bin/python bench/bench_evaluation.py [--grids 200] [--tickets 20000] [--postgres]

A district with 10 streets and ``--grids`` grids, 2 cameras, a leader and a patroller per grid, one
patrol point per grid with a daily task per patroller (30 days), ``--tickets`` tickets over the month
(half with a callback) and a video patrol view per camera and day. Times: loading the month's records,
ranking grids / streets / people, and generating the report (XLSX + HTML) as the scheduler does.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert  # noqa: E402

from models.db.engine import make_engine, make_session_factory, transaction, upgrade  # noqa: E402
from models.db.tables import (  # noqa: E402
    Assignment,
    Callback,
    Camera,
    GridNode,
    PatrolPoint,
    PatrolTask,
    Ticket,
    User,
    VideoPatrol,
    VideoPatrolView,
)
from models.patrol.evaluation import Evaluation, Period  # noqa: E402
from models.patrol.reports import generate  # noqa: E402
from models.patrol.settings import PatrolSettings  # noqa: E402

FIRST = date(2026, 11, 1)
DAYS = 30
CATEGORIES = ["road_occupation", "fire_lane_blockage", "crowding", "other"]


def build(url: str, *, grids: int, tickets: int) -> None:
    engine = make_engine(url)
    upgrade(engine)
    factory = make_session_factory(engine)
    rng = random.Random(7)
    settings = PatrolSettings()
    tz = settings.tz
    with transaction(factory) as s:
        district = GridNode(code="D", name="区", kind="district", path="/")
        s.add(district)
        s.flush()
        district.path = f"/{district.id}/"
        streets = []
        for i in range(10):
            st = GridNode(code=f"S{i}", name=f"街道{i}", kind="street", parent_id=district.id, path="")
            s.add(st)
            s.flush()
            st.path = f"{district.path}{st.id}/"
            streets.append(st)
        leaves = []
        for i in range(grids):
            st = streets[i % 10]
            g = GridNode(code=f"G{i}", name=f"网格{i}", kind="grid", parent_id=st.id, path="")
            s.add(g)
            s.flush()
            g.path = f"{st.path}{g.id}/"
            leaves.append(g)
        leaders, patrollers, cameras = {}, {}, {}
        for g in leaves:
            lead = User(username=f"lead-{g.code}", role="grid_leader", password_hash="x")
            pat = User(username=f"pat-{g.code}", role="patroller", password_hash="x")
            s.add_all([lead, pat])
            s.flush()
            s.add_all([Assignment(user_id=lead.id, grid_id=g.id), Assignment(user_id=pat.id, grid_id=g.id)])
            leaders[g.id], patrollers[g.id] = lead.id, pat.id
            cams = [Camera(name=f"cam-{g.code}-{k}", url="rtsp://x", grid_id=g.id) for k in range(2)]
            s.add_all(cams)
            s.flush()
            cameras[g.id] = [c.id for c in cams]
        t0 = datetime.combine(FIRST, datetime.min.time(), tzinfo=tz).astimezone(UTC)
        rows = []
        for _ in range(tickets):
            g = rng.choice(leaves)
            opened = t0 + timedelta(seconds=rng.randrange(DAYS * 86400))
            accepted = opened + timedelta(minutes=rng.randrange(1, 60))
            resolved = accepted + timedelta(hours=rng.randrange(1, 6))
            rows.append({
                "category": rng.choice(CATEGORIES), "grid_id": g.id, "assignee_id": leaders[g.id], "state": "closed",
                "opened_at": opened, "accept_by": opened + timedelta(minutes=30), "accepted_at": accepted,
                "resolve_by": opened + timedelta(hours=4), "resolved_at": resolved, "closed_at": resolved,
                "escalation_level": 0, "occurrence_count": 0, "snapshot_count": 0, "photos": [], "source": "camera",
                "case_code": "", "description": "", "condition_active": False, "updated_at": resolved,
            })  # fmt: skip
        ids = s.scalars(insert(Ticket).returning(Ticket.id), rows).all()
        s.execute(insert(Callback), [
            {"ticket_id": tid, "closed_at": r["closed_at"], "result": rng.choice(["satisfied", "basically_satisfied", "dissatisfied"]),
             "note": "", "channel": "centre", "reopened": False, "at": r["closed_at"] + timedelta(hours=1)}
            for tid, r in zip(ids, rows, strict=True) if tid % 2 == 0
        ])  # fmt: skip
        points = {}
        for g in leaves:
            p = PatrolPoint(grid_id=g.id, name=f"点{g.code}", lon=118.7, lat=32.1, radius_m=50)
            s.add(p)
            s.flush()
            points[g.id] = p.id
        tour = VideoPatrol(user_id=next(iter(leaders.values())))
        s.add(tour)
        s.flush()
        tasks, views = [], []
        for d in range(DAYS):
            day = FIRST + timedelta(days=d)
            start = datetime.combine(day, datetime.min.time(), tzinfo=tz).astimezone(UTC) + timedelta(hours=8)
            for g in leaves:
                tasks.append({"point_id": points[g.id], "grid_id": g.id, "patroller_id": patrollers[g.id], "day": day.isoformat(),
                              "window_start_at": start, "window_end_at": start + timedelta(hours=2),
                              "state": "done" if rng.random() < 0.9 else "missed", "created_at": start})  # fmt: skip
                for cam in cameras[g.id]:
                    if rng.random() < 0.7:
                        views.append(
                            {
                                "patrol_id": tour.id,
                                "camera_id": cam,
                                "day": day.isoformat(),
                                "first_at": start,
                                "seconds": 30.0,
                            }
                        )
        s.execute(insert(PatrolTask), tasks)
        s.execute(insert(VideoPatrolView), views)
    engine.dispose()


def measure(url: str) -> dict[str, float]:
    settings = PatrolSettings()
    factory = make_session_factory(make_engine(url))
    period = Period.local(FIRST, FIRST + timedelta(days=DAYS), settings.tz)
    now = datetime.now(UTC)
    out = {}
    with factory() as s:
        t = time.perf_counter()
        ev = Evaluation(s, period=period, settings=settings, now=now)
        out["load"] = time.perf_counter() - t
        t = time.perf_counter()
        ev.rank_nodes("grid")
        out["rank grids"] = time.perf_counter() - t
        t = time.perf_counter()
        ev.rank_nodes("street")
        out["rank streets"] = time.perf_counter() - t
        t = time.perf_counter()
        ev.rank_people()
        out["rank people"] = time.perf_counter() - t
    with transaction(factory) as s:
        t = time.perf_counter()
        generate(s, period_kind="monthly", first=FIRST, last_exclusive=FIRST + timedelta(days=DAYS), tz=settings.tz,
                 settings=settings, now=now, user=None, webhook_urls=[])  # fmt: skip
        out["report (all of it)"] = time.perf_counter() - t
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--grids", type=int, default=200)
    parser.add_argument("--tickets", type=int, default=20_000)
    parser.add_argument(
        "--postgres", action="store_true", help="also on a throw-away database of the local PostgreSQL"
    )
    args = parser.parse_args()
    targets = []
    folder = tempfile.mkdtemp(prefix="bench-eval-")
    targets.append(("sqlite", f"sqlite:///{folder}/eval.db", None))
    if args.postgres:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.support.databases import postgres_database

        targets.append(("postgresql", "", postgres_database))
    for name, url, ctx in targets:
        if ctx is not None:
            with ctx() as pg_url:
                build(pg_url, grids=args.grids, tickets=args.tickets)
                figures = measure(pg_url)
        else:
            build(url, grids=args.grids, tickets=args.tickets)
            figures = measure(url)
        print(f"{name}: {args.grids} grids, {args.tickets} tickets, {DAYS} days")
        for key, value in figures.items():
            print(f"  {key:<20} {value * 1000:8.0f} ms")


if __name__ == "__main__":
    main()
