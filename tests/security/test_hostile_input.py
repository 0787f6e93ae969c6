"""Hostile input: oversized bodies and uploads (413 with the reason), evidence paths that try to leave
their directory, and the headers every answer carries."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from fastapi import FastAPI, UploadFile
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.limits import BodySizeLimit, PayloadTooLarge, install_limit_handler, read_upload
from api.settings import ApiSettings
from models.errors import NotFound
from models.evidence.paths import safe_join
from tests.conftest import TEST_SECRET


@pytest.fixture
def small_client() -> Iterator[TestClient]:
    """The real app with small limits; no database is touched before the limit answers."""
    app = create_app(
        ApiSettings(secret_key=TEST_SECRET), session_factory=sessionmaker(), max_body_bytes=1000, max_upload_bytes=5000
    )
    with TestClient(app) as c:
        yield c


def test_a_declared_oversized_body_is_413_before_anything_reads_it(small_client: TestClient) -> None:
    r = small_client.post("/api/auth/refresh", content=b"{" + b" " * 2000 + b"}", headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.json() == {"error": "payload_too_large", "detail": "the request body is larger than the limit of 1000 bytes", "field": None}
    assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_a_streamed_oversized_body_is_cut_at_the_limit(small_client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
        for _ in range(10):
            yield b" " * 300

    r = small_client.post("/api/auth/refresh", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "1000 bytes" in r.json()["detail"]


def test_uploads_have_their_own_limit(small_client: TestClient) -> None:
    ok = small_client.post("/api/me", files={"photo": ("a.jpg", b"x" * 2000)})
    assert ok.status_code == 405  # over the body limit, under the upload limit: the router answers
    r = small_client.post("/api/auth/token", files={"photo": ("a.jpg", b"x" * 6000)})
    assert r.status_code == 413 and r.json()["detail"] == "the upload is larger than the limit of 5000 bytes"
    bad = small_client.post("/api/auth/refresh", content=b"{}", headers={"Content-Length": "abc", "Content-Type": "application/json"})
    assert bad.status_code == 400


def test_read_upload_stops_at_the_limit() -> None:
    async def read(size: int) -> bytes:
        return await read_upload(UploadFile(io.BytesIO(b"y" * size), filename="p.jpg"), max_bytes=100_000)

    assert len(anyio.run(read, 100_000)) == 100_000
    with pytest.raises(PayloadTooLarge, match="p.jpg is larger than the limit of 100000 bytes"):
        anyio.run(read, 100_001)

    app = FastAPI()
    install_limit_handler(app)
    app.add_middleware(BodySizeLimit, max_body_bytes=10, max_upload_bytes=10)

    @app.post("/u")
    async def upload(f: UploadFile) -> dict[str, int]:
        return {"n": len(await read_upload(f, max_bytes=3))}

    with TestClient(app) as c:
        assert c.post("/u", files={"f": ("a", b"12345")}).status_code == 413


@pytest.mark.parametrize(
    ("relative", "ok"),
    [
        ("2026/05/01/cam-1_123.jpg", True),
        ("a.jpg", True),
        ("../secret.txt", False),
        ("2026/../../etc/passwd", False),
        ("/etc/passwd", False),
        ("..", False),
        (".", False),
        ("", False),
        (".hidden", False),
        ("a\\..\\b.jpg", False),
        ("a/\x00.jpg", False),
        ("link-out/x.jpg", False),  # a symlink inside the root pointing outside
        ("/".join(["d"] * 20) + "/x.jpg", False),
        ("C:/Windows/win.ini", False),
    ],
)
def test_evidence_paths_cannot_leave_their_directory(tmp_path: Path, relative: str, ok: bool) -> None:
    root = tmp_path / "evidence"
    (root / "2026/05/01").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link-out").symlink_to(outside)
    if ok:
        assert safe_join(root, relative) == (root / relative).resolve()
    else:
        with pytest.raises(NotFound):
            safe_join(root, relative)


def test_security_headers_and_content_security_policy(client: TestClient, seeded: sessionmaker[Session]) -> None:
    api = client.get("/healthz")
    assert api.headers["X-Frame-Options"] == "DENY" and api.headers["Referrer-Policy"] == "no-referrer"
    csp = api.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert client.get("/api/me").headers["Cache-Control"] == "no-store"
    docs = client.get("/docs")
    docs_csp = docs.headers["Content-Security-Policy"]  # the docs' own assets (api/docs.py), no CDN
    assert docs.status_code == 200 and "http" not in docs_csp and "script-src 'self' 'sha256-" in docs_csp
    # CORS is closed by default: no allow-origin header for a foreign origin
    pre = client.options("/api/me", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in pre.headers


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/api/audit?user=a%00b", None),
        ("/api/cameras/%00", None),
        ("/api/auth/refresh", b'{"refresh_token": "gpr_\\u0000"}'),
        ("/api/auth/refresh", b'{"refresh_token": "gpr_\x00"}'),
        ("/api/auth/token", b"username=a%00&password=b"),
    ],
)
def test_nul_characters_are_refused_before_any_route(small_client: TestClient, url: str, body: bytes | None) -> None:
    """PostgreSQL cannot store NUL in text: without this a NUL in a filter or login name was a 500."""
    if body is None:
        r = small_client.get(url)
    else:
        ctype = "application/json" if body.startswith(b"{") else "application/x-www-form-urlencoded"
        r = small_client.post(url, content=body, headers={"Content-Type": ctype})
    assert r.status_code == 422
    assert r.json() == {"error": "invalid", "detail": "NUL characters are not accepted in a request", "field": None}
