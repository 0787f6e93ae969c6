"""The API documentation pages (/docs: Swagger UI, /redoc: ReDoc), served with no request to another host.

FastAPI's own pages load their scripts from a CDN, so on a machine without internet they are blank.
These follow FastAPI's recipe for self-hosted docs: the app is built with ``docs_url=None`` and
``redoc_url=None`` and these routes serve the same pages, pointing at copies of the pinned packages in
``api/web/vendor/`` (written, with ``manifest.json``, only by ``scripts/vendor.py``). Each page gets its
own Content-Security-Policy: its inline start-up script is allowed by its hash, everything else must
come from this origin.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse

from models.errors import NotFound

VENDOR_DIR = Path(__file__).resolve().parent / "web" / "vendor"
#: where the vendored files are served; only names listed in the manifest answer
VENDOR_URL = "/docs/vendor"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"

_MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
}
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


@cache
def vendored_files() -> dict[str, dict[str, str]]:
    """``{package: {file name: sha256}}`` from ``api/web/vendor/manifest.json``."""
    manifest = json.loads((VENDOR_DIR / "manifest.json").read_text(encoding="utf-8"))
    return {name: dict(entry["files"]) for name, entry in manifest["packages"].items()}


def vendor_url(package: str, name: str) -> str:
    """The URL of one vendored file (a missing one fails when the app is built, not in a browser)."""
    if name not in vendored_files().get(package, {}):
        raise LookupError(f"{package}/{name} is not in api/web/vendor/manifest.json: run scripts/vendor.py")
    return f"{VENDOR_URL}/{package}/{name}"


def media_type(name: str) -> str:
    return _MEDIA_TYPES.get(Path(name).suffix, "text/plain; charset=utf-8")  # LICENSE, NOTICE, *.txt


def page_csp(html: str) -> str:
    """This origin only; the page's own inline scripts by their sha256. Styles may be inline: ReDoc
    (styled-components) writes <style> elements at run time and both pages carry a <style> block.
    ReDoc's "Redocly" badge image (cdn.redoc.ly) is refused by ``img-src``: it hides itself on error."""
    scripts = " ".join(
        ["'self'"]
        + [f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in _INLINE_SCRIPT.findall(html)]
    )
    return (
        f"default-src 'self'; script-src {scripts}; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'self'"
    )


def _frozen(page: HTMLResponse) -> Callable[[], HTMLResponse]:
    """A page built once (it depends only on the app), answered with its own policy."""
    body = bytes(page.body)
    headers = {"Content-Security-Policy": page_csp(body.decode())}
    return lambda: HTMLResponse(body, headers=headers)


def install_docs(app: FastAPI, *, openapi_url: str) -> None:
    """Add /docs, /docs/oauth2-redirect, /redoc and the vendored files they load (not in the schema)."""
    swagger = _frozen(
        get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=OAUTH2_REDIRECT_URL,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_js_url=vendor_url("swagger-ui-dist", "swagger-ui-bundle.js"),
            swagger_css_url=vendor_url("swagger-ui-dist", "swagger-ui.css"),
            swagger_favicon_url=vendor_url("swagger-ui-dist", "favicon-32x32.png"),
            # no badge that sends the schema to validator.swagger.io
            swagger_ui_parameters={**(app.swagger_ui_parameters or {}), "validatorUrl": None},
        )
    )
    redoc = _frozen(
        get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=vendor_url("redoc", "redoc.standalone.js"),
            redoc_favicon_url=vendor_url("swagger-ui-dist", "favicon-32x32.png"),
            with_google_fonts=False,
        )
    )
    redirect = _frozen(get_swagger_ui_oauth2_redirect_html())

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui_html() -> HTMLResponse:
        return swagger()

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return redirect()

    @app.get("/redoc", include_in_schema=False)
    async def redoc_html() -> HTMLResponse:
        return redoc()

    @app.get(VENDOR_URL + "/{package}/{name}", include_in_schema=False)
    async def vendored(package: str, name: str) -> FileResponse:
        # only the manifest's names: nothing else under api/ can be reached through this route
        if name not in vendored_files().get(package, {}):
            raise NotFound("no such file")
        return FileResponse(
            VENDOR_DIR / package / name, media_type=media_type(name), headers={"Cache-Control": "no-cache"}
        )
