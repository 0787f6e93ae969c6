"""Issue 10 (item 2, live-feed part of 7): the live ticket feed follows the viewer's access while it runs.

A stream (``GET /api/tickets/stream``) re-resolves its viewer's scope every ``stream_recheck_s`` and
at once on an access-change notice, ends at the credential's expiry (``expired``) or revocation
(``revoked``), and logs its start and end (channel ``sse``). Expectations come from the README's
"Who sees what" and "Security": what REST would answer the viewer now is what the stream delivers.

Everything runs through the real app on SQLite and PostgreSQL; notices are published on the app's bus
after each change, and the tests assert on what arrives (with generous deadlines, never durations).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.settings import ApiSettings
from api.tokens import issue_access_token, read_access_token
from models.bus.memory import MemoryBus
from models.bus.messages import TICKET_NOTICES, TicketNotice
from models.db.engine import transaction
from models.db.tables import Camera, CameraGrant, GridNode, User, utcnow
from models.identity.tokens import create_api_token
from models.identity.users import set_assignments
from models.tickets.desk import TicketDesk
from tests.conftest import TEST_SECRET
from tests.support import sample
from tests.support.sse import DEADLINE_S, SseEvent, SseStream

STREAM = "/api/tickets/stream"
#: a period no test waits for: a change seen within a test's deadline came through the notice
LONG_PERIOD_S = 60.0
SHORT_PERIOD_S = 0.2


@dataclass
class Feed:
    """The app (with its bus and database) and helpers to publish notices and make credentials."""

    client: TestClient
    bus: MemoryBus
    factory: sessionmaker[Session]
    #: camera name → (camera id, grid id, grid path)
    cameras: dict[str, tuple[int, int, str]]
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(900_001))

    def publish(self, camera: str) -> int:
        """A notice about a (made-up) ticket of ``camera``; returns its ticket id."""
        camera_id, grid_id, grid_path = self.cameras[camera]
        ticket_id = next(self._ids)
        notice = TicketNotice(
            ticket_id=ticket_id, event="opened", state="open", category="road_occupation",
            grid_id=grid_id, grid_path=grid_path, camera_id=camera_id, at=utcnow(),
        )  # fmt: skip
        self.bus.publish(TICKET_NOTICES, [notice])
        return ticket_id

    def user(self, username: str) -> User:
        with self.factory() as s:
            return s.scalars(select(User).where(User.username == username)).one()

    def jwt(self, username: str, *, ttl_s: int = 3600) -> tuple[dict[str, str], datetime]:
        token = issue_access_token(self.user(username), secret=TEST_SECRET, ttl_s=ttl_s)
        return {"Authorization": f"Bearer {token}"}, read_access_token(token, secret=TEST_SECRET).expires_at

    def bearer(self, username: str) -> dict[str, str]:
        return self.jwt(username)[0]

    def api_token(self, username: str, *, expires_at: datetime | None = None) -> tuple[dict[str, str], int]:
        with transaction(self.factory) as s:
            user = s.get(User, self.user(username).id)
            assert user is not None
            row, token = create_api_token(s, user=user, name="feed", scopes=["api:read"], expires_at=expires_at)
            return {"Authorization": f"Bearer {token}"}, row.id


@contextmanager
def feed_app(factory: sessionmaker[Session], desk: TicketDesk, *, recheck_s: float) -> Iterator[Feed]:
    bus = MemoryBus()
    app = create_app(
        ApiSettings(secret_key=TEST_SECRET, stream_recheck_s=recheck_s), session_factory=factory, desk=desk, bus=bus
    )
    with factory() as s:
        cameras = {
            c.name: (c.id, g.id, g.path)
            for c, g in s.execute(select(Camera, GridNode).join(GridNode, GridNode.id == Camera.grid_id))
        }
    assert len(cameras) == 4, cameras
    with TestClient(app) as client:
        yield Feed(client=client, bus=bus, factory=factory, cameras=cameras)


def _tickets(events: list[SseEvent]) -> list[int]:
    return [e.json()["ticket_id"] for e in events if e.event == "ticket"]


def _ticket_is(ticket_id: int) -> Callable[[SseEvent], bool]:
    return lambda e: e.event == "ticket" and e.json()["ticket_id"] == ticket_id


def _is_end(e: SseEvent) -> bool:
    return e.event == "end"


def _round(f: Feed, s: SseStream, *, lost: str | None, after: str) -> tuple[bool, bool]:
    """Publish a notice of ``lost`` (if any), then one of ``after``; read until the latter or ~1 s.
    Returns (the ``after`` notice arrived, the ``lost`` one arrived before it)."""
    lost_id = f.publish(lost) if lost else None
    after_id = f.publish(after)
    got: list[SseEvent] = []
    for _ in range(4):
        event = s.next_event(0.25)
        if event is None:
            continue
        got.append(event)
        if _ticket_is(after_id)(event):
            return True, lost_id in _tickets(got)
    return False, lost_id in _tickets(got)


# -- (a) the scope is re-resolved while the stream runs ---------------------------------------------


def _api(method: str, path: str, *, json: Any = None, as_user: str = "admin1") -> Callable[[Feed], None]:
    def change(f: Feed) -> None:
        url = path.format(leader=f.user("leader-g1").id, manager=f.user("manager-s1").id, grant=_grant_id(f))
        r = f.client.request(method, url, json=json, headers=f.bearer(as_user))
        assert 200 <= r.status_code < 300, r.text

    return change


def _grant_id(f: Feed) -> int | None:
    with f.factory() as s:
        return s.scalar(select(CameraGrant.id).order_by(CameraGrant.id.desc()).limit(1))


def _lend_g3_camera(f: Feed) -> None:
    """An admin lends cam-g3-a to leader-g1 for an hour (through the API, as the README says)."""
    _api(
        "POST", "/api/grants",
        json={"camera_id": f.cameras["cam-g3-a"][0], "grantee": "leader-g1",
              "ends_at": (utcnow() + timedelta(hours=1)).isoformat(), "reason": "feed test"},
    )(f)  # fmt: skip


def _reassign_in_database(username: str, codes: list[str]) -> Callable[[Feed], None]:
    """A change no notice announces (another tool, a migration): only the periodic check can see it."""

    def change(f: Feed) -> None:
        with transaction(f.factory) as s:
            user = s.scalars(select(User).where(User.username == username)).one()
            set_assignments(s, user=user, grid_codes=codes)

    return change


def _close_grant_window(f: Feed) -> None:
    """The grant's window closes by itself (what time does, without a request or a notice)."""
    with transaction(f.factory) as s:
        grant = s.get(CameraGrant, _grant_id(f))
        assert grant is not None
        grant.ends_at = utcnow() - timedelta(seconds=1)


