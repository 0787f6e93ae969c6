"""Running our own CLI and servers as real processes in tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

VENV_BIN = Path(sys.executable).parent
GRIDPATROL = str(VENV_BIN / "gridpatrol")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_cli(args: list[str], env: dict[str, str], *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GRIDPATROL, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout, check=False
    )


@contextmanager
def serving(args: list[str], env: dict[str, str], *, port: int, timeout: float = 60) -> Iterator[str]:
    """Start ``gridpatrol <args>`` and wait for /healthz on ``port``; stop it (TERM, then KILL) afterwards."""
    log_dir = Path(env.get("GRIDPATROL_DATA_DIR", "."))
    log_dir.mkdir(parents=True, exist_ok=True)
    log = open(log_dir / f"serve-{port}.log", "w+")  # noqa: SIM115
    # ``serve`` runs the RTSP gateway too: on a free port of its own unless the test chose one
    env = {"GRIDPATROL_GATEWAY_PORT": str(free_port()), **env}
    proc = subprocess.Popen([GRIDPATROL, *args], env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"gridpatrol {' '.join(args)} exited with {proc.returncode}:\n{log.read()[-4000:]}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gridpatrol did not answer on {base} within {timeout}s")
            time.sleep(0.2)
        yield base
    finally:
        stop_process(proc)
        log.close()


def stop_process(proc: subprocess.Popen[Any], *, grace_s: float = 15.0) -> None:
    """TERM, then KILL after a grace period (a process stuck in a read may ignore one TERM)."""
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def background(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``gridpatrol <args>`` running with its output in ``log`` for the duration of the block."""
    with open(log, "wb") as out:
        proc = subprocess.Popen([GRIDPATROL, *args], env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            stop_process(proc)
