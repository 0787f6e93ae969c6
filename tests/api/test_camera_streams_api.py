"""Choosing the stream a camera's worker analyses (分析码流) through the API: auto, sub or main; a bad
value is a 422 naming the field, ``sub`` without a sub-stream a 409 with the reason, and every change
is announced to the workers on the bus and logged."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session, sessionmaker

from models.bus.memory import MemoryBus
from models.bus.messages import CONFIG_CHANGES, ConfigChange
from models.db.engine import lock_rows, transaction
from models.db.tables import AccessLog, Camera

Headers = Callable[[str], dict[str, str]]
SUB = "rtsp://admin:sub-secret@127.0.0.1:8554/sub"


def camera_ids(factory: sessionmaker[Session]) -> dict[str, int]:
    with factory() as s:
        return {c.name: c.id for c in s.scalars(select(Camera))}


def announced(bus: MemoryBus) -> list[ConfigChange]:
    _, deliveries = bus.read_broadcast(CONFIG_CHANGES, after="0", block_ms=0)
    return [d.message for d in deliveries if isinstance(d.message, ConfigChange)]


def test_choose_the_analysed_stream(
    client: TestClient, auth_headers: Headers, seeded: sessionmaker[Session], memory_bus: MemoryBus
) -> None:
    cam = camera_ids(seeded)["cam-g1-a"]
    h = auth_headers("operator1")
    shown = client.get(f"/api/cameras/{cam}", headers=h).json()
    assert (shown["has_sub_stream"], shown["analysis_stream"], shown["analysed_stream"]) == (
        False,
        "auto",
        "main",
    )

    refused = client.patch(f"/api/cameras/{cam}", json={"analysis_stream": "sub"}, headers=h)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"] == "conflict" and "no sub-stream" in refused.json()["detail"]
    assert announced(memory_bus) == []

    with transaction(seeded) as s:
        s.execute(update(Camera).where(Camera.id == cam).values(sub_url=SUB))
    steps = [
        ("auto", "auto", "sub"),
        ("main", "main", "main"),
        ("sub", "sub", "sub"),
        ("auto", "auto", "sub"),
    ]
    for value, setting, analysed in steps:
        resp = client.patch(f"/api/cameras/{cam}", json={"analysis_stream": value}, headers=h)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert (body["has_sub_stream"], body["analysis_stream"], body["analysed_stream"]) == (
            True,
            setting,
            analysed,
        )
        assert "sub-secret" not in resp.text
    # the first "auto" changed nothing: three changes, three announcements, three audit entries
    assert announced(memory_bus) == [ConfigChange(kind="camera", camera_id=cam)] * 3
    with seeded() as s:
        logged = s.scalars(
            select(AccessLog)
            .where(AccessLog.action == "change", AccessLog.object_type == "camera")
            .order_by(AccessLog.id)
        ).all()
    assert [e.detail for e in logged] == [{"analysis_stream": v} for v in ("main", "sub", "auto")]


#: user, value, expected status, the field the error names
BAD = [
    ("admin1", "best", 422, "analysis_stream"),
    ("admin1", "", 422, "analysis_stream"),
    ("admin1", 1, 422, "analysis_stream"),
    ("leader-g1", "main", 403, None),  # sees the camera, may not configure it
    ("leader-g3", "main", 404, None),  # another grid's camera: as if it did not exist
]


# validation and scope: the database plays no part
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_bad_requests(client: TestClient, auth_headers: Headers, seeded: sessionmaker[Session]) -> None:
    cam = camera_ids(seeded)["cam-g1-a"]
    for user, value, status, field in BAD:
        resp = client.patch(
            f"/api/cameras/{cam}", json={"analysis_stream": value}, headers=auth_headers(user)
        )
        assert (resp.status_code, resp.json()["field"]) == (status, field), (user, value, resp.text)
        if status == 422:
            assert "'auto', 'sub' or 'main'" in resp.json()["detail"]
    with seeded() as s:
        assert s.scalar(select(Camera.analysis_stream).where(Camera.id == cam)) is None


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_sub_stream_removed_meanwhile_is_a_409(
    client: TestClient, auth_headers: Headers, seeded: sessionmaker[Session], db_url: str
) -> None:
    """An import removing the sub-stream holds the camera row; the choice of "sub" waits for it and then
    sees that there is no sub-stream any more, instead of storing a choice that cannot be served."""
    cam = camera_ids(seeded)["cam-g1-a"]
    with transaction(seeded) as s:
        s.execute(update(Camera).where(Camera.id == cam).values(sub_url=SUB))
    h = auth_headers("admin1")
    result: dict[str, int] = {}
    with seeded() as holder:
        lock_rows(holder, Camera, [cam])[cam].sub_url = None
        holder.flush()
        thread = threading.Thread(
            target=lambda: result.update(
                status=client.patch(
                    f"/api/cameras/{cam}", json={"analysis_stream": "sub"}, headers=h
                ).status_code
            )
        )
        thread.start()
        with seeded() as probe:  # wait until the request is blocked on the row lock
            deadline = time.monotonic() + 30
            waiting = 0
            while time.monotonic() < deadline and not waiting:
                waiting = (
                    probe.scalar(
                        text(
                            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
                        )
                    )
                    or 0
                )
                probe.rollback()
                time.sleep(0.05)
        assert waiting, "the request never waited for the row lock"
        assert "status" not in result
        holder.commit()
    thread.join(30)
    assert result == {"status": 409}
    with seeded() as s:
        assert s.scalar(select(Camera.analysis_stream).where(Camera.id == cam)) is None
