"""RTP header handling, keyframe detection and the packetizer: the packetizer's output, read back by the
test's own depacketizer, decodes with PyAV for H.264 and H.265."""

from __future__ import annotations

import struct
from fractions import Fraction

import av
import numpy as np
import pytest

from rtsp_gateway import rtp
from rtsp_gateway.media import Codec, RtpPacket
from tests.rtsp_gateway.conftest import access_units, decoded_frames


def _packet(payload: bytes, *, seq: int = 1, ts: int = 1000, marker: bool = False, pt: int = 96) -> bytes:
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq, ts, 0x1234) + payload


def test_header_parse_and_rewrite_keep_payload_and_marker() -> None:
    data = _packet(b"\x65abc", seq=65535, ts=0xFFFFFFF0, marker=True, pt=97)
    header = rtp.parse_header(data)
    assert header is not None
    assert (header.seq, header.timestamp, header.ssrc, header.marker, header.payload_type) == (
        65535,
        0xFFFFFFF0,
        0x1234,
        True,
        97,
    )
    out = rtp.rewrite(data, seq=70000, timestamp=2**32 + 5, ssrc=0xABCDEF01, payload_type=96)
    again = rtp.parse_header(out)
    assert again is not None
    assert (again.seq, again.timestamp, again.ssrc, again.marker, again.payload_type) == (
        70000 & 0xFFFF,
        5,
        0xABCDEF01,
        True,
        96,
    )
    assert rtp.payload_of(out, again) == b"\x65abc"


def test_header_with_csrc_extension_and_padding() -> None:
    # V=2, P=1, X=1, CC=1; one CSRC, an extension of one word, payload, 3 bytes of padding
    head = struct.pack("!BBHII", 0x80 | 0x20 | 0x10 | 1, 96, 7, 9, 1) + b"\x00\x00\x00\x02"
    ext = b"\xbe\xde\x00\x01" + b"\x01\x02\x03\x04"
    data = head + ext + b"\x41xyz" + b"\x00\x00\x03"
    header = rtp.parse_header(data)
    assert header is not None
    assert rtp.payload_of(data, header) == b"\x41xyz"


@pytest.mark.parametrize(
    "data",
    [b"", b"\x80\x60", b"\x40" + b"\x00" * 11, bytes([0x90, 96]) + b"\x00" * 10],
    ids=["empty", "short", "version-1", "extension-cut"],
)
def test_malformed_packets_are_refused(data: bytes) -> None:
    assert rtp.parse_header(data) is None


@pytest.mark.parametrize(
    ("codec", "payload", "keyframe"),
    [
        ("h264", b"\x65\x88", True),  # IDR slice
        ("h264", b"\x67\x42", True),  # SPS
        ("h264", b"\x68\xce", False),  # PPS alone follows the SPS
        ("h264", b"\x41\x9a", False),  # non-IDR slice
        ("h264", b"\x7c\x85\x00", True),  # FU-A start of an IDR
        ("h264", b"\x7c\x05\x00", False),  # FU-A middle of an IDR
        ("h264", b"\x5c\x81\x00", False),  # FU-A start of a non-IDR slice
        ("h264", b"\x18\x00\x02\x67\x42\x00\x02\x68\xce", True),  # STAP-A with SPS, PPS
        ("h264", b"\x18\x00\x02\x06\x05\x00\x02\x41\x9a", False),  # STAP-A with SEI, slice
        ("h265", b"\x26\x01\xaf", True),  # IDR_W_RADL (19)
        ("h265", b"\x2a\x01\xaf", True),  # CRA (21)
        ("h265", b"\x02\x01\xd0", False),  # TRAIL_R (1)
        ("h265", b"\x40\x01\x0c", True),  # VPS
        ("h265", b"\x44\x01\xc0", False),  # PPS alone
        ("h265", b"\x62\x01\x93\xaf", True),  # FU start of IDR_N_LP (20)
        ("h265", b"\x62\x01\x13\xaf", False),  # FU middle of an IRAP
        ("h265", b"\x62\x01\x81\xaf", False),  # FU start of TRAIL_R
        ("h265", b"\x60\x01\x00\x02\x40\x01\x00\x02\x42\x01", True),  # AP with VPS, SPS
        ("h265", b"", False),
    ],
)
def test_keyframe_start_detection(codec: Codec, payload: bytes, keyframe: bool) -> None:
    assert rtp.is_keyframe_payload(codec, payload) is keyframe


