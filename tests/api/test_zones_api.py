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
