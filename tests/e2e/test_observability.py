"""Every process answers /healthz and /readyz; the Grafana dashboard queries only metrics that running
processes export (scraped, not assumed); JSON logs carry camera and ticket ids; /readyz says why not."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client import CollectorRegistry
from sqlalchemy import text

from gridpatrol.health_http import HealthServer, common_checks, threads_check
from gridpatrol.logging_json import JsonFormatter, configure_logging
from models.db.engine import make_engine, make_session_factory
from models.db.readiness import database_problem
from tests.e2e.test_mqtt import BROKER, broker_up
from tests.support.procs import background, free_port, serving
from tests.support.require import require

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docs" / "grafana" / "gridpatrol.json"
METRICS_DOC = ROOT / "docs" / "metrics.md"
REDIS_URL = "redis://127.0.0.1:6379/0"
SUFFIXES = re.compile(r"_(total|bucket|sum|count|created)$")


def redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


def names_in_exposition(body: str) -> set[str]:
    names = set()
    for line in body.splitlines():
        if line.startswith("# TYPE "):
            names.add(SUFFIXES.sub("", line.split()[2]))
        elif line and not line.startswith("#"):
            names.add(SUFFIXES.sub("", re.split(r"[{ ]", line, maxsplit=1)[0]))
    return {n for n in names if n.startswith("gridpatrol_")}


def names_in_dashboard() -> set[str]:
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in doc["panels"] for t in p["targets"]]
    assert len(exprs) >= 17
    return {SUFFIXES.sub("", n) for e in exprs for n in re.findall(r"\bgridpatrol_[a-z0-9_]+", e)}


def wait_ready(url: str, timeout_s: float = 90.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            r = httpx.get(url, timeout=5)
            last = (r.status_code, r.text)
            if r.status_code == 200:
                return r.json()  # type: ignore[no-any-return]
        except httpx.HTTPError as err:
            last = err
        time.sleep(0.3)
    raise AssertionError(f"{url} never ready: {last}")


def test_every_process_is_healthy_ready_and_the_dashboard_queries_only_exported_metrics(
    tmp_path: Path,
) -> None:
    require(redis_up(), "Redis on 127.0.0.1:6379")
    require(broker_up(*BROKER), "Mosquitto on 127.0.0.1:1883")
    data = tmp_path / "var"
    data.mkdir()
    env = {
        "GRIDPATROL_DATA_DIR": str(data),
        "GRIDPATROL_DATABASE_URL": f"sqlite:///{data / 'gp.db'}",
        "GRIDPATROL_REDIS_URL": REDIS_URL,
        "GRIDPATROL_BUS_NAMESPACE": f"obs-{uuid.uuid4().hex[:8]}:",
        "GRIDPATROL_SECRET_KEY": "e2e-secret-key-with-at-least-32-characters",
        "GRIDPATROL_MQTT_URL": f"mqtt://{BROKER[0]}:{BROKER[1]}",
        "GRIDPATROL_MQTT_TOPIC_PREFIX": f"gptest-{uuid.uuid4().hex[:8]}",
        "GRIDPATROL_LOG_FORMAT": "json",
    }
    ports = {name: free_port() for name in ("api", "ticketer", "worker", "gateway", "live", "rtsp")}
    scraped: dict[str, str] = {}
    with serving(
        ["serve", "--port", str(ports["api"]), "--no-worker", "--no-ticketer", "--no-gateway"],
        env,
        port=ports["api"],
    ) as api:  # the API first: it creates and migrates the database the others share
        with (
            background(
                ["ticketer", "--metrics-port", str(ports["ticketer"])], env, tmp_path / "ticketer.log"
            ),
            background(["worker", "--metrics-port", str(ports["worker"])], env, tmp_path / "worker.log"),
            background(
                [
                    "gateway",
                    "--port",
                    str(ports["rtsp"]),
                    "--metrics-port",
                    str(ports["gateway"]),
                    "--live-port",
                    str(ports["live"]),
                ],
                env,
                tmp_path / "gateway.log",
            ),
        ):
            bases = {
                "api": api,
                "ticketer": f"http://127.0.0.1:{ports['ticketer']}",
                "worker": f"http://127.0.0.1:{ports['worker']}",
                "gateway": f"http://127.0.0.1:{ports['gateway']}",
                "live": f"http://127.0.0.1:{ports['live']}",
            }
            expected_checks = {
                "api": {"database", "bus"},
                "ticketer": {"database", "bus", "ticketer"},
                "worker": {"database", "bus", "worker"},
                "gateway": {"database", "bus", "rtsp"},
                "live": {"database", "bus"},
            }
            for name, base in bases.items():
                ready = wait_ready(f"{base}/readyz")
                assert ready["status"] == "ready", (name, ready)
                assert set(ready["checks"]) == expected_checks[name], (name, ready)  # type: ignore[arg-type]
                assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
            for name in ("api", "ticketer", "worker", "gateway"):
                r = httpx.get(f"{bases[name]}/metrics", timeout=10)
                assert r.status_code == 200, (name, r.text[:200])
                scraped[name] = r.text
    exported = set().union(*(names_in_exposition(body) for body in scraped.values()))
    assert len(exported) > 30
    missing = names_in_dashboard() - exported
    assert not missing, f"the dashboard queries metrics no process exports: {sorted(missing)}"
    documented = set(re.findall(r"`(gridpatrol_[a-z0-9_]+)`", METRICS_DOC.read_text(encoding="utf-8")))
    undocumented = {n for n in exported if n not in {SUFFIXES.sub("", d) for d in documented}}
    assert not undocumented, f"exported but not in docs/metrics.md: {sorted(undocumented)}"
    assert "gridpatrol_retention_deleted" in exported and "gridpatrol_mqtt_connected" in exported
    # JSON logs: every line the ticketer wrote is one object
    lines = [ln for ln in (tmp_path / "ticketer.log").read_text(encoding="utf-8").splitlines() if ln.strip()]
    assert lines
    docs = [json.loads(ln) for ln in lines]
    assert all({"ts", "level", "logger", "message"} <= set(d) for d in docs)


def test_json_log_lines_carry_camera_and_ticket_ids() -> None:
    fmt = JsonFormatter()

    def line(msg: str, *args: object, **extra: object) -> dict[str, object]:
        record = logging.LogRecord("gridpatrol.worker", logging.WARNING, __file__, 1, msg, args, None)
        for k, v in extra.items():
            setattr(record, k, v)
        return json.loads(fmt.format(record))  # type: ignore[no-any-return]

    assert line("camera %s: lease lost; stopping its reader", "12")["camera_id"] == "12"
    assert line("ticketer t1: ticket %d escalated", 34)["ticket_id"] == 34
    doc = line("escalated", camera_id=5, ticket_id=9)
    assert (doc["camera_id"], doc["ticket_id"], doc["level"], doc["logger"]) == (
        5,
        9,
        "warning",
        "gridpatrol.worker",
    )
    assert "camera_id" not in line("nothing about a camera")
    with pytest.raises(ValueError, match="GRIDPATROL_LOG_FORMAT must be one of text, json"):
        configure_logging("xml")


def test_readyz_says_what_is_wrong(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    from models.db.engine import upgrade

    upgrade(engine, "0001")
    factory = make_session_factory(engine)
    problem = database_problem(factory)
    assert problem is not None and "run gridpatrol db upgrade" in problem and "0001" in problem
    port = free_port()
    server = HealthServer(
        CollectorRegistry(),
        [*common_checks(factory, None), threads_check("ticketer", ["no-such-loop"])],
        process="t",
    ).start(port)
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert r.status_code == 503
        body = r.json()
        assert body["status"] == "not ready"
        assert (
            "0001" in body["checks"]["database"]
            and body["checks"]["ticketer"] == "ticketer not running: no-such-loop"
        )
        assert (
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        )  # alive all the same
        upgrade(engine)
        with factory() as s:
            s.execute(text("SELECT 1"))
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).json()["checks"]["database"] == "ok"
    finally:
        server.stop()
        engine.dispose()
