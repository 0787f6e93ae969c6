"""The authorisation matrix: every route of the app's own OpenAPI schema, for every role of the sample
tree and anonymous, on an object of grid G1 and one of grid G3, on SQLite and PostgreSQL.

The convention that makes it generic (also in ``api/deps.py``):

1. Every route declares who may call it: ``openapi_extra=x_access(KIND)`` (from ``api.deps``), i.e.
   ``{"x-access": KIND}`` in the schema. KIND is one of ``public``, ``authenticated``, ``camera``,
   ``ticket``, ``configure``, ``manager``, ``admin`` (meanings in :func:`expected`). A route without
   it, or with another value, fails :func:`test_every_route_declares_who_may_call_it`.
2. Path parameters name their object: ``camera_id``, ``ticket_id``, ``grant_id``, ``user_id``,
   ``token_id``. :data:`PARAMS` makes a fresh one per request (a ticket or grant on the target camera);
   a new name fails the test until it gets a line there.
3. A route with a request body (or whose access depends on an object in the body) needs a
   :class:`Case` in :data:`CASES`, keyed ``"METHOD /path"``, that builds a valid body. A case may also
   make the caller a fresh copy of their role (routes that end the caller's sessions) or override
   :func:`expected` (e.g. ticket transitions that a role may not make: 403 from the state machine).

For the lead's ticket routes: ``GET /api/tickets`` is ``authenticated`` (the list is filtered),
``GET /api/tickets/{ticket_id}`` and evidence are ``ticket`` (404 out of scope), ``POST /api/tickets``
(a report) is ``authenticated`` with a Case building ``{"category", "lon", "lat", "description"}``,
and ``POST /api/tickets/{ticket_id}/transitions`` is ``ticket`` with a Case whose ``expect`` says which
roles may make the chosen action from the state ``open``. The ticket rows come from
``World.fresh_ticket`` (camera cam-g1-a of G1 or cam-g3-a of G3, state open).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.orm import sessionmaker

from api.app import create_app
from api.deps import ACCESS_KINDS
from api.settings import ApiSettings
from models.db.engine import transaction
from models.db.tables import User, utcnow
from models.identity.tokens import issue_refresh_token
from tests.security import notify_matrix, org_matrix, patrol_matrix
from tests.security.world import GRANTEE, SECRET, World, json_of, stream_status
from tests.support import sample

#: the sample's users (and anonymous, None) and which of the two target grids each may see
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
ROLE: dict[str, str] = {name: role for name, (role, _grids) in sample.USERS.items()}
assert set(SEES) - {None} == set(sample.USERS), "SEES must cover every sample user"
#: target grid → the camera of that grid the objects hang on
TARGET_CAMERA = {"G1": "cam-g1-a", "G2": "cam-g2-a", "G3": "cam-g3-a"}
OK = "2xx"
#: a status, OK (any 2xx), or a set of those (the access check passed; what follows is another test's)
Expect = str | int | frozenset[str | int]


@dataclass(frozen=True)
class Call:
    """One request of the matrix: who calls, about which grid's object."""

    world: World
    caller: str | None
    target: str | None

    @property
    def camera(self) -> str:
        return TARGET_CAMERA[self.target or "G1"]

    @property
    def owner(self) -> str:
        return self.caller or "leader-g1"


def expected(kind: str, caller: str | None, target: str | None) -> Expect:
    """What the policy answers ``caller`` on an object of grid ``target`` (None: the route has none)."""
    if caller is None:
        return OK if kind == "public" else 401
    role = ROLE[caller]
    sees = target is None or target in SEES[caller]
    if kind in {"public", "authenticated"}:
        return OK
    if kind in {"camera", "ticket"}:
        return OK if sees else 404
    if kind == "configure":  # a known object the caller sees but may not change: 403; one they cannot see: 404
        if not sees:
            return 404
        return OK if role in {"admin", "operator"} else 403
    if kind == "manager":  # the role first (403), then the object in the subtree (404)
        if role not in {"admin", "manager"}:
            return 403
        return OK if sees else 404
    if kind == "admin":
        return OK if role == "admin" else 403
    raise AssertionError(f"no rule for x-access {kind!r}")


