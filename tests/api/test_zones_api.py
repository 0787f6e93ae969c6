"""Zones through the API: anyone who may see the camera reads them; operators and admins write them,
each save a new version with its author, announced to workers on the bus; bad zones are a 422 that
names the zone and the field."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from models.bus.memory import MemoryBus
from models.bus.messages import CONFIG_CHANGES
from models.db.tables import Camera, ZoneRevision

Headers = Callable[[str], dict[str, str]]
LANE = {"name": "east lane", "kind": "fire_lane", "polygon": [[0.1, 0.5], [0.4, 0.5], [0.4, 0.9], [0.1, 0.9]], "dwell_s": 10}


@pytest.fixture
def cams(seeded) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with seeded() as s:
        return {c.name: c.id for c in s.scalars(select(Camera))}


def test_save_versions_and_announce(client: TestClient, auth_headers: Headers, cams, memory_bus: MemoryBus, seeded) -> None:
    cam = cams["cam-g1-a"]
    cursor, _ = memory_bus.read_broadcast(CONFIG_CHANGES, after=None, block_ms=10)
    assert client.get(f"/api/cameras/{cam}/zones", headers=auth_headers("leader-g1")).json()["version"] == 0
    r = client.put(f"/api/cameras/{cam}/zones", headers=auth_headers("operator1"), json={"zones": [LANE]})
    assert r.status_code == 200, r.text
    assert (r.json()["version"], r.json()["author"]) == (1, "operator1")
    r = client.put(f"/api/cameras/{cam}/zones", headers=auth_headers("admin1"), json={"zones": [{**LANE, "dwell_s": 30}]})
    assert r.json()["version"] == 2
    seen = client.get(f"/api/cameras/{cam}/zones", headers=auth_headers("leader-g1")).json()
    assert seen["version"] == 2 and seen["zones"][0]["dwell_s"] == 30 and seen["author"] == "admin1"
    _, notes = memory_bus.read_broadcast(CONFIG_CHANGES, after=cursor, block_ms=100)
    assert [(n.message.camera_id, n.message.version) for n in notes] == [(cam, 1), (cam, 2)]  # type: ignore[union-attr]
    with seeded() as s:
        assert s.scalars(select(ZoneRevision.version).where(ZoneRevision.camera_id == cam).order_by(ZoneRevision.version)).all() == [1, 2]


def test_who_may_write(client: TestClient, auth_headers: Headers, cams) -> None:
    body = {"zones": [LANE]}
    own, other = cams["cam-g1-a"], cams["cam-g3-a"]
    assert client.put(f"/api/cameras/{own}/zones", headers=auth_headers("leader-g1"), json=body).status_code == 403
    assert client.put(f"/api/cameras/{other}/zones", headers=auth_headers("leader-g1"), json=body).status_code == 404
    assert client.put(f"/api/cameras/{own}/zones", headers=auth_headers("manager-s1"), json=body).status_code == 403
    assert client.get(f"/api/cameras/{other}/zones", headers=auth_headers("leader-g1")).status_code == 404


BAD = [
    ({"zones": [{**LANE, "kind": "river"}]}, "zone 'east lane'", "kind"),
    ({"zones": [{**LANE, "polygon": [[0.1, 0.1], [0.9, 0.9], [0.9, 0.1], [0.1, 0.9]]}]}, "zone 'east lane'", "polygon"),
    ({"zones": [{**LANE, "polygon": [[0.1, 0.1], [1.5, 0.1], [0.5, 0.9]]}]}, "zone 'east lane'", "polygon"),
    ({"zones": [{**LANE, "dwell_s": -1}]}, "zone 'east lane'", "dwell_s"),
    ({"zones": [LANE, LANE]}, None, None),
    ({"zones": [{**LANE, "wat": 1}]}, "zone 'east lane'", "wat"),
]


@pytest.mark.parametrize(("doc", "where", "field"), BAD)
def test_bad_zones_are_422_naming_zone_and_field(client: TestClient, auth_headers: Headers, cams, doc, where, field) -> None:
    r = client.put(f"/api/cameras/{cams['cam-g1-a']}/zones", headers=auth_headers("operator1"), json=doc)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    if where:
        assert detail.startswith(f"{where}: field '{field}'"), detail
    assert client.get(f"/api/cameras/{cams['cam-g1-a']}/zones", headers=auth_headers("operator1")).json()["version"] == 0


def test_what_get_prints_put_reads_back(client: TestClient, auth_headers: Headers, cams) -> None:
    cam = cams["cam-g1-a"]
    url, op = f"/api/cameras/{cam}/zones", auth_headers("operator1")
    assert client.put(url, headers=op, json={"zones": [LANE]}).status_code == 200
    doc = client.get(url, headers=op).json()
    assert set(doc) >= {"camera_id", "version", "zones", "author", "saved_at"}
    doc["zones"][0]["dwell_s"] = 45  # edit what was printed, send it back as it is
    r = client.put(url, headers=op, json=doc)
    assert r.status_code == 200, r.text
    assert (r.json()["version"], r.json()["zones"][0]["dwell_s"]) == (2, 45)


def test_two_operators_editing_one_camera_do_not_overwrite_each_other(client: TestClient, auth_headers: Headers, cams) -> None:
    cam = cams["cam-g1-a"]
    url = f"/api/cameras/{cam}/zones"
    assert client.put(url, headers=auth_headers("operator1"), json={"zones": [LANE]}).status_code == 200
    mine, theirs = client.get(url, headers=auth_headers("operator1")).json(), client.get(url, headers=auth_headers("admin1")).json()
    theirs["zones"][0]["dwell_s"] = 20
    assert client.put(url, headers=auth_headers("admin1"), json=theirs).status_code == 200
    mine["zones"][0]["dwell_s"] = 99
    r = client.put(url, headers=auth_headers("operator1"), json=mine)
    assert r.status_code == 409 and "since version 1 (now version 2)" in r.json()["detail"], r.text
    assert client.get(url, headers=auth_headers("operator1")).json()["zones"][0]["dwell_s"] == 20
    other = cams["cam-g3-a"]
    r = client.put(f"/api/cameras/{other}/zones", headers=auth_headers("operator1"), json={**theirs, "version": None})
    assert r.status_code == 422 and "camera_id" in r.json()["detail"], r.text


def test_the_zone_document_is_typed_in_openapi(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    put = spec["paths"]["/api/cameras/{camera_id}/zones"]["put"]
    assert put["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ZonesDocument"}
    zone = spec["components"]["schemas"]["ZoneSpec"]["properties"]
    assert "Seconds" in zone["dwell_s"]["description"] and zone["polygon"]["description"]


def test_concurrent_saves_get_consecutive_versions(seeded, cams) -> None:  # type: ignore[no-untyped-def]
    """Two saves at the same moment (no version given): both land, as versions n+1 and n+2, never a
    duplicate-version error (the camera row is locked while the version is chosen)."""
    import threading

    from models.db.engine import transaction
    from models.grid.zones import save_zones

    cam = cams["cam-g1-a"]
    outcomes: list[object] = []

    def save(dwell: int, barrier: threading.Barrier) -> None:
        barrier.wait()
        try:
            with transaction(seeded) as s:
                outcomes.append(save_zones(s, cam, {"zones": [{**LANE, "dwell_s": dwell}]}, author=None).version)
        except Exception as err:  # the assertion below shows it
            outcomes.append(err)

    for i in range(20):
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=save, args=(d, barrier)) for d in (10 + i, 50 + i)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert sorted(outcomes) == list(range(1, 41)), outcomes  # type: ignore[type-var]
