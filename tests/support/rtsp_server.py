"""A real RTSP server for tests and benchmarks: GStreamer's rtsp-server, driven from a subprocess.

Two halves in one file:

* run as a script by the SYSTEM Python (``/usr/bin/python3``, which has ``gi``; the project venv has
  not), it serves the mounts given as JSON on the command line and prints ``READY <port>`` once it
  listens;
* imported from the venv, :class:`RtspServer` starts/stops/restarts that script on a fixed port and
  :func:`make_clip` generates H.264 test clips with ffmpeg (testsrc2, fixed GOP, no B-frames).

Mounts (path -> spec)::

    Clip(path)                 plays an .mp4 clip once per client, then the stream ends
    Synthetic(width=, ...)     an endless live videotestsrc encoded with x264, or x265 with
                               ``codec="h265"`` (one encoder per client)
    Loop(path)                 an .ts clip looped forever by ``ffmpeg -re -stream_loop -1`` into a
                               shared udpsrc mount (one feeder, all clients see the same stream)

Example::

    with RtspServer({"/cam": Synthetic(width=640, height=360)}) as server:
        url = server.url("/cam")
        server.stop(); server.start()          # same port: a camera that goes away and comes back

``credentials=(user, password)`` protects every mount (Basic; ``auth="digest"`` for Digest);
``session_timeout_s`` shortens the RTSP session timeout the server announces (default 60 s).
Every client connection, RTSP session and GET_PARAMETER keep-alive is logged to ``server.events`` (a
file kept across restarts): :meth:`RtspServer.sessions` counts the RTSP sessions, so a test can assert
how many upstream sessions a relay opened at the camera (:meth:`RtspServer.connections` also counts the
readiness probe's connection of each start).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

SYSTEM_PYTHON = "/usr/bin/python3"


@dataclass(frozen=True)
class Clip:
    """An .mp4 H.264 clip played once per client."""

    path: str
    kind: str = "clip"


@dataclass(frozen=True)
class Synthetic:
    """An endless live test pattern; every client gets its own encoder."""

    width: int = 640
    height: int = 360
    fps: int = 25
    gop: int = 50
    bitrate_kbps: int = 1000
    pattern: str = "ball"
    #: "h264" (x264enc) or "h265" (x265enc)
    codec: str = "h264"
    kind: str = "synthetic"


@dataclass(frozen=True)
class Loop:
    """An MPEG-TS H.264 clip looped forever, shared by all clients of the mount."""

    path: str
    kind: str = "loop"


Mount = Clip | Synthetic | Loop


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gstreamer_available() -> bool:
    """True when the system Python can import GStreamer's rtsp-server bindings."""
    if not os.path.exists(SYSTEM_PYTHON):
        return False
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    done = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=30, check=False)
    return done.returncode == 0


def make_clip(
    path: Path, *, width: int, height: int, fps: int = 25, seconds: float = 10.0, gop: int = 50
) -> Path:
    """Encode a testsrc2 H.264 clip (fixed GOP, no B-frames) to ``path`` (.mp4 or .ts) unless it exists."""
    if path.exists():
        return path
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    cmd = [
        "ffmpeg", "-nostdin", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}",
        "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
        "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", "-bf", "0",
        str(tmp),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, timeout=300)
    tmp.rename(path)
    return path


