"""Camera credentials never leave the database: not in any API answer (every route of the schema, as
every kind of caller, good and bad requests), not in logs, metrics, error messages or the audit log."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from sqlalchemy import select

from models.db.engine import transaction
from models.db.tables import Camera
from models.grid.cameras import parse_camera_file, register_cameras
from tests.security.test_matrix import CASES, OPERATIONS, PARAMS, SEES, Call, Case
from tests.security.world import World, stream_status
from tests.support import sample

ONVIF_SECRET = "0nv1f-Secr3t-Xyz"
SECRETS = (sample.CAMERA_SECRET, ONVIF_SECRET)
#: our own loggers, at DEBUG (SQLAlchemy's DEBUG row logging is an operator's explicit choice, not ours)
OUR_LOGGERS = ("api", "models", "gridpatrol", "ingest", "detectors", "rtsp_gateway", "uvicorn", "fastapi")


def _leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text or s.lower() in text.lower()]


@pytest.fixture(scope="module")
def secret_world(world: World) -> World:
    """Give every camera an ONVIF password, and import one more camera through the CLI's path."""
    with transaction(world.factory) as s:
        for cam in s.scalars(select(Camera)):
            cam.onvif_url = f"http://admin:{ONVIF_SECRET}@10.0.0.9/onvif/device_service"
            cam.onvif_username = "admin"
            cam.onvif_password = ONVIF_SECRET
    return world


def _calls(world: World) -> list[tuple[str, str, dict[str, Any], Case, Call]]:
    calls = []
    for method, path, op in OPERATIONS:
        params = [p["name"] for p in op.get("parameters", []) if p.get("in") == "path"]
        case = CASES.get(f"{method} {path}", Case())
        for caller in ("admin1", "leader-g1", None):
            for target in ("G1", "G3"):
                call = Call(world=world, caller=caller, target=target)
                if case.fresh_caller and caller is not None:
                    call = Call(world=world, caller=world.fresh_user(like=caller), target=target)
                url = path.format(**{p: PARAMS[p](call) for p in params})
                calls.append((method, url, case.request(call), case, call))
    return calls


def test_no_route_log_metric_or_error_shows_a_camera_credential(
    secret_world: World, caplog: pytest.LogCaptureFixture, tmp_path
) -> None:
    world = secret_world
    assert set(SEES) >= {"admin1", "leader-g1", None}
    caplog.set_level(logging.INFO)
    for name in OUR_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    seen: list[str] = []

    # importing a camera (the CLI's path) with credentials, and a bad row whose error names the field
    csv_path = tmp_path / "more.csv"
    csv_path.write_text(
        "name,url,lon,lat\n"
        f"cam-extra,rtsp://root:{sample.CAMERA_SECRET}@10.1.1.1:554/h264,118.705,32.105\n",
        encoding="utf-8",
    )
    with transaction(world.factory) as s:
        register_cameras(s, parse_camera_file(csv_path))
    bad = tmp_path / "bad.csv"
    bad.write_text(f"name,url,lon,lat\ncam-bad,rtsp://root:{sample.CAMERA_SECRET}@10.1.1.1:554/x,200,32\n", encoding="utf-8")
    with pytest.raises(Exception) as err:
        parse_camera_file(bad)
    seen.append(f"import error: {err.value}")

    client = world.client
    for method, url, kwargs, case, call in _calls(world):
        headers = world.bearer(call.caller) if call.caller else {}
        if case.stream:
            stream_status(world, method, url, headers)
            continue
        r = client.request(method, url, headers=headers, **kwargs)
        seen.append(f"{method} {url} -> {r.status_code} {dict(r.headers)} {r.text}")
        if method in {"POST", "PUT", "PATCH"}:  # a malformed body: the 422 names fields, never values of the DB
            bad_r = client.request(method, url, headers=headers, json={"camera_id": "x", "url": 1, "name": ""})
            seen.append(f"{method} {url} (bad body) -> {bad_r.status_code} {bad_r.text}")
    for extra in ("/openapi.json", "/docs", "/api/cameras?limit=1000", "/api/audit.csv?limit=100000", "/api/does-not-exist"):
        r = client.get(extra, headers=world.bearer("admin1"))
        seen.append(f"GET {extra} -> {r.status_code} {r.text}")

    # metrics: the process registry, and the per-camera health collector of the ingest part
    from ingest.health import HealthCollector, HealthRegistry

    health = HealthRegistry()
    with world.factory() as s:
        for cam in s.scalars(select(Camera)):
            health.get(str(cam.id)).on_frame(1.0, keyframe=True)
    registry = CollectorRegistry()
    HealthCollector(health).register(registry)
    seen.append(generate_latest(registry).decode())
    seen.append(generate_latest(REGISTRY).decode())

    assert len(seen) > 2 * len(OPERATIONS)
    leaking = [text[:300] for text in seen if _leaks(text)]
    assert not leaking, "camera credentials leaked in:\n" + "\n".join(leaking)
    logged = "\n".join(f"{r.name}: {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert not _leaks(logged), [line for line in logged.splitlines() if _leaks(line)][:5]
    # and the stream hosts are there, so the answers really were about these cameras
    assert any('"stream_host":"127.0.0.1"' in text for text in seen)
