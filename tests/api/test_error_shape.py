"""Issue 11 item 8b: every error body has one shape, whatever refused the request:
``{"error": code, "detail": one string, "field": the first bad field or null}``, plus ``"errors"`` (a
list) on request-validation 422s only. See api/errors.py and api.schemas.ErrorOut."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel, field_validator
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.deps import get_scope
from api.login_throttle import LoginThrottle
from api.schemas import ErrorOut
from api.settings import ApiSettings
from models.errors import CameraError, Unavailable
from models.tickets.desk import TicketDesk
from tests.conftest import TEST_SECRET
from tests.support import sample

MAX_BODY = 1000
KEYS = {"error", "detail", "field"}
VALIDATION_KEYS = KEYS | {"errors"}


class Probe(BaseModel):
    """A body whose validator raises ValueError, as pydantic reports it: "Value error, ..."."""

    window_h: int

    @field_validator("window_h")
    @classmethod
    def _short(cls, value: int) -> int:
        if value > 24:
            raise ValueError("a window is at most 24 hours")
        return value


@dataclass
class World:
    client: TestClient

    def bearer(self, username: str) -> dict[str, str]:
        r = self.client.post("/api/auth/token", data={"username": username, "password": sample.PASSWORD})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    def failing_scope(self, exc: Exception) -> httpx.Response:
        """GET /api/tickets with the access scope dependency raising ``exc`` (a bug or a broken part)."""
        headers = self.bearer("operator1")

        def broken() -> None:
            raise exc

        self.client.app.dependency_overrides[get_scope] = broken  # type: ignore[attr-defined]
        try:
            return self.client.get("/api/tickets", headers=headers)
        finally:
            self.client.app.dependency_overrides.clear()  # type: ignore[attr-defined]


@pytest.fixture
def world(seeded: sessionmaker[Session], desk: TicketDesk) -> Iterator[World]:
    throttle = LoginThrottle(max_per_user_address=1)
    app = create_app(
        ApiSettings(secret_key=TEST_SECRET), session_factory=seeded, desk=desk, login_throttle=throttle, max_body_bytes=MAX_BODY
    )

    @app.post("/test-only/probe", include_in_schema=False)
    def probe(body: Probe) -> dict[str, int]:
        return {"window_h": body.window_h}

    @app.get("/test-only/boom", include_in_schema=False)
    def boom() -> None:
        raise RuntimeError("a bug with a secret in it")

    with TestClient(app, raise_server_exceptions=False) as c:
        yield World(c)


def _throttled(w: World) -> httpx.Response:
    w.client.post("/api/auth/token", data={"username": "leader-g1", "password": "wrong-password"})
    return w.client.post("/api/auth/token", data={"username": "leader-g1", "password": sample.PASSWORD})


#: id → (request, status, error, field); field None = the error is about no single field
CASES: list = [
    pytest.param(lambda w: w.client.get("/api/me"), 401, "unauthorized", None, id="401-no-token"),
    pytest.param(lambda w: w.client.get("/api/me", headers={"Authorization": "Bearer junk"}), 401, "unauthorized", None, id="401-bad-token"),
    pytest.param(
        lambda w: w.client.post("/api/auth/token", data={"username": "leader-g3", "password": "not-it-at-all"}),
        401, "unauthorized", None, id="401-wrong-password",
    ),
    pytest.param(lambda w: w.client.get("/api/admin/users", headers=w.bearer("operator1")), 403, "forbidden", None, id="403-role"),
    pytest.param(lambda w: w.client.get("/api/cameras/999999", headers=w.bearer("admin1")), 404, "not_found", None, id="404-object"),
    pytest.param(lambda w: w.client.get("/api/no-such-route"), 404, "not_found", None, id="404-route"),
    pytest.param(lambda w: w.client.delete("/api/me", headers=w.bearer("admin1")), 405, "method_not_allowed", None, id="405"),
    pytest.param(
        lambda w: w.client.post(
            "/api/admin/users", headers=w.bearer("admin1"), json={"username": "Admin1", "role": "operator", "password": "correct-horse-9"}
        ),
        409, "conflict", None, id="409-duplicate",
    ),
    pytest.param(
        lambda w: w.client.post("/api/auth/refresh", content=b"{" + b" " * 2 * MAX_BODY + b"}", headers={"Content-Type": "application/json"}),
        413, "payload_too_large", None, id="413-body",
    ),
    pytest.param(
        lambda w: w.client.post(
            "/api/me/password", headers=w.bearer("leader-g1"), json={"current_password": "not-mine-at-all", "new_password": "brand-new-pass-1"}
        ),
        422, "invalid", "current_password", id="422-domain",
    ),
    pytest.param(
        lambda w: w.client.get("/api/tickets?since=not-a-time", headers=w.bearer("operator1")), 422, "invalid", "since", id="422-query"
    ),
    pytest.param(lambda w: w.client.post("/api/auth/refresh", json={}), 422, "invalid", "refresh_token", id="422-missing-body-field"),
    pytest.param(
        lambda w: w.client.post("/api/auth/refresh", content=b'{"refresh_token": ', headers={"Content-Type": "application/json"}),
        422, "invalid", None, id="422-bad-json",
    ),
    pytest.param(lambda w: w.client.post("/test-only/probe", json={"window_h": 99}), 422, "invalid", "window_h", id="422-value-error"),
    pytest.param(lambda w: w.client.get("/api/audit?user=a%00b", headers=w.bearer("admin1")), 422, "invalid", None, id="422-nul"),
    pytest.param(_throttled, 429, "too_many_requests", None, id="429"),
    pytest.param(lambda w: w.client.get("/test-only/boom"), 500, "internal", None, id="500-route-raises"),
    pytest.param(lambda w: w.failing_scope(RuntimeError("a bug")), 500, "internal", None, id="500-dependency-raises"),
    pytest.param(lambda w: w.failing_scope(CameraError("unmapped")), 500, "internal", None, id="500-unmapped-domain-error"),
    pytest.param(lambda w: w.failing_scope(Unavailable("the bus is down")), 503, "unavailable", None, id="503"),
]  # fmt: skip


@pytest.mark.parametrize(("request_", "status", "error", "field"), CASES)
def test_every_error_has_the_same_shape(
    world: World, request_: Callable[[World], httpx.Response], status: int, error: str, field: str | None
) -> None:
    r = request_(world)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    validation = "errors" in body
    assert set(body) == (VALIDATION_KEYS if validation else KEYS), body
    assert (body["error"], body["field"]) == (error, field), body
    assert isinstance(body["detail"], str) and body["detail"], body
    assert "Value error" not in body["detail"] and "a secret" not in body["detail"]
    if field is not None:
        assert body["detail"].startswith(f"field '{field}': "), body
    if validation:
        assert status == 422
        assert len(body["errors"]) >= 1
        assert body["errors"][0]["field"] == field
        assert all(set(e) == {"loc", "field", "msg", "type"} and isinstance(e["msg"], str) for e in body["errors"])
    ErrorOut.model_validate(body)  # the documented schema accepts it


def test_a_validator_message_reads_like_ours(world: World) -> None:
    r = world.client.post("/test-only/probe", json={"window_h": 99})
    body = r.json()
    assert body["detail"] == "field 'window_h': a window is at most 24 hours"
    assert body["errors"] == [{"loc": ["body", "window_h"], "field": "window_h", "msg": "a window is at most 24 hours", "type": "value_error"}]


def test_several_bad_fields_name_the_first_and_count_the_rest(world: World) -> None:
    r = world.client.get("/api/cameras?limit=0&offset=-1", headers=world.bearer("admin1"))
    body = r.json()
    assert r.status_code == 422 and [e["field"] for e in body["errors"]] == ["limit", "offset"]
    assert body["field"] == "limit"
    assert body["detail"].startswith("field 'limit': ") and body["detail"].endswith("(and 1 more: see errors)")


def test_the_error_schema_is_documented_once_for_every_route(world: World) -> None:
    spec = world.client.get("/openapi.json").json()
    schema = spec["components"]["schemas"]["ErrorOut"]
    assert set(schema["required"]) == KEYS and set(schema["properties"]) == VALIDATION_KEYS
    assert schema["properties"]["detail"]["type"] == "string"
    refs = [
        op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
        for ops in spec["paths"].values()
        for op in ops.values()
        if "422" in op.get("responses", {})
    ]
    assert len(refs) > 20 and set(refs) == {"#/components/schemas/ErrorOut"}
