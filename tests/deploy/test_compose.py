"""docker-compose.yml, checked without a container engine: it is valid against the Compose
Specification's JSON schema (vendored: tests/deploy/compose-spec.json, from compose-spec/compose-spec,
Apache-2.0), every GridPatrol service runs a real ``gridpatrol`` command line with options that exist,
and the deployment's shape holds (migration first, two ticketers, scalable workers, GPU and MQTT
profiles, health checks and restart policies, no secret with a default)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.require import require_module

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = Path(__file__).with_name("compose-spec.json")
LONG_RUNNING = {"postgres", "redis", "api", "gateway", "ticketer", "worker", "worker-gpu", "mqtt"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8")))


def test_the_file_is_valid_compose(compose: dict[str, Any]) -> None:
    require_module("jsonschema", "jsonschema (pip, the dev extra)")
    import jsonschema

    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)
    # the schema is the real one: it refuses what Compose refuses
    broken = {**compose, "services": {"api": {**compose["services"]["api"], "restart_policy": "always"}}}
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken))


def gridpatrol_services(compose: dict[str, Any]) -> dict[str, list[str]]:
    return {
        name: svc["command"]
        for name, svc in compose["services"].items()
        if str(svc.get("image", "")).startswith("gridpatrol:")
    }


def test_each_command_is_a_real_gridpatrol_command_line(compose: dict[str, Any]) -> None:
    commands = gridpatrol_services(compose)
    assert set(commands) == {"migrate", "api", "gateway", "ticketer", "worker", "worker-gpu"}, commands
    for name, command in commands.items():
        assert command[0] == "gridpatrol", (name, command)
        # click reads every option before it acts on --help: an unknown option or command fails here
        done = subprocess.run(
            [sys.executable, "-m", "gridpatrol", *command[1:], "--help"], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, f"{name}: {' '.join(command)}\n{done.stdout}{done.stderr}"
        assert "Usage:" in done.stdout, done.stdout


def test_the_deployment_has_its_parts(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == LONG_RUNNING | {"migrate"}, set(services)
    # the schema first, once; every GridPatrol process after it
    assert services["migrate"]["restart"] == "no"
    for name in ("api", "gateway", "ticketer", "worker", "worker-gpu"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name
        env = services[name]["environment"]
        assert env["GRIDPATROL_EVIDENCE_STORE"] == "database", name  # no shared filesystem between machines
        assert env["GRIDPATROL_REDIS_URL"].startswith("redis://redis:"), name
    assert services["ticketer"]["deploy"]["replicas"] == 2
    assert "replicas" not in services["worker"].get("deploy", {})  # scaled with --scale worker=N
    assert services["worker-gpu"]["profiles"] == ["gpu"]
    assert services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert services["mqtt"]["profiles"] == ["mqtt"]
    for name in LONG_RUNNING:
        assert services[name]["restart"] == "unless-stopped", name
        assert services[name]["healthcheck"]["test"][0] == "CMD", name


def test_secrets_have_no_default_and_the_example_names_them(compose: dict[str, Any]) -> None:
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    required = set(re.findall(r"\$\{(\w+):\?", text))
    assert required == {"GRIDPATROL_SECRET_KEY", "GRIDPATROL_CREDENTIALS_KEY", "POSTGRES_PASSWORD"}, required
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    for name in required:
        assert re.search(rf"^{name}=$", example, re.M), name  # present, and empty: never a shared secret
    assert ".env" in (ROOT / ".gitignore").read_text(encoding="utf-8").split()


def test_the_image_installs_what_the_processes_need_at_run_time() -> None:
    """The Dockerfile's apt-get line carries ffmpeg (clips, H.265 probing) and the CJK font the evidence banners
    are drawn with; the font package it names really holds a file the drawing code looks for."""
    from models.evidence.drawing import FONT_PATTERNS

    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    line = next(ln for ln in text.splitlines() if "apt-get install" in ln)
    packages = set(line.split("--no-install-recommends", 1)[1].split("&&", 1)[0].split())
    assert {"ffmpeg", "fonts-noto-cjk"} <= packages, line
    listed = subprocess.run(["dpkg", "-L", "fonts-noto-cjk"], capture_output=True, text=True, check=False)
    assert listed.returncode == 0, "fonts-noto-cjk is not installed here: run scripts/setup.sh"
    files = [Path(p) for p in listed.stdout.split()]
    assert any(f.match(pattern.lstrip("/").replace("**/", "*/")) for f in files for pattern in FONT_PATTERNS[:3])
