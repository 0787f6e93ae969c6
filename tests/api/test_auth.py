"""Login sessions, refresh rotation, throttling, password change, disabling a user, API tokens, the secret."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.login_throttle import LoginThrottle
from api.settings import DEFAULT_SECRET, ApiSettings
from models.db.tables import AccessLog, ApiToken, User, utcnow
from models.errors import AccessDenied, AuthError, ConfigError
from models.identity.tokens import TokenScope, resolve_api_token
from models.identity.users import Credential, credential_is_live
from tests.conftest import TEST_SECRET
from tests.support import sample

Headers = Callable[[str], dict[str, str]]


def login(client: TestClient, username: str, password: str = sample.PASSWORD) -> dict:
    r = client.post("/api/auth/token", data={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return r.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_refresh_rotates_and_a_replayed_token_ends_the_session(client: TestClient) -> None:
    first = login(client, "leader-g1")
    assert first["refresh_token"].startswith("gpr_") and first["expires_in"] == 900
    r = client.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert client.get("/api/me", headers=bearer(second["access_token"])).json()["username"] == "leader-g1"
    # the first token again: somebody holds a copy, so the whole session (family) is revoked
    replay = client.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert replay.status_code == 401 and "already used" in replay.json()["detail"]
    assert client.post("/api/auth/refresh", json={"refresh_token": second["refresh_token"]}).status_code == 401
    # logout ends another session of the same user, and only that one
    third, fourth = login(client, "leader-g1"), login(client, "leader-g1")
    assert client.post("/api/auth/logout", json={"refresh_token": third["refresh_token"]}).status_code == 204
    assert client.post("/api/auth/refresh", json={"refresh_token": third["refresh_token"]}).status_code == 401
    assert client.post("/api/auth/refresh", json={"refresh_token": fourth["refresh_token"]}).status_code == 200
    assert client.post("/api/auth/refresh", json={"refresh_token": "gpr_forged"}).status_code == 401


def test_login_throttle_per_user_and_per_address(seeded: sessionmaker[Session]) -> None:
    now = [1_000_000.0]
    throttle = LoginThrottle(max_per_user=3, max_per_address=5, window_s=600, clock=lambda: now[0])
    app = create_app(ApiSettings(secret_key=TEST_SECRET), session_factory=seeded, login_throttle=throttle)
    with TestClient(app) as client:
        for _ in range(3):
            r = client.post("/api/auth/token", data={"username": "leader-g1", "password": "wrong-password"})
            assert r.status_code == 401
        # the right password is not even checked now
        r = client.post("/api/auth/token", data={"username": "leader-g1", "password": sample.PASSWORD})
        assert r.status_code == 429
        assert r.json() == {"error": "too_many_requests", "detail": "too many failed logins for this user: try again in 600 s", "field": None}
        assert r.headers["Retry-After"] == "600"
        # another user from the same address still gets in, until the address has failed 5 times
        login(client, "leader-g3")
        for name in ("nobody-1", "nobody-2"):
            assert client.post("/api/auth/token", data={"username": name, "password": "x" * 9}).status_code == 401
        r = client.post("/api/auth/token", data={"username": "leader-g3", "password": sample.PASSWORD})
        assert r.status_code == 429 and "this address" in r.json()["detail"]
        # time passes: the window frees them again (no sleep: the throttle's clock is injected)
        now[0] += 601
        login(client, "leader-g1")
    with seeded() as s:
        actions = [a for (a,) in s.execute(select(AccessLog.action).where(AccessLog.action.like("login%")))]
    assert actions.count("login_failed") == 5 and actions.count("login") == 2


def test_password_change_ends_every_other_session(client: TestClient) -> None:
    old = login(client, "leader-g1")
    r = client.post(
        "/api/me/password",
        json={"current_password": "not-my-password", "new_password": "brand-new-pass-1"},
        headers=bearer(old["access_token"]),
    )
    assert r.status_code == 422 and r.json()["detail"] == "field 'current_password': the current password is wrong"
    r = client.post(
        "/api/me/password",
        json={"current_password": sample.PASSWORD, "new_password": "short"},
        headers=bearer(old["access_token"]),
    )
    assert r.status_code == 422 and "at least 8" in r.json()["detail"]
    r = client.post(
        "/api/me/password",
        json={"current_password": sample.PASSWORD, "new_password": "brand-new-pass-1"},
        headers=bearer(old["access_token"]),
    )
    assert r.status_code == 200, r.text
    fresh = r.json()
    assert client.get("/api/me", headers=bearer(old["access_token"])).status_code == 401
    assert client.post("/api/auth/refresh", json={"refresh_token": old["refresh_token"]}).status_code == 401
    assert client.get("/api/me", headers=bearer(fresh["access_token"])).status_code == 200
    assert client.post("/api/auth/token", data={"username": "leader-g1", "password": sample.PASSWORD}).status_code == 401
    login(client, "leader-g1", "brand-new-pass-1")


def test_disabling_a_user_cuts_tokens_refresh_api_tokens_and_streams(
    client: TestClient, auth_headers: Headers, seeded: sessionmaker[Session]
) -> None:
    session_pair = login(client, "leader-g1")
    h = bearer(session_pair["access_token"])
    created = client.post("/api/tokens", json={"name": "nvr", "scopes": ["api:read", "rtsp"]}, headers=h)
    assert created.status_code == 201, created.text
    api_token = created.json()["token"]
    assert client.get("/api/cameras", headers=bearer(api_token)).status_code == 200
    with seeded() as s:
        uid = s.scalars(select(User.id).where(User.username == "leader-g1")).one()
        user = s.get(User, uid)
        assert user is not None
        jwt_cred = Credential(user_id=uid, token_version=user.token_version)
        api_cred = Credential(user_id=uid, token_version=user.token_version, api_token_id=created.json()["id"])
        assert credential_is_live(s, jwt_cred) and credential_is_live(s, api_cred)

    admin = auth_headers("admin1")
    r = client.post(f"/api/admin/users/{uid}/disable", headers=admin)
    assert r.status_code == 200 and r.json()["enabled"] is False
    assert client.get("/api/me", headers=h).status_code == 401
    assert client.get("/api/cameras", headers=bearer(api_token)).status_code == 401
    assert client.post("/api/auth/refresh", json={"refresh_token": session_pair["refresh_token"]}).status_code == 401
    assert client.post("/api/auth/token", data={"username": "leader-g1", "password": sample.PASSWORD}).status_code == 401
    with seeded() as s:  # what an SSE stream, wall tile or RTSP session polls
        assert not credential_is_live(s, jwt_cred) and not credential_is_live(s, api_cred)
        with pytest.raises(AuthError):
            resolve_api_token(s, api_token, scope=TokenScope.rtsp)
    # an admin may not lock themselves out
    me_id = client.get("/api/me", headers=admin).json()["id"]
    assert client.post(f"/api/admin/users/{me_id}/disable", headers=admin).status_code == 409
    # enabled again: a new login works, the old access token stays dead (its token version is gone)
    assert client.post(f"/api/admin/users/{uid}/enable", headers=admin).json()["enabled"] is True
    assert client.get("/api/me", headers=h).status_code == 401
    # ... and so does the API token: disabling revoked it for good (issue 10 item 6)
    assert client.get("/api/cameras", headers=bearer(api_token)).status_code == 401
    login(client, "leader-g1")


def test_api_tokens_are_shown_once_scoped_and_revocable(
    client: TestClient, auth_headers: Headers, seeded: sessionmaker[Session]
) -> None:
    h = auth_headers("leader-g1")
    r = client.post("/api/tokens", json={"name": "reader", "scopes": ["api:read"]}, headers=h)
    assert r.status_code == 201
    reader = r.json()
    token = reader["token"]
    assert token.startswith("gp_") and len(token) > 40
    listing = client.get("/api/tokens", headers=h)
    assert token not in listing.text and [t["name"] for t in listing.json()] == ["reader"]
    with seeded() as s:  # only the hash is stored
        assert token not in [t for (t,) in s.execute(select(ApiToken.token_hash))]
    tok = bearer(token)
    names = {c["name"] for c in client.get("/api/cameras", headers=tok).json()["items"]}
    assert names == {"cam-g1-a", "cam-g1-b"}  # the token sees what its user sees
    # read scope: no writes, and a token may not mint tokens or change the password
    r = client.post("/api/tokens", json={"name": "x", "scopes": ["api:read"]}, headers=tok)
    assert r.status_code == 403 and "api:write" in r.json()["detail"]
    writer = client.post("/api/tokens", json={"name": "w", "scopes": ["api:write", "api:read"]}, headers=h).json()
    r = client.post("/api/tokens", json={"name": "x", "scopes": ["api:read"]}, headers=bearer(writer["token"]))
    assert r.status_code == 403 and "log in with a password" in r.json()["detail"]
    r = client.post(
        "/api/me/password", json={"current_password": sample.PASSWORD, "new_password": "new-pass-123"},
        headers=bearer(writer["token"]),
    )  # fmt: skip
    assert r.status_code == 403
    # RTSP gateway: a token without the rtsp scope is refused with a reason
    with seeded() as s:
        with pytest.raises(AccessDenied):
            resolve_api_token(s, token, scope=TokenScope.rtsp)
        with pytest.raises(AuthError):
            resolve_api_token(s, "gp_" + "x" * 43, scope=TokenScope.api_read)
    # bad input
    bad = client.post("/api/tokens", json={"name": "x", "scopes": ["root"]}, headers=h)
    assert bad.status_code == 422 and "unknown scope" in bad.json()["detail"]
    past = (utcnow() - timedelta(days=1)).isoformat()
    assert client.post("/api/tokens", json={"name": "x", "scopes": ["rtsp"], "expires_at": past}, headers=h).status_code == 422
    # another user's token is 404 to me; mine revokes, then it is dead
    other = auth_headers("leader-g3")
    assert client.delete(f"/api/tokens/{reader['id']}", headers=other).status_code == 404
    assert client.delete(f"/api/tokens/{reader['id']}", headers=h).status_code == 204
    assert client.get("/api/cameras", headers=tok).status_code == 401
    # expired tokens die by themselves
    with seeded.begin() as s:
        row = s.get(ApiToken, writer["id"])
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
    assert client.get("/api/cameras", headers=bearer(writer["token"])).status_code == 401
    # admins see and revoke everyone's
    listed = client.get("/api/admin/tokens", params={"user": "leader-g1"}, headers=auth_headers("admin1")).json()
    assert {t["name"] for t in listed} == {"reader", "w"}


def test_production_refuses_the_default_or_a_short_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRIDPATROL_SECRET_KEY", raising=False)
    # none configured: the process wiring generates one or refuses (tests/security/test_signing_key.py)
    assert ApiSettings(environment="production").secret_key == ""
    with pytest.raises(ConfigError):
        ApiSettings(environment="production", secret_key="short")
    monkeypatch.setenv("GRIDPATROL_ENVIRONMENT", "production")
    monkeypatch.setenv("GRIDPATROL_SECRET_KEY", DEFAULT_SECRET)
    with pytest.raises(ConfigError, match="GRIDPATROL_SECRET_KEY"):
        ApiSettings()
    with pytest.raises(ConfigError, match="GRIDPATROL_SECRET_KEY"):
        ApiSettings(environment="development")  # the old default is refused everywhere now
    monkeypatch.setenv("GRIDPATROL_SECRET_KEY", TEST_SECRET)
    assert ApiSettings().secret_key == TEST_SECRET
