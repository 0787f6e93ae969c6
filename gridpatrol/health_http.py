"""The small HTTP server of the processes without the API: ``/metrics`` (Prometheus), ``/healthz`` (the
process is alive) and ``/readyz`` (it can do its job: each named check answers ``None``, else a reason;
503 with the reasons otherwise). ``--metrics-port`` of ``worker``, ``ticketer``, ``gateway`` and
``gb28181 serve`` starts it."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from sqlalchemy.orm import Session, sessionmaker

from models.bus.protocol import Bus
from models.db.readiness import bus_problem, database_problem

logger = logging.getLogger(__name__)

#: a named readiness check: ``None`` when fine, else a short reason
Check = tuple[str, Callable[[], str | None]]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    block_on_close = False  # stopping never waits for a scraper's open connection


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes every few seconds: not worth a line
        return


def readiness(checks: Iterable[Check]) -> tuple[bool, dict[str, str]]:
    results: dict[str, str] = {}
    for name, check in checks:
        try:
            problem = check()
        except Exception as err:  # a check that raises is a failed check, not a failed scrape
            problem = f"{type(err).__name__}: {err}"
        results[name] = problem or "ok"
    return all(v == "ok" for v in results.values()), results


def common_checks(factory: sessionmaker[Session] | None, bus: Bus | None) -> list[Check]:
    """Database reachable and migrated; bus reachable."""
    checks: list[Check] = []
    if factory is not None:
        checks.append(("database", lambda: database_problem(factory)))
    if bus is not None:
        checks.append(("bus", lambda: bus_problem(bus)))
    return checks


def threads_check(what: str, names: Iterable[str]) -> Check:
    """Ready while a live thread of each of these names runs in this process (the loops doing the work)."""
    wanted = list(names)

    def check() -> str | None:
        alive = {t.name for t in threading.enumerate() if t.is_alive()}
        missing = [n for n in wanted if n not in alive]
        return f"{what} not running: {', '.join(missing)}" if missing else None

    return (what, check)


class HealthServer:
    def __init__(self, registry: CollectorRegistry, checks: list[Check], *, process: str) -> None:
        self.checks, self.process = checks, process
        self._metrics = make_wsgi_app(registry)
        self._server: _Server | None = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return self._json(start_response, 200, {"status": "ok", "process": self.process})
        if path == "/readyz":
            ok, results = readiness(self.checks)
            body = {"status": "ready" if ok else "not ready", "process": self.process, "checks": results}
            return self._json(start_response, 200 if ok else 503, body)
        return self._metrics(environ, start_response)  # type: ignore[no-any-return]

    @staticmethod
    def _json(start_response: Callable[..., Any], status: int, body: dict[str, Any]) -> list[bytes]:
        data = json.dumps(body).encode()
        reason = {200: "OK", 503: "Service Unavailable"}[status]
        start_response(
            f"{status} {reason}", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        )
        return [data]

    def start(self, port: int, *, host: str = "127.0.0.1") -> HealthServer:
        self._server = make_server(host, port, self, server_class=_Server, handler_class=_QuietHandler)
        thread = threading.Thread(target=self._server.serve_forever, name="health-http", daemon=True)
        thread.start()
        logger.info("%s: /metrics, /healthz and /readyz on %s:%d", self.process, host, port)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def start_health_server(
    port: int, *, host: str, registry: CollectorRegistry, checks: list[Check], process: str
) -> HealthServer:
    return HealthServer(registry, checks, process=process).start(port, host=host)
