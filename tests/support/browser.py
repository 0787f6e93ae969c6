"""One logged-in page of the web UI in Debian's Chromium (Playwright), for the browser tests.

Every request to another origin is aborted and recorded (``outside``), page errors (and, when asked,
console errors) are collected (``errors``): a test asserts both empty after its steps.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.support import sample


class LoggedInPage:
    def __init__(
        self,
        browser: Any,
        base: str,
        username: str,
        *,
        out: Path,
        console_errors: bool = False,
        full_page: bool = False,
        **context: Any,
    ) -> None:
        self.origin, self.base = urlsplit(base).netloc, base
        self.out, self.full_page = out, full_page
        self.outside: list[str] = []
        self.errors: list[str] = []
        self.context = browser.new_context(locale="zh-CN", timezone_id="Asia/Shanghai", **context)
        self.context.route("**/*", self._only_local)
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        if console_errors:
            self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.goto(f"{self.base}/#/login")
        self.page.fill("input[name=username]", username)
        self.page.fill("input[name=password]", sample.PASSWORD)
        self.page.click("button[type=submit]")
        # the page's CSP forbids eval (wait_for_function): wait on the URL from here
        self.page.wait_for_url(lambda url: "#/" in url and "#/login" not in url, timeout=15_000)

    def _only_local(self, route: Any) -> None:
        parts = urlsplit(route.request.url)
        if parts.scheme in {"data", "blob"} or parts.netloc == self.origin:
            route.continue_()
        else:
            self.outside.append(route.request.url)
            route.abort()

    def open(self, hash_: str, ready: str) -> None:
        """Go to ``hash_`` and wait for ``ready``; a page that never gets there fails with what it shows."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        self.page.goto(f"{self.base}/{hash_}")
        try:
            self.page.wait_for_selector(ready, timeout=20_000)
        except PlaywrightTimeout as err:
            raise AssertionError(
                f"{hash_}: no {ready}; page: {self.page.inner_text('body')[:500]!r}; errors: {self.errors}"
            ) from err

    def shot(self, name: str) -> Path:
        path = self.out / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=self.full_page)
        return path

    def close(self) -> None:
        self.context.close()


@contextmanager
def serving_app(app: Any, *, name: str) -> Iterator[int]:
    """The app on a free loopback port in a uvicorn thread (lifespan on) for a browser; yields the port and
    stops the server afterwards."""
    import uvicorn

    from tests.support.procs import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name=f"{name}-uvicorn", daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            thread.join(0.05)
        assert server.started, "uvicorn did not start"
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
