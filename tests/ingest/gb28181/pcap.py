"""Camera-style GB/T 28181 media for tests and benchmarks: real H.264/H.265 frames (libx264/libx265 on
generated footage) muxed into MPEG-PS with our muxer, packetised to RTP as cameras do (PS split into
payloads of at most 1400 bytes, marker bit on a frame's last packet, 90 kHz timestamps) and written to
a pcap (Ethernet/IPv4/UDP) for SIPp's ``play_pcap_video``, or framed for TCP (RFC 4571).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from gridpatrol.democlip import LeftObject, frame_at
from ingest.gb28181 import ps

MAX_PAYLOAD = 1400


@dataclass(frozen=True)
class Frame:
    pts: int  # 90 kHz
    keyframe: bool
    es: bytes  # Annex-B


def footage(
    seconds: float, fps: int, *, size: tuple[int, int] = (640, 360), left: LeftObject | None = None
) -> Iterator[np.ndarray]:
    """Generated street footage (people walking; optionally a cart left in the fire lane)."""
    for i in range(int(seconds * fps)):
        yield frame_at(i / fps, size=size, left=left)


def vtest_footage(seconds: float, *, width: int = 768) -> Iterator[np.ndarray]:
    """Real footage: Debian's vtest.avi (a fixed outdoor camera, 768x576), its first ``seconds`` at 10 fps."""
    from tests.detectors.support import asset

    with av.open(str(asset("vtest.avi"))) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i >= seconds * 10:
                break
            yield frame.to_ndarray(format="bgr24", width=width, height=width * 576 // 768)


def encode(
    images: Iterable[np.ndarray], *, codec: ps.Codec = "h264", fps: int = 25, gop: int = 25
) -> list[Frame]:
    """Encode BGR images as a camera does: fixed GOP, no B-frames, parameter sets before every keyframe."""
    frames: list[Frame] = []
    ctx = None
    for i, img in enumerate(images):
        if ctx is None:
            ctx = av.CodecContext.create("libx264" if codec == "h264" else "libx265", "w")
            ctx.width, ctx.height = img.shape[1], img.shape[0]
            ctx.pix_fmt = "yuv420p"
            ctx.time_base = Fraction(1, fps)
            ctx.framerate = Fraction(fps, 1)
            if codec == "h264":
                ctx.options = {
                    "preset": "veryfast",
                    "g": str(gop),
                    "keyint_min": str(gop),
                    "sc_threshold": "0",
                    "bf": "0",
                }
            else:
                ctx.options = {
                    "preset": "veryfast",
                    "x265-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0:repeat-headers=1:log-level=error",
                }
        vf = av.VideoFrame.from_ndarray(img, format="bgr24")
        vf.pts = i
        frames += _packets(ctx.encode(vf), fps)
    if ctx is not None:
        frames += _packets(ctx.encode(None), fps)
    return frames


def _packets(packets: Iterable[av.Packet], fps: int) -> list[Frame]:
    return [Frame(int(p.pts * 90000 // fps), bool(p.is_keyframe), bytes(p)) for p in packets]


def ps_stream(frames: list[Frame], codec: ps.Codec) -> list[tuple[int, bytes]]:
    """(pts, one pack per frame) as a camera muxes them."""
    return [(f.pts, ps.mux_frame(codec, f.es, f.pts, keyframe=f.keyframe)) for f in frames]


def rtp_packets(
    packs: list[tuple[int, bytes]],
    *,
    ssrc: int,
    payload_type: int = 96,
    first_seq: int | None = None,
    fps: int = 25,
) -> list[tuple[float, bytes]]:
    """(send time in s, RTP packet): each pack split into <= 1400-byte payloads, marker on the last."""
    seq = random.getrandbits(16) if first_seq is None else first_seq
    out: list[tuple[float, bytes]] = []
    for k, (pts, data) in enumerate(packs):
        chunks = [data[i : i + MAX_PAYLOAD] for i in range(0, len(data), MAX_PAYLOAD)]
        for j, chunk in enumerate(chunks):
            marker = 0x80 if j == len(chunks) - 1 else 0
            header = struct.pack(">BBHII", 0x80, marker | payload_type, seq & 0xFFFF, pts & 0xFFFFFFFF, ssrc)
            out.append((k / fps + j * 0.0002, header + chunk))
            seq += 1
    return out


def rfc4571(packet: bytes) -> bytes:
    """One RTP packet framed for TCP media (RFC 4571: 16-bit length first)."""
    return struct.pack(">H", len(packet)) + packet


def lose(packets: list[tuple[float, bytes]], share: float, *, seed: int = 7) -> list[tuple[float, bytes]]:
    """The packets with ``share`` of them (rounded) dropped at random places (seeded: the same every run)."""
    rng = random.Random(seed)
    dropped = set(rng.sample(range(len(packets)), round(len(packets) * share)))
    return [p for i, p in enumerate(packets) if i not in dropped]


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f">{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ip(addr: str) -> bytes:
    return bytes(int(x) for x in addr.split("."))


def write_pcap(
    path: Path,
    packets: list[tuple[float, bytes]],
    *,
    src: tuple[str, int] = ("127.0.0.1", 15060),
    dst: tuple[str, int] = ("127.0.0.1", 6000),
    start: float = 1_700_000_000.0,
) -> Path:
    """A classic pcap (Ethernet, IPv4, UDP) of ``packets``; SIPp rewrites the destination when it plays."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for ident, (t, payload) in enumerate(packets):
        udp_len = 8 + len(payload)
        ip_header = struct.pack(
            ">BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, ident & 0xFFFF, 0, 64, 17, 0, _ip(src[0]), _ip(dst[0])
        )
        ip_header = ip_header[:10] + struct.pack(">H", _checksum(ip_header)) + ip_header[12:]
        udp = struct.pack(">HHHH", src[1], dst[1], udp_len, 0) + payload
        frame = b"\x00\x00\x00\x00\x00\x02" + b"\x00\x00\x00\x00\x00\x01" + b"\x08\x00" + ip_header + udp
        ts = start + t
        sec = int(ts)
        out.append(struct.pack("<IIII", sec, int((ts - sec) * 1e6), len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))
    return path
