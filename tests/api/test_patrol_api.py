"""The patrol and evaluation API as its users meet it, on SQLite and PostgreSQL: an operator marks points,
a patroller checks in with a photo (refused outside the radius with the distance), a problem becomes a
case, a patroller of G1 sees nothing of G3, the hotline's callback reopens a ticket, a video patrol is
recorded, scores drill down to their rows, and a report downloads as XLSX and a printable page."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import openpyxl
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.settings import ApiSettings
from api.tokens import issue_access_token
from models.bus.memory import MemoryBus
from models.db.engine import transaction
from models.db.tables import ApiToken, GridNode, Ticket, User, utcnow
from models.evidence.store import FileEvidenceStore
from models.identity.passwords import new_api_token
from models.patrol.settings import PatrolSettings
from models.tickets.categories import TicketSettings
from models.tickets.desk import TicketDesk
from tests.support import sample
from tests.support.patrol import add_patroller, jpeg, module_db_url, world

__all__ = ["module_db_url", "world"]

SECRET = "patrol-api-secret-key-with-at-least-32-chars"
#: open all day, so that the real clock is always inside the window
ALL_DAY = {"window_start": "00:00", "window_end": "23:59"}


@pytest.fixture(scope="module")
def client(world: sessionmaker[Session], tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    add_patroller(world, "patroller-g1", "G1")
    add_patroller(world, "patroller-g3", "G3")
    desk = TicketDesk(TicketSettings(), evidence=FileEvidenceStore(Path(tmp_path_factory.mktemp("ev"))))
    app = create_app(
        ApiSettings(secret_key=SECRET),
        session_factory=world,
        desk=desk,
        bus=MemoryBus(),
        patrol_settings=PatrolSettings(),
    )
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def as_(world: sessionmaker[Session]) -> Callable[[str], dict[str, str]]:
    def headers(username: str) -> dict[str, str]:
        with world() as s:
            u = s.scalars(select(User).where(User.username == username)).one()
            return {"Authorization": f"Bearer {issue_access_token(u, secret=SECRET, ttl_s=3600)}"}

    return headers


def mark(
    client: TestClient,
    as_: Callable[[str], dict[str, str]],
    grid: str,
    *,
    by: str = "operator1",
    **extra: object,
) -> dict:
    lon, lat = sample.point_in(grid)
    body = {
        "name": f"{grid}-菜场",
        "lon": lon,
        "lat": lat,
        "radius_m": 60,
        "checklist": "占道经营、消防通道",
        **ALL_DAY,
        **extra,
    }
    r = client.post("/api/patrol/points", json=body, headers=as_(by))
    assert r.status_code == 201, r.text
    return r.json()


def today(client: TestClient, headers: dict[str, str], **pos: float) -> list[dict]:
    r = client.get("/api/patrol/tasks/today", params=pos, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_a_patroller_checks_in_with_a_photo_and_reports_a_case(
    client: TestClient, as_: Callable[[str], dict[str, str]]
) -> None:
    point = mark(client, as_, "G2")
    assert (point["grid_code"], point["radius_m"], point["may_edit"]) == ("G2", 60, True)
    for who, grid, status in [
        ("manager-s1", "G3", 403),
        ("leader-g1", "G1", 403),
        ("patroller-g2", "G2", 403),
    ]:
        lon, lat = sample.point_in(grid)
        r = client.post("/api/patrol/points", json={"name": "x", "lon": lon, "lat": lat}, headers=as_(who))
        assert r.status_code == status, (who, r.text)
    mark(client, as_, "G1", by="manager-s1")  # a manager inside their street

    me = as_("patroller-g2")
    far_lon, far_lat = point["lon"], point["lat"] + 0.0018  # 200 m north
    tasks = [t for t in today(client, me, lon=far_lon, lat=far_lat) if t["point"]["id"] == point["id"]]
    assert len(tasks) == 1 and tasks[0]["state"] == "pending"
    task = tasks[0]
    assert task["distance_m"] == pytest.approx(200.2, abs=0.5) and task["window"] == "00:00–23:59"

    url = f"/api/patrol/tasks/{task['id']}/checkin"
    photo = {"photo": ("scene.jpg", jpeg(), "image/jpeg")}
    r = client.post(url, data={"lon": far_lon, "lat": far_lat, "accuracy_m": 8}, files=photo, headers=me)
    assert r.status_code == 422 and "距离巡查点 200 米，允许 60 米" in r.json()["detail"], r.text
    r = client.post(
        url,
        data={"lon": point["lon"], "lat": point["lat"] + 0.0002, "accuracy_m": 8},
        files=photo,
        headers=as_("leader-g1"),
    )
    assert r.status_code == 404  # G2 is not leader-g1's grid
    r = client.post(
        url,
        data={"lon": point["lon"], "lat": point["lat"] + 0.0002, "accuracy_m": 8.5},
        files=photo,
        headers=me,
    )
    assert r.status_code == 200, r.text
    done = r.json()
    assert (
        done["state"] == "done"
        and done["checkin"]["accuracy_m"] == 8.5
        and round(done["checkin"]["distance_m"]) == 22
    )
    img = client.get(done["checkin"]["photo_url"], headers=me)
    assert img.status_code == 200 and img.content[:2] == b"\xff\xd8"
    r = client.post(url, data={"lon": point["lon"], "lat": point["lat"]}, files=photo, headers=me)
    assert r.status_code == 409 and "已签到" in r.json()["detail"]

    r = client.post(
        f"/api/patrol/tasks/{task['id']}/cases",
        json={"category": "road_occupation", "description": "门口占道摆摊"},
        headers=me,
    )
    assert r.status_code == 201, r.text
    ticket_id = r.json()["ticket_id"]
    t = client.get(f"/api/tickets/{ticket_id}", headers=me).json()
    assert (t["source"], t["grid_code"]) == ("patrol", "G2") and "门口占道摆摊" in t["description"]
    assert client.get(f"/api/patrol/tasks/{task['id']}", headers=as_("manager-s1")).json()["ticket_ids"] == [
        ticket_id
    ]


def test_a_patroller_of_g1_sees_nothing_of_g3(
    client: TestClient, as_: Callable[[str], dict[str, str]], world: sessionmaker[Session]
) -> None:
    g3 = mark(client, as_, "G3", name="南浦-消防通道")
    g3_task = today(client, as_("patroller-g3"))[0]
    assert g3_task["point"]["id"] == g3["id"]
    me = as_("patroller-g1")
    assert today(client, me) and all(t["point"]["grid_code"] == "G1" for t in today(client, me))
    points = client.get("/api/patrol/points", headers=me).json()
    assert points and {p["grid_code"] for p in points} == {"G1"}
    listed = client.get("/api/patrol/tasks", headers=me).json()["items"]
    assert listed and {t["point"]["grid_code"] for t in listed} == {"G1"}
    with world() as s:
        g3_id = s.scalars(select(GridNode.id).where(GridNode.code == "G3")).one()
    for method, url, kwargs in [
        ("GET", f"/api/patrol/points/{g3['id']}", {}),
        (
            "PUT",
            f"/api/patrol/points/{g3['id']}",
            {"json": {"name": "x", "lon": g3["lon"], "lat": g3["lat"]}},
        ),
        ("DELETE", f"/api/patrol/points/{g3['id']}", {}),
        ("GET", f"/api/patrol/tasks/{g3_task['id']}", {}),
        ("GET", f"/api/patrol/tasks/{g3_task['id']}/photo", {}),
        (
            "POST",
            f"/api/patrol/tasks/{g3_task['id']}/checkin",
            {"data": {"lon": g3["lon"], "lat": g3["lat"]}},
        ),
        (
            "POST",
            f"/api/patrol/tasks/{g3_task['id']}/cases",
            {"json": {"category": "other", "description": "x"}},
        ),
        ("GET", "/api/evaluation/drilldown", {"params": {"subject_id": g3_id, "component": "checkins"}}),
    ]:
        r = client.request(method, url, headers=me, **kwargs)
        assert r.status_code == 404, (method, url, r.text)
        assert "G3" not in r.text and "南浦" not in r.text
    grids = client.get("/api/evaluation/scores", params={"level": "grid"}, headers=me).json()["items"]
    assert [g["code"] for g in grids] == ["G1"]
    people = client.get("/api/evaluation/scores", params={"level": "person"}, headers=me).json()["items"]
    assert [p["code"] for p in people] == ["patroller-g1"]
    assert client.get("/api/evaluation/reports", headers=me).status_code == 403


def closed_hotline_ticket(world: sessionmaker[Session]) -> int:
    lon, lat = sample.point_in("G1")
    at = utcnow() - timedelta(hours=5)
    with transaction(world) as s:
        grid = s.scalars(select(GridNode).where(GridNode.code == "G1")).one()
        t = Ticket(category="other", source="hotline_12345", grid_id=grid.id, lon=lon, lat=lat, state="closed", opened_at=at,
                   accept_by=at + timedelta(hours=1), resolve_by=at + timedelta(hours=4), accepted_at=at, resolved_at=at,
                   verified_at=at, closed_at=at + timedelta(hours=1))  # fmt: skip
        s.add(t)
        s.flush()
        return t.id


def token(world: sessionmaker[Session], owner: str, scopes: list[str]) -> dict[str, str]:
    raw, hashed = new_api_token()
    with transaction(world) as s:
        uid = s.scalars(select(User.id).where(User.username == owner)).one()
        s.add(ApiToken(user_id=uid, name=f"hotline-{len(scopes)}", token_hash=hashed, scopes=scopes))
    return {"Authorization": f"Bearer {raw}"}


def test_the_hotline_s_dissatisfied_callback_reopens_the_ticket(
    client: TestClient, as_: Callable[[str], dict[str, str]], world: sessionmaker[Session]
) -> None:
    tid = closed_hotline_ticket(world)
    url = f"/api/tickets/{tid}/callbacks"
    body = {"result": "dissatisfied", "note": "摊位又回来了", "reopen": True}
    assert client.post(url, json=body, headers=as_("leader-g1")).status_code == 403
    assert (
        client.post(url, json=body, headers=token(world, "operator1", ["api:read", "api:write"])).status_code
        == 403
    )
    hotline = token(world, "operator1", ["api:read", "api:write", "intake"])
    r = client.post(url, json=body, headers=hotline)
    assert r.status_code == 201, r.text
    assert (r.json()["channel"], r.json()["reopened"]) == ("hotline", True)
    ticket = client.get(f"/api/tickets/{tid}", headers=as_("operator1")).json()
    assert ticket["state"] in {"reopened", "dispatched"}
    assert any(h["action"] == "reopen" and "回访不满意" in h["note"] for h in ticket["history"])
    r = client.post(url, json={"result": "satisfied"}, headers=as_("operator1"))
    assert r.status_code == 409 and "已结案" in r.json()["detail"]
    listed = client.get(url, headers=as_("leader-g1")).json()
    assert [c["result"] for c in listed] == ["dissatisfied"]


def test_a_video_patrol_is_recorded_and_counts_for_coverage(
    client: TestClient, as_: Callable[[str], dict[str, str]], world: sessionmaker[Session]
) -> None:
    me = as_("leader-g1")
    cams = {c["name"]: c["id"] for c in client.get("/api/cameras", headers=as_("admin1")).json()["items"]}
    tour = client.post("/api/video-patrols", headers=me).json()
    beat = f"/api/video-patrols/{tour['id']}/heartbeat"
    for _ in range(2):
        r = client.post(beat, json={"camera_id": cams["cam-g1-a"], "seconds": 30}, headers=me)
        assert r.status_code == 200, r.text
    assert r.json()["seconds"] == 60
    assert (
        client.post(beat, json={"camera_id": cams["cam-g3-a"], "seconds": 30}, headers=me).status_code == 404
    )
    assert (
        client.post(
            beat, json={"camera_id": cams["cam-g1-a"], "seconds": 30}, headers=as_("leader-g3")
        ).status_code
        == 404
    )
    ended = client.post(f"/api/video-patrols/{tour['id']}/end", json={"ticket_ids": []}, headers=me).json()
    assert (ended["cameras"], ended["seconds"]) == (1, 60.0) and ended["ended_at"]
    assert (
        client.post(beat, json={"camera_id": cams["cam-g1-a"], "seconds": 1}, headers=me).status_code == 409
    )
    people = client.get("/api/evaluation/scores", params={"level": "person"}, headers=me).json()["items"]
    (mine,) = [p for p in people if p["code"] == "leader-g1"]
    video = next(c for c in mine["components"] if c["name"] == "video_coverage")
    assert video["numerator"] == 1 and video["rows"]["cameras"] == sorted(
        [cams["cam-g1-a"], cams["cam-g1-b"]]
    )


def test_scores_drill_down_and_reports_download(
    client: TestClient, as_: Callable[[str], dict[str, str]], world: sessionmaker[Session]
) -> None:
    mgr = as_("manager-s1")
    page = client.get("/api/evaluation/scores", params={"level": "grid"}, headers=mgr).json()
    assert sorted(i["code"] for i in page["items"]) == ["G1", "G2"] and "总分" in page["formula"]
    g2 = next(i for i in page["items"] if i["code"] == "G2")
    checkins = next(c for c in g2["components"] if c["name"] == "checkins")
    assert checkins["numerator"] >= 1 and checkins["rows"]["done"]
    r = client.get(
        "/api/evaluation/drilldown",
        params={"subject_id": g2["subject_id"], "component": "checkins", "rows": "done"},
        headers=mgr,
    )
    assert r.status_code == 200, r.text
    assert {row["task_id"] for row in r.json()["items"]} == set(checkins["rows"]["done"])

    r = client.post("/api/evaluation/reports", json={"period": "weekly"}, headers=as_("operator1"))
    assert r.status_code == 201, r.text
    report = r.json()
    assert report["title"].startswith("网格化管理考核排名通报") and not report["scheduled"]
    assert report["id"] in [x["id"] for x in client.get("/api/evaluation/reports", headers=mgr).json()]
    xlsx = client.get(report["xlsx_url"], headers=mgr)
    assert xlsx.status_code == 200 and "attachment" in xlsx.headers["content-disposition"]
    book = openpyxl.load_workbook(io.BytesIO(xlsx.content))
    assert book.sheetnames[:3] == ["网格排名", "街道排名", "人员排名"]
    assert {r[1] for r in book["网格排名"].iter_rows(min_row=3, values_only=True)} == {"G1", "G2", "G3"}
    page_html = client.get(report["html_url"], headers=mgr)
    assert page_html.headers["content-type"].startswith("text/html") and "考核排名" in page_html.text
    assert client.get(report["xlsx_url"], headers=as_("leader-g1")).status_code == 403
