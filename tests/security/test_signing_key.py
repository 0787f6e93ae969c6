"""No installation signs logins with a key anyone else knows (issue 10, item 1).

With no ``GRIDPATROL_SECRET_KEY`` an embedded installation generates its own key in the data directory
(mode 0600, reused by every later start), a distributed one refuses to start, and only the demo signs
with a fixed (published) key. A configured key must be strong in every environment.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from api.settings import DEFAULT_SECRET, DEMO_SECRET, ApiSettings
from api.tokens import issue_access_token
from gridpatrol.runtime import Runtime
from gridpatrol.settings import Settings
from gridpatrol.signing_key import KEY_FILE_NAME, settings_with_signing_key
from models.db.tables import User
from models.errors import ConfigError
from tests.support import sample

GOOD_KEY = "Zq8-vR2mT5xW9bN4kL7pY3cF6hJ1dG0s"  # 32 characters, no repeated piece
ENV_NAMES = (
    "GRIDPATROL_SECRET_KEY",
    "GRIDPATROL_ENVIRONMENT",
    "GRIDPATROL_DATA_DIR",
    "GRIDPATROL_DATABASE_URL",
    "GRIDPATROL_REDIS_URL",
    "GRIDPATROL_METRICS_TOKEN",
    "GRIDPATROL_API_DOCS",
    "GRIDPATROL_WEBHOOK_URLS",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@contextmanager
def serve_app(settings: Settings) -> Iterator[TestClient]:
    """The API exactly as ``gridpatrol serve`` builds it (gridpatrol/cli.py run_everything)."""
    settings = settings_with_signing_key(settings)
    runtime = Runtime.build(settings)
    try:
        with TestClient(runtime.build_api()) as client:
            yield client
    finally:
        runtime.close()


def admin_of(factory: sessionmaker[Session]) -> User:
    with factory() as s:
        return s.scalars(select(User).where(User.username == "admin1")).one()


def login(client: TestClient) -> dict[str, str]:
    r = client.post("/api/auth/token", data={"username": "admin1", "password": sample.PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def test_a_token_forged_with_the_old_default_key_is_refused_by_serve(
    clean_env: pytest.MonkeyPatch, db_url: str, seeded: sessionmaker[Session], tmp_path: Path
) -> None:
    """Before: no key configured meant DEFAULT_SECRET, and this forged token was an admin's."""
    clean_env.setenv("GRIDPATROL_DATA_DIR", str(tmp_path / "var"))
    clean_env.setenv("GRIDPATROL_DATABASE_URL", db_url)
    forged = {"Authorization": "Bearer " + issue_access_token(admin_of(seeded), secret=DEFAULT_SECRET, ttl_s=900)}
    settings = Settings.from_env()
    if db_url.startswith("sqlite"):  # embedded: a key of its own, generated in the data directory
        with serve_app(settings) as client:
            assert client.get("/api/me", headers=forged).status_code == 401
            assert client.get("/api/me", headers=login(client)).json()["username"] == "admin1"
        assert (tmp_path / "var" / KEY_FILE_NAME).is_file()
    else:  # distributed: no shared file to keep a key in, so no start without one
        with pytest.raises(ConfigError, match="GRIDPATROL_SECRET_KEY is not set and the database is not SQLite"):
            settings_with_signing_key(settings)
        assert not (tmp_path / "var" / KEY_FILE_NAME).exists()
    clean_env.setenv("GRIDPATROL_SECRET_KEY", GOOD_KEY)
    with serve_app(Settings.from_env()) as client:
        assert client.get("/api/me", headers=forged).status_code == 401
        assert client.get("/api/me", headers=login(client)).status_code == 200


