"""The linkage routes and the ``department`` role in the authorisation matrix (tests/security/test_matrix.py).

Policy (README "Linkage command"): departments are read by everyone logged in and managed by the centre
(members by admins); the triage desk and bringing a department into a ticket are the centre's (403 for
others who see the ticket, 404 for those who do not); a linkage request is made by a ticket's handlers
(admin, manager, grid leader in scope; 403 for other roles who see it); a part is acted on only by its
department's users (404 for anyone else); a police clue is seen by its reporter and the police station of
the place only (404 for everyone else, the centre included), and handled by the station.

A department user with no part sees nothing of the grid: on every other route they are answered like a
patroller of another grid (the ``department`` column of the written policy, and ``dept-matrix`` among the
matrix's callers). The user is added to the matrix's world with a police station covering D1.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.db.engine import transaction
from models.db.tables import (
    Department,
    GridNode,
    LinkageRequest,
    PoliceClue,
    Role,
    Ticket,
    TicketPart,
    User,
    utcnow,
)
from models.org.departments import DepartmentSpec, add_department_user, create_department
from tests.security import world as world_module
from tests.support import sample

A, U, F, N = "2xx", 401, 403, 404
DEPT_USER = "dept-matrix"
STATION = "MATRIX-PS"
OTHER = "MATRIX-FIRE"
#: the target grid → who reported the clue there
CLUE_REPORTER = {"G1": "leader-g1", "G3": "leader-g3"}
_last_code: list[str] = []


def _seed_world(
    original: Callable[[sessionmaker[Session], Path], dict[str, int]],
) -> Callable[..., dict[str, int]]:
    def seed(factory: sessionmaker[Session], directory: Path) -> dict[str, int]:
        out = original(factory, directory)
        with transaction(factory) as s:
            dept = create_department(
                s, DepartmentSpec(code=STATION, name="矩阵派出所", kind="police", grids=["D1"])
            )
            add_department_user(s, dept=dept, username=DEPT_USER, password=sample.PASSWORD)
            # parts the matrix adds go to a department without callers: they would lend cameras to its users
            create_department(
                s, DepartmentSpec(code=OTHER, name="矩阵消防站", kind="fire_rescue", grids=["D1"])
            )
        return out

    return seed


def _uid(c: Any, name: str) -> int:
    return int(c.world.user(name).id)


def _station_id(c: Any) -> int:
    with c.world.factory() as s:
        return int(s.scalars(select(Department.id).where(Department.code == STATION)).one())


def fresh_department(c: Any) -> int:
    code = c.world.unique("MD")
    _last_code.append(code)
    with transaction(c.world.factory) as s:
        return create_department(s, DepartmentSpec(code=code, name=code, kind="other", grids=["G2"])).id


def fresh_part(c: Any) -> int:
    """A part of the caller-facing station on a ticket of the target grid without a camera (no loan)."""
    station = _station_id(c)
    now = utcnow()
    with transaction(c.world.factory) as s:
        grid = s.scalars(select(GridNode.id).where(GridNode.code == (c.target or "G1"))).one()
        t = Ticket(category="other", grid_id=grid, description="matrix part")
        s.add(t)
        s.flush()
        ticket_id = t.id
        p = TicketPart(
            ticket_id=ticket_id,
            department_id=station,
            state="dispatched",
            accept_by=now,
            resolve_by=now,
        )
        s.add(p)
        s.flush()
        return int(p.id)


def fresh_request(c: Any) -> int:
    ticket_id = c.world.fresh_ticket(c.camera)
    with transaction(c.world.factory) as s:
        r = LinkageRequest(ticket_id=ticket_id, kind="police", requested_by_id=_uid(c, "leader-g1"))
        s.add(r)
        s.flush()
        return int(r.id)


def fresh_clue(c: Any) -> int:
    target = c.target or "G1"
    lon, lat = sample.point_in(target)
    reporter, station = _uid(c, CLUE_REPORTER[target]), _station_id(c)
    with transaction(c.world.factory) as s:
        grid = s.scalars(select(GridNode.id).where(GridNode.code == target)).one()
        clue = PoliceClue(reporter_id=reporter, grid_id=grid, department_id=station, lon=lon, lat=lat,
                          description="matrix")  # fmt: skip
        s.add(clue)
        s.flush()
        return int(clue.id)


PARAMS: dict[str, Callable[[Any], Any]] = {
    "department_id": fresh_department,
    "part_id": fresh_part,
    "request_id": fresh_request,
    "clue_id": fresh_clue,
}
TARGETED = frozenset({"part_id", "clue_id"})


def _role(ns: dict[str, Any], caller: str) -> str:
    return str(ns["ROLE"][caller])


def _sees(ns: dict[str, Any], caller: str, target: str | None) -> bool:
    return target is None or target in ns["SEES"][caller]


def _cases(ns: dict[str, Any]) -> dict[str, dict[str, Any]]:
    def linkage(_kind: str, caller: str | None, target: str | None) -> Any:
        if caller is None:
            return U
        if not _sees(ns, caller, target):
            return N
        return A if _role(ns, caller) in {"admin", "manager", "grid_leader"} else F

    def department_only(_kind: str, caller: str | None, target: str | None) -> Any:
        return U if caller is None else (A if caller == DEPT_USER else N)

    def clue_reader(_kind: str, caller: str | None, target: str | None) -> Any:
        if caller is None:
            return U
        return A if caller in {DEPT_USER, CLUE_REPORTER[target or "G1"]} else N

    def clue_handler(_kind: str, caller: str | None, target: str | None) -> Any:
        if caller is None:
            return U
        if caller == DEPT_USER:
            return A
        return F if caller == CLUE_REPORTER[target or "G1"] else N

    def clue_reporter(_kind: str, caller: str | None, target: str | None) -> Any:
        if caller is None:
            return U
        if _role(ns, caller) == "department":
            return F
        return A if "G1" in ns["SEES"][caller] else F

    def dept_body(c: Any) -> dict[str, Any]:
        return {"json": {"code": c.world.unique("MD"), "name": "部门", "kind": "other", "grids": ["G1"]}}

    return {
        "POST /api/departments": {"request": dept_body},
        "PUT /api/departments/{department_id}": {
            "request": lambda c: {
                "json": {"code": _last_code[-1], "name": "改", "kind": "market", "grids": []}
            }
        },
        "PUT /api/departments/{department_id}/jurisdiction": {
            "request": lambda c: {"json": {"grids": ["G1", "S2"]}}
        },
        "POST /api/departments/{department_id}/members": {
            "request": lambda c: {"json": {"username": c.world.fresh_user(role=Role.department, grids=())}}
        },
        "POST /api/triage/{ticket_id}/dispatch": {
            "request": lambda c: {"json": {"grid": c.target, "departments": [OTHER]}}
        },
        "POST /api/triage/{ticket_id}/merge": {
            "request": lambda c: {"json": {"duplicate_id": c.world.fresh_ticket(c.camera)}}
        },
        "POST /api/linkage-requests/{request_id}/answer": {
            "request": lambda c: {"json": {"department": OTHER}}
        },
        "POST /api/tickets/{ticket_id}/parts": {"request": lambda c: {"json": {"department": OTHER}}},
        "POST /api/tickets/{ticket_id}/linkage": {
            "request": lambda c: {"json": {"kind": "market"}},
            "expect": linkage,
        },
        "POST /api/parts/{part_id}/actions": {
            "request": lambda c: {"json": {"action": "accept"}},
            "expect": department_only,
        },
        "POST /api/clues": {
            "request": lambda c: {
                "json": {
                    "lon": sample.point_in("G1")[0],
                    "lat": sample.point_in("G1")[1],
                    "description": "可疑",
                }
            },
            "expect": clue_reporter,
        },
        "GET /api/clues/{clue_id}": {"expect": clue_reader},
        "POST /api/clues/{clue_id}/state": {
            "request": lambda c: {"json": {"state": "received"}},
            "expect": clue_handler,
        },
    }


#: the written policy of the sensitive linkage routes (test_matrix.POLICY columns, then ``department``)
POLICY: dict[str, tuple[Any, ...]] = {
    "GET /api/tickets/{ticket_id}/linkage": (U, A, A, A, N, A, N, A, N, A, A, N),
    "POST /api/tickets/{ticket_id}/parts": (U, A, A, F, N, F, N, F, N, A, F, N),
    # the ticket's handlers ask for linkage; the operator dispatches but does not handle (403)
    "POST /api/tickets/{ticket_id}/linkage": (U, A, F, A, N, A, N, F, N, A, F, N),
}


def extend(ns: dict[str, Any]) -> None:
    """Add the linkage routes and the department role to test_matrix's tables (its module namespace)."""
    world_module.seed_world = _seed_world(world_module.seed_world)  # type: ignore[assignment]
    ns["SEES"][DEPT_USER] = frozenset()
    ns["ROLE"][DEPT_USER] = Role.department.value
    from tests.security import patrol_matrix

    patrol_matrix.SEES[DEPT_USER] = frozenset()
    patrol_matrix.ROLE[DEPT_USER] = Role.department.value
    ns["PARAMS"].update(PARAMS)
    ns["TARGETED_PARAMS"] = ns["TARGETED_PARAMS"] | TARGETED
    case = ns["Case"]
    ns["CASES"].update({key: case(**kwargs) for key, kwargs in _cases(ns).items()})
    # the department column: a department user with no part is answered like a patroller of another grid
    ns["COLUMNS"]["department"] = (DEPT_USER, "cam-g1-a", "jwt")
    for row in ns["POLICY"].values():
        row["department"] = row["patroller_other_grid"]
    for key, cells in POLICY.items():
        row = ns["_row"](*cells[:-1])
        row["department"] = cells[-1]
        ns["POLICY"][key] = row


__all__ = ["extend", "User"]
