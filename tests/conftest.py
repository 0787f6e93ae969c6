"""Shared fixtures: real databases (SQLite and PostgreSQL), the sample tree, the app through its factory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.settings import ApiSettings
from models.bus.memory import MemoryBus
from models.db.engine import make_engine, make_session_factory, transaction
from models.db.tables import Role
from models.evidence.store import FileEvidenceStore
from models.grid.cameras import parse_camera_file, register_cameras
from models.grid.tree import import_grids
from models.identity.users import add_user
from models.tickets.categories import TicketSettings
from models.tickets.desk import TicketDesk
from tests.support import sample
from tests.support.databases import (
    postgres_available,
    postgres_database,
    sqlite_copy,
    sqlite_template,
    truncate_all,
)
from tests.support.require import require

TEST_SECRET = "test-secret-key-with-at-least-32-characters!"


@pytest.fixture(autouse=True, scope="session")
def _cheap_password_hashing() -> Iterator[None]:
    """argon2's production cost (64 MiB, 3 passes) is the point in production and was most of a test's
    set-up here (every seeded user is hashed, every login verified): in-process tests hash with argon2's
    cheapest parameters. Processes the tests start (serve, demo, the CLI) keep the real ones."""
    from argon2 import PasswordHasher
    from argon2.profiles import CHEAPEST

    from models.identity import passwords

    real = passwords._hasher
    passwords._hasher = PasswordHasher.from_parameters(CHEAPEST)
    passwords._dummy_hash.cache_clear()
    yield
    passwords._hasher = real
    passwords._dummy_hash.cache_clear()


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sqlite_template(tmp_path_factory.mktemp("sqlite-template"))


@pytest.fixture(scope="session")
def _postgres_url() -> Iterator[str | None]:
    if not postgres_available():
        yield None
        return
    with postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, _sqlite_template: Path) -> str:
    """A clean, migrated database of each kind the product supports."""
    if request.param == "sqlite":
        return sqlite_copy(_sqlite_template, tmp_path)
    url: str | None = request.getfixturevalue("_postgres_url")
    require(url is not None, "PostgreSQL on 127.0.0.1:5432")
    assert url is not None
    truncate_all(url)
    return url


@pytest.fixture
def session_factory(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(db_url)
    yield make_session_factory(engine)
    engine.dispose()


def seed(factory: sessionmaker[Session], directory: Path) -> None:
    """Load the sample tree, cameras and users through the same code the CLI uses."""
    grids, cams = sample.write_files(directory)
    import json

    with transaction(factory) as session:
        import_grids(session, json.loads(grids.read_text(encoding="utf-8")))
        register_cameras(session, parse_camera_file(cams))
        for username, (role, codes) in sample.USERS.items():
            add_user(session, username=username, role=Role(role), password=sample.PASSWORD, grid_codes=codes)


@pytest.fixture
def seeded(session_factory: sessionmaker[Session], tmp_path: Path) -> sessionmaker[Session]:
    seed(session_factory, tmp_path)
    return session_factory


@pytest.fixture
def evidence_store(tmp_path: Path) -> FileEvidenceStore:
    return FileEvidenceStore(tmp_path / "evidence")


@pytest.fixture
def desk(evidence_store: FileEvidenceStore) -> TicketDesk:
    return TicketDesk(TicketSettings(), evidence=evidence_store)


@pytest.fixture
def memory_bus() -> MemoryBus:
    return MemoryBus()


@pytest.fixture
def client(seeded: sessionmaker[Session], desk: TicketDesk, memory_bus: MemoryBus) -> Iterator[TestClient]:
    app = create_app(ApiSettings(secret_key=TEST_SECRET), session_factory=seeded, desk=desk, bus=memory_bus)
    with TestClient(app) as c:
        yield c


@pytest.fixture
def auth_headers(client: TestClient) -> Callable[[str], dict[str, str]]:
    cache: dict[str, dict[str, str]] = {}

    def headers(username: str) -> dict[str, str]:
        if username not in cache:
            r = client.post("/api/auth/token", data={"username": username, "password": sample.PASSWORD})
            assert r.status_code == 200, r.text
            cache[username] = {"Authorization": f"Bearer {r.json()['access_token']}"}
        return cache[username]

    return headers