#: path parameter → a value for this call (fresh objects for anything a request may change)
PARAMS: dict[str, Callable[[Call], Any]] = {
    "camera_id": lambda c: c.world.camera_ids[c.camera],
    "ticket_id": lambda c: c.world.fresh_ticket(c.camera),
    "grant_id": lambda c: c.world.fresh_grant(c.camera),
    "user_id": lambda c: c.world.user(c.world.fresh_user()).id,
    "token_id": lambda c: c.world.fresh_api_token(c.owner)[0],
    # the evidence image every fresh ticket carries (ticket_id comes first in the path)
    "key": lambda c: c.world.evidence_key,
}
TARGETED_PARAMS = frozenset({"camera_id", "ticket_id", "grant_id"})


@dataclass(frozen=True)
class Case:
    """How to call one route: its request (``json=`` / ``data=`` keyword arguments for the client)."""

    request: Callable[[Call], dict[str, Any]] = lambda _c: {}
    #: the body names an object of the target grid (like a path parameter would)
    targeted: bool = False
    #: the caller is a fresh user with the same role and grid nodes (the route ends their sessions)
    fresh_caller: bool = False
    expect: Callable[[str, str | None, str | None], Expect] | None = None
    #: the answer is a stream (SSE): only its status is read, then the client disconnects
    stream: bool = False


def _refresh_token(c: Call) -> str:
    with transaction(c.world.factory) as s:
        user = s.get(User, c.world.user(c.owner).id)
        assert user is not None
        return issue_refresh_token(s, user=user, ttl_s=3600)


def _report_expect(kind: str, caller: str | None, target: str | None) -> Expect:
    """A case may be reported only inside the reporter's own grids (403 with a reason otherwise)."""
    if caller is None:
        return 401
    return OK if target in SEES[caller] else 403


def _transition_expect(kind: str, caller: str | None, target: str | None) -> Expect:
    """Seeing the ticket is this test's business (404 otherwise); whether the role may make the move
    from ``open`` is the state machine's (tests/api/test_tickets_api.py): 2xx, 403 or 409 all pass here."""
    got = expected(kind, caller, target)
    return frozenset({OK, 403, 409}) if got == OK else got


def _point(c: Call) -> tuple[float, float]:
    return sample.point_in(c.target or "G1")


MATRIX_LANE = {"name": "lane", "kind": "fire_lane", "polygon": [[0.1, 0.5], [0.4, 0.5], [0.4, 0.9], [0.1, 0.9]]}


def _unserved(want: Expect) -> Expect:
    """The route's access check passed (2xx expected): without a previewer the answer is then 503."""
    if want == OK:
        return frozenset({OK, 503})
    return want


def _saved_zones(c: Call) -> int:
    """A saved zones version of the target camera (the one a restore brings back)."""
    from models.grid.zones import save_zones

    with transaction(c.world.factory) as s:
        return save_zones(s, c.world.camera_ids[c.camera], {"zones": [MATRIX_LANE]}, author=None).version


