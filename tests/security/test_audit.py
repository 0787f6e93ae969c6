"""The audit view and its CSV export: filters, pagination, formula-safe cells."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.db.tables import Camera, utcnow
from models.identity.audit import record_event

Headers = Callable[[str], dict[str, str]]


def test_audit_filters_pages_and_exports(client: TestClient, auth_headers: Headers, seeded: sessionmaker[Session]) -> None:
    with seeded() as s:
        ids = {c.name: c.id for c in s.scalars(select(Camera))}
    leader = auth_headers("leader-g1")
    client.get(f"/api/cameras/{ids['cam-g1-a']}", headers=leader)
    client.get(f"/api/cameras/{ids['cam-g3-a']}", headers=leader)
    admin = auth_headers("admin1")
    r = client.patch(f"/api/cameras/{ids['cam-g1-b']}", json={"enabled": False}, headers=admin)
    assert r.status_code == 200 and r.json()["enabled"] is False
    assert client.patch(f"/api/cameras/{ids['cam-g1-b']}", json={"enabled": True}, headers=leader).status_code == 403
    with seeded.begin() as s:  # a hostile username, as a failed login would record it
        record_event(s, user_id=None, username="=HYPERLINK(\"http://x\")", action="login_failed", channel="api")

    def audit(**params: object) -> dict:
        r = client.get("/api/audit", params=params, headers=admin)
        assert r.status_code == 200, r.text
        return r.json()

    denied = audit(user="leader-g1", action="deny")
    assert [(e["object_type"], e["object_id"]) for e in denied["items"]] == [
        ("camera", str(ids["cam-g1-b"])),  # the refused change (newest first)
        ("camera", str(ids["cam-g3-a"])),
    ]
    assert denied["items"][0]["detail"] == {"wanted": "configure"}
    changes = audit(action="change", object_type="camera")["items"]
    assert [(e["username"], e["object_id"], e["detail"]) for e in changes] == [("admin1", str(ids["cam-g1-b"]), {"enabled": False})]
    assert audit(channel="gateway")["total"] == 0
    assert audit(since=(utcnow() + timedelta(hours=1)).isoformat())["total"] == 0
    # camera rows only: reading the audit log is itself logged, which would shift unfiltered pages
    page1 = audit(object_type="camera", limit=2)
    page2 = audit(object_type="camera", limit=2, offset=2)
    assert page1["total"] == page2["total"] == 4
    assert [e["id"] for e in page1["items"] + page2["items"]] == sorted((e["id"] for e in page1["items"] + page2["items"]), reverse=True)
    assert len({e["id"] for e in page1["items"] + page2["items"]}) == 4
    assert audit(object_type="audit", action="view")["total"] >= 1
    assert client.get("/api/audit", params={"limit": 0}, headers=admin).status_code == 422

    r = client.get("/api/audit.csv", params={"action": "login_failed"}, headers=admin)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text.lstrip("\ufeff"))))
    assert [row["username"] for row in rows] == ["'=HYPERLINK(\"http://x\")"]  # a spreadsheet shows it, never runs it
    assert client.get("/api/audit.csv", headers=leader).status_code == 403