def test_rtcp_sender_report_takes_the_hub_ssrc_and_timestamp() -> None:
    sr = struct.pack("!BBHI", 0x80, 200, 6, 0x1111) + b"\x00" * 8 + struct.pack("!III", 1000, 5, 500)
    sdes = struct.pack("!BBHI", 0x81, 202, 2, 0x1111) + b"\x01\x02ab"
    out = rtp.rewrite_rtcp(sr + sdes, ssrc=0x2222, ts_offset=-400)
    assert struct.unpack_from("!I", out, 4)[0] == 0x2222
    assert struct.unpack_from("!I", out, 16)[0] == 600
    assert struct.unpack_from("!I", out, len(sr) + 4)[0] == 0x2222


def test_annexb_split_and_fmtp() -> None:
    stream = b"\x00\x00\x00\x01\x67\x42\x00\x1f\x00\x00\x01\x68\xce\x00\x00\x00\x01\x65\x88\x00"
    nals = rtp.split_annexb(stream)
    assert nals == [b"\x67\x42\x00\x1f", b"\x68\xce", b"\x65\x88\x00"]
    fmtp = rtp.sdp_fmtp("h264", (nals[0], nals[1]))
    assert fmtp == "packetization-mode=1;profile-level-id=42001F;sprop-parameter-sets=Z0IAHw==,aM4="
    assert rtp.sdp_fmtp("h265", (b"\x40\x01", b"\x42\x01", b"\x44\x01")) == (
        "sprop-vps=QAE=;sprop-sps=QgE=;sprop-pps=RAE="
    )


def _encode(codec: Codec, frames: int) -> list[list[bytes]]:
    """Access units (NAL lists) of a short moving test picture, encoded in the test with PyAV."""
    encoder = av.CodecContext.create("libx264" if codec == "h264" else "libx265", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 320, 180, "yuv420p"
    encoder.time_base = Fraction(1, 25)
    encoder.options = {"preset": "ultrafast", "g": "10", "bf": "0"}
    if codec == "h265":
        encoder.options = {"preset": "ultrafast", "x265-params": "log-level=error:keyint=10:bframes=0"}
    units: list[list[bytes]] = []
    rng = np.random.default_rng(1)
    for i in range(frames):
        # noise makes big frames, so the packetizer must fragment
        picture = rng.integers(0, 255, (180, 320, 3), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        units += [rtp.split_annexb(bytes(p)) for p in encoder.encode(frame)]
    units += [rtp.split_annexb(bytes(p)) for p in encoder.encode(None)]
    return units


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_packetized_access_units_decode(codec: Codec) -> None:
    units = _encode(codec, 12)
    assert len(units) == 12
    packetizer = rtp.Packetizer(codec, ssrc=7, first_seq=65530, mtu=1400)
    packets: list[RtpPacket] = []
    for i, nals in enumerate(units):
        for data in packetizer.packetize(nals, 3600 * i):
            packets.append(RtpPacket(data, 0.0))
    assert all(len(p.data) <= 1400 for p in packets)
    assert len(packets) > 3 * len(units)  # noise frames are fragmented
    headers = [rtp.parse_header(p.data) for p in packets]
    assert all(h is not None for h in headers)
    seqs = [h.seq for h in headers if h is not None]
    assert seqs == [(65530 + i) & 0xFFFF for i in range(len(packets))]
    assert sum(h.marker for h in headers if h is not None) == len(units)
    # the reassembled units are the encoder's, byte for byte, and PyAV decodes every frame
    assert access_units(codec, packets) == [b"".join(b"\x00\x00\x00\x01" + n for n in nals) for nals in units]
    assert decoded_frames(codec, packets) == 12
    keyframes = [
        p for p, h in zip(packets, headers, strict=True) if h and rtp.is_keyframe_payload(codec, p.data[12:])
    ]
    assert keyframes  # the first access unit starts with parameter sets / IRAP
