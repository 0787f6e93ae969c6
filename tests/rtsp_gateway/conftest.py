"""Fixtures for the gateway tests: an H.264 and an H.265 camera (GStreamer's rtsp-server, with Basic and
Digest authentication), short clips for replays, and a small RTP → decoded-frames check with PyAV.

The camera servers log each RTSP session (``server.sessions()``), so a test can count the upstream
sessions the hub opened at the camera.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import av
import pytest

from rtsp_gateway import rtp
from rtsp_gateway.media import Codec, RtpPacket
from tests.support.require import require
from tests.support.rtsp_fixtures import clips, gstreamer, rtsp_server  # noqa: F401 (fixtures)
from tests.support.rtsp_server import RtspServer, Synthetic

CAMERA_USER = "camuser"
CAMERA_PASSWORD = "cam-secret-9"
#: a keyframe a second at 25 fps; small frames keep the tests light on 2 cores
CAMERA_FPS = 25


def _gst_element(name: str) -> bool:
    if shutil.which("gst-inspect-1.0") is None:
        return False
    done = subprocess.run(["gst-inspect-1.0", name], capture_output=True, timeout=30, check=False)
    return done.returncode == 0


@pytest.fixture
def h264_camera(rtsp_server: Callable[..., RtspServer]) -> RtspServer:  # noqa: F811
    """A live H.264 camera (x264) at /cam, Basic authentication."""
    mount = Synthetic(width=320, height=180, fps=CAMERA_FPS, gop=CAMERA_FPS, bitrate_kbps=400)
    return rtsp_server({"/cam": mount}, credentials=(CAMERA_USER, CAMERA_PASSWORD))


@pytest.fixture
def h265_camera(rtsp_server: Callable[..., RtspServer]) -> RtspServer:  # noqa: F811
    """A live H.265 camera (x265) at /cam, Digest authentication."""
    require(_gst_element("x265enc"), "GStreamer x265enc (gstreamer1.0-plugins-bad)")
    mount = Synthetic(width=320, height=180, fps=CAMERA_FPS, gop=CAMERA_FPS, bitrate_kbps=400, codec="h265")
    return rtsp_server({"/cam": mount}, credentials=(CAMERA_USER, CAMERA_PASSWORD), auth="digest")


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A local TCP port that accepts connections (kernel backlog) and never answers a byte."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield int(sock.getsockname()[1])
    sock.close()


def camera_url(server: RtspServer, *, password: str = CAMERA_PASSWORD) -> str:
    return server.url("/cam", user=CAMERA_USER, password=password)


@pytest.fixture(scope="session")
def replay_clips(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], Path]:
    """``replay_clips(codec, container)``: a 2 s 320x180 25 fps clip (GOP 25, no B-frames), made once."""
    require(shutil.which("ffmpeg") is not None, "ffmpeg (Debian package ffmpeg)")
    folder = tmp_path_factory.mktemp("replay-clips")

    def make(codec: str, container: str) -> Path:
        path = folder / f"{codec}.{container}"
        if path.exists():
            return path
        encoder = ["-c:v", "libx264", "-bf", "0"]
        if codec == "h265":
            encoder = ["-c:v", "libx265", "-x265-params", "log-level=error:keyint=25:min-keyint=25:bframes=0"]
            if container == "mp4":
                encoder += ["-tag:v", "hvc1"]
        cmd = [
            "ffmpeg", "-nostdin", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25", "-t", "2",
            *encoder, "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "25", str(path),
        ]  # fmt: skip
        subprocess.run(cmd, check=True, timeout=120)
        return path

    return make


def access_units(codec: Codec, packets: Iterable[RtpPacket]) -> list[bytes]:
    """Annex-B access units out of RTP packets (single NAL, STAP-A/AP, FU-A/FU): a test's own small
    depacketizer, independent of the gateway's, so a bug in one is caught by the other."""
    units: list[bytes] = []
    current: list[bytes] = []
    fragment: bytearray | None = None
    timestamp: int | None = None
    for packet in packets:
        if packet.rtcp:
            continue
        header = rtp.parse_header(packet.data)
        assert header is not None
        if timestamp is not None and header.timestamp != timestamp and current:
            units.append(b"".join(b"\x00\x00\x00\x01" + n for n in current))
            current = []
        timestamp = header.timestamp
        payload = rtp.payload_of(packet.data, header)
        if codec == "h264":
            kind = payload[0] & 0x1F
            if kind == rtp.H264_STAP_A:
                current.extend(rtp.aggregated_units(payload, 1))
            elif kind == rtp.H264_FU_A:
                if payload[1] & 0x80:
                    fragment = bytearray([(payload[0] & 0xE0) | (payload[1] & 0x1F)])
                if fragment is not None:
                    fragment += payload[2:]
                    if payload[1] & 0x40:
                        current.append(bytes(fragment))
                        fragment = None
            else:
                current.append(payload)
        else:
            kind = (payload[0] >> 1) & 0x3F
            if kind == rtp.H265_AP:
                current.extend(rtp.aggregated_units(payload, 2))
            elif kind == rtp.H265_FU:
                if payload[2] & 0x80:
                    fragment = bytearray([(payload[0] & 0x81) | ((payload[2] & 0x3F) << 1), payload[1]])
                if fragment is not None:
                    fragment += payload[3:]
                    if payload[2] & 0x40:
                        current.append(bytes(fragment))
                        fragment = None
            else:
                current.append(payload)
        if header.marker and current:
            units.append(b"".join(b"\x00\x00\x00\x01" + n for n in current))
            current = []
            timestamp = None
    return units


def decoded_frames(codec: Codec, packets: Iterable[RtpPacket], parameter_sets: tuple[bytes, ...] = ()) -> int:
    """How many pictures PyAV decodes from these RTP packets (parameter sets from the SDP go first)."""
    context = av.CodecContext.create("h264" if codec == "h264" else "hevc", "r")
    prefix = b"".join(b"\x00\x00\x00\x01" + p for p in parameter_sets)
    count = 0
    for i, unit in enumerate(access_units(codec, packets)):
        data = prefix + unit if i == 0 else unit
        count += len(context.decode(av.Packet(data)))
    count += len(context.decode(None))
    return count


def rtp_timestamps(packets: Iterable[RtpPacket]) -> list[int]:
    """The distinct RTP timestamps (one per frame) in arrival order."""
    out: list[int] = []
    for packet in packets:
        if packet.rtcp:
            continue
        header = rtp.parse_header(packet.data)
        assert header is not None
        if not out or out[-1] != header.timestamp:
            out.append(header.timestamp)
    return out
