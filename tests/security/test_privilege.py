"""Issue 10 items 3, 6, 7 (refusals audited) and 8: API tokens may not raise privileges without the
admin-only ``admin:users`` scope; disabling ends old credentials for good; every refusal is audited;
only the centre or an ``intake`` token may file a case as the hotline or the 110 platform."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.login_throttle import LoginThrottle
from models.db.tables import AccessLog, Camera, User, utcnow
from tests.support import sample

Headers = Callable[[str], dict[str, str]]


def _token(client: TestClient, headers: dict[str, str], *scopes: str) -> dict[str, str]:
    r = client.post("/api/tokens", headers=headers, json={"name": "t", "scopes": list(scopes)})
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def _ids(seeded: sessionmaker[Session]) -> dict[str, int]:
    with seeded() as s:
        ids = {name: uid for uid, name in s.execute(select(User.id, User.username))}
        ids["cam-g1-a"] = s.scalars(select(Camera.id).where(Camera.name == "cam-g1-a")).one()
        return ids


def _denials(seeded: sessionmaker[Session], route: str) -> list[AccessLog]:
    with seeded() as s:
        return list(s.scalars(select(AccessLog).where(AccessLog.action == "deny", AccessLog.object_id == route)))


#: the routes that raise privileges (api/deps.py PRIVILEGE_ROUTES) and a valid body for each
PRIVILEGE_CASES: list[tuple[str, str, Callable[[dict[str, int]], dict[str, Any] | None]]] = [
    ("POST", "/api/admin/users", lambda ids: {"username": "mallory", "role": "admin", "password": "correct-horse-9"}),
    ("POST", "/api/admin/users/{user_id}/enable", lambda ids: None),
    ("PUT", "/api/admin/users/{user_id}/grids", lambda ids: {"grid_codes": ["G1", "G3"]}),
    (
        "POST",
        "/api/grants",
        lambda ids: {"camera_id": ids["cam-g1-a"], "grantee": "leader-g3", "ends_at": (utcnow() + timedelta(days=1)).isoformat()},
    ),
]


@pytest.mark.parametrize(("method", "template", "body"), PRIVILEGE_CASES, ids=[f"{m} {p}" for m, p, _ in PRIVILEGE_CASES])
def test_an_api_write_token_may_not_raise_privileges(
    client: TestClient, auth_headers: Headers, seeded: sessionmaker[Session], method: str, template: str, body: Any
) -> None:
    ids = _ids(seeded)
    token = _token(client, auth_headers("admin1"), "api:read", "api:write")
    url = template.format(user_id=ids["patroller-g2"])
    r = client.request(method, url, headers=token, json=body(ids))
    assert r.status_code == 403, r.text
    assert "admin:users" in r.json()["detail"]
    denied = _denials(seeded, f"{method} {template}")
    assert len(denied) == 1 and denied[0].username == "admin1" and "admin:users" in denied[0].detail["reason"]
    # the same admin, logged in with a password, may
    assert client.request(method, url, headers=auth_headers("admin1"), json=body(ids)).status_code in (200, 201)


def test_the_admin_users_scope_is_an_admins_given_through_a_login_and_its_use_is_audited(
    client: TestClient, auth_headers: Headers, seeded: sessionmaker[Session]
) -> None:
    admin = auth_headers("admin1")
    # an operator or a manager may not put it on a token; a token may not mint one at all
    for name in ("operator1", "manager-d1"):
        r = client.post("/api/tokens", headers=auth_headers(name), json={"name": "x", "scopes": ["api:write", "admin:users"]})
        assert r.status_code == 403 and "admin:users" in r.json()["detail"], r.text
    privileged = _token(client, admin, "api:write", "admin:users")
    r = client.post("/api/tokens", headers=privileged, json={"name": "x", "scopes": ["api:write", "admin:users"]})
    assert r.status_code == 403
    # with it, the token creates a user, and the log says the scope was used, on which route
    r = client.post(
        "/api/admin/users", headers=privileged, json={"username": "new-op", "role": "operator", "password": "correct-horse-9"}
    )
    assert r.status_code == 201, r.text
    with seeded() as s:
        uses = s.scalars(select(AccessLog).where(AccessLog.object_type == "api_token", AccessLog.action == "change")).all()
        uses = [u for u in uses if u.detail.get("op") == "use_scope"]
    assert len(uses) == 1 and uses[0].username == "admin1" and uses[0].detail["route"] == "POST /api/admin/users"


def test_lowering_privileges_stays_open_to_an_api_write_token(
    client: TestClient, auth_headers: Headers, seeded: sessionmaker[Session]
) -> None:
    token = _token(client, auth_headers("admin1"), "api:write")
    r = client.post(f"/api/admin/users/{_ids(seeded)['patroller-g2']}/disable", headers=token)
    assert r.status_code == 200 and r.json()["enabled"] is False


def test_re_enabling_a_user_revives_none_of_their_old_credentials(
    client: TestClient, auth_headers: Headers, seeded: sessionmaker[Session]
) -> None:
    login = client.post("/api/auth/token", data={"username": "leader-g1", "password": sample.PASSWORD}).json()
    api_token = _token(client, {"Authorization": f"Bearer {login['access_token']}"}, "api:read")
    uid = _ids(seeded)["leader-g1"]
    admin = auth_headers("admin1")
    assert client.post(f"/api/admin/users/{uid}/disable", headers=admin).status_code == 200
    assert client.post(f"/api/admin/users/{uid}/enable", headers=admin).status_code == 200
    assert client.get("/api/me", headers=api_token).status_code == 401
    assert client.post("/api/auth/refresh", json={"refresh_token": login["refresh_token"]}).status_code == 401
    assert client.get("/api/tokens", headers=auth_headers("leader-g1")).json()[0]["revoked_at"] is not None


#: who files a case with which source, and the answer: only the centre (logged in) or an intake token
SOURCE_CASES = [
    # caller, credential (jwt or token scopes), source, expected status
    ("leader-g1", "jwt", "patrol", 201),
    ("leader-g1", "jwt", "police_110", 403),
    ("leader-g1", "jwt", "hotline_12345", 403),
    ("manager-s1", "jwt", "api", 403),
    ("leader-g1", "api:write", "police_110", 403),
    ("operator1", "jwt", "police_110", 201),
    ("admin1", "jwt", "hotline_12345", 201),
    ("operator1", "api:write", "hotline_12345", 403),
    ("operator1", "api:write intake", "hotline_12345", 201),
    ("operator1", "api:write intake", "api", 201),
]


@pytest.mark.parametrize(("caller", "auth", "source", "expected"), SOURCE_CASES)
def test_only_the_centre_or_an_intake_token_sets_the_source(
    client: TestClient, auth_headers: Headers, seeded: sessionmaker[Session], caller: str, auth: str, source: str, expected: int
) -> None:
    headers = auth_headers(caller) if auth == "jwt" else _token(client, auth_headers(caller), *auth.split())
    lon, lat = sample.point_in("G1")
    body = {"category": "road_occupation", "lon": lon, "lat": lat, "description": "x", "source": source}
    r = client.post("/api/tickets", headers=headers, json=body)
    assert r.status_code == expected, r.text
    if expected == 403:
        assert source in r.json()["detail"]
        assert len(_denials(seeded, "POST /api/tickets")) == 1
    else:
        assert r.json()["source"] == source


def test_an_intake_token_is_the_centres_to_make(client: TestClient, auth_headers: Headers) -> None:
    r = client.post("/api/tokens", headers=auth_headers("leader-g1"), json={"name": "x", "scopes": ["api:write", "intake"]})
    assert r.status_code == 403 and "intake" in r.json()["detail"]


def test_refusals_are_audited(client: TestClient, auth_headers: Headers, seeded: sessionmaker[Session]) -> None:
    # a report outside the reporter's grids
    lon, lat = sample.point_in("G3")
    r = client.post(
        "/api/tickets", headers=auth_headers("leader-g1"), json={"category": "road_occupation", "lon": lon, "lat": lat, "description": "x"}
    )
    assert r.status_code == 403
    (row,) = _denials(seeded, "POST /api/tickets")
    assert (row.username, row.detail["status"]) == ("leader-g1", 403) and "own grids" in row.detail["reason"]
    # a ticket move the role may not make (the state machine's 403)
    lon, lat = sample.point_in("G1")
    ticket = client.post(
        "/api/tickets", headers=auth_headers("leader-g1"), json={"category": "road_occupation", "lon": lon, "lat": lat, "description": "y"}
    ).json()
    r = client.post(f"/api/tickets/{ticket['id']}/transitions", headers=auth_headers("leader-g1"), json={"action": "dispatch"})
    assert r.status_code == 403, r.text
    (row,) = _denials(seeded, "POST /api/tickets/{ticket_id}/transitions")
    assert row.username == "leader-g1" and row.detail["path"] == f"/api/tickets/{ticket['id']}/transitions"


def test_a_throttled_login_is_audited(seeded: sessionmaker[Session], client: TestClient) -> None:
    throttle: LoginThrottle = client.app.state.gridpatrol.login_throttle  # type: ignore[attr-defined]
    for _ in range(throttle.max_per_user_address):
        assert client.post("/api/auth/token", data={"username": "leader-g1", "password": "wrong-pass"}).status_code == 401
    r = client.post("/api/auth/token", data={"username": "leader-g1", "password": sample.PASSWORD})
    assert r.status_code == 429
    (row,) = _denials(seeded, "POST /api/auth/token")
    assert (row.username, row.user_id, row.detail["status"]) == ("leader-g1", None, 429)
    assert "too many failed logins" in row.detail["reason"]
