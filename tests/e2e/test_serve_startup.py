"""Issue 11: ``serve`` on a busy port ends at once with one line naming the port (nothing started); request
logs are off by default and, with ``--access-log``, one JSON object per request with query secrets redacted."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gridpatrol.access_log import AccessLog, log_to_stdout, logger, redacted_path
from tests.support.procs import free_port, run_cli, serving


def env_for(tmp_path: Path) -> dict[str, str]:
    return {
        "GRIDPATROL_DATA_DIR": str(tmp_path / "var"),
        "GRIDPATROL_SECRET_KEY": "e2e-secret-key-with-at-least-32-characters",
        "GRIDPATROL_DATABASE_URL": "",
        "GRIDPATROL_REDIS_URL": "",
        "GRIDPATROL_TIMEZONE": "Asia/Shanghai",
    }


def test_serve_on_a_busy_port_fails_in_one_line_and_starts_nothing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(["serve", "--port", str(port)], env_for(tmp_path), timeout=60)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: port {port} on 127.0.0.1 is already in use")
    assert "--port" in lines[0]
    assert "Errno" not in result.stderr and result.stdout == ""
    assert not (tmp_path / "var").exists()  # no database, no key, no evidence store: nothing started


def request_some(base: str) -> None:
    assert httpx.get(f"{base}/healthz").status_code == 200
    assert httpx.get(f"{base}/api/cameras", params={"token": "leaked-secret-42", "page": "2"}).status_code == 401


def serve_and_read_log(tmp_path: Path, extra: list[str]) -> str:
    env = env_for(tmp_path)
    port = free_port()
    with serving(["serve", "--port", str(port), "--no-worker", "--no-ticketer", *extra], env, port=port) as base:
        request_some(base)
    return (tmp_path / "var" / f"serve-{port}.log").read_text(encoding="utf-8")


def json_lines(text: str) -> list[dict[str, object]]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def test_requests_are_not_logged_by_default(tmp_path: Path) -> None:
    log = serve_and_read_log(tmp_path, [])
    assert "Application startup complete" in log  # the log was read and the server ran
    assert "/healthz" not in log and "/api/cameras" not in log
    assert json_lines(log) == []


def test_access_log_is_one_json_object_per_request(tmp_path: Path) -> None:
    log = serve_and_read_log(tmp_path, ["--access-log"])
    entries = json_lines(log)
    cameras = [e for e in entries if str(e["path"]).startswith("/api/cameras")]
    assert len(cameras) == 1, log
    entry = cameras[0]
    assert set(entry) == {"time", "method", "path", "status", "duration_ms", "client"}
    assert (entry["method"], entry["status"], entry["client"]) == ("GET", 401, "127.0.0.1")
    assert entry["path"] == "/api/cameras?token=***&page=2"
    assert "leaked-secret-42" not in log
    assert isinstance(entry["duration_ms"], float) and entry["duration_ms"] >= 0
    assert datetime.fromisoformat(str(entry["time"])).utcoffset().total_seconds() == 8 * 3600  # type: ignore[union-attr]
    assert any(e["path"] == "/healthz" and e["status"] == 200 for e in entries)
    assert '"GET /healthz HTTP/1.1" 200' not in log  # uvicorn's own access lines stay off


@pytest.fixture
def access_logger() -> Iterator[None]:
    yield
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


def test_the_middleware_writes_json_lines_to_stdout(capsys: pytest.CaptureFixture[str], access_logger: None) -> None:
    api = FastAPI()

    @api.get("/ok")
    def ok_route() -> dict[str, str]:
        return {"ok": "yes"}

    @api.get("/boom")
    def boom() -> None:
        raise RuntimeError("boom")

    log_to_stdout()
    log_to_stdout()  # twice: still one handler
    app = AccessLog(api, tz=ZoneInfo("Asia/Shanghai"), trusted_proxies=["127.0.0.0/8"])
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/ok?password=pw&x=1").status_code == 200
        assert client.get("/missing").status_code == 404
        assert client.get("/boom").status_code == 500
    out = capsys.readouterr().out
    entries = [json.loads(line) for line in out.splitlines()]
    assert [(e["path"], e["status"]) for e in entries] == [("/ok?password=***&x=1", 200), ("/missing", 404), ("/boom", 500)]
    assert entries[0]["client"] == "testclient"


@pytest.mark.parametrize(
    ("path", "query", "expected"),
    [
        ("/api/live", b"", "/api/live"),
        ("/api/live", b"access_token=abc", "/api/live?access_token=***"),
        ("/api/x", b"page=2&sig=zz&user=u", "/api/x?page=2&sig=***&user=***"),
        ("/网格", b"q=%E7%BD%91", "/网格?q=%E7%BD%91"),
    ],
)
def test_query_secrets_are_redacted(path: str, query: bytes, expected: str) -> None:
    assert redacted_path(path, query) == expected
