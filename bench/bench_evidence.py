"""Evidence store benchmark: put/get latency and throughput of the directory store and the database
store (SQLite, PostgreSQL), for annotated JPEGs (60 KB) and event clips (2 MB), and a 256 KB ranged
read of a clip (what a browser's seek asks for).

    .venv/bin/python bench/bench_evidence.py [--images 300] [--clips 30] [--db sqlite,postgresql]

Each figure: ``n`` sequential calls on one thread (a worker writes its evidence from one thread); the
median and p95 per call, and MB/s = bytes moved / total time. The data is random (JPEG and H.264 do
not compress further), written once, then read back in a shuffled order.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.db.engine import make_engine, make_session_factory, upgrade  # noqa: E402
from models.evidence.database import DatabaseEvidenceStore  # noqa: E402
from models.evidence.store import EvidenceStore, FileEvidenceStore  # noqa: E402
from tests.support.databases import postgres_available, postgres_database  # noqa: E402


def timed(n: int, call: Callable[[int], object]) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        call(i)
        out.append(time.perf_counter() - t)
    return out


def row(store: str, what: str, size: int, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
    mbs = size * len(seconds) / sum(seconds) / 1e6
    return f"| {store} | {what} | {statistics.median(ms):.2f} | {p95:.2f} | {mbs:.0f} |"


def run(name: str, store: EvidenceStore, *, images: int, clips: int) -> list[str]:
    jpeg = b"\xff\xd8\xff" + os.urandom(60_000 - 3)
    clip = os.urandom(2_000_000)
    keys: list[str] = []
    lines = [row(name, "put 60 KB", len(jpeg), timed(images, lambda i: keys.append(store.put(jpeg, prefix="cam-1"))))]
    random.shuffle(keys)
    lines.append(row(name, "get 60 KB", len(jpeg), timed(images, lambda i: store.get(keys[i]))))
    clip_keys: list[str] = []
    put = timed(clips, lambda i: clip_keys.append(store.put(clip, prefix="cam-1", suffix=".mp4")))
    lines.append(row(name, "put 2 MB clip", len(clip), put))
    lines.append(row(name, "get 2 MB clip", len(clip), timed(clips, lambda i: store.get(clip_keys[i]))))
    span = 256 * 1024
    ranged = timed(clips, lambda i: store.read(clip_keys[i], start=(i * 77_777) % (len(clip) - span), length=span))
    lines.append(row(name, "read 256 KB of a clip", span, ranged))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--clips", type=int, default=30)
    parser.add_argument("--db", default="sqlite,postgresql")
    args = parser.parse_args()
    lines = ["| store | operation | median ms | p95 ms | MB/s |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        lines += run("file", FileEvidenceStore(Path(tmp) / "evidence"), images=args.images, clips=args.clips)
        if "sqlite" in args.db:
            engine = make_engine(f"sqlite:///{tmp}/bench.db")
            upgrade(engine)
            store = DatabaseEvidenceStore(make_session_factory(engine))
            lines += run("database (SQLite)", store, images=args.images, clips=args.clips)
            engine.dispose()
        if "postgresql" in args.db and postgres_available():
            with postgres_database() as url:
                engine = make_engine(url)
                store = DatabaseEvidenceStore(make_session_factory(engine))
                lines += run("database (PostgreSQL)", store, images=args.images, clips=args.clips)
                engine.dispose()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
