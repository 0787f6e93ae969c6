"""RTP → access units → fMP4, on real H.264 and H.265 streams made by ffmpeg: what was packetized comes
back frame for frame (FU-A/FU and aggregation packets included), a lost packet drops frames until the
next keyframe, and PyAV decodes the fragments the muxer writes."""

from __future__ import annotations

import io
import struct
import time

import av
import pytest

from rtsp_gateway import fmp4
from rtsp_gateway.depacketize import Depacketizer
from rtsp_gateway.media import Codec, RtpPacket
from rtsp_gateway.rtp import Packetizer
from tests.rtsp_gateway.gateway_fixtures import AccessUnit, make_elementary, read_units
from tests.support.require import require

PARAMS = {"h264": {7, 8}, "h265": {32, 33, 34}}


@pytest.fixture(scope="module", params=["h264", "h265"])
def stream(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Codec, list[AccessUnit]]:
    import shutil

    require(shutil.which("ffmpeg") is not None, "ffmpeg (Debian package ffmpeg)")
    codec: Codec = request.param
    path = make_elementary(tmp_path_factory.mktemp("es") / f"clip.{codec}", codec=codec, seconds=3)
    return codec, read_units(path, codec)


def nal_type(codec: Codec, nal: bytes) -> int:
    return nal[0] & 0x1F if codec == "h264" else (nal[0] >> 1) & 0x3F


def packets_of(codec: Codec, units: list[AccessUnit], *, mtu: int = 600) -> list[list[bytes]]:
    packetizer = Packetizer(codec, mtu=mtu)
    return [packetizer.packetize(u.nals, u.pts_90k) for u in units]


def stap_a(nals: list[bytes], *, seq: int, ts: int) -> bytes:
    """One H.264 STAP-A packet carrying ``nals`` (cameras send SPS+PPS this way)."""
    body = bytes([0x18]) + b"".join(struct.pack(">H", len(n)) + n for n in nals)
    return struct.pack(">BBHII", 0x80, 96, seq, ts, 0) + body


def test_every_frame_comes_back(stream: tuple[Codec, list[AccessUnit]]) -> None:
    codec, units = stream
    assert len(units) == 75
    depacketizer = Depacketizer(codec)
    out = [
        au
        for group in packets_of(codec, units)
        for data in group
        for au in depacketizer.push(RtpPacket(data, 0.0))
    ]
    assert len(out) == len(units)
    for got, sent in zip(out, units, strict=True):
        assert list(got.nals) == [n for n in sent.nals if nal_type(codec, n) not in PARAMS[codec] | {9, 35}]
        assert got.keyframe == sent.keyframe and got.timestamp == sent.pts_90k
    assert len(out[0].parameter_sets) == (2 if codec == "h264" else 3)


def test_a_lost_packet_drops_frames_until_the_next_keyframe(stream: tuple[Codec, list[AccessUnit]]) -> None:
    codec, units = stream
    groups = packets_of(codec, units)
    lost_frame = 10  # inside the first GOP (keyframes at 0, 25, 50)
    assert len(groups[lost_frame]) > 1
    del groups[lost_frame][0]
    depacketizer = Depacketizer(codec)
    out = [au for group in groups for data in group for au in depacketizer.push(RtpPacket(data, 0.0))]
    assert [au.timestamp // 3600 for au in out] == [*range(lost_frame), *range(25, 75)]


def test_stap_a_parameter_sets_and_fmp4_decodes(stream: tuple[Codec, list[AccessUnit]]) -> None:
    """Parameter sets in an aggregation packet (H.264 STAP-A) are taken in; the muxed fMP4 decodes."""
    codec, units = stream
    depacketizer = Depacketizer(codec)
    frames = []
    seq = 0
    for unit in units:
        params = [n for n in unit.nals if nal_type(codec, n) in PARAMS[codec]]
        rest = [n for n in unit.nals if n not in params]
        packetizer = Packetizer(codec, mtu=600, first_seq=seq + (1 if params and codec == "h264" else 0))
        group = packetizer.packetize(rest if codec == "h264" else unit.nals, unit.pts_90k)
        if params and codec == "h264":
            group.insert(0, stap_a(params, seq=seq, ts=unit.pts_90k))
        seq = packetizer.seq
        for data in group:
            frames += depacketizer.push(RtpPacket(data, time.monotonic()))
    assert len(frames) == len(units)
    fmt = fmp4.track_format(codec, frames[0].parameter_sets)
    assert (fmt.width, fmt.height) == (320, 180)
    assert fmt.codec_string.startswith("avc1.64" if codec == "h264" else "hvc1.1.6.L")
    data = fmp4.init_segment(fmt) + b"".join(
        fmp4.fragment(
            sequence=i + 1, decode_time=f.timestamp, duration=3600, nals=list(f.nals), keyframe=f.keyframe
        )
        for i, f in enumerate(frames)
    )
    with av.open(io.BytesIO(data)) as container:
        assert container.streams.video[0].codec_context.name == ("h264" if codec == "h264" else "hevc")
        assert sum(1 for _ in container.decode(video=0)) == len(units)


def test_codec_strings_from_known_parameter_sets() -> None:
    """The RFC 6381 strings browsers are asked about: profile/constraints/level from the SPS."""
    sps_264 = bytes.fromhex("6764000cacb40a0cfcf808800000030080000019078a1550")
    assert fmp4.parse_h264_sps(sps_264).codec_string == "avc1.64000C"
    sps_265 = bytes.fromhex("420101016000000300900000030000030078a003c08010e7f96aa49324")
    assert fmp4.parse_h265_sps(sps_265).codec_string == "hvc1.1.6.L120.90"
