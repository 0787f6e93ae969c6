"""The patrol and evaluation routes in the authorisation matrix (tests/security/test_matrix.py): how to
make their objects, call them, and what the written policy answers each caller.

Policy (README "Patrol and evaluation"): a point, a task or a score is seen by whoever's scope covers its
grid (others 404); points are managed by the centre anywhere and by managers in their subtree (other
roles 403); a task is checked in and reported from only by its patroller (403 for others who see it); a
video patrol is its viewer's own; callbacks are the centre's or an intake token's (403 for others, 409
when the ticket is not closed); reports are the centre's and managers' (403 for others).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from models.db.engine import transaction
from models.db.tables import CheckIn, GridNode, PatrolPoint, PatrolTask, Role, User, VideoPatrol, utcnow
from models.patrol.reports import generate
from models.patrol.settings import PatrolSettings
from tests.support import sample

OK = "2xx"
A, U, F, N = "2xx", 401, 403, 404
#: the sample's users and which of the two target grids each sees (as in test_matrix.SEES)
SEES: dict[str | None, frozenset[str]] = {
    None: frozenset(),
    "admin1": frozenset({"G1", "G3"}),
    "operator1": frozenset({"G1", "G3"}),
    "manager-d1": frozenset({"G1", "G3"}),
    "manager-s1": frozenset({"G1"}),
    "leader-g1": frozenset({"G1"}),
    "leader-g3": frozenset({"G3"}),
    "patroller-g2": frozenset(),
}
ROLE = {name: role for name, (role, _grids) in sample.USERS.items()}
CENTRE = {"admin", "operator"}


def _grid_id(world: Any, code: str) -> int:
    with world.factory() as s:
        return int(s.scalars(select(GridNode.id).where(GridNode.code == code)).one())


def fresh_point(c: Any) -> int:
    lon, lat = sample.point_in(c.target or "G1")
    with transaction(c.world.factory) as s:
        p = PatrolPoint(grid_id=_grid_id(c.world, c.target or "G1"), name=c.world.unique("point"), lon=lon, lat=lat, radius_m=50,
                        window_start="00:00", window_end="23:59")  # fmt: skip
        s.add(p)
        s.flush()
        return int(p.id)


def fresh_task(c: Any) -> int:
    """A task of a fresh patroller of the target grid, checked in with the world's evidence image."""
    point_id = fresh_point(c)
    patroller = c.world.user(c.world.fresh_user(role=Role.patroller, grids=(c.target or "G1",))).id
    now = utcnow()
    with transaction(c.world.factory) as s:
        t = PatrolTask(point_id=point_id, grid_id=_grid_id(c.world, c.target or "G1"), patroller_id=patroller,
                       day=c.world.unique("d")[:10], window_start_at=now, window_end_at=now, state="done")  # fmt: skip
        s.add(t)
        s.flush()
        p = s.get(PatrolPoint, point_id)
        assert p is not None
        s.add(
            CheckIn(
                task_id=t.id,
                user_id=patroller,
                at=now,
                lon=p.lon,
                lat=p.lat,
                distance_m=0,
                photo_key=c.world.evidence_key,
            )
        )
        return int(t.id)


def fresh_video_patrol(c: Any) -> int:
    with transaction(c.world.factory) as s:
        owner = s.scalars(select(User).where(User.username == c.owner)).one()
        v = VideoPatrol(user_id=owner.id)
        s.add(v)
        s.flush()
        return int(v.id)


def fresh_report(c: Any) -> int:
    settings = PatrolSettings()
    today = utcnow().astimezone(settings.tz).date()
    with transaction(c.world.factory) as s:
        report = generate(s, period_kind="custom", first=today, last_exclusive=today + timedelta(days=1), tz=settings.tz, settings=settings,
                          now=utcnow(), user=None, webhook_urls=[])  # fmt: skip
        return int(report.id)


PARAMS: dict[str, Callable[[Any], Any]] = {
    "point_id": fresh_point,
    "task_id": fresh_task,
    "patrol_id": fresh_video_patrol,
    "report_id": fresh_report,
}
TARGETED = frozenset({"point_id", "task_id"})


def _sees(caller: str | None, target: str | None) -> bool:
    return target is None or target in SEES[caller]


def seen(_kind: str, caller: str | None, target: str | None) -> Any:
    if caller is None:
        return U
    return OK if _sees(caller, target) else N


