"""The wall's WebSocket ``/api/live/tiles`` through a real server (uvicorn) and a real client (the
``websockets`` library): authentication in its three forms, tiles and status for the viewer's own
cameras, an error (and a ``deny`` in the access log) for another grid's camera while the other tiles go
on, a camera that leaves the viewer's scope stops with an error, and disabling the user ends the wall
with ``end``/``revoked``. The periodic access check is set to a minute: a cut seen within a test's
deadline came through the access-change notice. Deadlines are generous; no duration is asserted.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import uvicorn
from sqlalchemy import select
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from api.tokens import issue_access_token
from models.db.engine import transaction
from models.db.tables import AccessLog, Role, User, utcnow
from models.identity.users import add_user
from models.live.tiles import parse_wire
from tests.api.test_snapshot import BoardFeeder, LiveApp, live_app
from tests.conftest import TEST_SECRET
from tests.security.world import GRANTEE
from tests.support import sample
from tests.support.procs import free_port

DEADLINE_S = 20.0
PATH = "/api/live/tiles"


@dataclass
class Served:
    live: LiveApp
    port: int
    feeder: BoardFeeder
    _seq: Iterator[int] = field(default_factory=lambda: iter(range(1, 10_000)))

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{PATH}"

    def token(self, username: str) -> str:
        with self.live.factory() as s:
            user = s.scalars(select(User).where(User.username == username)).one()
            return issue_access_token(user, secret=TEST_SECRET, ttl_s=3600)

    def bearer(self, username: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(username)}"}

    def fresh_leader(self, grid: str) -> str:
        name = f"wall-{next(self._seq)}"
        with transaction(self.live.factory) as s:
            add_user(s, username=name, role=Role.grid_leader, password=sample.PASSWORD, grid_codes=[grid])
        return name

    def http(self, method: str, path: str, *, as_user: str, body: Any = None) -> Any:
        import httpx

        r = httpx.request(
            method, f"http://127.0.0.1:{self.port}{path}", json=body, headers=self.bearer(as_user)
        )
        assert 200 <= r.status_code < 300, r.text
        return r.json() if r.content else None

    def audit(self, *, user: str, channel: str = "tile") -> list[tuple[str, str, str]]:
        with self.live.factory() as s:
            rows = s.scalars(
                select(AccessLog)
                .where(AccessLog.username == user, AccessLog.channel == channel)
                .order_by(AccessLog.id)
            ).all()
            return [(r.action, r.object_type, r.object_id) for r in rows]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with live_app(request, tmp_path_factory.mktemp("tiles")) as la:
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(la.app, host="127.0.0.1", port=port, log_level="warning", ws="websockets")
        )
        thread = threading.Thread(target=server.run, name="tiles-uvicorn", daemon=True)
        thread.start()
        deadline = time.monotonic() + DEADLINE_S
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.05)
        cams = sorted(la.cameras.values())
        with BoardFeeder(la.board, la.health, cams) as feeder:
            yield Served(la, port, feeder)
        server.should_exit = True
        thread.join(timeout=10)


@dataclass
class Received:
    tiles: dict[int, int] = field(default_factory=dict)
    texts: list[dict[str, Any]] = field(default_factory=list)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [t for t in self.texts if t["type"] == kind]


def read_until(
    ws: ClientConnection, done: Callable[[Received], bool], got: Received | None = None
) -> Received:
    """Read messages until ``done`` holds (or fail at the deadline); tiles are counted per camera."""
    got = got or Received()
    deadline = time.monotonic() + DEADLINE_S
    while not done(got):
        left = deadline - time.monotonic()
        assert left > 0, f"deadline passed; got tiles {got.tiles} and texts {got.texts[-10:]}"
        try:
            message = ws.recv(timeout=left)
        except TimeoutError:
            continue
        if isinstance(message, bytes):
            camera_id, _ms, jpeg = parse_wire(message)
            assert jpeg[:2] == b"\xff\xd8", "not a JPEG"
            got.tiles[camera_id] = got.tiles.get(camera_id, 0) + 1
        else:
            got.texts.append(json.loads(message))
    return got


def closed_with(ws: ClientConnection) -> tuple[int | None, list[dict[str, Any]]]:
    """Read to the end: the close code and the text messages before it."""
    texts: list[dict[str, Any]] = []
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        try:
            message = ws.recv(timeout=deadline - time.monotonic())
        except ConnectionClosed as closed:
            return (closed.rcvd.code if closed.rcvd else None), texts
        except TimeoutError:
            break
        if isinstance(message, str):
            texts.append(json.loads(message))
    raise AssertionError(f"the server did not close; texts {texts[-5:]}")


def subscribe(ws: ClientConnection, cameras: list[int], width: int = 320) -> None:
    ws.send(json.dumps({"type": "subscribe", "cameras": cameras, "width": width}))


@contextmanager
def wall(served: Served, **kwargs: Any) -> Iterator[ClientConnection]:
    with connect(served.url, open_timeout=DEADLINE_S, **kwargs) as ws:
        yield ws


def test_a_leader_sees_own_tiles_and_an_error_for_another_grids_camera(served: Served) -> None:
    cams = served.live.cameras
    own_a, own_b, other = cams["cam-g1-a"], cams["cam-g1-b"], cams["cam-g3-a"]
    leader = served.fresh_leader("G1")
    with wall(served, additional_headers=served.bearer(leader)) as ws:
        subscribe(ws, [own_a, other, own_b])
        got = read_until(
            ws,
            lambda g: (
                g.tiles.get(own_a, 0) >= 2
                and g.tiles.get(own_b, 0) >= 2
                and bool(g.of("error"))
                and {s["camera_id"] for s in g.of("status")} >= {own_a, own_b}
            ),
        )
        assert other not in got.tiles
        assert got.of("error") == [
            {
                "type": "error",
                "camera_id": other,
                "error": "not_found",
                "detail": got.of("error")[0]["detail"],
            }
        ]
        status = next(s for s in got.of("status") if s["camera_id"] == own_a)
        assert (status["state"], status["open_tickets"], status["alarm"]) == ("online", 0, False)
        # demand only where allowed
        assert served.live.board.wanted([own_a, own_b, other]).keys() == {own_a, own_b}

        ws.send(json.dumps({"type": "unsubscribe", "cameras": [own_b]}))
        read_until(ws, lambda g: g.tiles.get(own_a, 0) >= 3, got)  # the others go on
    rows = served.audit(user=leader)
    assert ("deny", "camera", str(other)) in rows
    assert ("view", "camera", str(own_a)) in rows and ("view", "camera", str(own_b)) in rows
    deadline = time.monotonic() + DEADLINE_S
    # the unsubscribed tile's end, and the socket's, written as it closes
    while not {("stream_end", "camera", str(own_b)), ("stream_end", "wall", "")} <= set(
        served.audit(user=leader)
    ):
        assert time.monotonic() < deadline, served.audit(user=leader)
        time.sleep(0.1)
    assert served.audit(user=leader)[0] == ("stream_start", "wall", "")
    assert ("stream_end", "camera", str(own_a)) in served.audit(user=leader)


def test_an_alarm_shows_in_the_status(served: Served) -> None:
    cam = served.live.cameras["cam-g2-a"]
    served.live.health.publish("w", {})
    served.feeder.rules[cam] = ["crowding"]
    try:
        with wall(served, additional_headers=served.bearer("admin1")) as ws:
            subscribe(ws, [cam])
            got = read_until(ws, lambda g: any(s["camera_id"] == cam and s["alarm"] for s in g.of("status")))
        status = next(s for s in got.of("status") if s["alarm"])
        assert status["rules"] == ["crowding"] and status["state"] == "online"
    finally:
        served.feeder.rules.pop(cam, None)


def test_disabling_the_user_ends_the_wall(served: Served) -> None:
    cam = served.live.cameras["cam-g1-a"]
    leader = served.fresh_leader("G1")
    with wall(served, additional_headers=served.bearer(leader)) as ws:
        subscribe(ws, [cam])
        read_until(ws, lambda g: g.tiles.get(cam, 0) >= 1)
        with served.live.factory() as s:
            uid = s.scalars(select(User.id).where(User.username == leader)).one()
        served.http("POST", f"/api/admin/users/{uid}/disable", as_user="admin1")
        code, texts = closed_with(ws)
    assert code == 4401
    assert [t for t in texts if t["type"] == "end"] == [
        {"type": "end", "reason": "revoked", "detail": texts[-1]["detail"]}
    ]


def test_a_camera_that_leaves_the_scope_stops_with_an_error(served: Served) -> None:
    cams = served.live.cameras
    lent, own = cams["cam-g3-a"], cams["cam-g2-a"]
    ends_at = (utcnow() + timedelta(hours=1)).isoformat()
    grant = served.http(
        "POST",
        "/api/grants",
        as_user="admin1",
        body={"camera_id": lent, "grantee": GRANTEE, "ends_at": ends_at, "reason": "wall"},
    )
    with wall(served, additional_headers=served.bearer(GRANTEE)) as ws:
        subscribe(ws, [own, lent])
        got = read_until(ws, lambda g: g.tiles.get(lent, 0) >= 1 and g.tiles.get(own, 0) >= 1)
        served.http("DELETE", f"/api/grants/{grant['id']}", as_user="admin1")
        got = read_until(ws, lambda g: bool(g.of("error")), got)
        assert got.of("error")[0]["camera_id"] == lent and got.of("error")[0]["error"] == "not_found"
        before = got.tiles.get(lent, 0)
        later = read_until(ws, lambda g: g.tiles.get(own, 0) >= 3)  # the wall goes on without it
        assert later.tiles.get(lent, 0) == 0, (before, later.tiles)


@pytest.mark.parametrize("how", ["cookie", "first_message"])
def test_a_browser_authenticates_by_cookie_or_first_message(served: Served, how: str) -> None:
    cam = served.live.cameras["cam-g1-a"]
    token = served.token("leader-g1")
    origin = f"http://127.0.0.1:{served.port}"
    if how == "cookie":
        kwargs: dict[str, Any] = {"additional_headers": {"Cookie": f"gp_session={token}"}, "origin": origin}
    else:
        kwargs = {}
    with wall(served, **kwargs) as ws:
        if how == "first_message":
            ws.send(json.dumps({"type": "auth", "token": token}))
        subscribe(ws, [cam])
        got = read_until(ws, lambda g: g.tiles.get(cam, 0) >= 1)
    assert got.tiles[cam] >= 1


@pytest.mark.parametrize(
    ("how", "kwargs", "first"),
    [
        ("cookie from another site", {"origin": "http://evil.example"}, None),
        ("cookie without origin", {}, None),
        ("bad first message", {}, {"type": "auth", "token": "not-a-token"}),
        ("subscribe before auth", {}, {"type": "subscribe", "cameras": [1]}),
        ("bad bearer", {"bearer": "nope"}, None),
    ],
)
def test_unauthenticated_sockets_are_closed_4401(
    served: Served, how: str, kwargs: dict[str, Any], first: Any
) -> None:
    headers: dict[str, str] = {}
    kwargs = dict(kwargs)  # the table's own dict serves every database kind
    if how.startswith("cookie"):
        headers["Cookie"] = f"gp_session={served.token('leader-g1')}"
    if "bearer" in kwargs:
        headers["Authorization"] = f"Bearer {kwargs.pop('bearer')}"
    with wall(served, additional_headers=headers, **kwargs) as ws:
        if first is not None:
            ws.send(json.dumps(first))
        code, texts = closed_with(ws)
    assert code == 4401 and texts == []


def test_bad_messages_answer_an_error_and_the_wall_goes_on(served: Served) -> None:
    cam = served.live.cameras["cam-g1-a"]
    with wall(served, additional_headers=served.bearer("leader-g1")) as ws:
        ws.send("not json")
        ws.send(json.dumps({"type": "subscribe", "cameras": list(range(1, 40))}))
        ws.send(json.dumps({"type": "dance"}))
        subscribe(ws, [cam])
        got = read_until(ws, lambda g: len(g.of("error")) >= 3 and g.tiles.get(cam, 0) >= 1)
    errors = got.of("error")
    assert [(e["camera_id"], e["error"]) for e in errors[:3]] == [(None, "invalid")] * 3
    assert "cameras" in errors[1]["detail"]