class RtspServer:
    """GStreamer rtsp-server in a subprocess on 127.0.0.1; restartable on the same port."""

    def __init__(
        self,
        mounts: Mapping[str, Mount],
        *,
        port: int | None = None,
        credentials: tuple[str, str] | None = None,
        auth: str = "basic",
        start_timeout_s: float = 20.0,
        events: Path | None = None,
        session_timeout_s: int | None = None,
    ) -> None:
        self.mounts = dict(mounts)
        self.port = port or free_port()
        self.credentials = credentials
        self.auth = auth
        if events is None:
            fd, name = tempfile.mkstemp(prefix=f"rtsp-{self.port}-", suffix=".events")
            os.close(fd)
            events = Path(name)
        self.events = events
        self.session_timeout_s = session_timeout_s
        self.start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen[str] | None = None

    def url(self, path: str, *, user: str | None = None, password: str | None = None) -> str:
        auth = f"{user}:{password}@" if user is not None else ""
        return f"rtsp://{auth}127.0.0.1:{self.port}{path}"

    def _event_lines(self, kind: str) -> list[str]:
        try:
            lines = self.events.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [line for line in lines if line.split(" ", 1)[0] == kind]

    def connections(self) -> int:
        """Client TCP connections accepted so far (all runs of this server)."""
        return len(self._event_lines("CONNECT"))

    def sessions(self) -> int:
        """RTSP sessions created so far (one per SETUP of a new session; all runs of this server)."""
        return len(self._event_lines("SESSION"))

    def keepalives(self) -> int:
        """GET_PARAMETER requests (RTSP keep-alives) received so far."""
        return len(self._event_lines("KEEPALIVE"))

    def open_connections(self) -> int:
        """Client connections accepted and not yet closed, in this run of the server."""
        lines = self.events.read_text().splitlines() if self.events.exists() else []
        count = 0
        for line in lines:
            kind = line.split(" ", 1)[0]
            if kind == "START":
                count = 0
            elif kind == "CONNECT":
                count += 1
            elif kind == "CLOSED":
                count -= 1
        return count

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> RtspServer:
        if self.running:
            return self
        spec = {
            "port": self.port,
            "mounts": {path: asdict(m) for path, m in self.mounts.items()},
            "credentials": list(self.credentials) if self.credentials else None,
            "auth": self.auth,
            "events": str(self.events),
            "session_timeout_s": self.session_timeout_s,
        }
        deadline = time.monotonic() + self.start_timeout_s
        while True:  # the port may linger a moment after a restart
            proc = subprocess.Popen(
                [SYSTEM_PYTHON, __file__, json.dumps(spec)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if line.startswith("READY"):
                self._proc = proc
                self._wait_listening(deadline)
                return self
            proc.kill()
            _, err = proc.communicate(timeout=10)
            if time.monotonic() > deadline:
                raise RuntimeError(f"rtsp server did not start: {line!r} {err[-2000:]}")
            time.sleep(0.3)

    def _wait_listening(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"rtsp server not listening on {self.port}")

    def stop(self) -> None:
        """Stop the server and every feeder it spawned (SIGTERM, then SIGKILL after a grace period)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        try:  # feeders live in the same process group
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()

    def restart(self) -> RtspServer:
        self.stop()
        return self.start()

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------------
# The server half: runs under /usr/bin/python3 with GStreamer's introspection bindings.

RTP_CAPS = "application/x-rtp,media=video,clock-rate=90000,encoding-name=H264,payload=96"


def _launch_line(mount: dict[str, object], udp_port: int | None) -> str:
    kind = mount["kind"]
    if kind == "clip":
        return (
            f"( filesrc location={mount['path']} ! qtdemux ! h264parse ! "
            "rtph264pay name=pay0 pt=96 config-interval=1 )"
        )
    if kind == "synthetic" and mount.get("codec") == "h265":
        return (
            f"( videotestsrc is-live=true pattern={mount['pattern']} ! "
            f"video/x-raw,width={mount['width']},height={mount['height']},framerate={mount['fps']}/1 ! "
            f"x265enc tune=zerolatency speed-preset=ultrafast key-int-max={mount['gop']} "
            f"bitrate={mount['bitrate_kbps']} ! h265parse ! rtph265pay name=pay0 pt=96 config-interval=1 )"
        )
    if kind == "synthetic":
        return (
            f"( videotestsrc is-live=true pattern={mount['pattern']} ! "
            f"video/x-raw,width={mount['width']},height={mount['height']},framerate={mount['fps']}/1 ! "
            f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={mount['gop']} bframes=0 "
            f"bitrate={mount['bitrate_kbps']} ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )"
        )
    if kind == "loop":
        return (
            f'( udpsrc address=127.0.0.1 port={udp_port} caps="{RTP_CAPS}" ! rtph264depay ! '
            "h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 config-interval=1 )"
        )
    raise ValueError(f"unknown mount kind {kind!r}")


def _serve(spec: dict[str, object]) -> None:  # pragma: no cover - runs in the system Python
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(spec["port"]))
    credentials = spec.get("credentials")
    if credentials:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "user")
        if spec.get("auth") == "digest":
            gi.require_version("GstRtsp", "1.0")
            from gi.repository import GstRtsp

            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
            auth.add_digest(credentials[0], credentials[1], token)
        else:
            basic = GstRtspServer.RTSPAuth.make_basic(credentials[0], credentials[1])
            auth.add_basic(basic, token)
        server.set_auth(auth)
    events_path = spec.get("events")
    events = open(str(events_path), "a", buffering=1) if events_path else None  # noqa: SIM115

    def log_event(line: str) -> None:
        if events is not None:
            events.write(line + "\n")

    def on_client(_server: object, client: GstRtspServer.RTSPClient) -> None:
        address = client.get_connection().get_ip()
        log_event(f"CONNECT {address}")
        client.connect("closed", lambda *_: log_event(f"CLOSED {address}"))
        client.connect("get-parameter-request", lambda *_: log_event(f"KEEPALIVE {address}"))

        def on_session(_client: object, session: GstRtspServer.RTSPSession) -> None:
            log_event(f"SESSION {address}")
            if spec.get("session_timeout_s"):
                session.set_timeout(int(spec["session_timeout_s"]))

        client.connect("new-session", on_session)

    log_event(f"START {spec['port']}")
    server.connect("client-connected", on_client)
    feeders: list[subprocess.Popen[bytes]] = []
    points = server.get_mount_points()
    mounts = spec["mounts"]
    assert isinstance(mounts, dict)
    for path, mount in mounts.items():
        udp_port = None
        factory = GstRtspServer.RTSPMediaFactory()
        if mount["kind"] == "loop":
            udp_port = free_port(socket.SOCK_DGRAM)
            factory.set_shared(True)
        factory.set_launch(_launch_line(mount, udp_port))
        if credentials:
            factory.add_role_from_structure(
                Gst.Structure.from_string(
                    "user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
                )[0]
            )
        points.add_factory(path, factory)
        if udp_port is not None:
            feeders.append(
                subprocess.Popen(
                    [
                        "ffmpeg",
                        "-nostdin",
                        "-loglevel",
                        "error",
                        "-re",
                        "-stream_loop",
                        "-1",
                        "-i",
                        str(mount["path"]),
                        "-c",
                        "copy",
                        "-f",
                        "rtp",
                        f"rtp://127.0.0.1:{udp_port}",
                    ]
                )  # fmt: skip
            )
    if server.attach(None) == 0:
        sys.stdout.write("FAILED attach\n")
        sys.stdout.flush()
        sys.exit(3)
    loop = GLib.MainLoop()

    def quit_loop(*_: object) -> bool:
        loop.quit()
        return False

    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGTERM, quit_loop)
    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGINT, quit_loop)
    sys.stdout.write(f"READY {spec['port']}\n")
    sys.stdout.flush()
    try:
        loop.run()
    finally:
        for feeder in feeders:
            feeder.kill()


if __name__ == "__main__":
    if shutil.which("ffmpeg") is None:
        sys.stderr.write("ffmpeg is missing\n")
    _serve(json.loads(sys.argv[1]))
