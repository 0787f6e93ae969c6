"""A seeded app on one database for a whole test module (the matrix, the fuzz run, the secret hunt).

Building the sample once per module, not per test, keeps hundreds of requests affordable; tests that
change state make their own objects (fresh users, grants, tickets) instead of touching the sample's.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.settings import ApiSettings
from api.tokens import issue_access_token
from models.bus.memory import MemoryBus
from models.db.engine import make_engine, make_session_factory, transaction
from models.db.tables import (
    ApiToken,
    Assignment,
    Camera,
    CameraGrant,
    Role,
    Ticket,
    TicketOccurrence,
    User,
    utcnow,
)
from models.evidence.store import FileEvidenceStore
from models.grid.cameras import parse_camera_file, register_cameras
from models.grid.tree import import_grids
from models.identity.passwords import hash_api_token, hash_password, new_api_token
from models.identity.users import add_user
from models.tickets.categories import TicketSettings
from models.tickets.desk import TicketDesk
from tests.support import sample
from tests.support.databases import postgres_available, postgres_database, sqlite_copy
from tests.support.require import require

SECRET = "matrix-secret-key-with-at-least-32-characters"
#: the smallest thing that starts like a JPEG (the evidence route serves bytes, it does not decode them)
JPEG_BYTES = b"\xff\xd8\xff\xe0" + b"\x00" * 60 + b"\xff\xd9"
#: a user lent cameras by the tests' grants, so that the sample users' scopes never change
GRANTEE = "grantee-x"


@dataclass
class World:
    """The seeded database, its app and client, and factories of fresh objects."""

    factory: sessionmaker[Session]
    app: FastAPI
    client: TestClient
    camera_ids: dict[str, int]
    password_hash: str
    #: an evidence image every fresh ticket carries
    evidence_key: str
    _tokens: dict[str, str] = field(default_factory=dict)
    _seq: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def user(self, username: str) -> User:
        with self.factory() as s:
            return s.scalars(select(User).where(User.username == username)).one()

    def bearer(self, username: str) -> dict[str, str]:
        """Headers with a freshly minted access token (no password hashing: the login route has its own tests)."""
        if username not in self._tokens:
            self._tokens[username] = issue_access_token(self.user(username), secret=SECRET, ttl_s=3600)
        return {"Authorization": f"Bearer {self._tokens[username]}"}

    def unique(self, prefix: str) -> str:
        return f"{prefix}-{next(self._seq)}"

    def fresh_user(self, *, like: str | None = None, role: Role = Role.patroller, grids: tuple[str, ...] = ("G2",)) -> str:
        """A new user (password ``sample.PASSWORD``), copying the role and grid nodes of ``like`` if given."""
        name = self.unique("fresh")
        with transaction(self.factory) as s:
            grid_ids: list[int]
            if like is not None:
                model = s.scalars(select(User).where(User.username == like)).one()
                role, grid_ids = Role(model.role), [a.grid_id for a in model.assignments]
            else:
                from models.db.tables import GridNode

                grid_ids = list(s.scalars(select(GridNode.id).where(GridNode.code.in_(grids))))
            user = User(username=name, role=role.value, password_hash=self.password_hash)
            s.add(user)
            s.flush()
            s.add_all(Assignment(user_id=user.id, grid_id=g) for g in grid_ids)
        return name

    def fresh_ticket(self, camera: str) -> int:
        with transaction(self.factory) as s:
            cam = s.get(Camera, self.camera_ids[camera])
            assert cam is not None
            t = Ticket(
                category="road_occupation", camera_id=cam.id, grid_id=cam.grid_id, description="matrix",
                evidence_key=self.evidence_key,
            )  # fmt: skip
            s.add(t)
            s.flush()
            # its event's video clip (the route only serves keys linked to the ticket; the bytes do not matter)
            s.add(
                TicketOccurrence(
                    ticket_id=t.id, event_id=f"matrix-{t.id}", kind="started", payload={},
                    clip_state="ready", clip_key=self.evidence_key,
                )
            )  # fmt: skip
            return t.id

    def fresh_grant(self, camera: str) -> int:
        with transaction(self.factory) as s:
            grantee = s.scalars(select(User.id).where(User.username == GRANTEE)).one()
            now = utcnow()
            g = CameraGrant(
                camera_id=self.camera_ids[camera], grantee_id=grantee, starts_at=now - timedelta(minutes=1),
                ends_at=now + timedelta(hours=1), reason="matrix",
            )  # fmt: skip
            s.add(g)
            s.flush()
            return g.id

    def fresh_api_token(self, owner: str, scopes: tuple[str, ...] = ("api:read",)) -> tuple[int, str]:
        token, token_hash = new_api_token()
        with transaction(self.factory) as s:
            uid = s.scalars(select(User.id).where(User.username == owner)).one()
            row = ApiToken(user_id=uid, name=self.unique("tok"), token_hash=token_hash, scopes=list(scopes))
            s.add(row)
            s.flush()
            assert row.token_hash == hash_api_token(token)
            return row.id, token


def seed_world(factory: sessionmaker[Session], directory: Path) -> dict[str, int]:
    grids, cams = sample.write_files(directory)
    with transaction(factory) as s:
        import_grids(s, json.loads(grids.read_text(encoding="utf-8")))
        register_cameras(s, parse_camera_file(cams))
        for username, (role, codes) in sample.USERS.items():
            add_user(s, username=username, role=Role(role), password=sample.PASSWORD, grid_codes=codes)
        add_user(s, username=GRANTEE, role=Role.grid_leader, password=sample.PASSWORD, grid_codes=["G2"])
    with factory() as s:
        return {c.name: c.id for c in s.scalars(select(Camera))}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The sample tree, cameras and users on a fresh database of each kind, for one test module."""
    with ExitStack() as stack:
        directory = tmp_path_factory.mktemp("world")
        if request.param == "sqlite":
            url = sqlite_copy(request.getfixturevalue("_sqlite_template"), directory)
        else:
            require(postgres_available(), "PostgreSQL on 127.0.0.1:5432")
            url = stack.enter_context(postgres_database())
        engine = make_engine(url)
        stack.callback(engine.dispose)
        factory = make_session_factory(engine)
        camera_ids = seed_world(factory, directory)
        store = FileEvidenceStore(directory / "evidence")
        evidence_key = store.put(JPEG_BYTES, prefix="matrix")
        app = create_app(
            ApiSettings(secret_key=SECRET),
            session_factory=factory,
            desk=TicketDesk(TicketSettings(), evidence=store),
            bus=MemoryBus(),
        )
        client = stack.enter_context(TestClient(app))
        yield World(
            factory=factory,
            app=app,
            client=client,
            camera_ids=camera_ids,
            password_hash=hash_password(sample.PASSWORD),
            evidence_key=evidence_key,
        )


def json_of(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def stream_status(world: World, method: str, url: str, headers: dict[str, str]) -> int:
    """The status of a streaming answer (SSE): read up to the response start, then disconnect, on the
    test client's own event loop (where the app's lifespan started the feed)."""
    from urllib.parse import urlsplit

    import anyio

    parts = urlsplit(url)

    async def run() -> int:
        started = anyio.Event()
        status: list[int] = []
        sent_body = False

        async def receive() -> dict[str, Any]:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await started.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
                started.set()

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
            "scheme": "http", "path": parts.path, "raw_path": parts.path.encode(), "query_string": parts.query.encode(),
            "root_path": "", "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 50000), "server": ("testserver", 80), "app": world.app,
        }  # fmt: skip
        with anyio.fail_after(30):
            await world.app(scope, receive, send)
        return status[0]

    portal = world.client.portal
    assert portal is not None
    return portal.call(run)
