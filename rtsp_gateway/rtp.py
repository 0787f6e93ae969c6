"""RTP for the hub: header parsing and rewriting, keyframe-start detection and an H.264/H.265 packetizer.

Nothing here decodes video. Keyframe detection looks only at NAL unit headers (RFC 6184 for H.264,
RFC 7798 for H.265); the packetizer turns access units (lists of NAL units) into RTP packets for the
replay source.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass

from rtsp_gateway.media import Codec

RTP_VERSION = 2
HEADER_SIZE = 12
DEFAULT_MTU = 1400

# H.264 NAL unit types (RFC 6184)
H264_IDR = 5
H264_SPS = 7
H264_PPS = 8
H264_STAP_A = 24
H264_FU_A = 28
# H.265 NAL unit types (RFC 7798)
H265_IRAP = range(16, 22)
H265_VPS = 32
H265_SPS = 33
H265_PPS = 34
H265_AP = 48
H265_FU = 49

_HEADER = struct.Struct("!BBHII")
_SEQ_TS_SSRC = struct.Struct("!HII")


@dataclass(frozen=True, slots=True)
class RtpHeader:
    """The fixed RTP header fields the hub needs, and where the payload starts."""

    marker: bool
    payload_type: int
    seq: int
    timestamp: int
    ssrc: int
    payload_offset: int


def parse_header(data: bytes) -> RtpHeader | None:
    """The header of an RTP packet, or None when ``data`` is not a well-formed RTP packet."""
    if len(data) < HEADER_SIZE:
        return None
    b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data)
    if b0 >> 6 != RTP_VERSION:
        return None
    offset = HEADER_SIZE + 4 * (b0 & 0x0F)
    if b0 & 0x10:  # header extension: 16-bit profile, 16-bit length in 32-bit words
        if len(data) < offset + 4:
            return None
        offset += 4 + 4 * int.from_bytes(data[offset + 2 : offset + 4], "big")
    if len(data) < offset:
        return None
    return RtpHeader(
        marker=bool(b1 & 0x80),
        payload_type=b1 & 0x7F,
        seq=seq,
        timestamp=ts,
        ssrc=ssrc,
        payload_offset=offset,
    )


def payload_of(data: bytes, header: RtpHeader) -> bytes:
    """The payload without the RTP padding (RFC 3550 5.1: the last byte counts the padding)."""
    end = len(data)
    if data[0] & 0x20 and end > header.payload_offset:
        end -= data[-1]
    return data[header.payload_offset : end]


def rewrite(data: bytes, *, seq: int, timestamp: int, ssrc: int, payload_type: int) -> bytes:
    """A copy of an RTP packet with new sequence number, timestamp, SSRC and payload type (marker kept)."""
    buf = bytearray(data)
    buf[1] = (buf[1] & 0x80) | payload_type
    _SEQ_TS_SSRC.pack_into(buf, 2, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc)
    return bytes(buf)


def rewrite_rtcp(data: bytes, *, ssrc: int, ts_offset: int) -> bytes:
    """A copy of a compound RTCP packet with the sender's SSRC replaced in sender reports and SDES chunks,
    and the sender report's RTP timestamp moved by ``ts_offset`` (the hub's timestamp rewrite)."""
    buf = bytearray(data)
    pos = 0
    while pos + 8 <= len(buf):
        count = buf[pos] & 0x1F
        ptype = buf[pos + 1]
        length = 4 * (int.from_bytes(buf[pos + 2 : pos + 4], "big") + 1)
        if ptype == 200 and pos + 20 <= len(buf):  # SR: SSRC, NTP (8), RTP timestamp
            struct.pack_into("!I", buf, pos + 4, ssrc)
            rtp_ts = int.from_bytes(buf[pos + 16 : pos + 20], "big")
            struct.pack_into("!I", buf, pos + 16, (rtp_ts + ts_offset) & 0xFFFFFFFF)
        elif ptype == 201:  # RR from the camera's side: only its own SSRC
            struct.pack_into("!I", buf, pos + 4, ssrc)
        elif ptype == 202 and count >= 1:  # SDES: the first chunk's SSRC
            struct.pack_into("!I", buf, pos + 4, ssrc)
        pos += length
    return bytes(buf)


def _h264_nal_starts_keyframe(nal_type: int) -> bool:
    return nal_type in (H264_IDR, H264_SPS)


def _h265_nal_starts_keyframe(nal_type: int) -> bool:
    return nal_type in H265_IRAP or nal_type in (H265_VPS, H265_SPS)


def is_keyframe_payload(codec: Codec, payload: bytes) -> bool:
    """True when this RTP payload holds the start of a keyframe's NAL units: a parameter set (which
    cameras send right before the IDR/IRAP picture) or the first fragment of the picture itself."""
    if not payload:
        return False
    if codec == "h264":
        nal_type = payload[0] & 0x1F
        if nal_type == H264_FU_A:
            return (
                len(payload) > 1 and bool(payload[1] & 0x80) and _h264_nal_starts_keyframe(payload[1] & 0x1F)
            )
        if nal_type == H264_STAP_A:
            return any(
                _h264_nal_starts_keyframe(nal[0] & 0x1F) for nal in aggregated_units(payload, 1) if nal
            )
        return _h264_nal_starts_keyframe(nal_type)
    if len(payload) < 2:
        return False
    nal_type = (payload[0] >> 1) & 0x3F
    if nal_type == H265_FU:
        return len(payload) > 2 and bool(payload[2] & 0x80) and _h265_nal_starts_keyframe(payload[2] & 0x3F)
    if nal_type == H265_AP:
        return any(
            _h265_nal_starts_keyframe((nal[0] >> 1) & 0x3F) for nal in aggregated_units(payload, 2) if nal
        )
    return _h265_nal_starts_keyframe(nal_type)


def aggregated_units(payload: bytes, header_size: int) -> list[bytes]:
    """The NAL units of an STAP-A (H.264) or AP (H.265) payload: 16-bit sizes, each followed by a unit."""
    units: list[bytes] = []
    pos = header_size
    while pos + 2 <= len(payload):
        size = int.from_bytes(payload[pos : pos + 2], "big")
        pos += 2
        if size == 0 or pos + size > len(payload):
            break
        units.append(payload[pos : pos + size])
        pos += size
    return units


def parameter_sets_in(codec: Codec, payload: bytes) -> list[bytes]:
    """Whole parameter-set NAL units carried in this payload (single unit or aggregation packet)."""
    if not payload:
        return []
    if codec == "h264":
        nal_type = payload[0] & 0x1F
        units = aggregated_units(payload, 1) if nal_type == H264_STAP_A else [payload]
        return [u for u in units if u and u[0] & 0x1F in (H264_SPS, H264_PPS)]
    if len(payload) < 2:
        return []
    nal_type = (payload[0] >> 1) & 0x3F
    units = aggregated_units(payload, 2) if nal_type == H265_AP else [payload]
    return [u for u in units if len(u) > 1 and (u[0] >> 1) & 0x3F in (H265_VPS, H265_SPS, H265_PPS)]


def parameter_set_kind(codec: Codec, nal: bytes) -> str | None:
    """'vps', 'sps' or 'pps' for a parameter-set NAL unit, else None."""
    if not nal:
        return None
    if codec == "h264":
        return {H264_SPS: "sps", H264_PPS: "pps"}.get(nal[0] & 0x1F)
    return {H265_VPS: "vps", H265_SPS: "sps", H265_PPS: "pps"}.get((nal[0] >> 1) & 0x3F)


def split_annexb(data: bytes) -> list[bytes]:
    """The NAL units of an Annex-B byte stream (start codes 00 00 01 or 00 00 00 01 removed)."""
    units: list[bytes] = []
    start = -1
    pos = 0
    n = len(data)
    while True:
        idx = data.find(b"\x00\x00\x01", pos)
        if idx < 0:
            break
        if start >= 0:
            end = idx
            while end > start and data[end - 1] == 0:  # trailing zero of a 4-byte start code
                end -= 1
            if end > start:
                units.append(data[start:end])
        start = idx + 3
        pos = start
    if start >= 0 and start < n:
        units.append(data[start:])
    return units


def split_length_prefixed(data: bytes, *, size_length: int = 4) -> list[bytes]:
    """The NAL units of an avcC/hvcC sample (each unit preceded by its big-endian length)."""
    units: list[bytes] = []
    pos = 0
    while pos + size_length <= len(data):
        size = int.from_bytes(data[pos : pos + size_length], "big")
        pos += size_length
        if size == 0 or pos + size > len(data):
            break
        units.append(data[pos : pos + size])
        pos += size
    return units


class Packetizer:
    """Access units → RTP packets (single NAL unit or fragmentation units; RFC 6184 mode 1, RFC 7798),
    with the marker bit on each access unit's last packet."""

    def __init__(
        self,
        codec: Codec,
        *,
        payload_type: int = 96,
        ssrc: int = 0,
        mtu: int = DEFAULT_MTU,
        first_seq: int = 0,
    ) -> None:
        self.codec: Codec = codec
        self.payload_type = payload_type
        self.ssrc = ssrc
        self.max_payload = mtu - HEADER_SIZE
        self.seq = first_seq & 0xFFFF

    def packetize(self, nal_units: list[bytes], timestamp: int) -> list[bytes]:
        """RTP packets for one access unit at ``timestamp`` (90 kHz)."""
        payloads: list[bytes] = []
        for nal in nal_units:
            if not nal:
                continue
            if len(nal) <= self.max_payload:
                payloads.append(nal)
            else:
                payloads.extend(self._fragments(nal))
        packets: list[bytes] = []
        last = len(payloads) - 1
        for i, payload in enumerate(payloads):
            b1 = (0x80 if i == last else 0) | self.payload_type
            header = _HEADER.pack(0x80, b1, self.seq, timestamp & 0xFFFFFFFF, self.ssrc)
            packets.append(header + payload)
            self.seq = (self.seq + 1) & 0xFFFF
        return packets

    def _fragments(self, nal: bytes) -> list[bytes]:
        if self.codec == "h264":
            indicator = bytes([(nal[0] & 0xE0) | H264_FU_A])
            nal_type = nal[0] & 0x1F
            body = nal[1:]
            prefix_size = 2
        else:
            # PayloadHdr: the NAL header with type 49 (F, LayerId and TID kept)
            indicator = bytes([(nal[0] & 0x81) | (H265_FU << 1), nal[1]])
            nal_type = (nal[0] >> 1) & 0x3F
            body = nal[2:]
            prefix_size = 3
        chunk = self.max_payload - prefix_size
        out: list[bytes] = []
        for pos in range(0, len(body), chunk):
            start = pos == 0
            end = pos + chunk >= len(body)
            fu_header = (0x80 if start else 0) | (0x40 if end else 0) | nal_type
            out.append(indicator + bytes([fu_header]) + body[pos : pos + chunk])
        return out


def sdp_fmtp(codec: Codec, parameter_sets: tuple[bytes, ...]) -> str:
    """The SDP ``a=fmtp`` parameters for a track with these parameter sets (RFC 6184 / RFC 7798)."""
    by_kind: dict[str, list[bytes]] = {}
    for nal in parameter_sets:
        kind = parameter_set_kind(codec, nal)
        if kind:
            by_kind.setdefault(kind, []).append(nal)
    if codec == "h264":
        parts = ["packetization-mode=1"]
        sps = by_kind.get("sps")
        if sps and len(sps[0]) >= 4:
            parts.append(f"profile-level-id={sps[0][1:4].hex().upper()}")
        units = by_kind.get("sps", []) + by_kind.get("pps", [])
        if units:
            parts.append("sprop-parameter-sets=" + ",".join(base64.b64encode(u).decode() for u in units))
        return ";".join(parts)
    parts = [
        f"sprop-{kind}=" + ",".join(base64.b64encode(u).decode() for u in by_kind[kind])
        for kind in ("vps", "sps", "pps")
        if kind in by_kind
    ]
    return ";".join(parts)
