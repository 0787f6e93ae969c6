"""Foundation benchmarks: grid/camera import and access-filtered camera lists at city scale.

    .venv/bin/python bench/bench_foundation.py [--db sqlite|postgresql|both] [--cameras 100000]

Builds 5 districts x 10 streets x 10 communities x 10 grids = 5,000 grids (0.001° squares), imports
10,000 cameras through the importer (point-in-polygon), then bulk-adds cameras up to --cameras and times
GET /api/cameras (first page + total) for an admin, a street manager and a grid leader.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import insert, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.app import create_app  # noqa: E402
from api.settings import ApiSettings  # noqa: E402
from models.db.engine import make_engine, make_session_factory, transaction, upgrade  # noqa: E402
from models.db.tables import Camera, GridNode, Role  # noqa: E402
from models.grid.cameras import CameraSpec, register_cameras  # noqa: E402
from models.grid.tree import import_grids  # noqa: E402
from models.identity.users import add_user  # noqa: E402

STEP = 0.001  # one grid cell in degrees
LON0, LAT0 = 118.0, 32.0


def square(x: float, y: float, w: float, h: float) -> dict:
    return {"type": "Polygon", "coordinates": [[[x, y], [x + w, y], [x + w, y + h], [x, y + h], [x, y]]]}


def city_tree() -> dict:
    feats = []

    def add(code: str, kind: str, parent: str | None, geom: dict) -> None:
        props = {"code": code, "name": code, "kind": kind}
        if parent:
            props["parent_code"] = parent
        feats.append({"type": "Feature", "properties": props, "geometry": geom})

    for d in range(5):
        dx = LON0 + d * 100 * STEP
        add(f"D{d}", "district", None, square(dx, LAT0, 100 * STEP, 10 * STEP))
        for s in range(10):
            sx = dx + s * 10 * STEP
            add(f"D{d}S{s}", "street", f"D{d}", square(sx, LAT0, 10 * STEP, 10 * STEP))
            for c in range(10):
                cx = sx + c * STEP
                add(f"D{d}S{s}C{c}", "community", f"D{d}S{s}", square(cx, LAT0, STEP, 10 * STEP))
                for g in range(10):
                    add(f"D{d}S{s}C{c}G{g}", "grid", f"D{d}S{s}C{c}", square(cx, LAT0 + g * STEP, STEP, STEP))
    return {"type": "FeatureCollection", "features": feats}


def random_point(rng: random.Random) -> tuple[float, float]:
    return LON0 + rng.random() * 500 * STEP, LAT0 + rng.random() * 10 * STEP


def timed(fn, repeat: int = 20) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def run(db: str, n_cameras: int) -> None:
    tmp = Path(tempfile.mkdtemp())
    if db == "sqlite":
        url = f"sqlite:///{tmp / 'bench.db'}"
        cleanup = None
    else:
        from sqlalchemy import create_engine, text

        name = f"gp_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        url = f"postgresql://postgres@127.0.0.1:5432/{name}"

        def cleanup() -> None:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))

    engine = make_engine(url)
    upgrade(engine)
    factory = make_session_factory(engine)
    rng = random.Random(7)

    tree = city_tree()
    t0 = time.perf_counter()
    with transaction(factory) as s:
        import_grids(s, tree)
    t_grids = time.perf_counter() - t0

    specs = []
    for i in range(10_000):
        lon, lat = random_point(rng)
        specs.append(CameraSpec(name=f"imp-{i}", url=f"rtsp://10.0.0.1/{i}", lon=lon, lat=lat))
    t0 = time.perf_counter()
    with transaction(factory) as s:
        report = register_cameras(s, specs)
    t_cams = time.perf_counter() - t0

    with transaction(factory) as s:
        grid_ids = list(s.scalars(select(GridNode.id).where(GridNode.kind == "grid")))
        rows = [
            {"name": f"bulk-{i}", "url": f"rtsp://10.0.0.2/{i}", "grid_id": rng.choice(grid_ids), "lon": None, "lat": None}
            for i in range(n_cameras - 10_000)
        ]
        for k in range(0, len(rows), 5000):
            s.execute(insert(Camera), rows[k : k + 5000])
        add_user(s, username="admin", role=Role.admin, password="bench-password")
        add_user(s, username="manager", role=Role.manager, password="bench-password", grid_codes=["D2S3"])
        add_user(s, username="leader", role=Role.grid_leader, password="bench-password", grid_codes=["D2S3C4G5"])

    app = create_app(ApiSettings(secret_key="bench-signing-key-0123456789-abcdefghij"), session_factory=factory)
    results = []
    with TestClient(app) as client:
        for user in ("admin", "manager", "leader"):
            tok = client.post("/api/auth/token", data={"username": user, "password": "bench-password"}).json()
            h = {"Authorization": f"Bearer {tok['access_token']}"}
            total = client.get("/api/cameras", headers=h).json()["total"]
            p50, p95 = timed(lambda h=h: client.get("/api/cameras", headers=h))
            results.append((user, total, p50, p95))
    print(f"\n## {db}: {len(tree['features'])} grid nodes, {n_cameras} cameras")
    print(f"grids import (5,000 grids + 555 parents): {t_grids:.2f} s")
    print(f"cameras import 10,000 into 5,000 grids (point-in-polygon): {t_cams:.2f} s, outside: {len(report.outside)}")
    print("| user | cameras visible | GET /api/cameras p50 ms | p95 ms |")
    print("|---|---|---|---|")
    for user, total, p50, p95 in results:
        print(f"| {user} | {total} | {p50:.1f} | {p95:.1f} |")
    engine.dispose()
    if cleanup:
        cleanup()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--cameras", type=int, default=100_000)
    args = ap.parse_args()
    for db in ["sqlite", "postgresql"] if args.db == "both" else [args.db]:
        run(db, args.cameras)


if __name__ == "__main__":
    main()
