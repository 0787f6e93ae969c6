"""Patrol fixtures shared by the model, API, race and browser tests: points, users, a clock, photos."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import cv2
import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.db.engine import make_engine, make_session_factory, transaction
from models.db.tables import PatrolPoint, Role, User
from models.identity.access import load_scope
from models.identity.users import add_user
from models.patrol.points import PointSpec, create_point
from tests.support import sample
from tests.support.databases import sqlite_copy, truncate_all
from tests.support.require import require

TZ = ZoneInfo("Asia/Shanghai")
#: a Monday
MONDAY = date(2026, 11, 23)


def local(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), tzinfo=TZ).astimezone(UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def user(session: Session, username: str) -> User:
    return session.scalars(select(User).where(User.username == username)).one()


def add_patroller(factory: sessionmaker[Session], username: str, grid: str) -> int:
    with transaction(factory) as s:
        return add_user(
            s, username=username, role=Role.patroller, password=sample.PASSWORD, grid_codes=[grid]
        ).id


def make_point(factory: sessionmaker[Session], grid: str, *, by: str = "operator1", **fields: Any) -> int:
    """A point at the centre of ``grid`` (or ``dx``/``dy`` inside it), created through the model."""
    dx, dy = fields.pop("dx", 0.5), fields.pop("dy", 0.5)
    lon, lat = sample.point_in(grid, dx, dy)
    spec = PointSpec(name=fields.pop("name", f"point-{grid}"), lon=lon, lat=lat, **fields)
    with transaction(factory) as s:
        u = user(s, by)
        return create_point(s, spec=spec, user=u, scope=load_scope(s, u), default_radius_m=50.0).id


def point(factory: sessionmaker[Session], point_id: int) -> PatrolPoint:
    with factory() as s:
        p = s.get(PatrolPoint, point_id)
        assert p is not None
        return p


def jpeg(seed: int = 1) -> bytes:
    """A small real JPEG (a noisy 64×48 picture)."""
    rng = np.random.default_rng(seed)
    ok, data = cv2.imencode(".jpg", rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    assert ok
    return data.tobytes()


def race(*parties: Callable[[], Any]) -> list[Any]:
    """Run the parties in threads released together; each result is its return value or its exception."""
    barrier = threading.Barrier(len(parties))
    results: list[Any] = [None] * len(parties)

    def run(i: int, party: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            results[i] = party()
        except Exception as err:  # the test inspects what each party got
            results[i] = err

    threads = [threading.Thread(target=run, args=(i, p)) for i, p in enumerate(parties)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a party is stuck (deadlock?)"
    return results


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, _sqlite_template: Path
) -> str:
    """A clean, migrated database of each kind for a whole test module (seeding once keeps the patrol
    tests fast; each test works on its own points and days)."""
    if request.param == "sqlite":
        return sqlite_copy(_sqlite_template, tmp_path_factory.mktemp("patrol-db"))
    url: str | None = request.getfixturevalue("_postgres_url")
    require(url is not None, "PostgreSQL on 127.0.0.1:5432")
    assert url is not None
    truncate_all(url)
    return url


@pytest.fixture(scope="module")
def world(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[sessionmaker[Session]]:
    """The sample tree, cameras and users, seeded once per module and database."""
    from tests.conftest import seed

    engine = make_engine(module_db_url)
    factory = make_session_factory(engine)
    seed(factory, tmp_path_factory.mktemp("patrol-seed"))
    yield factory
    engine.dispose()