CASES: dict[str, Case] = {
    "GET /api/tickets/stream": Case(stream=True),
    "POST /api/tickets": Case(
        lambda c: {
            "json": {"category": "road_occupation", "lon": _point(c)[0], "lat": _point(c)[1], "description": "matrix"}
        },
        targeted=True,
        expect=_report_expect,
    ),
    "POST /api/tickets/{ticket_id}/transitions": Case(
        lambda c: {"json": {"action": "dispatch", "note": "matrix"}}, expect=_transition_expect
    ),
    "POST /api/auth/token": Case(lambda c: {"data": {"username": c.owner, "password": sample.PASSWORD}}),
    "POST /api/auth/refresh": Case(lambda c: {"json": {"refresh_token": _refresh_token(c)}}),
    "POST /api/auth/logout": Case(lambda c: {"json": {"refresh_token": _refresh_token(c)}}),
    "POST /api/me/password": Case(
        lambda c: {"json": {"current_password": sample.PASSWORD, "new_password": "another-horse-10"}}, fresh_caller=True
    ),
    "PATCH /api/cameras/{camera_id}": Case(lambda c: {"json": {"enabled": True}}),
    "PUT /api/cameras/{camera_id}/zones": Case(
        lambda c: {
            "json": {
                "zones": [
                    {"name": "lane", "kind": "fire_lane", "polygon": [[0.1, 0.5], [0.4, 0.5], [0.4, 0.9], [0.1, 0.9]]}
                ]
            }
        }
    ),
    "POST /api/admin/users": Case(
        lambda c: {
            "json": {
                "username": c.world.unique("made"),
                "role": "patroller",
                "password": sample.PASSWORD,
                "grid_codes": ["G2"],
            }
        }
    ),
    "PUT /api/admin/users/{user_id}/grids": Case(lambda c: {"json": {"grid_codes": ["G2"]}}),
    "POST /api/grants": Case(
        lambda c: {
            "json": {
                "camera_id": c.world.camera_ids[c.camera],
                "grantee": GRANTEE,
                "ends_at": (utcnow() + timedelta(hours=1)).isoformat(),
                "reason": "matrix",
            }
        },
        targeted=True,
    ),
    "POST /api/tokens": Case(lambda c: {"json": {"name": "matrix", "scopes": ["api:read"]}}),
    # the zone editor (api/routes/zone_preview.py); the matrix app has no previewer: 503 once access passed
    "POST /api/cameras/{camera_id}/zones/preview": Case(
        lambda c: {"json": {"document": {"zones": [MATRIX_LANE]}, "source": {"kind": "clip", "clip": "m.mp4"}}},
        expect=lambda kind, caller, target: _unserved(expected(kind, caller, target)),
    ),
    "POST /api/cameras/{camera_id}/zones/restore": Case(lambda c: {"json": {"version": _saved_zones(c)}}),
    # camera import (api/routes/camera_import.py); the matrix app has no credentials key: 503 once access passed
    "POST /api/cameras/import": Case(
        lambda c: {"json": {"text": "name,url,lon,lat\nmatrix-cam,rtsp://10.0.0.9/s,118.705,32.105\n"}},
        expect=lambda kind, caller, target: _unserved(expected(kind, caller, target)),
    ),
    # snapshots (api/routes/live_tiles.py): the matrix app has no tile board, so 503 once access passed
    "GET /api/cameras/{camera_id}/snapshot.jpg": Case(expect=lambda kind, caller, target: _unserved(expected(kind, caller, target))),
}


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    """Every operation of the schema the app serves (built here without a database: only the schema)."""
    app = create_app(ApiSettings(secret_key=SECRET), session_factory=sessionmaker())
    return [
        (method.upper(), path, op)
        for path, ops in sorted(app.openapi()["paths"].items())
        for method, op in sorted(ops.items())
        if method in {"get", "post", "put", "patch", "delete"}
    ]


OPERATIONS = _operations()


def test_every_route_declares_who_may_call_it() -> None:
    missing = [f"{m} {p}: {op.get('x-access')!r}" for m, p, op in OPERATIONS if op.get("x-access") not in ACCESS_KINDS]
    assert not missing, "routes without a known x-access (see api/deps.py):\n" + "\n".join(missing)


def test_the_served_schema_is_the_one_enumerated(world: World) -> None:
    """The matrix covers exactly what /openapi.json shows (a route added at run time could not hide)."""
    served = world.client.get("/openapi.json").json()["paths"]
    assert {(m.upper(), p) for p, ops in served.items() for m in ops} == {(m, p) for m, p, _ in OPERATIONS}


