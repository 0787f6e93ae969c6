"""Issue 10 item 4: forwarded addresses only from trusted proxies, usernames unique without regard to
case, guessing limited without a lock-out anyone can trigger, common and trivial passwords refused."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.client_address import client_address, parse_networks
from api.login_throttle import LoginThrottle, Throttled
from api.settings import ApiSettings
from gridpatrol.demo import DEMO_PASSWORD
from models.db.engine import alembic_config, make_engine, upgrade
from models.db.tables import AccessLog
from models.errors import InvalidInput
from models.identity.passwords import check_password_policy
from tests.conftest import TEST_SECRET
from tests.support import sample
from tests.support.procs import run_cli

Headers = Callable[[str], dict[str, str]]
PROXY = ("10.0.0.0/8",)

#: peer, X-Forwarded-For headers, trusted proxies → the client address used for limits and the log
ADDRESS_CASES = [
    ("127.0.0.1", ["1.2.3.4"], (), "127.0.0.1"),  # no proxy configured: loopback is not believed
    ("203.0.113.9", ["1.2.3.4"], PROXY, "203.0.113.9"),  # an untrusted peer's header is ignored
    ("10.0.0.5", ["1.2.3.4"], PROXY, "1.2.3.4"),
    ("10.0.0.5", ["6.6.6.6, 1.2.3.4"], PROXY, "1.2.3.4"),  # the client's own claim stays to the left
    ("10.0.0.5", ["1.2.3.4, 10.0.0.7"], PROXY, "1.2.3.4"),  # two trusted proxies in a row
    ("10.0.0.5", ["1.2.3.4", "10.0.0.7"], PROXY, "1.2.3.4"),  # the header repeated
    ("10.0.0.5", ["<script>"], PROXY, "10.0.0.5"),  # not an address: the proxy itself
    ("10.0.0.5", ["1.2.3.4, not-an-ip"], PROXY, "10.0.0.5"),
    ("10.0.0.5", [], PROXY, "10.0.0.5"),
    ("10.0.0.5", ["2001:db8::1"], PROXY, "2001:db8::1"),
]


@pytest.mark.parametrize(("peer", "forwarded", "trusted", "expected"), ADDRESS_CASES)
def test_client_address(peer: str, forwarded: list[str], trusted: tuple[str, ...], expected: str) -> None:
    assert client_address(peer, forwarded, trusted=parse_networks(trusted)) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", []), ("10.0.0.5", ["10.0.0.5/32"]), ("10.0.0.5, 10.1.0.0/16", ["10.0.0.5/32", "10.1.0.0/16"]), ("proxy.local", None), ("10.0.0.0/33", None)],
)
def test_trusted_proxies_setting(monkeypatch: pytest.MonkeyPatch, value: str, expected: list[str] | None) -> None:
    monkeypatch.setenv("GRIDPATROL_TRUSTED_PROXIES", value)
    if expected is None:
        with pytest.raises(ValueError, match="GRIDPATROL_TRUSTED_PROXIES"):
            ApiSettings()
    else:
        assert ApiSettings().trusted_proxies == expected
        assert all(ipaddress.ip_network(n) for n in expected)


def _app_client(seeded: sessionmaker[Session], *, peer: str, trusted: list[str], throttle: LoginThrottle) -> TestClient:
    settings = ApiSettings(secret_key=TEST_SECRET, trusted_proxies=trusted)
    return TestClient(create_app(settings, session_factory=seeded, login_throttle=throttle), client=(peer, 50000))


def test_rotating_x_forwarded_for_does_not_dodge_the_address_limit(seeded: sessionmaker[Session]) -> None:
    throttle = LoginThrottle(max_per_address=3, max_per_user_address=100, max_per_user=100)
    with _app_client(seeded, peer="127.0.0.1", trusted=[], throttle=throttle) as client:
        codes = [
            client.post(
                "/api/auth/token", data={"username": f"u{i}", "password": "wrong-pass"}, headers={"X-Forwarded-For": f"9.9.9.{i}"}
            ).status_code
            for i in range(5)
        ]
    assert codes == [401, 401, 401, 429, 429]
    with seeded() as s:
        addrs = set(s.scalars(select(AccessLog.remote_addr).where(AccessLog.action.in_(["login_failed", "deny"]))))
    assert addrs == {"127.0.0.1"}


def test_a_guesser_locks_out_only_their_own_address(seeded: sessionmaker[Session]) -> None:
    """One address guessing a user's password is stopped; the user still logs in from elsewhere."""
    throttle = LoginThrottle()
    with _app_client(seeded, peer="10.0.0.5", trusted=["10.0.0.0/8"], throttle=throttle) as client:
        attacker = {"X-Forwarded-For": "198.51.100.7"}
        for _ in range(throttle.max_per_user_address):
            r = client.post("/api/auth/token", data={"username": "leader-g1", "password": "wrong-pass"}, headers=attacker)
            assert r.status_code == 401
        r = client.post("/api/auth/token", data={"username": "LEADER-G1", "password": sample.PASSWORD}, headers=attacker)
        assert r.status_code == 429 and "this user from this address" in r.json()["detail"]
        owner = {"X-Forwarded-For": "203.0.113.20"}
        r = client.post("/api/auth/token", data={"username": "leader-g1", "password": sample.PASSWORD}, headers=owner)
        assert r.status_code == 200, r.text
    with seeded() as s:
        deny = s.scalars(select(AccessLog).where(AccessLog.action == "deny")).one()
    assert deny.remote_addr == "198.51.100.7"


