"""The linkage API on SQLite and PostgreSQL: the centre's triage desk (queue, one-action dispatch to a grid
and a department, merge), a department's work list and part actions, the camera lent while a part is
open, linkage requests, police clues, departments CRUD."""

from __future__ import annotations

import base64
from collections.abc import Callable

from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.db.engine import transaction
from models.db.tables import AccessLog, Camera
from models.tickets.desk import TicketDesk
from models.tickets.ingest import ingest_events
from tests.support import sample
from tests.support.events import Episode
from tests.support.org import seed_org
from tests.support.patrol import jpeg

Headers = Callable[[str], dict[str, str]]


def report(
    client: TestClient,
    h: Headers,
    *,
    source: str,
    grid: str = "G1",
    category: str = "road_occupation",
    dx: float = 0.5,
) -> int:
    lon, lat = sample.point_in(grid, dx, 0.5)
    body = {
        "category": category,
        "lon": lon,
        "lat": lat,
        "description": f"{source}: 门口占道",
        "source": source,
    }
    r = client.post("/api/tickets", json=body, headers=h("operator1" if source != "patrol" else "leader-g1"))
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def test_an_operator_triages_a_12345_case_to_a_grid_and_a_department(
    client: TestClient, auth_headers: Headers, seeded: sessionmaker[Session]
) -> None:
    seed_org(seeded)
    tid = report(client, auth_headers, source="hotline_12345")
    queue = client.get("/api/triage", headers=auth_headers("operator1")).json()
    item = next(i for i in queue["items"] if i["id"] == tid)
    assert item["sources"] == ["hotline_12345"] and item["waiting_s"] >= 0 and queue["waiting"] >= 1
    assert client.get("/api/triage", headers=auth_headers("leader-g1")).status_code == 403
    r = client.post(f"/api/triage/{tid}/dispatch", json={"grid": "G1", "departments": ["LAW-D1"], "note": "12345转办"},
                    headers=auth_headers("operator1"))  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["lead"] == "leader-g1" and [p["department"] for p in r.json()["parts"]] == ["LAW-D1"]
    assert tid not in [
        i["id"] for i in client.get("/api/triage", headers=auth_headers("operator1")).json()["items"]
    ]

    work = client.get("/api/parts", headers=auth_headers("law-d1")).json()
    part = next(p for p in work if p["ticket_id"] == tid)
    assert part["state"] == "dispatched" and part["department_name"] == "江北综合执法大队"
    assert client.get(f"/api/tickets/{tid}", headers=auth_headers("law-d1")).status_code == 200
    assert client.get(f"/api/tickets/{tid}", headers=auth_headers("market-d1")).status_code == 404
    assert (
        client.post(
            f"/api/parts/{part['id']}/actions", json={"action": "accept"}, headers=auth_headers("market-d1")
        ).status_code
        == 404
    )

    def act(who: str, body: dict[str, object]) -> Response:
        return client.post(f"/api/parts/{part['id']}/actions", json=body, headers=auth_headers(who))

    assert act("law-d1", {"action": "accept"}).status_code == 200
    assert act("law-d1", {"action": "accept"}).status_code == 409  # the second accept: the state says why
    photo = base64.b64encode(jpeg(3)).decode()
    for who, body in (
        ("leader-g1", {"action": "accept"}),
        ("leader-g1", {"action": "resolve", "note": "已劝离"}),
    ):
        assert (
            client.post(f"/api/tickets/{tid}/transitions", json=body, headers=auth_headers(who)).status_code
            == 200
        )
    assert client.get(f"/api/tickets/{tid}", headers=auth_headers("operator1")).json()["state"] == "accepted"
    done = act("law-d1", {"action": "resolve", "note": "已依法处置", "photos": [photo]})
    assert done.status_code == 200 and done.json()["state"] == "resolved" and done.json()["photos"] == 1
    detail = client.get(f"/api/tickets/{tid}", headers=auth_headers("operator1")).json()
    assert detail["state"] == "resolved"
    actions = [h["action"] for h in detail["history"]]
    assert {"part_dispatch", "part_accept", "lead_resolve", "part_resolve", "resolve"} <= set(actions)
    shot = next(h for h in detail["history"] if h["action"] == "part_resolve")["photo_urls"][0]
    assert client.get(shot, headers=auth_headers("leader-g1")).status_code == 200
    # the evaluation ranks departments on their parts (the centre's view; grid roles get no department rows)
    ranked = client.get("/api/evaluation/scores", params={"level": "department"}, headers=auth_headers("operator1"))
    assert ranked.status_code == 200, ranked.text
    law = next(x for x in ranked.json()["items"] if x["code"] == "LAW-D1")
    workload = next(c for c in law["components"] if c["name"] == "workload")
    assert workload["numerator"] == 1 and workload["rows"]["parts"] == [part["id"]]
    mine = client.get("/api/evaluation/scores", params={"level": "department"}, headers=auth_headers("leader-g1"))
    assert mine.status_code == 200 and mine.json()["items"] == []


