"""The access policy, exhaustively over the sample tree: SQL filter and predicate agree for every user."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.db.tables import Camera, CameraGrant, GridNode, Ticket, User, utcnow
from models.identity.access import load_scope, visible_camera, visible_ticket
from tests.support import sample

#: username → camera names they may see without grants
EXPECTED = {
    "admin1": set(sample.CAMERAS),
    "operator1": set(sample.CAMERAS),
    "manager-d1": set(sample.CAMERAS),
    "manager-s1": {"cam-g1-a", "cam-g1-b", "cam-g2-a"},
    "leader-g1": {"cam-g1-a", "cam-g1-b"},
    "leader-g3": {"cam-g3-a"},
    "patroller-g2": {"cam-g2-a"},
}


def _user(s: Session, name: str) -> User:
    return s.scalars(select(User).where(User.username == name)).one()


def _visible_both_ways(s: Session, username: str, *, at=None) -> tuple[set[str], set[str]]:
    scope = load_scope(s, _user(s, username), at=at)
    by_sql = set(s.scalars(select(Camera.name).where(scope.camera_filter())))
    by_predicate = {
        c.name
        for c in s.scalars(select(Camera))
        if scope.allows_camera(camera_id=c.id, grid_path=c.grid.path if c.grid else None)
    }
    return by_sql, by_predicate


@pytest.mark.parametrize("username", sorted(EXPECTED))
def test_sql_filter_and_predicate_agree_with_the_policy(seeded: sessionmaker[Session], username: str) -> None:
    with seeded() as s:
        by_sql, by_predicate = _visible_both_ways(s, username)
    assert by_sql == by_predicate == EXPECTED[username]


def test_grant_is_valid_only_inside_its_window(seeded: sessionmaker[Session]) -> None:
    now = utcnow()
    with seeded.begin() as s:
        cam = s.scalars(select(Camera).where(Camera.name == "cam-g3-a")).one()
        s.add(
            CameraGrant(
                camera_id=cam.id,
                grantee_id=_user(s, "leader-g1").id,
                granted_by_id=_user(s, "manager-d1").id,
                starts_at=now + timedelta(minutes=10),
                ends_at=now + timedelta(hours=1),
                reason="cross-grid incident",
            )
        )
    with seeded() as s:
        for at, expected in [
            (now, EXPECTED["leader-g1"]),
            (now + timedelta(minutes=10), EXPECTED["leader-g1"] | {"cam-g3-a"}),
            (now + timedelta(minutes=59), EXPECTED["leader-g1"] | {"cam-g3-a"}),
            (now + timedelta(hours=1), EXPECTED["leader-g1"]),
        ]:
            by_sql, by_predicate = _visible_both_ways(s, "leader-g1", at=at)
            assert by_sql == by_predicate == expected, at


def test_camera_without_grid_is_for_global_roles_only(seeded: sessionmaker[Session]) -> None:
    with seeded.begin() as s:
        s.add(Camera(name="orphan", url="rtsp://127.0.0.1/o"))
    with seeded() as s:
        for username in EXPECTED:
            by_sql, by_predicate = _visible_both_ways(s, username)
            assert ("orphan" in by_sql) == ("orphan" in by_predicate) == (username in {"admin1", "operator1"})


def test_tickets_follow_grid_scope_and_grants(seeded: sessionmaker[Session]) -> None:
    with seeded.begin() as s:
        grid = {n.code: n.id for n in s.scalars(select(GridNode))}
        cams = {c.name: c.id for c in s.scalars(select(Camera))}
        s.add_all(
            [
                Ticket(category="crowding", grid_id=grid["G1"], camera_id=cams["cam-g1-a"], description="g1"),
                Ticket(category="crowding", grid_id=grid["G3"], camera_id=cams["cam-g3-a"], description="g3"),
                Ticket(category="other", grid_id=grid["G2"], source="patrol", description="g2 manual"),
            ]
        )
    with seeded() as s:
        def seen(username: str) -> set[str]:
            scope = load_scope(s, _user(s, username))
            by_sql = set(s.scalars(select(Ticket.description).where(scope.ticket_filter())))
            by_pred = {t.description for t in s.scalars(select(Ticket)) if visible_ticket(s, scope, t.id)}
            assert by_sql == by_pred
            return by_sql

        assert seen("admin1") == {"g1", "g3", "g2 manual"}
        assert seen("manager-s1") == {"g1", "g2 manual"}
        assert seen("leader-g1") == {"g1"}
        assert seen("patroller-g2") == {"g2 manual"}
        assert seen("leader-g3") == {"g3"}


def test_visible_camera_hides_existence(seeded: sessionmaker[Session]) -> None:
    with seeded() as s:
        scope = load_scope(s, _user(s, "leader-g1"))
        ids = {c.name: c.id for c in s.scalars(select(Camera))}
        assert visible_camera(s, scope, ids["cam-g1-a"]) is not None
        assert visible_camera(s, scope, ids["cam-g3-a"]) is None
        assert visible_camera(s, scope, 123456) is None
