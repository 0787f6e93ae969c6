"""What an anonymous outside probe could reach or leave behind (issue 10, item 10): ``/metrics`` and the
API docs in production, evidence left in browser caches, NUL characters in multipart form fields."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.settings import ApiSettings
from models.db.engine import transaction
from models.db.tables import AccessLog, Camera
from models.errors import ConfigError
from models.tickets.desk import TicketDesk
from models.tickets.ingest import ingest_events
from tests.conftest import TEST_SECRET
from tests.support import sample
from tests.support.events import Episode

METRICS_TOKEN = "Mx7-qP2vL9sT4wK8nB3yR6cH1fD5gJ0z"


def app_client(factory: sessionmaker[Session], **settings: object) -> TestClient:
    registry = CollectorRegistry()
    Counter("gridpatrol_probe", "a metric of this process", registry=registry).inc()
    app = create_app(ApiSettings(secret_key=TEST_SECRET, **settings), session_factory=factory, metrics=registry)  # type: ignore[arg-type]
    return TestClient(app)


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GRIDPATROL_ENVIRONMENT", "GRIDPATROL_METRICS_TOKEN", "GRIDPATROL_API_DOCS"):
        monkeypatch.delenv(name, raising=False)


def metrics_denials(factory: sessionmaker[Session]) -> int:
    with factory() as s:
        rows = s.scalars(select(AccessLog).where(AccessLog.object_id == "GET /metrics")).all()
    assert all(r.action == "deny" and r.user_id is None for r in rows)
    return len(rows)


@pytest.mark.parametrize(
    ("environment", "token", "sent", "status"),
    [
        ("production", None, None, 404),  # no token configured: no metrics in production
        ("production", METRICS_TOKEN, None, 401),
        ("production", METRICS_TOKEN, "Bearer wrong-token", 401),
        ("production", METRICS_TOKEN, METRICS_TOKEN, 401),  # without "Bearer "
        ("production", METRICS_TOKEN, f"Bearer {METRICS_TOKEN}", 200),
        ("development", METRICS_TOKEN, None, 401),  # a configured token is asked for everywhere
        ("development", METRICS_TOKEN, f"Bearer {METRICS_TOKEN}", 200),
        ("development", None, None, 200),
        ("demo", None, None, 200),
    ],
)
def test_metrics_are_behind_a_token_in_production(
    no_env: None,
    session_factory: sessionmaker[Session],
    environment: str,
    token: str | None,
    sent: str | None,
    status: int,
) -> None:
    headers = {"Authorization": sent} if sent else {}
    with app_client(session_factory, environment=environment, metrics_token=token) as client:
        r = client.get("/metrics", headers=headers)
    assert r.status_code == status, r.text
    assert ("gridpatrol_probe_total 1.0" in r.text) == (status == 200)
    assert metrics_denials(session_factory) == (1 if status == 401 else 0)  # every refusal is in the audit log


@pytest.mark.parametrize(
    ("environment", "api_docs", "served"),
    [
        ("production", None, False),
        ("production", "false", False),
        ("production", "true", True),
        ("development", None, True),
        ("development", "false", False),
        ("demo", None, True),
    ],
)
def test_api_docs_are_off_in_production_unless_asked_for(
    no_env: None, monkeypatch: pytest.MonkeyPatch, environment: str, api_docs: str | None, served: bool
) -> None:
    monkeypatch.setenv("GRIDPATROL_ENVIRONMENT", environment)
    if api_docs is not None:
        monkeypatch.setenv("GRIDPATROL_API_DOCS", api_docs)
    app = create_app(ApiSettings(secret_key=TEST_SECRET), session_factory=sessionmaker())
    with TestClient(app) as client:
        codes = {path: client.get(path).status_code for path in ("/docs", "/redoc", "/openapi.json")}
    assert codes == dict.fromkeys(codes, 200 if served else 404)


def test_an_app_without_a_signing_key_cannot_be_built(no_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRIDPATROL_SECRET_KEY", raising=False)
    with pytest.raises(ConfigError, match="GRIDPATROL_SECRET_KEY"):
        create_app(ApiSettings(environment="development"), session_factory=sessionmaker())


JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQEASABIAAD/2wBDAP//////////////////////////////////////////////////////////////////"
    "////////////////////wgALCAABAAEBAREA/8QAFBABAAAAAAAAAAAAAAAAAAAAAP/aAAgBAQABPxA="
)


def test_evidence_images_are_not_kept_by_the_browser(
    client: TestClient, auth_headers, seeded: sessionmaker[Session], desk: TicketDesk
) -> None:
    """A viewer whose access ends must not keep seeing the image from the browser cache."""
    with seeded() as s:
        cam_id = s.scalars(select(Camera.id).where(Camera.name == "cam-g1-a")).one()
    key = desk.evidence.put(JPEG, prefix=f"cam-{cam_id}")
    with transaction(seeded) as s:
        ingest_events(s, desk, [Episode(cam_id, start=datetime.now(UTC)).event("started", evidence_key=key)])
    (ticket,) = client.get("/api/tickets", headers=auth_headers("leader-g1")).json()["items"]
    r = client.get(ticket["evidence_url"], headers=auth_headers("leader-g1"))
    assert r.status_code == 200 and r.content == JPEG
    assert r.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    ("fields", "filename", "field"),
    [
        ({"username": "admin1\x00", "password": sample.PASSWORD}, None, "username"),
        ({"username": "admin1", "password": "x\x00y"}, None, "password"),
        ({"username": "admin1", "password": sample.PASSWORD, "scope": "\x00"}, None, "scope"),
        ({"username": "admin1", "password": sample.PASSWORD}, "a\x00.jpg", "photo"),
    ],
)
def test_nul_in_a_multipart_form_field_is_422_naming_it(
    client: TestClient, seeded: sessionmaker[Session], fields: dict[str, str], filename: str | None, field: str
) -> None:
    """A multipart body skips the NUL scan of the raw body (files are binary): the login form's fields
    reached the database (PostgreSQL: a 500)."""
    with seeded() as s:
        before = s.query(AccessLog).count()
    r = client.post("/api/auth/token", content=multipart(fields, filename), headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "invalid"
    assert f"field '{field}'" in r.json()["detail"]
    with seeded() as s:
        assert s.query(AccessLog).count() == before  # refused before the login looked anything up


def test_a_clean_multipart_login_still_works(client: TestClient) -> None:
    body = multipart({"username": "admin1", "password": sample.PASSWORD}, "photo.jpg")
    r = client.post("/api/auth/token", content=body, headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert r.status_code == 200, r.text


BOUNDARY = "gridpatrol-test-boundary"


def multipart(fields: dict[str, str], filename: str | None) -> bytes:
    """A multipart/form-data body written by hand: clients escape control characters in file names."""
    parts = [f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields.items()]
    if filename is not None:
        parts.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="photo"; filename="{filename}"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        )
    body = "".join(parts).encode() + (JPEG + b"\r\n" if filename is not None else b"")
    return body + f"--{BOUNDARY}--\r\n".encode()