def test_the_generated_key_is_private_and_kept_across_starts(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data = tmp_path / "new-data-dir"
    clean_env.setenv("GRIDPATROL_DATA_DIR", str(data))
    first = settings_with_signing_key(Settings.from_env())
    key_file = data / KEY_FILE_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(data.stat().st_mode) == 0o700  # GridPatrol created it
    assert first.api.secret_key == key_file.read_text().strip()
    assert len(first.api.secret_key) >= 32 and first.api.secret_key != DEFAULT_SECRET
    # the next start, or another process sharing the data directory, signs with the same key
    second = settings_with_signing_key(Settings.from_env())
    assert second.api.secret_key == first.api.secret_key
    assert sorted(p.name for p in data.iterdir()) == [KEY_FILE_NAME]  # no temporary file left behind
    # another installation (another data directory) has its own
    clean_env.setenv("GRIDPATROL_DATA_DIR", str(tmp_path / "other"))
    assert settings_with_signing_key(Settings.from_env()).api.secret_key != first.api.secret_key


@pytest.mark.parametrize(
    ("mode", "content", "message"),
    [
        (0o644, None, "chmod 600"),
        (0o640, None, "may be read by others"),
        (0o600, "", "is empty"),
        (0o600, "k" * 40, "too repetitive"),
    ],
)
def test_a_key_file_others_may_read_or_a_bad_one_stops_the_start(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, mode: int, content: str | None, message: str
) -> None:
    clean_env.setenv("GRIDPATROL_DATA_DIR", str(tmp_path))
    settings_with_signing_key(Settings.from_env())
    key_file = tmp_path / KEY_FILE_NAME
    if content is not None:
        key_file.write_text(content)
    os.chmod(key_file, mode)
    with pytest.raises(ConfigError, match=message) as caught:
        settings_with_signing_key(Settings.from_env())
    assert str(key_file) in str(caught.value)


@pytest.mark.parametrize(
    ("environment", "variable", "value", "message"),
    [
        ("development", "GRIDPATROL_SECRET_KEY", "short", "GRIDPATROL_SECRET_KEY must be at least 32 characters (got 5)"),
        ("development", "GRIDPATROL_SECRET_KEY", "", "GRIDPATROL_SECRET_KEY must be at least 32 characters (got 0)"),
        ("production", "GRIDPATROL_SECRET_KEY", "k" * 40, "GRIDPATROL_SECRET_KEY is too repetitive (1 different"),
        ("development", "GRIDPATROL_SECRET_KEY", "abcd" * 10, "too repetitive (4 different characters"),
        ("production", "GRIDPATROL_SECRET_KEY", "0123456789" * 4, "repeats one piece of 10 characters"),
        ("development", "GRIDPATROL_SECRET_KEY", "Pass-word!" * 4, "repeats one piece of 10 characters"),
        ("development", "GRIDPATROL_SECRET_KEY", DEFAULT_SECRET, "GRIDPATROL_SECRET_KEY is a key published"),
        ("production", "GRIDPATROL_SECRET_KEY", DEFAULT_SECRET, "GRIDPATROL_SECRET_KEY is a key published"),
        ("development", "GRIDPATROL_SECRET_KEY", DEMO_SECRET, "GRIDPATROL_SECRET_KEY is a key published"),
        ("production", "GRIDPATROL_SECRET_KEY", DEMO_SECRET, "GRIDPATROL_SECRET_KEY is a key published"),
        ("demo", "GRIDPATROL_SECRET_KEY", "short", "at least 32"),  # a configured key is strong even in the demo
        ("demo", "GRIDPATROL_SECRET_KEY", DEFAULT_SECRET, "published"),
        ("production", "GRIDPATROL_METRICS_TOKEN", "metrics", "GRIDPATROL_METRICS_TOKEN must be at least 32"),
        ("development", "GRIDPATROL_METRICS_TOKEN", "m" * 32, "GRIDPATROL_METRICS_TOKEN is too repetitive"),
        ("development", "GRIDPATROL_SECRET_KEY", GOOD_KEY, None),
        ("production", "GRIDPATROL_SECRET_KEY", GOOD_KEY, None),
        ("demo", "GRIDPATROL_SECRET_KEY", GOOD_KEY, None),
        ("demo", "GRIDPATROL_SECRET_KEY", DEMO_SECRET, None),
        ("production", "GRIDPATROL_METRICS_TOKEN", GOOD_KEY[::-1], None),
    ],
)
def test_weak_keys_are_refused_in_every_environment(
    clean_env: pytest.MonkeyPatch, environment: str, variable: str, value: str, message: str | None
) -> None:
    clean_env.setenv("GRIDPATROL_ENVIRONMENT", environment)
    clean_env.setenv(variable, value)
    if message is None:
        ApiSettings()
        return
    with pytest.raises(ConfigError) as caught:
        ApiSettings()
    assert message in str(caught.value)
    assert "secrets.token_urlsafe" in str(caught.value)  # how to make a good one


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GRIDPATROL_SECRET_KEY": "k" * 40}, "GRIDPATROL_SECRET_KEY is too repetitive"),
        ({"GRIDPATROL_SECRET_KEY": DEFAULT_SECRET}, "GRIDPATROL_SECRET_KEY is a key published"),
        (
            {"GRIDPATROL_DATABASE_URL": "postgresql://gridpatrol@db.invalid:5432/gridpatrol"},
            "set GRIDPATROL_SECRET_KEY to the same random value",
        ),
    ],
)
def test_serve_refuses_to_start_on_a_weak_or_missing_key(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], message: str
) -> None:
    from gridpatrol.cli import app

    clean_env.setenv("GRIDPATROL_DATA_DIR", str(tmp_path))
    for name, value in env.items():
        clean_env.setenv(name, value)
    result = CliRunner().invoke(app, ["serve", "--no-worker", "--no-ticketer"])
    assert result.exit_code == 1
    assert message in result.output
    assert not (tmp_path / "gridpatrol.db").exists()  # refused before anything was opened


