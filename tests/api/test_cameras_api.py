"""A grid leader sees exactly the cameras of their grid, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from models.db.tables import AccessLog, Camera
from tests.support import sample

Headers = Callable[[str], dict[str, str]]


def names(client: TestClient, headers: dict[str, str]) -> set[str]:
    r = client.get("/api/cameras", headers=headers)
    assert r.status_code == 200, r.text
    return {c["name"] for c in r.json()["items"]}


@pytest.mark.parametrize(
    ("username", "expected"),
    [
        ("admin1", set(sample.CAMERAS)),
        ("operator1", set(sample.CAMERAS)),
        ("manager-d1", set(sample.CAMERAS)),
        ("manager-s1", {"cam-g1-a", "cam-g1-b", "cam-g2-a"}),
        ("leader-g1", {"cam-g1-a", "cam-g1-b"}),
        ("leader-g3", {"cam-g3-a"}),
        ("patroller-g2", {"cam-g2-a"}),
    ],
)
def test_camera_list_follows_the_policy(client: TestClient, auth_headers: Headers, username: str, expected: set[str]) -> None:
    assert names(client, auth_headers(username)) == expected


def test_other_grids_camera_is_404_like_a_missing_one(client: TestClient, auth_headers: Headers, seeded) -> None:
    with seeded() as s:
        ids = {c.name: c.id for c in s.scalars(select(Camera))}
    h = auth_headers("leader-g1")
    own = client.get(f"/api/cameras/{ids['cam-g1-a']}", headers=h)
    assert own.status_code == 200
    assert own.json()["grid_code"] == "G1"
    foreign = client.get(f"/api/cameras/{ids['cam-g3-a']}", headers=h)
    missing = client.get("/api/cameras/999999", headers=h)
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json() == {"error": "not_found", "detail": "camera not found", "field": None}
    with seeded() as s:
        # logins are logged too (action login): this test is about the camera looks
        log = s.scalars(select(AccessLog).where(AccessLog.action.in_(["view", "deny"])).order_by(AccessLog.id)).all()
    assert [(e.username, e.action, e.object_id) for e in log] == [
        ("leader-g1", "view", str(ids["cam-g1-a"])),
        ("leader-g1", "deny", str(ids["cam-g3-a"])),
        ("leader-g1", "deny", "999999"),
    ]


def test_camera_responses_never_carry_credentials(client: TestClient, auth_headers: Headers) -> None:
    h = auth_headers("admin1")
    listing = client.get("/api/cameras", headers=h)
    assert listing.status_code == 200
    assert sample.CAMERA_SECRET not in listing.text
    for cam in listing.json()["items"]:
        one = client.get(f"/api/cameras/{cam['id']}", headers=h)
        assert sample.CAMERA_SECRET not in one.text
        assert "rtsp://" not in one.text
        assert cam["stream_host"] == "127.0.0.1"


def test_filters_and_pagination(client: TestClient, auth_headers: Headers) -> None:
    h = auth_headers("admin1")
    r = client.get("/api/cameras", params={"grid": "C1"}, headers=h).json()
    assert {c["name"] for c in r["items"]} == {"cam-g1-a", "cam-g1-b", "cam-g2-a"}
    r = client.get("/api/cameras", params={"q": "g1"}, headers=h).json()
    assert {c["name"] for c in r["items"]} == {"cam-g1-a", "cam-g1-b"}
    page1 = client.get("/api/cameras", params={"limit": 2}, headers=h).json()
    page2 = client.get("/api/cameras", params={"limit": 2, "offset": 2}, headers=h).json()
    assert page1["total"] == page2["total"] == 4
    assert [c["name"] for c in page1["items"] + page2["items"]] == sorted(sample.CAMERAS)
    # a scoped user filtering on a grid outside their scope sees nothing, not an error
    r = client.get("/api/cameras", params={"grid": "G3"}, headers=auth_headers("leader-g1")).json()
    assert r["items"] == [] and r["total"] == 0


@pytest.mark.parametrize(
    ("params", "field"),
    [({"limit": 0}, "limit"), ({"limit": 5000}, "limit"), ({"offset": -1}, "offset"), ({"limit": "many"}, "limit")],
)
def test_bad_query_parameters_are_422_with_the_field(client: TestClient, auth_headers: Headers, params, field) -> None:
    r = client.get("/api/cameras", params=params, headers=auth_headers("admin1"))
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "invalid"
    assert any(err["loc"][-1] == field for err in body["errors"])
    assert body["field"] == field and body["detail"].startswith(f"field '{field}': ")


def test_me_and_grid_tree(client: TestClient, auth_headers: Headers) -> None:
    me = client.get("/api/me", headers=auth_headers("leader-g1")).json()
    assert me["username"] == "leader-g1" and me["role"] == "grid_leader"
    assert [g["code"] for g in me["grids"]] == ["G1"]
    tree = client.get("/api/grids", headers=auth_headers("admin1")).json()
    assert [n["code"] for n in tree] == ["D1"]
    assert sorted(s["code"] for s in tree[0]["children"]) == ["S1", "S2"]
    # a grid leader sees their grid and the chain above it, not the neighbours
    tree = client.get("/api/grids", headers=auth_headers("leader-g1")).json()
    chain = []
    node = tree[0]
    while True:
        chain.append(node["code"])
        assert len(node["children"]) <= 1
        if not node["children"]:
            break
        node = node["children"][0]
    assert chain == ["D1", "S1", "C1", "G1"]


def test_authentication_errors(client: TestClient) -> None:
    assert client.get("/api/cameras").status_code == 401
    r = client.get("/api/cameras", headers={"Authorization": "Bearer not-a-token"})
    assert r.status_code == 401 and r.json()["detail"] == "invalid token"
    r = client.post("/api/auth/token", data={"username": "leader-g1", "password": "wrong-password"})
    assert r.status_code == 401 and r.json()["detail"] == "wrong username or password"
    r = client.post("/api/auth/token", data={"username": "nobody", "password": "wrong-password"})
    assert r.status_code == 401


def test_disabling_a_user_cuts_their_token(client: TestClient, auth_headers: Headers, seeded) -> None:
    from models.db.tables import User

    h = auth_headers("leader-g1")
    assert client.get("/api/me", headers=h).status_code == 200
    with seeded.begin() as s:
        s.scalars(select(User).where(User.username == "leader-g1")).one().enabled = False
    assert client.get("/api/me", headers=h).status_code == 401


def test_health_and_docs(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "database": "ok"}
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "/api/cameras/{camera_id}" in spec["paths"]