@pytest.mark.parametrize(("method", "path", "op"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS])
def test_route_follows_the_policy(world: World, method: str, path: str, op: dict[str, Any]) -> None:
    kind = op.get("x-access")
    assert kind in ACCESS_KINDS, f"{method} {path} declares no known x-access"
    key = f"{method} {path}"
    params = [p["name"] for p in op.get("parameters", []) if p.get("in") == "path"]
    unknown = [p for p in params if p not in PARAMS]
    assert not unknown, f"{key}: teach tests/security/test_matrix.py PARAMS to make {unknown}"
    case = CASES.get(key)
    if case is None:
        assert "requestBody" not in op, f"{key} takes a body: add a Case to CASES in tests/security/test_matrix.py"
        case = Case()
    targeted = case.targeted or any(p in TARGETED_PARAMS for p in params)
    targets: list[str | None] = ["G1", "G3"] if targeted else [None]
    rule = case.expect or expected

    wrong: list[str] = []
    for caller in SEES:
        for target in targets:
            call = Call(world=world, caller=caller, target=target)
            if case.fresh_caller and caller is not None:
                call = Call(world=world, caller=world.fresh_user(like=caller), target=target)
            url = path.format(**{p: PARAMS[p](call) for p in params})
            headers = world.bearer(call.caller) if call.caller else {}
            if case.stream:
                status, body = stream_status(world, method, url, headers), "(stream)"
            else:
                r = world.client.request(method, url, headers=headers, **case.request(call))
                status, body = r.status_code, json_of(r)
            want = rule(kind, caller, target)
            wanted = want if isinstance(want, frozenset) else frozenset({want})
            if not (status in wanted or (OK in wanted and 200 <= status < 300)):
                wrong.append(f"  {caller or 'anonymous'} on {target or '-'}: want {want}, got {status} {body!s:.200}")
    assert not wrong, f"{key} (x-access {kind}) breaks the policy:\n" + "\n".join(wrong)


# -- the written policy, independently of the routes' declarations ----------------------------------
#
# The test above takes each route's expectations from its own ``x-access``: a route declared more
# permissively than the policy allows would pass it. The table below is written from the README
# ("Who sees what", "Security", the ticket loop) and not from the code: for every sensitive route
# (cameras, zones, tickets, grants, audit, tokens, users) and each kind of caller relative to the
# object, the status class the policy calls for. Where the README leaves a choice open the cell
# lists every answer that keeps the policy (e.g. DENIED: 403 or 404 both refuse without revealing
# whether the object exists). A cell where the code disagrees with the policy is an xfail(strict)
# naming the disagreement (see ``DISAGREEMENTS``): fix the code, never the table.

#: caller kinds (columns): (user, camera the object hangs on, how the request is authenticated)
#: "token_rw"/"token_ro" are API tokens of an admin with scopes api:read+api:write / api:read only.
COLUMNS: dict[str, tuple[str | None, str, str]] = {
    "anonymous": (None, "cam-g1-a", "none"),
    "admin": ("admin1", "cam-g1-a", "jwt"),
    "operator": ("operator1", "cam-g1-a", "jwt"),
    "manager_in_scope": ("manager-s1", "cam-g1-a", "jwt"),  # S1 ⊃ C1 ⊃ G1
    "manager_out_of_scope": ("manager-s1", "cam-g3-a", "jwt"),  # G3 is under S2
    "grid_leader_own_grid": ("leader-g1", "cam-g1-a", "jwt"),
    "grid_leader_other_grid": ("leader-g1", "cam-g3-a", "jwt"),
    "patroller_own_grid": ("patroller-g2", "cam-g2-a", "jwt"),
    "patroller_other_grid": ("patroller-g2", "cam-g1-a", "jwt"),
    "token_rw": ("admin1", "cam-g1-a", "api:read api:write"),
    "token_ro": ("admin1", "cam-g1-a", "api:read"),
}
CAMERA_GRID = {"cam-g1-a": "G1", "cam-g2-a": "G2", "cam-g3-a": "G3"}
#: columns whose caller owns the object (for tokens: their own token) / sees it (for cameras, tickets)
OWN = frozenset({"admin", "operator", "manager_in_scope", "grid_leader_own_grid", "patroller_own_grid", "token_rw", "token_ro"})