def test_the_demo_signs_with_its_fixed_key_and_says_so(
    clean_env: pytest.MonkeyPatch, seeded: sessionmaker[Session], db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clean_env.setenv("GRIDPATROL_ENVIRONMENT", "demo")
    clean_env.setenv("GRIDPATROL_DATA_DIR", str(tmp_path / "var"))
    clean_env.setenv("GRIDPATROL_DATABASE_URL", db_url)
    settings = Settings.from_env()
    assert settings.api.secret_key == DEMO_SECRET
    with caplog.at_level(logging.WARNING, logger="gridpatrol.signing_key"):
        with serve_app(settings) as client:
            assert client.get("/api/me", headers=login(client)).json()["username"] == "admin1"
    assert any("DEMO MODE" in r.getMessage() and "forge" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / "var" / KEY_FILE_NAME).exists()


def test_the_demo_command_runs_in_the_demo_environment(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``gridpatrol demo`` sets GRIDPATROL_ENVIRONMENT=demo itself (scripts/demo.sh too)."""
    import gridpatrol.cli as cli
    import gridpatrol.demo as demo

    started: list[Settings] = []
    clean_env.setenv("GRIDPATROL_ENVIRONMENT", "development")  # restored after the test
    clean_env.setenv("GRIDPATROL_DATA_DIR", str(tmp_path))
    clean_env.setattr(demo, "prepare_demo", lambda session, demo_dir, **_: True)
    clean_env.setattr(cli, "run_everything", lambda settings, **kw: started.append(settings))
    result = CliRunner().invoke(cli.app, ["demo"])
    assert result.exit_code == 0, result.output
    (settings,) = started
    assert (settings.api.environment, settings.api.secret_key) == ("demo", DEMO_SECRET)
    assert settings.tickets.environment == "demo"
    assert "export GRIDPATROL_ENVIRONMENT=demo" in (Path(__file__).parents[2] / "scripts" / "demo.sh").read_text()
