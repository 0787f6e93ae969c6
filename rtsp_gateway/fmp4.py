"""Fragmented MP4 for Media Source Extensions, written by hand: an init segment (ftyp + moov with
avcC/hvcC built from the parameter sets) and one moof + mdat fragment per frame.

Hand-written because it is the hot path: a fragment is a few struct packs and one join, no muxer
state, no copy of the frame besides the length-prefixed NAL units. The SPS readers here give the
picture size and the RFC 6381 codec string (``avc1.PPCCLL``, ``hvc1.1.6.L93.B0``) the browser asks
``MediaSource.isTypeSupported`` about.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal

Codec = Literal["h264", "h265"]

#: sample flags (ISO/IEC 14496-12 8.8.3.1): a sync sample, and a sample that depends on others
SYNC_SAMPLE_FLAGS = 0x02000000
NON_SYNC_SAMPLE_FLAGS = 0x01010000
TRACK_ID = 1
_MATRIX = struct.pack(">9I", 0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000)


def box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I", 8 + len(body)) + kind + body


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return box(kind, struct.pack(">I", (version << 24) | flags), *payload)


# --- parameter sets ---------------------------------------------------------------------------------


def unescape_rbsp(nal: bytes) -> bytes:
    """Remove emulation-prevention bytes (00 00 03 → 00 00)."""
    if b"\x00\x00\x03" not in nal:
        return nal
    out = bytearray()
    zeros = 0
    for b in nal:
        if zeros >= 2 and b == 3:
            zeros = 0
            continue
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


class BitReader:
    """Big-endian bit reader with Exp-Golomb codes (H.264/H.265 7.2)."""

    def __init__(self, data: bytes) -> None:
        self._value = int.from_bytes(data, "big")
        self._left = len(data) * 8

    def bits(self, n: int) -> int:
        if n > self._left:
            raise ValueError("parameter set ends early")
        self._left -= n
        return (self._value >> self._left) & ((1 << n) - 1)

    def ue(self) -> int:
        zeros = 0
        while self.bits(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("bad Exp-Golomb code")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k % 2 else -(k // 2)


@dataclass(frozen=True)
class H264Sps:
    profile_idc: int
    constraint_flags: int
    level_idc: int
    chroma_format_idc: int
    bit_depth_luma: int
    bit_depth_chroma: int
    width: int
    height: int

    @property
    def codec_string(self) -> str:
        return f"avc1.{self.profile_idc:02X}{self.constraint_flags:02X}{self.level_idc:02X}"


_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


def parse_h264_sps(nal: bytes) -> H264Sps:
    """Read what the init segment needs from an H.264 SPS NAL unit (with its one-byte header)."""
    r = BitReader(unescape_rbsp(nal[1:]))
    profile, constraints, level = r.bits(8), r.bits(8), r.bits(8)
    r.ue()  # seq_parameter_set_id
    chroma, separate_planes, depth_luma, depth_chroma = 1, 0, 8, 8
    if profile in _HIGH_PROFILES:
        chroma = r.ue()
        if chroma == 3:
            separate_planes = r.bits(1)
        depth_luma, depth_chroma = r.ue() + 8, r.ue() + 8
        r.bits(1)  # qpprime_y_zero_transform_bypass_flag
        if r.bits(1):  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma != 3 else 12):
                if r.bits(1):
                    last = nxt = 8
                    for _ in range(16 if i < 6 else 64):
                        if nxt:
                            nxt = (last + r.se() + 256) % 256
                        last = nxt or last
    r.ue()  # log2_max_frame_num_minus4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()
    elif poc_type == 1:
        r.bits(1)
        r.se()
        r.se()
        for _ in range(r.ue()):
            r.se()
    r.ue()  # max_num_ref_frames
    r.bits(1)
    width_mbs, height_units = r.ue() + 1, r.ue() + 1
    frame_mbs_only = r.bits(1)
    if not frame_mbs_only:
        r.bits(1)
    r.bits(1)  # direct_8x8_inference_flag
    crop = (r.ue(), r.ue(), r.ue(), r.ue()) if r.bits(1) else (0, 0, 0, 0)
    if chroma == 0 or separate_planes:
        crop_x, crop_y = 1, 2 - frame_mbs_only
    else:
        crop_x, crop_y = (1 if chroma == 3 else 2), (2 if chroma == 1 else 1) * (2 - frame_mbs_only)
    width = width_mbs * 16 - crop_x * (crop[0] + crop[1])
    height = (2 - frame_mbs_only) * height_units * 16 - crop_y * (crop[2] + crop[3])
    return H264Sps(profile, constraints, level, chroma, depth_luma, depth_chroma, width, height)


@dataclass(frozen=True)
class H265Sps:
    profile_space: int
    tier_flag: int
    profile_idc: int
    compatibility_flags: int
    constraint_flags: int  # 48 bits
    level_idc: int
    max_sub_layers: int
    temporal_id_nesting: int
    chroma_format_idc: int
    bit_depth_luma: int
    bit_depth_chroma: int
    width: int
    height: int

    @property
    def codec_string(self) -> str:
        """ISO/IEC 14496-15 E.3: ``hvc1.<space><profile>.<compat reversed>.<tier><level>.<constraints>``."""
        space = ("", "A", "B", "C")[self.profile_space]
        compat = int(f"{self.compatibility_flags:032b}"[::-1], 2)
        constraints = self.constraint_flags.to_bytes(6, "big").rstrip(b"\x00")
        parts = [
            f"hvc1.{space}{self.profile_idc}",
            f"{compat:X}",
            f"{'H' if self.tier_flag else 'L'}{self.level_idc}",
        ]
        parts += [f"{b:X}" for b in constraints]
        return ".".join(parts)


def parse_h265_sps(nal: bytes) -> H265Sps:
    """Read what the init segment needs from an H.265 SPS NAL unit (with its two-byte header)."""
    r = BitReader(unescape_rbsp(nal[2:]))
    r.bits(4)  # sps_video_parameter_set_id
    sub_layers_minus1 = r.bits(3)
    nesting = r.bits(1)
    space, tier, profile = r.bits(2), r.bits(1), r.bits(5)
    compat = r.bits(32)
    constraints = r.bits(48)
    level = r.bits(8)
    present = [(r.bits(1), r.bits(1)) for _ in range(sub_layers_minus1)]
    if sub_layers_minus1:
        r.bits(2 * (8 - sub_layers_minus1))
    for profile_present, level_present in present:
        if profile_present:
            r.bits(88)
        if level_present:
            r.bits(8)
    r.ue()  # sps_seq_parameter_set_id
    chroma = r.ue()
    if chroma == 3:
        r.bits(1)
    width, height = r.ue(), r.ue()
    if r.bits(1):  # conformance_window_flag
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        sub_w = 2 if chroma in (1, 2) else 1
        sub_h = 2 if chroma == 1 else 1
        width -= sub_w * (left + right)
        height -= sub_h * (top + bottom)
    depth_luma, depth_chroma = r.ue() + 8, r.ue() + 8
    return H265Sps(
        space,
        tier,
        profile,
        compat,
        constraints,
        level,
        sub_layers_minus1 + 1,
        nesting,
        chroma,
        depth_luma,
        depth_chroma,
        width,
        height,
    )


def avcc(sps: bytes, pps: bytes) -> bytes:
    """The AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1), NAL lengths on 4 bytes."""
    info = parse_h264_sps(sps)
    out = bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]) + struct.pack(">H", len(sps)) + sps
    out += bytes([1]) + struct.pack(">H", len(pps)) + pps
    if info.profile_idc in _HIGH_PROFILES:
        out += bytes(
            [
                0xFC | info.chroma_format_idc,
                0xF8 | (info.bit_depth_luma - 8),
                0xF8 | (info.bit_depth_chroma - 8),
                0,
            ]
        )
    return out


def hvcc(vps: bytes, sps: bytes, pps: bytes) -> bytes:
    """The HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 8.3.3.1), NAL lengths on 4 bytes."""
    s = parse_h265_sps(sps)
    out = bytes([1, (s.profile_space << 6) | (s.tier_flag << 5) | s.profile_idc])
    out += struct.pack(">I", s.compatibility_flags) + s.constraint_flags.to_bytes(6, "big")
    out += bytes([s.level_idc]) + struct.pack(">H", 0xF000) + bytes([0xFC, 0xFC | s.chroma_format_idc])
    out += bytes([0xF8 | (s.bit_depth_luma - 8), 0xF8 | (s.bit_depth_chroma - 8)]) + struct.pack(">H", 0)
    out += bytes([(s.max_sub_layers << 3) | (s.temporal_id_nesting << 2) | 3, 3])
    for nal_type, nal in ((32, vps), (33, sps), (34, pps)):
        out += bytes([0x80 | nal_type]) + struct.pack(">HH", 1, len(nal)) + nal
    return out


@dataclass(frozen=True)
class TrackFormat:
    """What the init segment says about the one video track."""

    codec: Codec
    codec_string: str
    width: int
    height: int
    timescale: int
    #: the decoder configuration record (avcC / hvcC payload)
    config: bytes

    @property
    def mime(self) -> str:
        return f'video/mp4; codecs="{self.codec_string}"'


def track_format(codec: Codec, parameter_sets: tuple[bytes, ...], *, timescale: int = 90000) -> TrackFormat:
    """The track format from H.264 (SPS, PPS) or H.265 (VPS, SPS, PPS) parameter sets."""
    if codec == "h264":
        sps, pps = parameter_sets
        info = parse_h264_sps(sps)
        return TrackFormat(codec, info.codec_string, info.width, info.height, timescale, avcc(sps, pps))
    vps, sps, pps = parameter_sets
    hinfo = parse_h265_sps(sps)
    return TrackFormat(codec, hinfo.codec_string, hinfo.width, hinfo.height, timescale, hvcc(vps, sps, pps))


# --- segments ---------------------------------------------------------------------------------------


def init_segment(fmt: TrackFormat) -> bytes:
    """ftyp + moov for one video track with no samples (they come in fragments)."""
    ftyp = box(b"ftyp", b"isom", struct.pack(">I", 0x200), b"isomiso5iso6mp41")
    mvhd = full_box(
        b"mvhd",
        0,
        0,
        struct.pack(">IIIIIH10x", 0, 0, 1000, 0, 0x00010000, 0x0100),
        _MATRIX,
        bytes(24),
        struct.pack(">I", TRACK_ID + 1),
    )
    tkhd = full_box(
        b"tkhd", 0, 3, struct.pack(">IIIII8xhhhH", 0, 0, TRACK_ID, 0, 0, 0, 0, 0, 0), _MATRIX,
        struct.pack(">II", fmt.width << 16, fmt.height << 16),
    )  # fmt: skip
    mdhd = full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, fmt.timescale, 0, 0x55C4, 0))
    hdlr = full_box(b"hdlr", 0, 0, struct.pack(">I", 0), b"vide", bytes(12), b"VideoHandler\x00")
    vmhd = full_box(b"vmhd", 0, 1, bytes(8))
    dinf = box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1)))
    config = box(b"avcC" if fmt.codec == "h264" else b"hvcC", fmt.config)
    entry = box(
        b"avc1" if fmt.codec == "h264" else b"hvc1",
        bytes(6), struct.pack(">H", 1), bytes(16), struct.pack(">HHIIIH", fmt.width, fmt.height, 0x00480000, 0x00480000, 0, 1),
        bytes(32), struct.pack(">Hh", 0x0018, -1), config,
    )  # fmt: skip
    stbl = box(
        b"stbl",
        full_box(b"stsd", 0, 0, struct.pack(">I", 1), entry),
        full_box(b"stts", 0, 0, struct.pack(">I", 0)),
        full_box(b"stsc", 0, 0, struct.pack(">I", 0)),
        full_box(b"stsz", 0, 0, struct.pack(">II", 0, 0)),
        full_box(b"stco", 0, 0, struct.pack(">I", 0)),
    )
    mdia = box(b"mdia", mdhd, hdlr, box(b"minf", vmhd, dinf, stbl))
    mvex = box(b"mvex", full_box(b"trex", 0, 0, struct.pack(">IIIII", TRACK_ID, 1, 0, 0, 0)))
    return ftyp + box(b"moov", mvhd, box(b"trak", tkhd, mdia), mvex)


def fragment(*, sequence: int, decode_time: int, duration: int, nals: list[bytes], keyframe: bool) -> bytes:
    """moof + mdat holding one frame: ``nals`` without start codes, each written with a 4-byte length."""
    payload = b"".join(struct.pack(">I", len(n)) + n for n in nals)
    flags = SYNC_SAMPLE_FLAGS if keyframe else NON_SYNC_SAMPLE_FLAGS
    # moof = 8 + mfhd 16 + traf (8 + tfhd 16 + tfdt 20 + trun 12 + 4 + 4 + 12) = 100; data follows mdat's header
    trun = full_box(b"trun", 0, 0x000701, struct.pack(">IiIII", 1, 100 + 8, duration, len(payload), flags))
    traf = box(
        b"traf",
        full_box(b"tfhd", 0, 0x020000, struct.pack(">I", TRACK_ID)),
        full_box(b"tfdt", 1, 0, struct.pack(">Q", decode_time)),
        trun,
    )
    moof = box(b"moof", full_box(b"mfhd", 0, 0, struct.pack(">I", sequence)), traf)
    return moof + struct.pack(">I", 8 + len(payload)) + b"mdat" + payload
