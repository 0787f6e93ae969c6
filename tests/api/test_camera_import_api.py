"""Camera import from the administration page: the CLI's CSV/YAML as text, URLs stored encrypted, all or
nothing with the first bad line named, only for those who configure cameras, in the access log."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.settings import ApiSettings
from models.db.tables import AccessLog, Camera
from models.grid.credentials import CredentialKey, CredentialKeyring, is_encrypted
from tests.conftest import TEST_SECRET
from tests.support import sample

CSV = "name,url,lon,lat\nnew-cam,rtsp://admin:Cam-Secret-7x@10.0.0.9/stream1,118.705,32.105\ncam-g1-a,rtsp://10.0.0.8/s,118.702,32.102\n"


@pytest.fixture
def app_client(seeded: sessionmaker[Session]) -> Iterator[TestClient]:
    keyring = CredentialKeyring(CredentialKey.generate())
    app = create_app(
        ApiSettings(secret_key=TEST_SECRET), session_factory=seeded, camera_keyring=lambda: keyring
    )
    with TestClient(app) as c:
        yield c


def bearer(client: TestClient, username: str) -> dict[str, str]:
    r = client.post("/api/auth/token", data={"username": username, "password": sample.PASSWORD})
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def test_import_creates_and_updates_with_urls_encrypted(app_client: TestClient, seeded) -> None:
    r = app_client.post("/api/cameras/import", headers=bearer(app_client, "operator1"), json={"text": CSV})
    assert r.status_code == 200, r.text
    assert (r.json()["created"], r.json()["updated"]) == (1, 1)
    with seeded() as s:
        cam = s.scalars(select(Camera).where(Camera.name == "new-cam")).one()
        assert (
            is_encrypted(cam.url) and "Cam-Secret-7x" not in cam.url and cam.grid is not None and cam.grid.code == "G1"
        )
        logged = s.scalars(select(AccessLog).where(AccessLog.object_type == "cameras")).one()
        assert logged.username == "operator1" and "Cam-Secret-7x" not in str(logged.detail)
    bad = "name,url,lon,lat\nok-cam,rtsp://10.0.0.1/s,118.705,32.105\nbad-cam,rtsp://10.0.0.2/s,999,32.105\n"
    r = app_client.post("/api/cameras/import", headers=bearer(app_client, "admin1"), json={"text": bad})
    assert r.status_code == 422 and "line 3" in r.json()["detail"], r.text
    with seeded() as s:  # all or nothing
        assert s.scalars(select(Camera).where(Camera.name == "ok-cam")).first() is None
    assert (
        app_client.post(
            "/api/cameras/import", headers=bearer(app_client, "manager-s1"), json={"text": CSV}
        ).status_code
        == 403
    )
