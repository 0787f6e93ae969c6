"""Issue 11 item 10: /docs and /redoc work without internet: their scripts are served by the API itself
(api/docs.py) from the pinned copies in api/web/vendor/, each byte as the manifest records it."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import sessionmaker

from api.app import create_app
from api.settings import ApiSettings
from tests.conftest import TEST_SECRET
from tests.support.procs import free_port
from tests.support.require import require

ROOT = Path(__file__).resolve().parents[2]
VENDOR = ROOT / "api" / "web" / "vendor"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
SCREENSHOT = Path("/tmp/gridpatrol-docs.png")
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
PAGES = ("/docs", "/redoc", "/docs/oauth2-redirect")
#: ReDoc's sidebar badge is an <img> from its CDN, refused by the page's img-src; the component hides
#: itself on the load error (redoc 2.5 ``onError``): the one expected console message
EXPECTED_REFUSALS = ("https://cdn.redoc.ly/redoc/logo-mini.svg",)


def manifest() -> dict[str, dict[str, str]]:
    packages = json.loads((VENDOR / "manifest.json").read_text(encoding="utf-8"))["packages"]
    return {name: entry["files"] for name, entry in packages.items()}


def build_app(*, docs: bool = True) -> FastAPI:
    # the docs need no database: the schema is built from the routes
    return create_app(ApiSettings(secret_key=TEST_SECRET, api_docs=docs), session_factory=sessionmaker())


@pytest.fixture(scope="module")
def docs_client() -> Iterator[TestClient]:
    with TestClient(build_app()) as c:
        yield c


def referenced_urls(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)


@pytest.mark.parametrize("page", PAGES)
def test_docs_pages_reference_only_local_urls(docs_client: TestClient, page: str) -> None:
    r = docs_client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "cdn." not in r.text and not re.search(r"https?://", r.text), r.text
    for url in referenced_urls(r.text):
        assert url.startswith("/") and not url.startswith("//"), url
    csp = r.headers["Content-Security-Policy"]
    script_src = next(d for d in csp.split("; ") if d.startswith("script-src "))
    assert "http" not in csp and "'unsafe-inline'" not in script_src
    if "<script>" in r.text:  # an inline start-up script is allowed by its hash, nothing wider
        assert script_src.startswith("script-src 'self' 'sha256-"), csp


def test_the_pages_load_vendored_files_only(docs_client: TestClient) -> None:
    urls = {u for page in ("/docs", "/redoc") for u in referenced_urls(docs_client.get(page).text)}
    assert urls == {
        "/docs/vendor/swagger-ui-dist/swagger-ui-bundle.js",
        "/docs/vendor/swagger-ui-dist/swagger-ui.css",
        "/docs/vendor/swagger-ui-dist/favicon-32x32.png",
        "/docs/vendor/redoc/redoc.standalone.js",
    }


FILES = [(package, name, digest) for package, files in manifest().items() for name, digest in files.items()]


@pytest.mark.parametrize(("package", "name", "digest"), FILES, ids=[f"{p}/{n}" for p, n, _ in FILES])
def test_each_vendored_file_is_served_as_the_manifest_says(
    docs_client: TestClient, package: str, name: str, digest: str
) -> None:
    assert len(FILES) == 9  # swagger-ui-dist: 3 assets + 3 licence files; redoc: 1 asset + 2 licence files
    r = docs_client.get(f"/docs/vendor/{package}/{name}")
    assert r.status_code == 200
    expected_type = MEDIA_TYPES.get(Path(name).suffix, "text/plain")
    assert r.headers["content-type"].split(";")[0] == expected_type
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert hashlib.sha256(r.content).hexdigest() == digest
    assert hashlib.sha256((VENDOR / package / name).read_bytes()).hexdigest() == digest


@pytest.mark.parametrize(
    "url",
    [
        "/docs/vendor/redoc/manifest.json",
        "/docs/vendor/swagger-ui-dist/..%2Fmanifest.json",
        "/docs/vendor/swagger-ui-dist/swagger-ui-bundle.js.map",
        "/docs/vendor/nope/LICENSE",
        "/docs/vendor/swagger-ui-dist/%2E%2E%2F%2E%2E%2Fdocs.py",
    ],
)
def test_only_the_manifest_files_are_served(docs_client: TestClient, url: str) -> None:
    r = docs_client.get(url)
    assert r.status_code == 404 and r.json()["error"] == "not_found"


def test_no_docs_no_vendored_files() -> None:
    with TestClient(build_app(docs=False)) as c:
        for url in (*PAGES, "/openapi.json", "/docs/vendor/swagger-ui-dist/swagger-ui-bundle.js"):
            assert c.get(url).status_code == 404, url


def test_the_vendored_files_match_the_pins_offline() -> None:
    """scripts/vendor.py --check: every pinned file present, nothing else, sha256 as in the manifest."""
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "vendor.py"), "--check"], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def live_docs() -> Iterator[str]:
    """The app served by uvicorn on a loopback port, for a real browser."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(), host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="docs-uvicorn", daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            thread.join(0.05)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def _open_offline(base: str, path: str, ready: str, *, screenshot: Path | None = None) -> tuple[int, list[str], list[str]]:
    """Load ``path`` in headless Chromium with every request to another origin aborted; the number of
    ``ready`` elements, the aborted URLs and the console errors (CSP violations land there)."""
    from playwright.sync_api import Route, sync_playwright

    origin = urlsplit(base).netloc
    aborted: list[str] = []
    console_errors: list[str] = []

    def only_local(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).scheme in {"data", "blob"} or urlsplit(url).netloc == origin:
            route.continue_()
        else:
            aborted.append(url)
            route.abort()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1600})
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: console_errors.append(str(e)))
            page.route("**/*", only_local)
            page.goto(base + path, wait_until="networkidle")
            page.wait_for_selector(ready, timeout=30_000)
            count = page.locator(ready).count()
            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=False)
        finally:
            browser.close()
    return count, aborted, console_errors


def _operations(base_client: TestClient) -> int:
    paths = base_client.get("/openapi.json").json()["paths"]
    return sum(1 for ops in paths.values() for m in ops if m in {"get", "post", "put", "patch", "delete"})


def test_swagger_ui_renders_every_operation_offline(live_docs: str, docs_client: TestClient) -> None:
    require(CHROMIUM.exists(), "Chromium at /usr/bin/chromium (apt-get install chromium)")
    expected = _operations(docs_client)
    assert expected > 20
    count, aborted, errors = _open_offline(live_docs, "/docs", ".opblock", screenshot=SCREENSHOT)
    assert count == expected
    assert aborted == [] and errors == []
    assert SCREENSHOT.stat().st_size > 10_000


def test_redoc_renders_the_operations_offline(live_docs: str, docs_client: TestClient) -> None:
    require(CHROMIUM.exists(), "Chromium at /usr/bin/chromium (apt-get install chromium)")
    expected = _operations(docs_client)
    count, aborted, errors = _open_offline(
        live_docs, "/redoc", '[data-section-id^="operation/"]', screenshot=SCREENSHOT.with_name("gridpatrol-redoc.png")
    )
    assert count == expected
    assert aborted == []
    unexpected = [e for e in errors if not ("Content Security Policy" in e and any(u in e for u in EXPECTED_REFUSALS))]
    assert unexpected == []