def test_the_handler_sees_the_camera_while_the_part_is_open(
    client: TestClient, auth_headers: Headers, seeded: sessionmaker[Session], desk: TicketDesk
) -> None:
    seed_org(seeded)
    with seeded() as s:
        cam = s.scalars(select(Camera.id).where(Camera.name == "cam-g1-a")).one()
    with transaction(seeded) as s:
        ingest_events(s, desk, [Episode(cam, zone="lane", start=desk.clock()).event("started")])
    tid = client.get("/api/tickets", headers=auth_headers("operator1")).json()["items"][0]["id"]
    fire = auth_headers("fire-s1")
    assert client.get(f"/api/cameras/{cam}", headers=fire).status_code == 404
    r = client.post(
        f"/api/tickets/{tid}/parts", json={"department": "FIRE-S1"}, headers=auth_headers("operator1")
    )
    assert r.status_code == 201, r.text
    pid = r.json()["parts"][0]["id"]
    assert client.get(f"/api/cameras/{cam}", headers=fire).status_code == 200
    assert [c["id"] for c in client.get("/api/cameras", headers=fire).json()["items"]] == [cam]
    assert client.get(f"/api/cameras/{cam}", headers=auth_headers("police-s1")).status_code == 404
    client.post(f"/api/parts/{pid}/actions", json={"action": "accept"}, headers=fire)
    assert (
        client.post(
            f"/api/parts/{pid}/actions", json={"action": "resolve", "note": "通道已清"}, headers=fire
        ).status_code
        == 200
    )
    assert client.get(f"/api/cameras/{cam}", headers=fire).status_code == 404
    assert client.get(f"/api/tickets/{tid}", headers=fire).status_code == 200  # the work record stays
    with seeded() as s:
        views = s.scalars(select(AccessLog.detail).where(AccessLog.object_type == "camera", AccessLog.action == "view",
                                                         AccessLog.username == "fire-s1")).all()  # fmt: skip
        assert views and all(v.get("via") == "ticket_part" for v in views)


