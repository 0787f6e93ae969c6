"""The web UI's static files (``api/web/``), served under ``/`` beside the REST API under ``/api``.

No build step: plain ES modules, revalidated on every load (``no-cache`` with ETag: an upgrade is seen
at once, an unchanged file costs a 304). The files are served as the router's fallback, after every
route of the app whenever it was added, so a page can never shadow an API route; unknown ``/api``
paths keep their JSON 404. The app's security headers (a CSP allowing only 'self') apply to these
answers too (api/app.py).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

WEB_DIR = Path(__file__).resolve().parent / "web"
#: paths the UI never answers (the folder itself or anything under it): the API, the docs, health, metrics
RESERVED = ("/api", "/openapi.json", "/docs", "/redoc", "/healthz", "/readyz", "/metrics")


def _reserved(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in RESERVED)


class _WebFiles(StaticFiles):
    """``StaticFiles`` answering with ``Cache-Control: no-cache`` (revalidate; ETags keep it cheap)."""

    def file_response(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        return response


def install_web(app: FastAPI, *, directory: Path = WEB_DIR) -> None:
    """Serve ``directory`` under ``/`` for GET/HEAD paths no route of ``app`` matched."""
    if not (directory / "index.html").is_file():
        return  # an installation without the UI files: the API alone
    files = _WebFiles(directory=directory, html=True)
    fallback: ASGIApp = app.router.default

    async def web_or_not_found(scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or scope.get("method") not in ("GET", "HEAD") or _reserved(path):
            await fallback(scope, receive, send)
            return
        await files(scope, receive, send)

    app.router.default = web_or_not_found