A, U, F, N = "2xx", 401, 403, 404
#: refused without saying whether the object exists (the policy allows either)
DENIED = frozenset({403, 404})
#: 2xx, and the target object is (LISTED) / is not (HIDDEN) among the list's items
LISTED, HIDDEN = "2xx+listed", "2xx-hidden"
#: the policy does not decide (e.g. reporting a case outside one's own grids): allowed or refused
EITHER = frozenset({A, 403})
Cell = str | int | frozenset[str | int]


def _row(
    anonymous: Cell, admin: Cell, operator: Cell, manager_in_scope: Cell, manager_out_of_scope: Cell,
    grid_leader_own_grid: Cell, grid_leader_other_grid: Cell, patroller_own_grid: Cell,
    patroller_other_grid: Cell, token_rw: Cell, token_ro: Cell,
) -> dict[str, Cell]:  # fmt: skip
    return dict(locals())


#: allowed, but the matrix app serves no zone preview (no previewer passed in): 503 after the access check
AU = frozenset({A, 503})

#: the rights of each role, in the README's words
#: - everyone logged in: reads what they see (lists are filtered; an unseen camera/ticket is 404)
#: - admin, operator: see everything, configure cameras and zones; admin: users, others' tokens, audit
#: - manager: sees the subtree, lends its cameras (POST/DELETE grants); an admin lends any camera
#: - grid_leader, patroller: see their grids; act on their tickets (a wrong role for a move is 403)
#: - an API token: api:read for GET, api:write for changes; it may not mint tokens or change a password
SEE = _row(U, A, A, A, N, A, N, A, N, A, A)  # a camera or ticket read
CONFIGURE = _row(U, A, A, F, N, F, N, F, N, A, F)  # a camera or its zones changed
LIST = _row(U, LISTED, LISTED, LISTED, HIDDEN, LISTED, HIDDEN, LISTED, HIDDEN, LISTED, LISTED)
ANY_READ = _row(U, A, A, A, A, A, A, A, A, A, A)
ADMIN_READ = _row(U, A, F, F, F, F, F, F, F, A, A)
ADMIN_WRITE = _row(U, A, F, F, F, F, F, F, F, A, F)
#: raising someone's privileges (create, enable, re-assign a user): an admin logged in; an API token
#: only with the admin-only scope admin:users, which token_rw lacks (issue 10 item 3)
ADMIN_PRIVILEGE = _row(U, A, F, F, F, F, F, F, F, F, F)

