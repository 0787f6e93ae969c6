"""Camera grants: lent within the lender's subtree, for a window, expiring by themselves, logged."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.db.tables import AccessLog, Camera, CameraGrant, utcnow

Headers = Callable[[str], dict[str, str]]


def _ids(seeded: sessionmaker[Session]) -> dict[str, int]:
    with seeded() as s:
        return {c.name: c.id for c in s.scalars(select(Camera))}


def _grant(camera_id: int, grantee: str = "leader-g3", hours: float = 2, **extra: object) -> dict[str, object]:
    return {"camera_id": camera_id, "grantee": grantee, "ends_at": (utcnow() + timedelta(hours=hours)).isoformat(), **extra}


def test_a_grant_lends_a_camera_until_it_expires(client: TestClient, auth_headers: Headers, seeded: sessionmaker[Session]) -> None:
    ids = _ids(seeded)
    cam = ids["cam-g1-a"]
    leader = auth_headers("leader-g3")
    assert client.get(f"/api/cameras/{cam}", headers=leader).status_code == 404

    r = client.post("/api/grants", json=_grant(cam, reason="cross-grid incident 42"), headers=auth_headers("manager-s1"))
    assert r.status_code == 201, r.text
    grant = r.json()
    assert grant["active"] and grant["grantee"] == "leader-g3" and grant["granted_by"] == "manager-s1"

    assert client.get(f"/api/cameras/{cam}", headers=leader).status_code == 200
    listed = {c["name"] for c in client.get("/api/cameras", headers=leader).json()["items"]}
    assert listed == {"cam-g3-a", "cam-g1-a"}
    assert [g["id"] for g in client.get("/api/grants", headers=leader).json()] == [grant["id"]]
    assert client.get("/api/grants", headers=auth_headers("leader-g1")).json() == []
    assert [g["id"] for g in client.get("/api/grants", headers=auth_headers("manager-d1")).json()] == [grant["id"]]

    # the window passes (moved into the past rather than waiting): the camera is gone again
    with seeded.begin() as s:
        row = s.get(CameraGrant, grant["id"])
        assert row is not None
        row.starts_at, row.ends_at = utcnow() - timedelta(hours=3), utcnow() - timedelta(seconds=1)
    assert client.get(f"/api/cameras/{cam}", headers=leader).status_code == 404
    assert client.get("/api/grants", params={"active": True}, headers=leader).json() == []

    with seeded() as s:
        log = s.scalars(select(AccessLog).where(AccessLog.object_type.in_(["grant", "camera"])).order_by(AccessLog.id)).all()
    rows = [(e.username, e.action, e.object_type, e.detail.get("grant_id")) for e in log]
    assert rows == [
        ("leader-g3", "deny", "camera", None),
        ("manager-s1", "change", "grant", None),
        ("leader-g3", "view", "camera", grant["id"]),  # using the grant is logged with the grant
        ("leader-g3", "deny", "camera", None),
    ]


def test_who_may_lend_what(client: TestClient, auth_headers: Headers, seeded: sessionmaker[Session]) -> None:
    ids = _ids(seeded)
    manager = auth_headers("manager-s1")
    # outside the manager's subtree: like a camera that does not exist
    r = client.post("/api/grants", json=_grant(ids["cam-g3-a"], grantee="leader-g1"), headers=manager)
    assert r.status_code == 404 and r.json()["detail"] == "camera not found"
    assert client.post("/api/grants", json=_grant(999_999), headers=manager).json() == r.json()
    # grid leaders and operators do not lend
    assert client.post("/api/grants", json=_grant(ids["cam-g1-a"]), headers=auth_headers("leader-g1")).status_code == 403
    assert client.post("/api/grants", json=_grant(ids["cam-g1-a"]), headers=auth_headers("operator1")).status_code == 403
    # bad windows and grantees, each refused with the field
    bad = [
        (_grant(ids["cam-g1-a"], grantee="manager-d1"), "grantee"),
        (_grant(ids["cam-g1-a"], grantee="nobody"), "grantee"),
        (_grant(ids["cam-g1-a"], hours=24 * 31), "ends_at"),
        (_grant(ids["cam-g1-a"], hours=-1), "ends_at"),
        (_grant(ids["cam-g1-a"], starts_at=(utcnow() + timedelta(hours=3)).isoformat()), "ends_at"),
    ]
    for body, field in bad:
        r = client.post("/api/grants", json=body, headers=manager)
        assert r.status_code == 422 and f"field '{field}'" in r.json()["detail"], (body, r.text)
    # an admin lends any camera; a manager revokes within the subtree; the grantee loses it at once
    g = client.post("/api/grants", json=_grant(ids["cam-g3-a"], grantee="leader-g1"), headers=auth_headers("admin1")).json()
    assert client.get(f"/api/cameras/{ids['cam-g3-a']}", headers=auth_headers("leader-g1")).status_code == 200
    assert client.delete(f"/api/grants/{g['id']}", headers=manager).status_code == 404
    assert client.delete(f"/api/grants/{g['id']}", headers=auth_headers("manager-d1")).status_code == 204
    assert client.get(f"/api/cameras/{ids['cam-g3-a']}", headers=auth_headers("leader-g1")).status_code == 404
    with seeded() as s:
        changes = [(e.username, e.detail["op"]) for e in s.scalars(select(AccessLog).where(AccessLog.object_type == "grant"))]
    assert changes == [("admin1", "create"), ("manager-d1", "revoke")]
