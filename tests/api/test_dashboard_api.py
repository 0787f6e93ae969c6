"""The dashboard's reads: live and overdue tickets by grid and category, camera health and the grid map
(GeoJSON coloured by live tickets), each as far as the caller's scope reaches."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.settings import ApiSettings
from models.db.tables import Camera, GridNode, Ticket, TicketState, User, utcnow
from tests.conftest import TEST_SECRET

Headers = Callable[[str], dict[str, str]]


def seed_tickets(factory: sessionmaker[Session]) -> None:
    now = utcnow()
    with factory() as s:
        grid = {g.code: g.id for g in s.scalars(select(GridNode))}
        cam = {c.name: c.id for c in s.scalars(select(Camera))}
        leader = {
            code: s.scalars(select(User.id).where(User.username == f"leader-{code.lower()}")).one()
            for code in ("G1", "G3")
        }
        rows = [  # (grid, camera, category, state, accept_by)
            (
                "G1",
                "cam-g1-a",
                "fire_lane_blockage",
                TicketState.dispatched,
                now - timedelta(hours=1),
            ),  # overdue
            ("G1", "cam-g1-b", "road_occupation", TicketState.dispatched, now + timedelta(hours=1)),
            (
                "G1",
                "cam-g1-a",
                "fire_lane_blockage",
                TicketState.closed,
                now - timedelta(hours=1),
            ),  # not live
            ("G3", "cam-g3-a", "crowding", TicketState.accepted, None),
        ]
        for code, camera, category, state, accept_by in rows:
            s.add(
                Ticket(
                    category=category, camera_id=cam[camera], grid_id=grid[code], state=state, accept_by=accept_by,
                    opened_at=now - timedelta(minutes=5), assignee_id=leader[code],
                    accepted_at=now - timedelta(minutes=2) if state in {TicketState.accepted, TicketState.closed} else None,
                    resolved_at=now - timedelta(minutes=1) if state == TicketState.closed else None,
                )
            )  # fmt: skip
        s.execute(update(Camera).where(Camera.name == "cam-g1-b").values(status="offline"))
        s.execute(update(Camera).where(Camera.name == "cam-g1-a").values(status="online"))
        s.commit()


def test_summary_and_map_in_scope(client: TestClient, auth_headers: Headers, seeded) -> None:
    seed_tickets(seeded)
    body = client.get("/api/dashboard/summary", headers=auth_headers("admin1")).json()
    assert (body["open"], body["overdue"], body["new_today"]) == (3, 1, 4)
    cells = [(c["grid_code"], c["category"], c["open"], c["overdue"]) for c in body["by_grid_category"]]
    assert cells == [
        ("G1", "fire_lane_blockage", 1, 1),
        ("G1", "road_occupation", 1, 0),
        ("G3", "crowding", 1, 0),
    ]
    assert body["cameras"]["total"] == 4 and body["cameras"]["by_status"]["online"] == 1
    assert body["cameras"]["by_status"]["offline"] == 1
    assert "60" in body["ranking_formula"] and body["timezone"] == "Asia/Shanghai"
    mine = client.get("/api/dashboard/summary", headers=auth_headers("leader-g1")).json()
    assert (mine["open"], mine["overdue"]) == (2, 1)
    assert {c["grid_code"] for c in mine["by_grid_category"]} == {"G1"}
    assert mine["cameras"]["total"] == 2
    # the map: grids coloured by live tickets (their subtree's), cameras as points
    body = client.get("/api/dashboard/map", headers=auth_headers("admin1")).json()
    assert body["type"] == "FeatureCollection" and body["tiles_url"] is None
    grids = {f["properties"]["code"]: f for f in body["features"] if f["properties"]["layer"] == "grid"}
    assert len(grids) >= 7 and grids["G1"]["geometry"]["type"] == "Polygon"
    opened = {code: (f["properties"]["open"], f["properties"]["overdue"]) for code, f in grids.items()}
    assert (opened["G1"], opened["G2"], opened["G3"], opened["S1"], opened["D1"]) == (
        (2, 1),
        (0, 0),
        (1, 0),
        (2, 1),
        (3, 1),
    )
    cameras = {f["properties"]["name"]: f for f in body["features"] if f["properties"]["layer"] == "camera"}
    assert len(cameras) == 4 and cameras["cam-g1-a"]["properties"]["open"] == 1
    assert cameras["cam-g1-b"]["properties"]["status"] == "offline"
    mine = client.get("/api/dashboard/map", headers=auth_headers("leader-g1")).json()
    seen = {
        (f["properties"]["layer"], f["properties"].get("code") or f["properties"]["name"])
        for f in mine["features"]
    }
    assert seen == {("grid", "G1"), ("camera", "cam-g1-a"), ("camera", "cam-g1-b")}
    client.cookies.clear()  # the logins above left a browser session cookie
    assert client.get("/api/dashboard/map").status_code == 401


def test_an_intranet_base_map_is_a_server_setting_allowed_by_the_csp() -> None:
    url = "http://gis.intranet:8080/tiles/{z}/{x}/{y}.png"
    app = create_app(ApiSettings(secret_key=TEST_SECRET, map_tiles_url=url), session_factory=sessionmaker())
    with TestClient(app) as c:  # the UI's own files need no database
        csp = c.get("/").headers["Content-Security-Policy"]
    assert "img-src 'self' data: blob: http://gis.intranet:8080;" in csp
    with pytest.raises(ValidationError, match="map_tiles_url"):
        ApiSettings(secret_key=TEST_SECRET, map_tiles_url="javascript:alert(1)//{z}/{x}/{y}")