def test_many_addresses_meet_the_slower_per_user_limit() -> None:
    now = [1000.0]
    throttle = LoginThrottle(max_per_user=10, max_per_user_address=5, clock=lambda: now[0])
    for i in range(10):
        throttle.check(username="li", remote_addr=f"198.51.100.{i // 5}")
        throttle.failed(username="li", remote_addr=f"198.51.100.{i // 5}")
    with pytest.raises(Throttled, match="for this user:"):
        throttle.check(username="Li", remote_addr="203.0.113.1")
    now[0] += throttle.window_s
    throttle.check(username="li", remote_addr="203.0.113.1")


def test_usernames_are_unique_without_regard_to_case(client: TestClient, auth_headers: Headers) -> None:
    admin = auth_headers("admin1")
    body = {"username": "Admin1", "role": "operator", "password": "correct-horse-9"}
    r = client.post("/api/admin/users", headers=admin, json=body)
    assert r.status_code == 409 and "admin1" in r.json()["detail"], r.text
    # login finds the user whatever the case typed
    r = client.post("/api/auth/token", data={"username": "ADMIN1", "password": sample.PASSWORD})
    assert r.status_code == 200, r.text


def test_the_migration_names_case_duplicates_instead_of_failing_silently(db_url: str) -> None:
    engine = make_engine(db_url)
    config = alembic_config(engine)
    command.downgrade(config, "0002")
    try:
        with engine.begin() as conn:
            for name in ("Zhang", "zhang", "ZHANG", "li"):
                conn.execute(
                    text("INSERT INTO users (username, display_name, password_hash, role, enabled, token_version, created_at) "
                         "VALUES (:n, '', 'x', 'patroller', true, 0, CURRENT_TIMESTAMP)"),
                    {"n": name},
                )  # fmt: skip
        with pytest.raises(RuntimeError, match=r"'zhang' \(3 users\)"):
            upgrade(engine)
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM users"))
    finally:
        upgrade(engine)
        engine.dispose()


#: password, username → the reason refused (None: accepted)
PASSWORD_CASES = [
    ("        ", "zhang", "one character repeated or only spaces"),
    ("12345678", "zhang", "too weak"),
    ("password", "zhang", "too weak"),
    ("qwertyuiop", "zhang", "too weak"),
    ("aaaaaaaaaaaa", "zhang", "one character repeated"),
    ("zhang-2024!", "zhang", "must not contain the username"),
    ("short", "zhang", "at least 8 characters"),
    (sample.PASSWORD, "zhang", None),
    (DEMO_PASSWORD, "admin", None),
    ("brand-new-pass-1", "leader-g1", None),
]


@pytest.mark.parametrize(("password", "username", "reason"), PASSWORD_CASES)
def test_password_policy(password: str, username: str, reason: str | None) -> None:
    if reason is None:
        check_password_policy(password, username=username)
        return
    with pytest.raises(InvalidInput, match=reason) as err:
        check_password_policy(password, username=username)
    assert err.value.field == "password"


@pytest.mark.parametrize("password", ["        ", "12345678", "password"])
def test_weak_passwords_are_refused_by_the_api(client: TestClient, auth_headers: Headers, password: str) -> None:
    r = client.post(
        "/api/admin/users", headers=auth_headers("admin1"), json={"username": "weak", "role": "operator", "password": password}
    )
    assert r.status_code == 422 and "password" in str(r.json()["detail"]), r.text
    r = client.post(
        "/api/me/password",
        headers=auth_headers("leader-g1"),
        json={"current_password": sample.PASSWORD, "new_password": password},
    )
    assert r.status_code == 422 and "new_password" in str(r.json()["detail"]), r.text


def test_weak_passwords_are_refused_by_the_cli(db_url: str, tmp_path: Path) -> None:
    env = {
        "GRIDPATROL_DATA_DIR": str(tmp_path / "var"),
        "GRIDPATROL_DATABASE_URL": db_url.replace("postgresql+psycopg://", "postgresql://"),
        "GRIDPATROL_SECRET_KEY": "cli-secret-key-with-at-least-32-characters",
    }
    result = run_cli(["users", "add", "wang", "--role", "admin", "--password", "12345678"], env)
    assert result.returncode != 0 and "field 'password'" in result.stdout + result.stderr
    result = run_cli(["users", "add", "wang", "--role", "admin", "--password", sample.PASSWORD], env)
    assert result.returncode == 0, result.stderr