def _nothing(f: Feed) -> None:
    return None


@dataclass(frozen=True)
class ScopeChange:
    viewer: str
    recheck_s: float
    change: Callable[[Feed], None]
    #: a camera whose notices the viewer gets before the change and must not get after it (None: none)
    lost: str | None
    #: a camera whose notices the viewer gets after the change
    after: str
    setup: Callable[[Feed], None] = _nothing


SCOPE_CHANGES: dict[str, ScopeChange] = {
    "leader moved G1→G3 by the admin (notice; long period)": ScopeChange(
        "leader-g1", LONG_PERIOD_S, _api("PUT", "/api/admin/users/{leader}/grids", json={"grid_codes": ["G3"]}),
        lost="cam-g1-a", after="cam-g3-a",
    ),
    "leader moved G1→G3 in the database (no notice; short period)": ScopeChange(
        "leader-g1", SHORT_PERIOD_S, _reassign_in_database("leader-g1", ["G3"]), lost="cam-g1-a", after="cam-g3-a",
    ),
    "manager moved S1→S2 by the admin (notice; long period)": ScopeChange(
        "manager-s1", LONG_PERIOD_S, _api("PUT", "/api/admin/users/{manager}/grids", json={"grid_codes": ["S2"]}),
        lost="cam-g2-a", after="cam-g3-a",
    ),
    "camera lent to the leader while streaming (notice; long period)": ScopeChange(
        "leader-g1", LONG_PERIOD_S, _lend_g3_camera, lost=None, after="cam-g3-a",
    ),
    "grant revoked by the admin (notice; long period)": ScopeChange(
        "leader-g1", LONG_PERIOD_S, _api("DELETE", "/api/grants/{grant}"), lost="cam-g3-a", after="cam-g1-b",
        setup=_lend_g3_camera,
    ),
    "grant window closed by itself (no notice; short period)": ScopeChange(
        "leader-g1", SHORT_PERIOD_S, _close_grant_window, lost="cam-g3-a", after="cam-g1-b", setup=_lend_g3_camera,
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", SCOPE_CHANGES.values(), ids=SCOPE_CHANGES.keys())
def test_the_stream_follows_a_scope_change(seeded: sessionmaker[Session], desk: TicketDesk, case: ScopeChange) -> None:
    with feed_app(seeded, desk, recheck_s=case.recheck_s) as f:
        case.setup(f)
        with SseStream(f.client, STREAM, f.bearer(case.viewer)) as s:
            assert s.status == 200
            if case.lost is not None:  # before the change the viewer gets that camera's notices
                before = f.publish(case.lost)
                s.read_until(_ticket_is(before))
            case.change(f)
            rounds, cut = 0, False
            deadline = time.monotonic() + DEADLINE_S
            while not cut and time.monotonic() < deadline:
                rounds += 1
                arrived, lost_arrived = _round(f, s, lost=case.lost, after=case.after)
                cut = arrived and not lost_arrived
            assert cut, f"after {rounds} rounds the stream still follows the old scope: {s.events[-6:]}"
            for _ in range(3):  # and it stays that way
                arrived, lost_arrived = _round(f, s, lost=case.lost, after=case.after)
                assert arrived and not lost_arrived, s.events[-6:]
            assert not any(_is_end(e) for e in s.events), "a scope change keeps the feed open"
            assert any(e.event == "scope" for e in s.events), "the viewer is told that their access changed"
        if case.lost is not None:  # REST agrees: the lost camera's tickets are no longer listed
            listed = f.client.get(
                f"/api/cameras/{f.cameras[case.lost][0]}", headers=f.bearer(case.viewer)
            ).status_code
            assert listed == 404


# -- (b) the stream ends at the credential's expiry --------------------------------------------------

CREDENTIAL_TTL_S = 5


def _short_jwt(f: Feed) -> tuple[dict[str, str], datetime]:
    return f.jwt("leader-g1", ttl_s=CREDENTIAL_TTL_S)


def _short_api_token(f: Feed) -> tuple[dict[str, str], datetime]:
    expires_at = utcnow() + timedelta(seconds=CREDENTIAL_TTL_S)
    return f.api_token("leader-g1", expires_at=expires_at)[0], expires_at


EXPIRING: dict[str, Callable[[Feed], tuple[dict[str, str], datetime]]] = {
    "access token (JWT exp)": _short_jwt,
    "API token (expires_at)": _short_api_token,
}


@pytest.mark.parametrize("make_credential", EXPIRING.values(), ids=EXPIRING.keys())
def test_the_stream_ends_when_its_credential_expires(
    seeded: sessionmaker[Session], desk: TicketDesk, make_credential: Callable[[Feed], tuple[dict[str, str], datetime]]
) -> None:
    # the long period: the end comes from the expiry itself, not from a periodic check
    with feed_app(seeded, desk, recheck_s=LONG_PERIOD_S) as f:
        headers, expires_at = make_credential(f)
        with SseStream(f.client, STREAM, headers) as s:
            assert s.status == 200
            first = f.publish("cam-g1-a")
            s.read_until(_ticket_is(first))
            while utcnow() <= expires_at:  # wait for the credential's own clock, then publish
                time.sleep(0.05)
            late = f.publish("cam-g1-a")
            events = s.read_until(_is_end)
            assert events[-1].json()["reason"] == "expired"
            assert late not in _tickets(s.events), "a notice published after the expiry was delivered"
            assert s.next_event(0.5) is None and s.finished
        assert f.client.get("/api/tickets", headers=headers).status_code == 401  # REST agrees


# -- (c) revoking the credential ends the stream ------------------------------------------------------


def _disable(f: Feed, _token_id: int | None) -> None:
    _api("POST", "/api/admin/users/{leader}/disable")(f)


def _change_password(f: Feed, _token_id: int | None) -> None:
    r = f.client.post(
        "/api/me/password",
        json={"current_password": sample.PASSWORD, "new_password": "another-horse-10"},
        headers=f.bearer("leader-g1"),
    )
    assert r.status_code == 200, r.text


def _revoke_api_token(f: Feed, token_id: int | None) -> None:
    r = f.client.delete(f"/api/tokens/{token_id}", headers=f.bearer("leader-g1"))
    assert r.status_code == 204, r.text


@dataclass(frozen=True)
class Revocation:
    recheck_s: float
    revoke: Callable[[Feed, int | None], None]
    api_token: bool = False


REVOCATIONS: dict[str, Revocation] = {
    "user disabled by the admin (notice; long period)": Revocation(LONG_PERIOD_S, _disable),
    "password changed (notice; long period)": Revocation(LONG_PERIOD_S, _change_password),
    "API token revoked by its owner (notice; long period)": Revocation(LONG_PERIOD_S, _revoke_api_token, api_token=True),
}


@pytest.mark.parametrize("case", REVOCATIONS.values(), ids=REVOCATIONS.keys())
def test_the_stream_ends_when_its_credential_is_revoked(
    seeded: sessionmaker[Session], desk: TicketDesk, case: Revocation
) -> None:
    with feed_app(seeded, desk, recheck_s=case.recheck_s) as f:
        token_id: int | None = None
        if case.api_token:
            headers, token_id = f.api_token("leader-g1")
        else:
            headers = f.bearer("leader-g1")
        with SseStream(f.client, STREAM, headers) as s:
            assert s.status == 200
            first = f.publish("cam-g1-a")
            s.read_until(_ticket_is(first))
            case.revoke(f, token_id)
            events = s.read_until(_is_end)
            assert events[-1].json()["reason"] == "revoked"
            late = f.publish("cam-g1-a")
            assert s.next_event(0.5) is None and s.finished
            assert late not in _tickets(s.events)
        assert f.client.get("/api/tickets", headers=headers).status_code == 401  # REST agrees


# -- (d) start and end are in the access log ------------------------------------------------------------


def _sse_log(f: Feed, username: str) -> list[dict[str, Any]]:
    r = f.client.get(f"/api/audit?channel=sse&user={username}&limit=100", headers=f.bearer("admin1"))
    assert r.status_code == 200, r.text
    return list(reversed(r.json()["items"]))  # oldest first


@pytest.mark.parametrize("ending", ["disconnected", "revoked"])
def test_stream_start_and_end_are_audited(seeded: sessionmaker[Session], desk: TicketDesk, ending: str) -> None:
    with feed_app(seeded, desk, recheck_s=LONG_PERIOD_S) as f:
        with SseStream(f.client, STREAM, f.bearer("leader-g1")) as s:
            assert s.status == 200
            seen = [f.publish("cam-g1-a"), f.publish("cam-g3-a"), f.publish("cam-g1-b")]
            s.read_until(_ticket_is(seen[-1]))
            assert _tickets(s.events) == [seen[0], seen[2]]  # G3's notice is not the leader's
            if ending == "revoked":
                _disable(f, None)
                assert s.read_until(_is_end)[-1].json()["reason"] == "revoked"
        deadline = time.monotonic() + DEADLINE_S  # a disconnect is logged as the server notices it
        rows = _sse_log(f, "leader-g1")
        while len(rows) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
            rows = _sse_log(f, "leader-g1")
        assert [r["action"] for r in rows] == ["stream_start", "stream_end"], rows
        start, end = rows
        assert start["object_type"] == end["object_type"] == "ticket_feed"
        assert start["user_id"] == end["user_id"] == f.user("leader-g1").id
        assert end["detail"]["reason"] == ending
        assert end["detail"]["delivered"] == 2
