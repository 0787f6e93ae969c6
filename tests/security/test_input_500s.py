"""Issue 10 item 5: bad times and ids are 422s naming the field, never 500s; an unhandled error is JSON
with the security headers; API tokens live at most MAX_API_TOKEN_LIFETIME."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from api.app import SECURITY_HEADERS
from api.deps import get_scope
from models.db.tables import utcnow
from models.identity.tokens import MAX_API_TOKEN_LIFETIME

Headers = Callable[[str], dict[str, str]]

#: query string of GET /api/tickets → the parameter the 422 names
TICKET_QUERY_CASES = [
    ("since=2026-01-01T00:00:00", "since"),
    ("until=2026-01-01T08:00", "until"),
    ("since=not-a-time", "since"),
    (f"camera_id={2**64}", "camera_id"),
    (f"camera_id={2**31}", "camera_id"),
    ("camera_id=0", "camera_id"),
    ("camera_id=-1", "camera_id"),
]


@pytest.mark.parametrize(("query", "field"), TICKET_QUERY_CASES)
def test_bad_ticket_filters_are_422_naming_the_parameter(client: TestClient, auth_headers: Headers, query: str, field: str) -> None:
    r = client.get(f"/api/tickets?{query}", headers=auth_headers("operator1"))
    assert r.status_code == 422, r.text
    assert [e["loc"] for e in r.json()["errors"]] == [["query", field]]
    assert r.json()["field"] == field and r.json()["detail"].startswith(f"field '{field}': ")


def test_zoned_ticket_filters_still_work(client: TestClient, auth_headers: Headers) -> None:
    r = client.get("/api/tickets?since=2026-01-01T00:00:00Z&until=2030-01-01T08:00:00%2B08:00&camera_id=1", headers=auth_headers("operator1"))
    assert r.status_code == 200, r.text


def _in(days: float) -> str:
    return (utcnow() + timedelta(days=days)).isoformat()


#: expires_at of POST /api/tokens → the status (422s name expires_at)
TOKEN_EXPIRY_CASES = [
    ("2030-01-01T00:00:00", 422),  # no time zone
    (_in(-1), 422),  # past
    (_in(MAX_API_TOKEN_LIFETIME.days + 1), 422),  # past the maximum lifetime
    (_in(30), 201),
]


@pytest.mark.parametrize(("expires_at", "expected"), TOKEN_EXPIRY_CASES)
def test_token_expiry(client: TestClient, auth_headers: Headers, expires_at: str, expected: int) -> None:
    body = {"name": "t", "scopes": ["api:read"], "expires_at": expires_at}
    r = client.post("/api/tokens", headers=auth_headers("leader-g1"), json=body)
    assert r.status_code == expected, r.text
    if expected == 422:
        assert "expires_at" in str(r.json()["detail"])


def test_a_token_without_expiry_gets_the_maximum_lifetime(client: TestClient, auth_headers: Headers) -> None:
    before = utcnow()
    r = client.post("/api/tokens", headers=auth_headers("leader-g1"), json={"name": "t", "scopes": ["api:read"]})
    assert r.status_code == 201, r.text
    expires_at = datetime.fromisoformat(r.json()["expires_at"])
    assert before + MAX_API_TOKEN_LIFETIME <= expires_at <= utcnow() + MAX_API_TOKEN_LIFETIME


def test_an_unhandled_error_is_json_with_the_security_headers(client: TestClient, auth_headers: Headers) -> None:
    headers = auth_headers("operator1")

    def broken() -> None:
        raise RuntimeError("a bug")

    client.app.dependency_overrides[get_scope] = broken  # type: ignore[attr-defined]
    try:
        r = client.get("/api/tickets", headers=headers)
    finally:
        client.app.dependency_overrides.clear()  # type: ignore[attr-defined]
    assert r.status_code == 500
    assert r.json() == {"error": "internal", "detail": "internal error", "field": None}
    assert "a bug" not in r.text
    for name, value in SECURITY_HEADERS.items():
        assert r.headers.get(name) == value, name
    assert r.headers.get("Cache-Control") == "no-store"


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [
        ("/api/audit", "since=2026-01-01T08:00:00", "since"),  # a local time without its zone: 8 hours off in China
        ("/api/audit", "until=2026-01-01T08:00:00", "until"),
        ("/api/stats", "since=2026-01-01T08:00:00", "since"),
    ],
)
def test_other_time_filters_need_a_zone(client: TestClient, auth_headers: Headers, path: str, query: str, field: str) -> None:
    r = client.get(f"{path}?{query}", headers=auth_headers("admin1"))
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field
    assert client.get(f"{path}?{query}%2B08:00", headers=auth_headers("admin1")).status_code == 200
