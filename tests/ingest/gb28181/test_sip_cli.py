"""``gridpatrol gb28181 serve`` and ``gridpatrol serve --gb28181`` as real processes, a SIPp device
registering to them, and ``gridpatrol gb28181 devices`` showing it with its channels."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner, Result

from tests.ingest.gb28181.sipp import DEVICE_ID, SippDevice, free_port, require_sipp
from tests.support.procs import background, serving
from tests.support.procs import free_port as free_tcp_port

PASSWORD = "gb-cli-Secret-9"


def env_for(tmp_path: Path, sip_port: int) -> dict[str, str]:
    return {
        "GRIDPATROL_DATA_DIR": str(tmp_path / "var"),
        "GRIDPATROL_SECRET_KEY": "e2e-secret-key-with-at-least-32-characters",
        "GRIDPATROL_DATABASE_URL": "",
        "GRIDPATROL_REDIS_URL": "",
        "GRIDPATROL_GB28181_SIP_HOST": "127.0.0.1",
        "GRIDPATROL_GB28181_SIP_PORT": str(sip_port),
        "GRIDPATROL_GB28181_PASSWORD": PASSWORD,
        "GRIDPATROL_GB28181_KEEPALIVE_INTERVAL_S": "1",
    }


def cli(args: list[str], env: dict[str, str]) -> Result:
    """A quick command in this process (the platform itself runs as a real process)."""
    from gridpatrol.cli import app

    return CliRunner().invoke(app, args, env=env)


def devices(env: dict[str, str]) -> list[dict[str, object]]:
    result = cli(["gb28181", "devices", "--json"], env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["devices"]  # type: ignore[no-any-return]


def wait_for_catalog(env: dict[str, str], log: Path) -> dict[str, object]:
    wait_for_line(log, "catalog of 2 item(s), 2 camera(s)")
    found = devices(env)
    assert len(found) == 1 and found[0]["cameras"] == 2, found
    return found[0]


def wait_for_line(log: Path, text: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in (log.read_text(errors="replace") if log.exists() else ""):
        assert time.monotonic() < deadline, (
            f"{text!r} never appeared:\n{log.read_text(errors='replace')[-3000:]}"
        )
        time.sleep(0.1)


def wait_ready(port: int, timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            answer = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
            if answer.status_code == 200:
                return dict(answer.json())
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "gb28181 serve never answered /readyz with 200"
        time.sleep(0.2)


def test_gb28181_serve_registers_a_device_and_devices_lists_it(tmp_path: Path) -> None:
    require_sipp()
    sip_port = free_port()
    env = env_for(tmp_path, sip_port)
    (tmp_path / "var").mkdir()
    log = tmp_path / "var" / "gb.log"
    metrics_port = free_tcp_port()
    with background(
        ["gb28181", "serve", "--no-gateway", "--domain", "3402000000", "--metrics-port", str(metrics_port)], env, log
    ):
        wait_for_line(log, f"on sip:127.0.0.1:{sip_port} (udp/tcp)")
        ready = wait_ready(metrics_port)  # the platform's own readiness check, beside the database's
        assert ready["checks"]["sip"] == "ok" and ready["checks"]["database"] == "ok", ready
        device = SippDevice(platform_port=sip_port, password=PASSWORD, workdir=tmp_path, keepalive_ms=1000)
        device.start()
        try:
            row = wait_for_catalog(env, log)
            assert row["device_id"] == DEVICE_ID and row["status"] == "online" and row["transport"] == "udp"
            assert row["channels"] == 2
            table = cli(["gb28181", "devices"], env)
            assert table.exit_code == 0, table.output
            assert DEVICE_ID in table.stdout and "在线" in table.stdout
            assert table.stdout.strip().endswith("1 device(s), 1 online")
            listed = cli(["gb28181", "channels", DEVICE_ID], env)
            assert listed.exit_code == 0, listed.output
            assert "东门路口" in listed.stdout and "117.200100,31.800100" in listed.stdout
            assert listed.stdout.strip().endswith("2 channel(s)")
            unknown = cli(["gb28181", "channels", "34020000001320000099"], env)
            assert unknown.exit_code != 0 and "no GB/T 28181 device 34020000001320000099" in unknown.output
            cameras = cli(["cameras", "list", "--json"], env)
            names = sorted(c["name"] for c in json.loads(cameras.stdout)["cameras"])
            assert names == ["东门路口 [34020000001310000001]", "西门广场 [34020000001310000002]"]
        finally:
            device.terminate()
    assert PASSWORD not in log.read_text(errors="replace")  # the device password is never logged


def test_gb28181_serve_without_a_password_says_which_setting(tmp_path: Path) -> None:
    env = env_for(tmp_path, free_port())
    result = cli(["gb28181", "serve", "--no-gateway"], {**env, "GRIDPATROL_GB28181_PASSWORD": ""})
    assert result.exit_code != 0
    assert "GRIDPATROL_GB28181_PASSWORD" in result.output
    weak = cli(["gb28181", "serve", "--no-gateway"], {**env, "GRIDPATROL_GB28181_PASSWORD": "pw-4711"})
    assert weak.exit_code != 0 and "GRIDPATROL_GB28181_PASSWORD is guessable" in weak.output
    assert "pw-4711" not in weak.output  # never echoed back
    bad = cli(["gb28181", "serve", "--no-gateway", "--domain", "34020"], env)
    assert bad.exit_code != 0 and "GRIDPATROL_GB28181_DOMAIN must be 10 digits" in bad.output
    assert not (tmp_path / "var").exists()  # refused before anything started


def test_serve_runs_the_platform_when_asked(tmp_path: Path) -> None:
    require_sipp()
    sip_port = free_port()
    env = env_for(tmp_path, sip_port)
    port = free_tcp_port()
    with serving(["serve", "--port", str(port), "--no-worker", "--no-ticketer", "--gb28181"], env, port=port):
        device = SippDevice(platform_port=sip_port, password=PASSWORD, workdir=tmp_path, keepalive_ms=1000)
        device.start()
        try:
            row = wait_for_catalog(env, tmp_path / "var" / f"serve-{port}.log")
            assert row["status"] == "online"
        finally:
            device.terminate()
