"""Browser sessions (api/session_cookies.py): login sets the HttpOnly session and refresh cookies and the
readable CSRF cookie; cookie-authenticated writes need the CSRF header (bearer clients do not); refresh
rotates, logout clears, a password change hands this browser a new session; an evidence image opens
with the cookie alone, through the same access check. The web UI's files are served under ``/``."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import ApiSettings
from models.bus.memory import MemoryBus
from models.db.engine import make_engine, make_session_factory
from models.evidence.store import FileEvidenceStore
from models.tickets.categories import TicketSettings
from models.tickets.desk import TicketDesk
from tests.conftest import TEST_SECRET, seed
from tests.support import sample
from tests.support.databases import sqlite_copy

PHOTO = base64.b64encode(cv2.imencode(".jpg", np.full((48, 64, 3), 90, np.uint8))[1].tobytes()).decode()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, _sqlite_template: Path) -> Iterator[TestClient]:
    """One seeded app for the module (cookies do not depend on the database kind; seeding is the slow part)."""
    folder = tmp_path_factory.mktemp("cookies")
    engine = make_engine(sqlite_copy(_sqlite_template, folder))
    factory = make_session_factory(engine)
    seed(factory, folder)
    desk = TicketDesk(TicketSettings(), evidence=FileEvidenceStore(folder / "evidence"))
    app = create_app(ApiSettings(secret_key=TEST_SECRET), session_factory=factory, desk=desk, bus=MemoryBus())
    with TestClient(app) as c:
        yield c
    engine.dispose()


def bearer(client: TestClient, username: str) -> dict[str, str]:
    r = client.post("/api/auth/token", data={"username": username, "password": sample.PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def set_cookies(response) -> dict[str, SimpleCookie]:  # type: ignore[no-untyped-def]
    """Each Set-Cookie header of a response, parsed, by cookie name."""
    out: dict[str, SimpleCookie] = {}
    for header in response.headers.get_list("set-cookie"):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        for name in jar:
            out[name] = jar
    return out


def browser(client: TestClient, *, https: bool = False) -> TestClient:
    """A second client on the same app with its own cookie jar (a browser)."""
    return TestClient(client.app, base_url="https://testserver" if https else "http://testserver")


WEB = {"X-GridPatrol-Session": "cookie"}  # what the web UI's login sends


def login(c: TestClient, username: str = "leader-g1") -> None:
    r = c.post("/api/auth/token", data={"username": username, "password": sample.PASSWORD}, headers=WEB)
    assert r.status_code == 200, r.text


def csrf(c: TestClient) -> dict[str, str]:
    return {"X-CSRF-Token": c.cookies["gp_csrf"]}


def test_login_sets_the_three_cookies_with_their_attributes(client: TestClient) -> None:
    for https in (False, True):
        b = browser(client, https=https)
        plain = b.post("/api/auth/token", data={"username": "leader-g1", "password": sample.PASSWORD})
        assert plain.status_code == 200 and plain.json()["access_token"]
        assert not set_cookies(plain) and not b.cookies  # an API client that did not ask gets no cookie
        r = b.post(
            "/api/auth/token", data={"username": "leader-g1", "password": sample.PASSWORD}, headers=WEB
        )
        assert r.status_code == 200
        assert r.json()["access_token"]  # the same answer as a bearer client's
        cookies = set_cookies(r)
        assert set(cookies) == {"gp_session", "gp_refresh", "gp_csrf"}
        session, refresh, token = (
            cookies["gp_session"]["gp_session"],
            cookies["gp_refresh"]["gp_refresh"],
            cookies["gp_csrf"]["gp_csrf"],
        )
        assert session.value == r.json()["access_token"]
        assert (session["httponly"], session["samesite"].lower(), session["path"]) == (True, "strict", "/")
        assert (refresh["httponly"], refresh["samesite"].lower(), refresh["path"]) == (
            True,
            "strict",
            "/api/auth",
        )
        assert refresh.value == r.json()["refresh_token"]
        assert not token["httponly"] and token["path"] == "/" and len(token.value) >= 32
        for morsel in (session, refresh, token):
            assert bool(morsel["secure"]) is https


def test_cookie_session_reads_and_writes_with_the_csrf_header(client: TestClient) -> None:
    b = browser(client)
    assert b.get("/api/me").status_code == 401
    login(b)
    me = b.get("/api/me")
    assert me.status_code == 200 and me.json()["username"] == "leader-g1"
    lon, lat = sample.point_in("G1")
    body = {"category": "crowding", "lon": lon, "lat": lat, "description": "巡查发现", "photos": [PHOTO]}
    refused = b.post("/api/tickets", json=body)
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    wrong = b.post("/api/tickets", json=body, headers={"X-CSRF-Token": "x" * 43})
    assert wrong.status_code == 403
    made = b.post("/api/tickets", json=body, headers=csrf(b))
    assert made.status_code == 201, made.text
    # the evidence image opens with the cookie alone (an <img>), through the ticket access check
    url = made.json()["evidence_url"]
    image = b.get(url)
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    other = browser(client)
    login(other, "leader-g3")
    assert other.get(url).status_code == 404
    assert browser(client).get(url).status_code == 401


def test_bearer_clients_need_no_csrf_token(client: TestClient) -> None:
    lon, lat = sample.point_in("G1")
    body = {"category": "crowding", "lon": lon, "lat": lat, "description": "巡查发现"}
    r = browser(client).post("/api/tickets", json=body, headers=bearer(client, "leader-g1"))
    assert r.status_code == 201, r.text


def test_refresh_rotates_the_cookies_and_logout_clears_them(client: TestClient) -> None:
    b = browser(client)
    login(b)
    first_refresh = b.cookies["gp_refresh"]
    assert b.post("/api/auth/refresh").status_code == 403  # the CSRF header is required here too
    r = b.post("/api/auth/refresh", headers=csrf(b))
    assert r.status_code == 200, r.text
    assert set(set_cookies(r)) == {"gp_session", "gp_refresh", "gp_csrf"}
    assert b.cookies["gp_refresh"] != first_refresh
    assert b.get("/api/me").status_code == 200
    # a replayed refresh token is refused (and revokes its family)
    assert client.post("/api/auth/refresh", json={"refresh_token": first_refresh}).status_code == 401
    # logout: the refresh token is revoked and the cookies cleared
    b2 = browser(client)
    login(b2)
    kept = b2.cookies["gp_refresh"]
    out = b2.post("/api/auth/logout", headers=csrf(b2))
    assert out.status_code == 204
    cleared = set_cookies(out)
    assert set(cleared) == {"gp_session", "gp_refresh", "gp_csrf"}
    assert all(jar[name]["max-age"] == "0" for name, jar in cleared.items())
    assert b2.get("/api/me").status_code == 401
    assert client.post("/api/auth/refresh", json={"refresh_token": kept}).status_code == 401
    # without a session, logout still answers and clears what the browser holds
    assert browser(client).post("/api/auth/logout").status_code == 204


def test_password_change_gives_this_browser_a_new_session(client: TestClient) -> None:
    b = browser(client)
    login(b, "patroller-g2")
    old_session = b.cookies["gp_session"]
    r = b.post(
        "/api/me/password",
        json={"current_password": sample.PASSWORD, "new_password": "a-new-password-123"},
        headers=csrf(b),
    )
    assert r.status_code == 200, r.text
    assert b.cookies["gp_session"] != old_session
    assert b.get("/api/me").status_code == 200
    stale = browser(client)
    stale.cookies.set("gp_session", old_session)
    assert stale.get("/api/me").status_code == 401  # every token issued before is dead


def test_the_web_ui_is_served_under_root(client: TestClient) -> None:
    index = client.get("/")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/app.js">' in index.text
    assert index.headers["cache-control"] == "no-cache"
    csp = index.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert index.headers["x-frame-options"] == "DENY"
    script = client.get("/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert client.get("/app.js", headers={"If-None-Match": script.headers["etag"]}).status_code == 304
    assert client.get("/pages/tickets.js").status_code == 200
    # the API keeps its own answers: JSON 404s, never a page
    missing = client.get("/api/no-such-route")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert client.get("/no-such-file.js").status_code == 404
    assert client.get("/../api/deps.py").status_code == 404
