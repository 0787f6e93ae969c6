"""Issue 10 item 9: camera credentials at rest. The database never holds a camera password in clear, the
key lives apart from it (0600 file or the environment), the worker alone decrypts, legacy plain rows are
encrypted, rotation re-encrypts everything under a new key, and a wrong key or a tampered value is a
clear ``credentials`` failure of that camera, never a crash. Storage tests run on SQLite and PostgreSQL."""

from __future__ import annotations

import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from detectors.backends import ClassicConfig
from gridpatrol.worker import Worker
from ingest.leases import MemoryLeaseStore
from ingest.settings import IngestSettings
from models.bus.memory import MemoryBus
from models.db.engine import alembic_config, make_engine, transaction, upgrade
from models.errors import ConfigError
from models.evidence.store import FileEvidenceStore
from models.grid.cameras import CameraSpec, register_cameras
from models.grid.credentials import (
    CredentialKey,
    CredentialKeyring,
    CredentialsError,
    CredentialsSettings,
    camera_secret,
    load_keyring,
    prepare_credentials,
    rotate_credentials_key,
    set_camera_secrets,
    stored_key_ids,
)
from tests.support.procs import run_cli

PASSWORD = "Sup3r-Secret_pw"
URL = f"rtsp://admin:{PASSWORD}@10.20.30.40:554/Streaming/Channels/102?token=tk-{PASSWORD}"
ONVIF_PASSWORD = f"onvif-{PASSWORD}"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def raw_rows(factory: sessionmaker[Session]) -> list[tuple[str, str, str | None, str | None, str | None]]:
    """The cameras rows as plain SQL reads them: what a stolen database file shows."""
    with factory() as s:
        rows = s.execute(text("SELECT name, url, onvif_url, onvif_password, stream_host FROM cameras ORDER BY id"))
        return [tuple(r) for r in rows]  # type: ignore[misc]


def register(factory: sessionmaker[Session], keyring: CredentialKeyring | None, name: str = "gate-1", url: str = URL) -> int:
    with transaction(factory) as s:
        register_cameras(s, [CameraSpec(name=name, url=url, lon=None, lat=None, onvif_url="http://10.20.30.40:80")], credentials=keyring)
        from models.db.tables import Camera

        cam = s.query(Camera).filter_by(name=name).one()
        set_camera_secrets(cam, keyring, onvif_password=ONVIF_PASSWORD)
        return cam.id


def worker(factory: sessionmaker[Session], tmp_path: Path, keyring: CredentialKeyring | None, **ingest: object) -> Worker:
    return Worker(
        worker_id="w-credentials",
        session_factory=factory,
        bus=MemoryBus(),
        leases=MemoryLeaseStore(),
        evidence=FileEvidenceStore(tmp_path / "evidence"),
        backend=ClassicConfig(),
        ingest=IngestSettings(**ingest),  # type: ignore[arg-type]
        poll_s=0.2,
        credentials=keyring,
    )


def wait_for(check: Callable[[], bool], bound_s: float = 60) -> bool:
    """Poll ``check``; the bound only keeps a broken build from hanging (never the assertion)."""
    deadline = time.monotonic() + bound_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def file_settings() -> CredentialsSettings:
    return CredentialsSettings(credentials_key=None, credentials_key_file=None)


