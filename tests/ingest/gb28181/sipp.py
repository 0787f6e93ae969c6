"""SIPp (Debian's ``sip-tester``) playing a GB/T 28181 device against the platform under test.

``device.xml`` registers and sends keepalives; the platform's Catalog queries and INVITEs are answered
by the out-of-call scenario (``device_ooc.xml``, or ``device_ooc_gb2312.xml`` for GB2312 bodies).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.require import require

SCENARIOS = Path(__file__).parent / "scenarios"
DEVICE_ID = "34020000001320000001"
CHANNEL_1 = "34020000001310000001"
CHANNEL_2 = "34020000001310000002"


def require_sipp() -> str:
    path = shutil.which("sipp")
    require(path is not None, "SIPp (apt-get install sip-tester)")
    assert path is not None
    return path


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            other = socket.SOCK_STREAM if kind == socket.SOCK_DGRAM else socket.SOCK_DGRAM
            with socket.socket(socket.AF_INET, other) as b:
                try:
                    b.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


@dataclass
class SippDevice:
    """One SIPp process playing device ``device_id``; ``run()`` starts it, ``wait()``/``stop()`` end it."""

    platform_port: int
    password: str
    workdir: Path
    scenario: str = "device.xml"
    ooc: str | None = "device_ooc.xml"
    transport: str = "udp"
    device_id: str = DEVICE_ID
    platform_id: str = "34020000002000000001"
    domain: str = "3402000000"
    #: the Digest uri= (devices differ: here the domain alone, which is not the Request-URI)
    auth_uri: str | None = None
    keepalive_ms: int = 200
    #: keepalives sent before the scenario ends (0: until stopped)
    keepalives: int = 0
    keys: dict[str, str] = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        self.port = self.port or free_port(
            socket.SOCK_STREAM if self.transport == "tcp" else socket.SOCK_DGRAM
        )
        keys = {
            "device_id": self.device_id,
            "platform_id": self.platform_id,
            "domain": self.domain,
            "channel1": CHANNEL_1,
            "channel2": CHANNEL_2,
            "lon1": "117.2001",
            "lat1": "31.8001",
            "lon2": "0.0",
            "lat2": "0.0",
            **self.keys,
        }
        cmd = [require_sipp(), f"127.0.0.1:{self.platform_port}", "-sf", str(SCENARIOS / self.scenario)]
        if self.ooc:
            cmd += ["-oocsf", str(SCENARIOS / self.ooc)]
        cmd += ["-m", "1", "-i", "127.0.0.1", "-p", str(self.port), "-mp", str(free_port()), "-nostdin"]
        cmd += ["-cp", str(free_port()), "-t", "t1" if self.transport == "tcp" else "u1"]
        cmd += ["-au", self.device_id, "-ap", self.password, "-d", str(self.keepalive_ms)]
        cmd += ["-auth_uri", self.auth_uri or f"sip:{self.domain}"]
        if 'variables="keepalives"' in (SCENARIOS / self.scenario).read_text(encoding="utf-8"):
            cmd += ["-set", "keepalives", str(self.keepalives)]
        cmd += ["-trace_err", "-trace_msg", "-timeout", "60"]
        for k, v in keys.items():
            cmd += ["-key", k, v]
        return cmd

    def start(self) -> SippDevice:
        self.proc = subprocess.Popen(
            self.command(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            cwd=self.workdir,
        )
        return self

    def terminate(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    async def run(self) -> SippDevice:
        return self.start()

    async def wait(self, timeout_s: float = 30) -> int:
        """SIPp's exit status: 0 when the scenario ran as written."""
        assert self.proc is not None
        return await asyncio.to_thread(self.proc.wait, timeout_s)

    async def stop(self) -> None:
        await asyncio.to_thread(self.terminate)

    def log(self) -> str:
        """What SIPp saw (its message and error traces), for assertion messages."""
        parts = []
        for path in sorted(self.workdir.glob("*.log")):
            parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)