def test_two_reports_of_one_place_merge_and_a_leader_requests_enforcement(
    client: TestClient, auth_headers: Headers, seeded: sessionmaker[Session]
) -> None:
    seed_org(seeded)
    a = report(client, auth_headers, source="hotline_12345", grid="G2", dx=0.3)
    b = report(client, auth_headers, source="police_110", grid="G2", dx=0.3)
    items = {i["id"]: i for i in client.get("/api/triage", headers=auth_headers("operator1")).json()["items"]}
    assert b in items[a]["duplicates"]
    r = client.post(f"/api/triage/{a}/merge", json={"duplicate_id": b}, headers=auth_headers("operator1"))
    assert r.status_code == 200, r.text and r.json()["sources"] == ["hotline_12345", "police_110"]
    assert r.json()["sources"] == ["hotline_12345", "police_110"]
    assert client.get(f"/api/tickets/{b}", headers=auth_headers("operator1")).json()["state"] == "closed"
    again = client.post(f"/api/triage/{a}/merge", json={"duplicate_id": b}, headers=auth_headers("operator1"))
    assert again.status_code == 409

    road = report(client, auth_headers, source="patrol", grid="G1", dx=0.7)  # auto-dispatched to leader-g1
    r = client.post(
        f"/api/tickets/{road}/linkage",
        json={"kind": "law_enforcement", "reason": "需执法"},
        headers=auth_headers("leader-g1"),
    )
    assert r.status_code == 201 and r.json()["state"] == "answered"
    linkage = client.get(f"/api/tickets/{road}/linkage", headers=auth_headers("leader-g1")).json()
    assert [p["department"] for p in linkage["parts"]] == ["LAW-D1"] and linkage["parts"][0][
        "origin"
    ] == "rule"
    r = client.post(
        f"/api/tickets/{road}/linkage", json={"kind": "market"}, headers=auth_headers("leader-g1")
    )
    assert r.json()["state"] == "pending"
    pending = client.get("/api/triage", headers=auth_headers("operator1")).json()["pending_requests"]
    rid = next(p["id"] for p in pending if p["ticket_id"] == road)
    ans = client.post(
        f"/api/linkage-requests/{rid}/answer",
        json={"department": "MKT-D1"},
        headers=auth_headers("operator1"),
    )
    assert ans.status_code == 200 and ans.json()["state"] == "answered"


def test_a_police_clue_is_invisible_to_the_grid_manager_and_other_departments(
    client: TestClient, auth_headers: Headers, seeded: sessionmaker[Session]
) -> None:
    seed_org(seeded)
    lon, lat = sample.point_in("G1", 0.2, 0.8)
    r = client.post(
        "/api/clues",
        json={"lon": lon, "lat": lat, "description": "夜间可疑人员"},
        headers=auth_headers("leader-g1"),
    )
    assert r.status_code == 201 and r.json()["station"] == "泰山派出所"
    cid = r.json()["id"]
    seen = {who: client.get(f"/api/clues/{cid}", headers=auth_headers(who)).status_code
            for who in ("leader-g1", "police-s1", "police-s2", "manager-s1", "fire-s1", "operator1")}  # fmt: skip
    assert seen == {
        "leader-g1": 200,
        "police-s1": 200,
        "police-s2": 404,
        "manager-s1": 404,
        "fire-s1": 404,
        "operator1": 404,
    }
    assert [c["id"] for c in client.get("/api/clues", headers=auth_headers("manager-s1")).json()] == []
    assert (
        client.post(
            f"/api/clues/{cid}/state", json={"state": "received"}, headers=auth_headers("leader-g1")
        ).status_code
        == 403
    )
    assert (
        client.post(
            f"/api/clues/{cid}/state", json={"state": "received"}, headers=auth_headers("police-s1")
        ).json()["state"]
        == "received"
    )


def test_departments_crud_for_the_centre(
    client: TestClient, auth_headers: Headers, seeded: sessionmaker[Session]
) -> None:
    body = {"code": "ENV-D1", "name": "生态环境分局", "kind": "environment", "grids": ["D1"]}
    assert client.post("/api/departments", json=body, headers=auth_headers("manager-d1")).status_code == 403
    r = client.post("/api/departments", json=body, headers=auth_headers("operator1"))
    assert r.status_code == 201 and r.json()["kind_zh"] == "生态环境"
    did = r.json()["id"]
    assert client.post("/api/departments", json=body, headers=auth_headers("operator1")).status_code == 409
    r = client.put(
        f"/api/departments/{did}/jurisdiction",
        json={"grids": ["S1", "G3"]},
        headers=auth_headers("operator1"),
    )
    assert r.json()["grids"] == ["G3", "S1"]
    assert (
        client.put(
            f"/api/departments/{did}/jurisdiction", json={"grids": ["X9"]}, headers=auth_headers("operator1")
        ).status_code
        == 422
    )
    assert [d["code"] for d in client.get("/api/departments", headers=auth_headers("leader-g1")).json()] == [
        "ENV-D1"
    ]
    assert client.delete(f"/api/departments/{did}", headers=auth_headers("operator1")).status_code == 204
    assert client.get(f"/api/departments/{did}", headers=auth_headers("operator1")).status_code == 404