POLICY: dict[str, dict[str, Cell]] = {
    "GET /api/cameras": LIST,
    "GET /api/cameras/{camera_id}": SEE,
    "PATCH /api/cameras/{camera_id}": CONFIGURE,
    "GET /api/cameras/{camera_id}/health": SEE,
    "GET /api/cameras/{camera_id}/outages": SEE,
    "GET /api/cameras/{camera_id}/zones": SEE,
    "PUT /api/cameras/{camera_id}/zones": CONFIGURE,
    "GET /api/cameras/{camera_id}/zones/versions": SEE,
    "POST /api/cameras/{camera_id}/zones/restore": CONFIGURE,
    "POST /api/cameras/{camera_id}/zones/preview": _row(U, AU, AU, F, N, F, N, F, N, AU, F),
    "POST /api/cameras/import": _row(U, AU, AU, F, F, F, F, F, F, AU, F),
    # a camera's still picture: whoever sees the camera (503 here: no tile board, see AU)
    "GET /api/cameras/{camera_id}/snapshot.jpg": _row(U, AU, AU, AU, N, AU, N, AU, N, AU, AU),
    "GET /api/tickets": LIST,
    "GET /api/tickets/stream": ANY_READ,
    "GET /api/tickets/{ticket_id}": SEE,
    "GET /api/tickets/{ticket_id}/evidence/{key}": SEE,
    "GET /api/tickets/{ticket_id}/clips/{key}": SEE,
    # a case reported by a person inside their own area is taken; the README does not say whether one
    # may report a place outside it (EITHER); an api:read token may not write
    "POST /api/tickets": _row(U, A, A, A, EITHER, A, EITHER, A, EITHER, A, F),
    # ``dispatch`` from ``open`` is the centre's move (admin, operator); a leader or patroller is a
    # wrong role (403 with the reason); the README leaves a manager's right to dispatch open
    "POST /api/tickets/{ticket_id}/transitions": _row(U, A, A, EITHER, N, F, N, F, N, A, F),
    "GET /api/grants": ANY_READ,
    # lending: a manager inside the subtree, an admin anywhere; other roles may not lend (403 where
    # they see the camera, DENIED where they do not); the operator configures but does not lend
    "POST /api/grants": _row(U, A, F, A, N, F, DENIED, F, DENIED, F, F),  # a token lends only with admin:users
    "DELETE /api/grants/{grant_id}": _row(U, A, F, A, N, DENIED, DENIED, DENIED, DENIED, A, F),
    "GET /api/audit": ADMIN_READ,
    "GET /api/audit.csv": ADMIN_READ,
    "GET /api/tokens": ANY_READ,
    # every user may make API tokens; no API token may mint one
    "POST /api/tokens": _row(U, A, A, A, A, A, A, A, A, F, F),
    # one's own token is revoked; another user's is not one's business (DENIED); whether a token
    # may revoke one of its owner's tokens is not said (EITHER)
    "DELETE /api/tokens/{token_id}": _row(U, A, A, A, DENIED, A, DENIED, A, DENIED, EITHER, F),
    "GET /api/admin/tokens": ADMIN_READ,
    "DELETE /api/admin/tokens/{token_id}": ADMIN_WRITE,
    "GET /api/me": ANY_READ,
    # every user changes their own password; an API token may not
    "POST /api/me/password": _row(U, A, A, A, A, A, A, A, A, F, F),
    "GET /api/admin/users": ADMIN_READ,
    "POST /api/admin/users": ADMIN_PRIVILEGE,
    "POST /api/admin/users/{user_id}/disable": ADMIN_WRITE,
    "POST /api/admin/users/{user_id}/enable": ADMIN_PRIVILEGE,
    "PUT /api/admin/users/{user_id}/grids": ADMIN_PRIVILEGE,
}
#: paths of the sensitive resources: every such route of the schema must have a row in POLICY
SENSITIVE = re.compile(r"^/api/(cameras|tickets|grants|audit|tokens|me|admin/(users|tokens))(\.csv)?(/|$)")
#: (route, column) where the code answers otherwise than the policy: reported to the lead, xfail(strict)
DISAGREEMENTS: dict[tuple[str, str], str] = {}

# the patrol and evaluation routes (their objects, bodies and policy: tests/security/patrol_matrix.py)
PARAMS.update(patrol_matrix.PARAMS)
TARGETED_PARAMS = TARGETED_PARAMS | patrol_matrix.TARGETED
CASES.update({key: Case(**kwargs) for key, kwargs in patrol_matrix.CASES.items()})
POLICY.update({key: _row(*cells) for key, cells in patrol_matrix.POLICY.items()})
# the notification routes (tests/security/notify_matrix.py)
notify_matrix.extend(globals())
# the linkage routes and the department role on every route (tests/security/org_matrix.py)
org_matrix.extend(globals())


