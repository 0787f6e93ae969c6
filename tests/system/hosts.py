"""Hosts as Linux network namespaces on one bridge, and the servers they share, started for one run.

Each host is a namespace with one veth leg on a bridge in the root namespace; the bridge's own address
is where a dedicated PostgreSQL cluster, Redis and Mosquitto listen (the machine's shared servers listen
on 127.0.0.1 only, which a namespace cannot reach, and a fault test must never restart them). Names
carry a random id and the subnet is random, so parallel runs never collide; everything is removed on
exit, also when a test fails. Needs root and iproute2.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _pg_bin() -> Path | None:
    """The folder of PostgreSQL's ``initdb`` and ``postgres``: on PATH, else the Debian package's."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return versions[-1].parent if versions else None


PG_BIN = _pg_bin()


def _ip(*args: str, ns: str | None = None) -> None:
    cmd = ["ip", *(["-n", ns] if ns else []), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {result.stderr.strip()}")


def netns_available() -> bool:
    """Root with iproute2 that can create a namespace."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    name = f"gpchk{uuid.uuid4().hex[:8]}"
    ok = subprocess.run(["ip", "netns", "add", name], capture_output=True, check=False).returncode == 0
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    return ok


def wait_port(host: str, port: int, *, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on {host}:{port} after {timeout}s") from None
            time.sleep(0.1)


def _used_subnets() -> set[tuple[int, int]]:
    out = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, check=False).stdout
    used = set()
    for line in out.splitlines():
        parts = line.split()[0].split(".")
        if len(parts) >= 3 and parts[0] == "10":
            used.add((int(parts[1]), int(parts[2])))
    return used


@dataclass
class Network:
    """A bridge in the root namespace (``gateway_ip`` on it) and namespaces attached to it."""

    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    hosts: dict[str, str] = field(default_factory=dict)  # host name → address
    _namespaces: dict[str, str] = field(default_factory=dict)  # host name → namespace

    def __post_init__(self) -> None:
        used = _used_subnets()
        while True:
            self.net = (random.randint(100, 250), random.randint(0, 255))
            if self.net not in used:
                break
        self.bridge = f"gpbr{self.run_id}"
        self.root_ip = self.address(1)

    def address(self, n: int) -> str:
        return f"10.{self.net[0]}.{self.net[1]}.{n}"

    def up(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.root_ip}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def add_host(self, name: str) -> str:
        """A namespace ``name`` with an address on the bridge; returns the address."""
        n = len(self._namespaces) + 10
        ns, leg = f"gp{self.run_id}-{name}", f"gv{self.run_id}{n}"
        _ip("netns", "add", ns)
        self._namespaces[name] = ns
        _ip("link", "add", leg, "type", "veth", "peer", "name", f"{leg}p")
        _ip("link", "set", f"{leg}p", "netns", ns)
        _ip("link", "set", leg, "master", self.bridge)
        _ip("link", "set", leg, "up")
        _ip("link", "set", "lo", "up", ns=ns)
        _ip("link", "set", f"{leg}p", "name", "eth0", ns=ns)
        _ip("addr", "add", f"{self.address(n)}/24", "dev", "eth0", ns=ns)
        _ip("link", "set", "eth0", "up", ns=ns)
        self.hosts[name] = self.address(n)
        return self.address(n)

    def namespace(self, host: str) -> str:
        return self._namespaces[host]

    def down(self) -> None:
        for ns in self._namespaces.values():
            pids = subprocess.run(
                ["ip", "netns", "pids", ns], capture_output=True, text=True, check=False
            ).stdout
            for pid in pids.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)


@contextmanager
def network() -> Iterator[Network]:
    net = Network()
    try:
        net.up()
        yield net
    finally:
        net.down()


def _stop(proc: subprocess.Popen[Any] | None, *, sig: int = signal.SIGTERM, grace_s: float = 15.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Postgres:
    """A throw-away PostgreSQL cluster listening on ``host`` (trust auth; fsync off: data is for one run)."""

    def __init__(self, host: str, *, port: int = 5432) -> None:
        self.host, self.port = host, port
        # the server refuses to run as root: the cluster belongs to the ``postgres`` user, in a folder it can reach
        self.dir = Path(tempfile.mkdtemp(prefix="gp-system-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self.proc: subprocess.Popen[bytes] | None = None
        self._as_postgres(
            [
                str(PG_BIN / "initdb") if PG_BIN else "initdb",
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ]
        )
        with open(self.data / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {host.rsplit('.', 1)[0]}.0/24 trust\n")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    def _as_postgres(self, cmd: list[str]) -> None:
        result = subprocess.run(
            cmd, user="postgres", group="postgres", capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"{cmd[0]}: {result.stderr.strip()}")

    def start(self) -> None:
        postgres = str(PG_BIN / "postgres") if PG_BIN else "postgres"
        log = open(self.dir / "postgres.log", "ab")  # noqa: SIM115
        args = ["-D", str(self.data), "-h", self.host, "-p", str(self.port), "-k", str(self.dir)]
        args += [
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=200",
        ]
        self.proc = subprocess.Popen(
            [postgres, *args],
            user="postgres",
            group="postgres",
            cwd=self.dir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_port(self.host, self.port)

    def stop(self) -> None:
        # SIGINT = fast shutdown: open connections are cut, as in a restart of the database server
        _stop(self.proc, sig=signal.SIGINT)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Redis:
    """A dedicated redis-server on ``host``, append-only like the compose file's (a restart keeps the streams)."""

    def __init__(self, host: str, *, port: int = 6379) -> None:
        self.host, self.port = host, port
        self.dir = Path(tempfile.mkdtemp(prefix="gp-system-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> None:
        args = [
            "--bind",
            self.host,
            "--port",
            str(self.port),
            "--dir",
            str(self.dir),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--protected-mode",
            "no",
        ]
        log = open(self.dir / "redis.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(["redis-server", *args], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_port(self.host, self.port)

    def stop(self) -> None:
        _stop(self.proc)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Mosquitto:
    """A dedicated MQTT broker on ``host``."""

    def __init__(self, host: str, *, port: int = 1883) -> None:
        self.host, self.port = host, port
        self.dir = Path(tempfile.mkdtemp(prefix="gp-system-mqtt-"))
        (self.dir / "mosquitto.conf").write_text(f"listener {port} {host}\nallow_anonymous true\nuser root\n")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self) -> None:
        log = open(self.dir / "mosquitto.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["mosquitto", "-c", str(self.dir / "mosquitto.conf")], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        wait_port(self.host, self.port)

    def close(self) -> None:
        _stop(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)