# --- at rest ----------------------------------------------------------------------------------------------
def test_the_raw_row_holds_no_password_and_the_worker_gets_the_url_back(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    keyring = prepare_credentials(session_factory, file_settings(), data_dir=tmp_path / "var")
    cam_id = register(session_factory, keyring)

    rows = raw_rows(session_factory)
    assert len(rows) == 1
    name, url, onvif_url, onvif_password, host = rows[0]
    for value in (url, onvif_url, onvif_password):
        assert value is not None and value.startswith(f"gpenc:v1:{keyring.primary.key_id}:")
        assert PASSWORD not in value and "admin" not in value and "10.20.30.40" not in value
    assert host == "10.20.30.40"  # the one part the API shows, kept in clear

    w = worker(session_factory, tmp_path, keyring)
    w.refresh()
    assert w.cameras[str(cam_id)].spec.url == URL  # what the reader opens
    assert camera_secret(name, "onvif_password", onvif_password, keyring) == ONVIF_PASSWORD


def test_the_api_shows_the_host_of_an_encrypted_url_and_never_the_credentials(
    seeded: sessionmaker[Session], client, auth_headers, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    prepare_credentials(seeded, file_settings(), data_dir=tmp_path / "var")  # what a worker start does
    assert all(r[1].startswith("gpenc:v1:") for r in raw_rows(seeded))
    r = client.get("/api/cameras", headers=auth_headers("admin1"))
    assert r.status_code == 200
    items = r.json()["items"]
    assert len(items) >= 1
    assert {c["stream_host"] for c in items} == {"127.0.0.1"}
    assert "gpenc" not in r.text


def test_legacy_plain_rows_keep_working_and_are_encrypted_by_the_migration_step(
    db_url: str, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    engine = make_engine(db_url)
    from alembic import command

    try:
        command.downgrade(alembic_config(engine), "0003")  # a database of the version before this change
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO cameras (name, url, onvif_url, onvif_password, grid_override, enabled, status, created_at, "
                     "updated_at) VALUES ('legacy', :url, NULL, :pw, false, true, 'unknown', :now, :now)"),
                {"url": URL, "pw": ONVIF_PASSWORD, "now": "2026-01-01 00:00:00+00:00"},
            )
    finally:
        upgrade(engine)
        engine.dispose()
    [(_, url, _, password, host)] = raw_rows(session_factory)
    assert (url, password, host) == (URL, ONVIF_PASSWORD, "10.20.30.40")  # migrated, still plain, still usable

    w = worker(session_factory, tmp_path, None)  # a worker of the old kind (no key) still reads it
    w.refresh()
    assert [c.spec.url for c in w.cameras.values()] == [URL]

    keyring = prepare_credentials(session_factory, file_settings(), data_dir=tmp_path / "var")  # on start
    [(name, url, _, password, host)] = raw_rows(session_factory)
    assert url.startswith("gpenc:v1:") and PASSWORD not in url and PASSWORD not in (password or "")
    assert camera_secret(name, "url", url, keyring) == URL
    assert camera_secret(name, "onvif_password", password, keyring) == ONVIF_PASSWORD
    w = worker(session_factory, tmp_path, keyring)
    w.refresh()
    assert [c.spec.url for c in w.cameras.values()] == [URL]


# --- files ------------------------------------------------------------------------------------------------
def test_the_data_dir_is_0700_and_the_database_key_and_evidence_files_0600(tmp_path: Path) -> None:
    data = tmp_path / "fresh" / "var"
    engine = make_engine(f"sqlite:///{data / 'gridpatrol.db'}")
    upgrade(engine)
    factory = sessionmaker(bind=engine)
    keyring = prepare_credentials(factory, file_settings(), data_dir=data)
    register(factory, keyring)
    key_file = data / "credentials.key"
    store = FileEvidenceStore(data / "evidence")
    key = store.put(b"\xff\xd8\xff jpeg", prefix="cam-1")
    engine.dispose()

    assert mode(data) == 0o700
    db_files = sorted(data.glob("gridpatrol.db*"))
    assert db_files and all(mode(p) == 0o600 for p in db_files), [(p.name, oct(mode(p))) for p in db_files]
    assert mode(key_file) == 0o600
    evidence = data / "evidence" / key
    assert mode(evidence) == 0o600
    assert {mode(p) for p in evidence.parents if data / "evidence" in (p, *p.parents)} == {0o700}


def test_an_existing_world_readable_sqlite_file_is_made_private(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    db.touch(mode=0o644)
    db.chmod(0o644)
    make_engine(f"sqlite:///{db}").dispose()
    assert mode(db) == 0o600


def test_a_second_machine_without_the_key_refuses_instead_of_starting_a_second_key(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    keyring = prepare_credentials(session_factory, file_settings(), data_dir=tmp_path / "machine-a")
    register(session_factory, keyring)
    with pytest.raises(ConfigError, match=keyring.primary.key_id) as err:
        prepare_credentials(session_factory, file_settings(), data_dir=tmp_path / "machine-b")
    assert "GRIDPATROL_CREDENTIALS_KEY" in str(err.value)
    assert not (tmp_path / "machine-b" / "credentials.key").exists()
    # the documented fix: the same key in the environment
    env = CredentialsSettings(credentials_key=SecretStr(keyring.primary.encoded()))
    shared = prepare_credentials(session_factory, env, data_dir=tmp_path / "machine-b")
    assert camera_secret("gate-1", "url", raw_rows(session_factory)[0][1], shared) == URL


# --- wrong keys and tampering -----------------------------------------------------------------------------
def test_a_tampered_ciphertext_is_refused_with_a_clear_error(session_factory: sessionmaker[Session], tmp_path: Path) -> None:
    keyring = prepare_credentials(session_factory, file_settings(), data_dir=tmp_path / "var")
    register(session_factory, keyring)
    [(name, url, _, password, _)] = raw_rows(session_factory)
    body_at = len(url) - 10
    tampered = url[:body_at] + ("A" if url[body_at] != "A" else "B") + url[body_at + 1 :]
    with pytest.raises(CredentialsError, match=r"camera gate-1: url: .*altered"):
        camera_secret(name, "url", tampered, keyring)
    # a ciphertext moved to another column is refused as well (the column is authenticated)
    with pytest.raises(CredentialsError, match="altered"):
        camera_secret(name, "url", password, keyring)
    with pytest.raises(CredentialsError, match="altered"):
        keyring.decrypt(url[:-3], column="url")


def test_a_camera_the_worker_cannot_decrypt_fails_with_reason_credentials(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    cam_id = register(session_factory, CredentialKeyring(CredentialKey.generate()))
    w = worker(session_factory, tmp_path, CredentialKeyring(CredentialKey.generate()), lease_ttl_s=1.0)
    w.start()
    try:
        assert wait_for(lambda: w.health().get(str(cam_id), {}).get("state") == "failed"), w.health()
        assert w.health()[str(cam_id)]["reason"] == "credentials"
        assert wait_for(lambda: dict(raw_status(session_factory)).get(cam_id) == "failed")
        assert w._thread.is_alive()  # the worker goes on
    finally:
        w.stop()


def raw_status(factory: sessionmaker[Session]) -> list[tuple[int, str]]:
    with factory() as s:
        return [tuple(r) for r in s.execute(text("SELECT id, status FROM cameras"))]  # type: ignore[misc]


# --- rotation ---------------------------------------------------------------------------------------------
def test_rotation_re_encrypts_every_camera_and_the_old_key_no_longer_decrypts(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    data = tmp_path / "var"
    old = prepare_credentials(session_factory, file_settings(), data_dir=data)
    for i in range(3):
        register(session_factory, old, name=f"gate-{i}", url=URL.replace("/102", f"/{i}"))
    running = load_keyring(file_settings(), data_dir=data)  # a worker started before the rotation

    report = rotate_credentials_key(session_factory, file_settings(), data_dir=data)

    assert report.cameras == 3 and report.installed
    rows = raw_rows(session_factory)
    assert len(rows) == 3
    assert stored_key_ids(session_factory) == {report.key_id} != {old.primary.key_id}
    old_only = CredentialKeyring(old.primary)
    new = load_keyring(file_settings(), data_dir=data)
    assert new.primary.key_id == report.key_id and new.key_ids == [report.key_id]
    for i, (name, url, onvif_url, password, _) in enumerate(rows):
        with pytest.raises(CredentialsError, match=f"camera {name}: url: encrypted under key {report.key_id}"):
            camera_secret(name, "url", url, old_only)
        assert camera_secret(name, "url", url, new) == URL.replace("/102", f"/{i}")
        assert camera_secret(name, "onvif_password", password, new) == ONVIF_PASSWORD
        assert camera_secret(name, "onvif_url", onvif_url, new) == "http://10.20.30.40:80"
        # a worker that was running reloads the key file when it meets the new key id
        assert camera_secret(name, "url", url, running) == URL.replace("/102", f"/{i}")
    assert mode(data / "credentials.key") == 0o600
    assert not (data / "credentials.key.next").exists()


def test_rotation_with_a_camera_the_key_cannot_decrypt_changes_nothing_and_names_it(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    data = tmp_path / "var"
    current = prepare_credentials(session_factory, file_settings(), data_dir=data)
    register(session_factory, current, name="good")
    register(session_factory, CredentialKeyring(CredentialKey.generate()), name="foreign")
    before = raw_rows(session_factory)
    key_before = (data / "credentials.key").read_text()

    with pytest.raises(CredentialsError, match="camera foreign"):
        rotate_credentials_key(session_factory, file_settings(), data_dir=data)

    assert raw_rows(session_factory) == before
    assert (data / "credentials.key").read_text() == key_before
    assert not (data / "credentials.key.next").exists()


def test_rotation_with_the_key_in_the_environment_writes_the_new_key_file(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    old_key = CredentialKey.generate()
    env = CredentialsSettings(credentials_key=SecretStr(old_key.encoded()))
    keyring = prepare_credentials(session_factory, env, data_dir=tmp_path / "var")
    register(session_factory, keyring)
    with pytest.raises(ConfigError, match="--new-key-file"):
        rotate_credentials_key(session_factory, env, data_dir=tmp_path / "var")

    new_file = tmp_path / "keys" / "new.key"
    report = rotate_credentials_key(session_factory, env, data_dir=tmp_path / "var", new_key_file=new_file)

    assert not report.installed and mode(new_file) == 0o600
    [(name, url, *_)] = raw_rows(session_factory)
    with pytest.raises(CredentialsError):
        camera_secret(name, "url", url, CredentialKeyring(old_key))
    # during the switch-over: new key first, old one still accepted
    both = CredentialsSettings(credentials_key=SecretStr(new_file.read_text().strip() + "," + old_key.encoded()))
    assert camera_secret(name, "url", url, load_keyring(both, data_dir=tmp_path / "var")) == URL


def test_cli_import_stores_encrypted_and_rotation_re_encrypts(db_url: str, tmp_path: Path) -> None:
    data = tmp_path / "var"
    env = {"GRIDPATROL_DATA_DIR": str(data), "GRIDPATROL_DATABASE_URL": db_url.replace("postgresql+psycopg://", "postgresql://")}
    cams = tmp_path / "cams.csv"
    cams.write_text(f"name,url,lon,lat\ngate-1,{URL},,\n", encoding="utf-8")
    result = run_cli(["cameras", "import", str(cams)], env)
    assert result.returncode == 0, result.stderr
    engine = make_engine(db_url)
    factory = sessionmaker(bind=engine)
    try:
        [(_, url, *_)] = raw_rows(factory)
        assert url.startswith("gpenc:v1:") and PASSWORD not in url
        first = stored_key_ids(factory)
        assert mode(data / "credentials.key") == 0o600

        result = run_cli(["secrets", "rotate-credentials-key"], env)
        assert result.returncode == 0, result.stderr
        assert "1 camera(s) re-encrypted" in result.stdout
        assert stored_key_ids(factory) != first
        assert camera_secret("gate-1", "url", raw_rows(factory)[0][1], load_keyring(file_settings(), data_dir=data)) == URL
        assert PASSWORD not in result.stdout + result.stderr
    finally:
        engine.dispose()