def test_every_sensitive_route_has_a_row_in_the_written_policy() -> None:
    sensitive = {f"{m} {p}" for m, p, _ in OPERATIONS if SENSITIVE.match(p)}
    assert len(sensitive) >= 25, sorted(sensitive)  # the pattern still finds the routes (29 today)
    missing = sorted(sensitive - set(POLICY))
    assert not missing, "sensitive routes without a row in POLICY (tests/security/test_matrix.py):\n" + "\n".join(missing)
    stale = sorted(set(POLICY) - {f"{m} {p}" for m, p, _ in OPERATIONS})
    assert not stale, f"POLICY rows for routes the app no longer serves: {stale}"
    assert all(set(row) == set(COLUMNS) for row in POLICY.values())


def _policy_cells() -> list[Any]:
    cells = []
    for key, row in POLICY.items():
        for column, want in row.items():
            marks = ()
            if (key, column) in DISAGREEMENTS:
                marks = (pytest.mark.xfail(strict=True, reason=DISAGREEMENTS[(key, column)]),)
            cells.append(pytest.param(key, column, want, id=f"{key} [{column}]", marks=marks))
    return cells


def _token_owned_by(world: World, owner: str) -> int:
    return world.fresh_api_token(owner)[0]


def _object_params(world: World, key: str, column: str, caller: str | None, camera: str) -> dict[str, Any]:
    """Fresh objects for the path: on ``camera``; a token is the caller's own in OWN columns."""
    values: dict[str, Any] = {}
    path = key.split(" ", 1)[1]
    if "{camera_id}" in path:
        values["camera_id"] = world.camera_ids[camera]
    if "{ticket_id}" in path:
        values["ticket_id"] = world.fresh_ticket(camera)
    if "{key}" in path:
        values["key"] = world.evidence_key
    if "{grant_id}" in path:
        values["grant_id"] = world.fresh_grant(camera)
    if "{user_id}" in path:
        values["user_id"] = world.user(world.fresh_user()).id
    if "{token_id}" in path:
        if path.startswith("/api/admin/"):
            values["token_id"] = _token_owned_by(world, "leader-g1")
        elif column in OWN and caller is not None:
            values["token_id"] = _token_owned_by(world, caller)
        else:  # someone else's token
            values["token_id"] = _token_owned_by(world, "operator1")
    return values


@pytest.mark.parametrize(("key", "column", "want"), _policy_cells())
def test_sensitive_route_follows_the_written_policy(world: World, key: str, column: str, want: Cell) -> None:
    method, path = key.split(" ", 1)
    caller, camera, auth = COLUMNS[column]
    case = CASES.get(key, Case())
    if caller is not None and (case.fresh_caller or auth != "jwt"):
        caller = world.fresh_user(like=caller)  # a change to the caller (password, tokens) stays theirs
    values = _object_params(world, key, column, caller, camera)
    if auth == "none":
        headers: dict[str, str] = {}
    elif auth == "jwt":
        assert caller is not None
        headers = world.bearer(caller)
    else:
        assert caller is not None
        headers = {"Authorization": f"Bearer {world.fresh_api_token(caller, tuple(auth.split()))[1]}"}
    call = Call(world=world, caller=caller, target=CAMERA_GRID[camera])
    url = path.format(**values)
    listing = want in {LISTED, HIDDEN}
    if listing:  # newest first: a fresh object of the target camera, then the list of that camera's
        if path == "/api/tickets":
            target_id = world.fresh_ticket(camera)
            url += f"?camera_id={world.camera_ids[camera]}&limit=500"
        else:
            target_id = world.camera_ids[camera]
            url += "?limit=500"
    if case.stream:
        status, body = stream_status(world, method, url, headers), "(stream)"
    else:
        r = world.client.request(method, url, headers=headers, **case.request(call))
        status, body = r.status_code, json_of(r)

    wanted = want if isinstance(want, frozenset) else frozenset({want})
    ok = status in wanted or (bool(wanted & {A, LISTED, HIDDEN}) and 200 <= status < 300)
    assert ok, f"{key} as {column}: the policy says {want}, got {status} {body!s:.300}"
    if listing:
        ids = {item["id"] for item in body["items"]}
        assert (target_id in ids) == (want == LISTED), f"{key} as {column}: {want}, ids {sorted(ids)}"
