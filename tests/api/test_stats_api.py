"""``GET /api/stats``: the SQL aggregation answers what the Python computation over the same tickets
gives, filtered by the caller's scope; a bad window is a 422 that names the field."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, true
from sqlalchemy.orm import Session, sessionmaker

from models.db.tables import GridNode, Ticket, utcnow
from tests.models.test_stats import NOW, SINCE, python_reference, seed_tickets

Headers = Callable[[str], dict[str, str]]
WINDOW = {"since": SINCE.isoformat(), "until": NOW.isoformat()}


def as_json(evaluation) -> dict:  # type: ignore[no-untyped-def]
    return {
        "total": evaluation.total,
        "by_state": evaluation.by_state,
        "by_category": evaluation.by_category,
        "grids": [dataclasses.asdict(g) for g in evaluation.grids],
        "leaders": [dataclasses.asdict(r) for r in evaluation.leaders],
    }


def test_stats_equal_the_python_computation(client: TestClient, auth_headers: Headers, seeded: sessionmaker[Session]) -> None:
    seed_tickets(seeded, n=120, seed=7)
    assert NOW < utcnow() - timedelta(days=1)  # every deadline has passed for the route's clock too
    got = client.get("/api/stats", params=WINDOW, headers=auth_headers("admin1"))
    assert got.status_code == 200, got.text
    body = got.json()
    expected = as_json(python_reference(seeded, true(), since=SINCE, until=NOW))
    assert expected["total"] > 80 and len(expected["grids"]) == 3 and len(expected["leaders"]) == 3
    assert {k: body[k] for k in expected} == expected
    # a grid leader gets the same computation over the tickets of their grid only
    with seeded() as s:
        g1 = s.scalars(select(GridNode.id).where(GridNode.code == "G1")).one()
    mine = client.get("/api/stats", params=WINDOW, headers=auth_headers("leader-g1")).json()
    expected_g1 = as_json(python_reference(seeded, Ticket.grid_id == g1, since=SINCE, until=NOW))
    assert expected_g1["total"] > 10 and [g["grid_code"] for g in expected_g1["grids"]] == ["G1"]
    assert {k: mine[k] for k in expected_g1} == expected_g1


@pytest.mark.parametrize(
    ("params", "status", "detail"),
    [
        ({}, 200, None),
        ({"since": "2026-01-01T00:00:00Z", "until": "2027-01-02T00:00:00Z"}, 200, None),  # 366 days
        ({"since": "2026-01-01T00:00:00Z", "until": "2027-01-02T00:00:01Z"}, 422, "field 'since': the window may span at most 366 days"),
        ({"since": "2026-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, 422, "field 'until': must be later than 'since'"),
        ({"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, 422, "field 'until': must be later than 'since'"),
        ({"since": "2000-01-01T00:00:00Z"}, 422, "field 'since': the window may span at most 366 days"),
        ({"since": "2026-01-01T00:00:00"}, 422, "field 'since': must carry a time zone (e.g. 2026-01-01T00:00:00Z)"),
        ({"until": "2026-01-01T00:00:00"}, 422, "field 'until': must carry a time zone (e.g. 2026-01-01T00:00:00Z)"),
        ({"since": "yesterday"}, 422, None),
    ],
)
def test_bad_windows(client: TestClient, auth_headers: Headers, params: dict, status: int, detail: str | None) -> None:
    r = client.get("/api/stats", params=params, headers=auth_headers("admin1"))
    assert r.status_code == status, r.text
    if detail:
        assert r.json()["detail"] == detail
