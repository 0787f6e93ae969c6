"""Ticket routes: grid leaders see their grid's tickets only, move them through the loop with reasons
for every refusal, report cases by location, fetch evidence through the same check, and get stats."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.bus.memory import MemoryBus
from models.bus.messages import TICKET_NOTICES, TicketNotice
from models.db.engine import transaction
from models.db.tables import Camera
from models.tickets.desk import TicketDesk
from models.tickets.ingest import ingest_events
from tests.support.events import Episode
from tests.support.sample import point_in

Headers = Callable[[str], dict[str, str]]
# a real (1x1) JPEG
JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQEASABIAAD/2wBDAP//////////////////////////////////////////////////////////////////"
    "////////////////////wgALCAABAAEBAREA/8QAFBABAAAAAAAAAAAAAAAAAAAAAP/aAAgBAQABPxA="
)


def detect(seeded: sessionmaker[Session], desk: TicketDesk, camera: str, *, evidence: bytes | None = JPEG) -> int:
    with seeded() as s:
        cam_id = s.scalars(select(Camera.id).where(Camera.name == camera)).one()
    key = desk.evidence.put(evidence, prefix=f"cam-{cam_id}") if evidence else None
    ep = Episode(cam_id, start=datetime.now(UTC))
    with transaction(seeded) as s:
        ingest_events(s, desk, [ep.event("started", evidence_key=key)])
    return cam_id


def ids(client: TestClient, headers: dict[str, str], **params: object) -> set[int]:
    r = client.get("/api/tickets", headers=headers, params=params)
    assert r.status_code == 200, r.text
    return {t["id"] for t in r.json()["items"]}


def test_leaders_see_their_own_grids_tickets(client: TestClient, auth_headers: Headers, seeded, desk) -> None:
    detect(seeded, desk, "cam-g1-a")
    detect(seeded, desk, "cam-g3-a")
    all_tickets = client.get("/api/tickets", headers=auth_headers("admin1")).json()["items"]
    by_grid = {t["grid_code"]: t for t in all_tickets}
    assert set(by_grid) == {"G1", "G3"}
    g1, g3 = by_grid["G1"], by_grid["G3"]
    assert (g1["category"], g1["state"], g1["assignee"], g1["case_code"]) == (
        "fire_lane_blockage",
        "dispatched",
        "leader-g1",
        "消防通道堵塞",
    )
    assert ids(client, auth_headers("leader-g1")) == {g1["id"]}
    assert ids(client, auth_headers("leader-g3")) == {g3["id"]}
    assert ids(client, auth_headers("manager-s1")) == {g1["id"]}
    assert ids(client, auth_headers("manager-d1")) == {g1["id"], g3["id"]}
    assert client.get(f"/api/tickets/{g3['id']}", headers=auth_headers("leader-g1")).status_code == 404
    assert client.get("/api/tickets/999999", headers=auth_headers("leader-g1")).status_code == 404
    # filters
    assert ids(client, auth_headers("admin1"), grid="S2") == {g3["id"]}
    assert ids(client, auth_headers("admin1"), state="accepted") == set()
    assert ids(client, auth_headers("admin1"), overdue=False) == {g1["id"], g3["id"]}
    assert ids(client, auth_headers("admin1"), camera_id=g1["camera_id"]) == {g1["id"]}


def test_evidence_is_served_through_the_ticket_check(client: TestClient, auth_headers: Headers, seeded, desk) -> None:
    detect(seeded, desk, "cam-g1-a")
    t = client.get("/api/tickets", headers=auth_headers("leader-g1")).json()["items"][0]
    url = t["evidence_url"]
    assert url and url.startswith(f"/api/tickets/{t['id']}/evidence/")
    r = client.get(url, headers=auth_headers("leader-g1"))
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.content == JPEG
    assert client.get(url, headers=auth_headers("leader-g3")).status_code == 404
    # a key of another ticket, or a path out of the store, is not found through this ticket
    other_key = desk.evidence.put(JPEG, prefix="other")
    for bad in [other_key, "../../etc/passwd", "..%2F..%2Fetc%2Fpasswd"]:
        r = client.get(f"/api/tickets/{t['id']}/evidence/{bad}", headers=auth_headers("leader-g1"))
        assert r.status_code == 404, bad


def post_action(client: TestClient, headers: dict[str, str], ticket_id: int, action: str, note: str = "") -> tuple[int, dict]:
    r = client.post(f"/api/tickets/{ticket_id}/transitions", headers=headers, json={"action": action, "note": note})
    return r.status_code, r.json()


def test_transitions_with_reasons(client: TestClient, auth_headers: Headers, seeded, desk) -> None:
    detect(seeded, desk, "cam-g1-a")
    tid = client.get("/api/tickets", headers=auth_headers("admin1")).json()["items"][0]["id"]
    cases = [
        ("leader-g3", "accept", 404, "ticket not found"),  # cannot see it: 404, not 403
        ("patroller-g2", "accept", 404, "ticket not found"),
        ("manager-s1", "verify", 409, "cannot verify a ticket that is dispatched"),
        ("leader-g1", "resolve", 409, "cannot resolve a ticket that is dispatched"),
        ("leader-g1", "close", 403, "a grid_leader may not close a ticket"),
        ("operator1", "dismiss", 422, "field 'note': a note is required to dismiss a ticket"),
    ]
    for user, action, status, reason in cases:
        code, body = post_action(client, auth_headers(user), tid, action)
        assert (code, body["detail"]) == (status, reason), (user, action)
    code, body = post_action(client, auth_headers("leader-g1"), tid, "fly")
    assert code == 422 and body["error"] == "invalid"
    for user, action, state in [
        ("leader-g1", "accept", "accepted"),
        ("leader-g1", "resolve", "resolved"),
        ("manager-s1", "verify", "verified"),
        ("operator1", "close", "closed"),
    ]:
        code, body = post_action(client, auth_headers(user), tid, action, note=f"{action} by {user}")
        assert code == 200, body
        assert body["state"] == state
    detail = client.get(f"/api/tickets/{tid}", headers=auth_headers("leader-g1")).json()
    assert [(h["action"], h["actor"]) for h in detail["history"]] == [
        ("open", None),
        ("dispatch", None),
        ("accept", "leader-g1"),
        ("resolve", "leader-g1"),
        ("verify", "manager-s1"),
        ("close", "operator1"),
    ]
    assert detail["occurrences"][0]["kind"] == "started"


def test_patroller_reports_a_case_with_a_photo(client: TestClient, auth_headers: Headers) -> None:
    lon, lat = point_in("G2")
    body = {
        "category": "road_occupation",
        "lon": lon,
        "lat": lat,
        "description": "流动摊贩占道",
        "photos": ["data:image/jpeg;base64," + base64.b64encode(JPEG).decode()],
    }
    r = client.post("/api/tickets", headers=auth_headers("patroller-g2"), json=body)
    assert r.status_code == 201, r.text
    t = r.json()
    assert (t["grid_code"], t["state"], t["camera_id"], t["source"], t["case_code"]) == (
        "G2",
        "open",  # G2 has no grid leader: it waits for the centre (and escalates to the street in time)
        None,
        "patrol",
        "街面秩序/占道经营",
    )
    photo = client.get(t["evidence_url"], headers=auth_headers("manager-s1"))
    assert photo.status_code == 200 and photo.content == JPEG
    assert client.get(t["evidence_url"], headers=auth_headers("leader-g1")).status_code == 404


def test_the_desk_filters_by_source(client: TestClient, auth_headers: Headers, seeded, desk) -> None:
    detect(seeded, desk, "cam-g1-a")
    lon, lat = point_in("G2")
    body = {"category": "road_occupation", "lon": lon, "lat": lat, "description": "流动摊贩占道"}
    assert client.post("/api/tickets", headers=auth_headers("patroller-g2"), json=body).status_code == 201
    admin = auth_headers("admin1")
    every = client.get("/api/tickets", headers=admin).json()["items"]
    assert sorted(t["source"] for t in every) == ["camera", "patrol"]
    by_source = {t["source"]: t["id"] for t in every}
    assert ids(client, admin, source="patrol") == {by_source["patrol"]}
    assert ids(client, admin, source=["camera", "patrol"]) == set(by_source.values())
    assert ids(client, admin, source="hotline_12345") == set()
    r = client.get("/api/tickets", headers=admin, params={"source": "fax"})
    assert r.status_code == 422 and r.json()["field"] == "source" and "'fax'" in r.json()["detail"]


@pytest.mark.parametrize(
    ("user", "change", "status", "reason"),
    [
        ("patroller-g2", {"lon": 100.0, "lat": 30.0}, 422, "field 'lon': the location lies outside every grid"),
        ("patroller-g2", {"grid": "G3"}, 403, "you may report cases only inside your own grids"),
        ("patroller-g2", {"photos": ["not base64!"]}, 422, "field 'photos': photo 0 is not valid base64"),
        ("patroller-g2", {"photos": [base64.b64encode(b"GIF89a...").decode()]}, 422, "field 'photos': must be a JPEG or PNG image"),
        ("operator1", {"category": "ufo"}, 422, None),
        ("operator1", {"lat": 200}, 422, None),
        ("operator1", {"description": ""}, 422, None),
        ("operator1", {"extra": 1}, 422, None),
    ],
)
def test_bad_reports(client: TestClient, auth_headers: Headers, user: str, change: dict, status: int, reason: str | None) -> None:
    change = dict(change)  # the parameter table is shared between the SQLite and PostgreSQL runs
    lon, lat = point_in("G3" if change.pop("grid", None) else "G2")
    body = {"category": "other", "lon": lon, "lat": lat, "description": "x", **change}
    r = client.post("/api/tickets", headers=auth_headers(user), json=body)
    assert r.status_code == status, r.text
    if reason:
        assert r.json()["detail"] == reason


def test_stats_rank_leaders(client: TestClient, auth_headers: Headers, seeded, desk) -> None:
    detect(seeded, desk, "cam-g1-a")
    detect(seeded, desk, "cam-g3-a")
    tickets = client.get("/api/tickets", headers=auth_headers("admin1")).json()["items"]
    g1 = next(t for t in tickets if t["grid_code"] == "G1")
    post_action(client, auth_headers("leader-g1"), g1["id"], "accept")
    post_action(client, auth_headers("leader-g1"), g1["id"], "resolve", "done")
    stats = client.get("/api/stats", headers=auth_headers("admin1")).json()
    assert stats["total"] == 2
    assert stats["by_state"] == {"resolved": 1, "dispatched": 1}
    assert [(g["grid_code"], g["total"], g["live"]) for g in stats["grids"]] == [("G1", 1, 1), ("G3", 1, 1)]
    leaders = stats["leaders"]
    assert [(r["rank"], r["username"], r["resolved"]) for r in leaders] == [(1, "leader-g1", 1), (2, "leader-g3", 0)]
    assert leaders[0]["score"] == 100.0 and leaders[1]["score"] == 60.0
    assert leaders[0]["median_resolve_s"] is not None
    mine = client.get("/api/stats", headers=auth_headers("leader-g3")).json()
    assert mine["total"] == 1 and [g["grid_code"] for g in mine["grids"]] == ["G3"]


def test_live_feed_sends_only_visible_tickets(client: TestClient, auth_headers: Headers, memory_bus: MemoryBus, seeded) -> None:
    from sqlalchemy import select as sa_select

    from models.db.tables import GridNode

    with seeded() as s:
        paths = {n.code: (n.id, n.path) for n in s.scalars(sa_select(GridNode))}

    def notice(ticket_id: int, grid: str) -> TicketNotice:
        gid, path = paths[grid]
        return TicketNotice(
            ticket_id=ticket_id, event="opened", state="open", category="crowding", grid_id=gid, grid_path=path, camera_id=None, at=datetime.now(UTC)
        )

    received: list[dict] = []
    with client.stream("GET", "/api/tickets/stream", headers=auth_headers("leader-g1")) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = r.iter_lines()
        assert next(lines).startswith("retry:")
        publisher = threading.Timer(0.5, lambda: memory_bus.publish(TICKET_NOTICES, [notice(7, "G3"), notice(8, "G1")]))
        publisher.start()
        for line in lines:
            if line.startswith("data:"):
                received.append(json.loads(line[5:]))
                break
    assert [m["ticket_id"] for m in received] == [8]
    assert "grid_path" not in received[0]


def test_a_rejected_ticket_is_rerouted_through_the_api(client: TestClient, auth_headers: Headers, seeded, desk) -> None:
    detect(seeded, desk, "cam-g1-a")
    (ticket,) = client.get("/api/tickets", headers=auth_headers("admin1")).json()["items"]
    assert ticket["camera_name"] == "cam-g1-a" and ticket["lon"] is not None
    url = f"/api/tickets/{ticket['id']}/transitions"
    r = client.post(url, json={"action": "reject", "note": "该点位属于南浦第一网格"}, headers=auth_headers("leader-g1"))
    assert r.status_code == 200, r.text
    r = client.post(url, json={"action": "dispatch", "grid": "G2"}, headers=auth_headers("manager-d1"))
    assert r.status_code == 422 and "grid G2 has no grid leader" in r.text and "'grid'" in r.text
    r = client.post(url, json={"action": "dispatch", "grid": "G3"}, headers=auth_headers("manager-d1"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["state"], body["grid_code"], body["assignee"]) == ("dispatched", "G3", "leader-g3")
    assert body["history"][-1]["note"].startswith("派遣 → 南浦第一网格(G3) · leader-g3")
    assert client.get(f"/api/tickets/{ticket['id']}", headers=auth_headers("leader-g1")).status_code == 404
    assert client.get(f"/api/tickets/{ticket['id']}", headers=auth_headers("leader-g3")).status_code == 200
