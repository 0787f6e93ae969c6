"""A real ONVIF camera for tests: PyPI ``ipycam`` in a network namespace of the test's own.

ipycam binds every address and multicasts WS-Discovery Hello/Bye, so it runs inside a fresh named
network namespace (``ip netns add``) with only loopback up and a multicast route on it: nothing
leaves the machine. It lives in its own venv (``.venv-ipycam``, made by ``scripts/setup.d/
10-ingest.sh``) because it pulls the non-headless OpenCV.

Two halves in one file:

* run as a script by ``.venv-ipycam/bin/python`` inside the namespace, it starts the camera, feeds
  it a moving test pattern and prints ``READY`` once ONVIF answers;
* imported from the venv, :class:`OnvifDevice` makes the namespace, starts the script in it, and
  :meth:`OnvifDevice.call` runs a function in a thread that has joined the namespace (``setns``
  is per thread on Linux), so the test's client code reaches the device over the namespace's
  loopback while the rest of the test process stays where it is.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[2]
IPYCAM_PYTHON = ROOT / ".venv-ipycam" / "bin" / "python"
CLONE_NEWNET = 0x40000000
T = TypeVar("T")


def ipycam_available() -> bool:
    """True when the ipycam venv exists and network namespaces can be made (root, iproute2)."""
    return IPYCAM_PYTHON.exists() and os.geteuid() == 0 and shutil.which("ip") is not None


class OnvifDevice:
    """An ipycam ONVIF camera at 127.0.0.1 inside its own network namespace."""

    def __init__(
        self,
        *,
        username: str = "admin",
        password: str = "admin-pass",
        onvif_port: int = 8080,
        rtsp_port: int = 8554,
        start_timeout_s: float = 60.0,
    ) -> None:
        self.username = username
        self.password = password
        self.onvif_port = onvif_port
        self.rtsp_port = rtsp_port
        self.start_timeout_s = start_timeout_s
        self.netns = f"gp-ingest-{uuid.uuid4().hex[:8]}"
        self._proc: subprocess.Popen[str] | None = None
        self.log: list[str] = []

    def start(self) -> OnvifDevice:
        subprocess.run(["ip", "netns", "add", self.netns], check=True)
        for cmd in ("ip link set lo up", "ip link set lo multicast on", "ip route add 239.0.0.0/8 dev lo"):
            subprocess.run(["ip", "netns", "exec", self.netns, *cmd.split()], check=True)
        spec = {"username": self.username, "password": self.password,
                "onvif_port": self.onvif_port, "rtsp_port": self.rtsp_port}
        self._proc = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, str(IPYCAM_PYTHON), __file__, json.dumps(spec)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
        assert self._proc.stdout is not None
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            line = self._proc.stdout.readline()
            if not line:
                break
            self.log.append(line.rstrip())
            if line.startswith("READY"):
                threading.Thread(target=self._drain, daemon=True).start()
                return self
        self.stop()
        raise RuntimeError("ipycam did not start:\n" + "\n".join(self.log[-40:]))

    def _drain(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            self.log.append(line.rstrip())
            del self.log[:-200]

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(timeout=5)
        subprocess.run(["ip", "netns", "del", self.netns], check=False, capture_output=True)

    def call(self, fn: Callable[[], T], *, timeout: float = 60.0) -> T:
        """Run ``fn()`` in a new thread that joined the device's network namespace; return its result."""
        result: dict[str, Any] = {}

        def target() -> None:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{self.netns}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns failed")
            finally:
                os.close(fd)
            try:
                result["value"] = fn()
            except BaseException as err:  # handed to the caller's thread
                result["error"] = err

        thread = threading.Thread(target=target, name=f"netns-{self.netns}", daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            raise TimeoutError(f"call in {self.netns} still running after {timeout}s")
        if "error" in result:
            raise result["error"]
        return result["value"]  # type: ignore[no-any-return]

    def __enter__(self) -> OnvifDevice:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------------
# The device half: runs under .venv-ipycam/bin/python inside the namespace.


def _serve(spec: dict[str, Any]) -> None:  # pragma: no cover - runs in the ipycam venv
    import signal
    import urllib.request

    import numpy as np
    from ipycam import CameraConfig, IPCamera

    os.chdir(os.environ.get("TMPDIR", "/tmp"))  # ipycam may write a config/recordings next to cwd
    cfg = CameraConfig(
        name="GridPatrol Test Cam", local_ip="127.0.0.1",
        onvif_port=spec["onvif_port"], rtsp_port=spec["rtsp_port"], web_port=spec["onvif_port"] + 1,
        main_width=640, main_height=360, main_fps=25, main_bitrate="1M",
        sub_width=320, sub_height=180, sub_fps=25, sub_bitrate="1M",
        hw_accel="cpu", username=spec["username"], password=spec["password"],
    )  # fmt: skip
    cam = IPCamera(cfg)
    if not cam.start():
        sys.stdout.write("FAILED start\n")
        sys.exit(3)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    frame = np.zeros((360, 640, 3), np.uint8)
    ready = False
    n = 0
    while not stop.is_set():
        frame[:] = 40
        x = (n * 8) % 600
        frame[150:210, x : x + 40] = (0, 200, 255)
        cam.stream(frame)
        n += 1
        if not ready and n > 10:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{spec['onvif_port']}/", timeout=2)
            except Exception:  # noqa: BLE001 - 401 or not yet up; HTTPError means it answers
                pass
            ready = True
            sys.stdout.write("READY\n")
            sys.stdout.flush()
        time.sleep(0.04)
    cam.stop()


if __name__ == "__main__":
    _serve(json.loads(sys.argv[1]))