def manage_point(_kind: str, caller: str | None, target: str | None) -> Any:
    """Creating a point in the target grid, or changing / deleting one there."""
    if caller is None:
        return U
    role = ROLE[caller]
    if role in CENTRE:
        return OK
    if role == "manager":
        return (
            OK if _sees(caller, target) else frozenset({F, N})
        )  # out of the subtree: 403 on create, 404 on an object
    return F if _sees(caller, target) else frozenset({F, N})


def patroller_only(_kind: str, caller: str | None, target: str | None) -> Any:
    """A task's own patroller acts on it; nobody of the sample is that patroller."""
    if caller is None:
        return U
    return F if _sees(caller, target) else N


def reports(_kind: str, caller: str | None, _target: str | None) -> Any:
    if caller is None:
        return U
    return OK if ROLE[caller] in CENTRE | {"manager"} else F


def callback(_kind: str, caller: str | None, target: str | None) -> Any:
    """The centre records callbacks on closed tickets: the matrix's fresh ticket is open (409)."""
    if caller is None:
        return U
    if not _sees(caller, target):
        return N
    return 409 if ROLE[caller] in CENTRE else F


def _point_body(c: Any) -> dict[str, Any]:
    lon, lat = sample.point_in(c.target or "G1", 0.4, 0.4)
    return {"json": {"name": c.world.unique("p"), "lon": lon, "lat": lat}}


def _checkin(c: Any) -> dict[str, Any]:
    lon, lat = sample.point_in(c.target or "G1")
    return {
        "data": {"lon": str(lon), "lat": str(lat), "accuracy_m": "5"},
        "files": {"photo": ("p.jpg", b"\xff\xd8\xff\xd9", "image/jpeg")},
    }


def _drill(c: Any) -> dict[str, Any]:
    return {
        "params": {
            "level": "grid",
            "subject_id": _grid_id(c.world, c.target or "G1"),
            "component": "workload",
        }
    }


#: "METHOD /path" → keyword arguments of test_matrix.Case
CASES: dict[str, dict[str, Any]] = {
    "POST /api/patrol/points": {"request": _point_body, "targeted": True, "expect": manage_point},
    "GET /api/patrol/points/{point_id}": {"expect": seen},
    "PUT /api/patrol/points/{point_id}": {"request": _point_body, "expect": manage_point},
    "DELETE /api/patrol/points/{point_id}": {"expect": manage_point},
    "GET /api/patrol/tasks/{task_id}": {"expect": seen},
    "GET /api/patrol/tasks/{task_id}/photo": {"expect": seen},
    "POST /api/patrol/tasks/{task_id}/checkin": {"request": _checkin, "expect": patroller_only},
    "POST /api/patrol/tasks/{task_id}/cases": {
        "request": lambda c: {"json": {"category": "other", "description": "matrix"}},
        "expect": patroller_only,
    },
    "POST /api/video-patrols/{patrol_id}/heartbeat": {
        "request": lambda c: {"json": {"camera_id": c.world.camera_ids[c.camera], "seconds": 5}},
        "targeted": True,
        "expect": seen,
    },
    "POST /api/video-patrols/{patrol_id}/end": {"request": lambda c: {"json": {"ticket_ids": []}}},
    "POST /api/tickets/{ticket_id}/callbacks": {
        "request": lambda c: {"json": {"result": "satisfied", "note": "matrix"}},
        "expect": callback,
    },
    "GET /api/evaluation/drilldown": {"request": _drill, "targeted": True, "expect": seen},
    "GET /api/evaluation/reports": {"expect": reports},
    "POST /api/evaluation/reports": {"request": lambda c: {"json": {"period": "custom"}}, "expect": reports},
    "GET /api/evaluation/reports/{report_id}/xlsx": {"expect": reports},
    "GET /api/evaluation/reports/{report_id}/html": {"expect": reports},
}

# the written policy of the sensitive ticket routes (test_matrix.POLICY columns, in order)
_C409 = frozenset({A, 409})  # allowed; the ticket's state decides (the matrix's ticket is open: 409)
POLICY: dict[str, tuple[Any, ...]] = {
    "GET /api/tickets/{ticket_id}/callbacks": (U, A, A, A, N, A, N, A, N, A, A),
    # the centre or an intake token; an admin's token without the scope intake is refused
    "POST /api/tickets/{ticket_id}/callbacks": (U, _C409, _C409, F, N, F, N, F, N, F, F),
}
