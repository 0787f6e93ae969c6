"""MPEG-2 program stream (ISO/IEC 13818-1 §2.5) as GB/T 28181 devices send it: demux to H.264/H.265
elementary stream with PTS, and a muxer that writes what cameras write (for tests and benchmarks).

A camera frame is one pack: pack header, on keyframes a system header and a program stream map
(stream type 0x1B H.264, 0x24 H.265, on stream id 0xE0), then PES packets of at most 64 KiB carrying
the frame, the first with its PTS. FFmpeg's own ``mpeg`` muxer writes no map (FACTS.md), hence ours.

The demuxer is incremental and tolerant: feed it the payloads in order, call :meth:`PsDemuxer.gap`
when packets were lost, and it drops the damaged access unit and resynchronises on the next start code.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

Codec = Literal["h264", "h265"]

STREAM_TYPES: dict[int, Codec] = {0x1B: "h264", 0x24: "h265"}
STREAM_TYPE_OF: dict[Codec, int] = {"h264": 0x1B, "h265": 0x24}
VIDEO_ID = 0xE0

_PACK = 0xBA
_SYSTEM = 0xBB
_PSM = 0xBC
_END = 0xB9
_MAX_BUFFER = 4 * 1024 * 1024  # a garbage stream never grows the buffer past this


@dataclass(slots=True)
class AccessUnit:
    """One video frame of the elementary stream (Annex-B bytes) with its PTS in 90 kHz ticks."""

    codec: Codec
    pts: int | None
    data: bytes
    #: part of the frame was lost (a packet gap fell inside it)
    damaged: bool = False


def _pts(b: bytes) -> int:
    return ((b[0] >> 1) & 0x07) << 30 | (b[1] << 22) | ((b[2] >> 1) << 15) | (b[3] << 7) | (b[4] >> 1)


@dataclass
class PsDemuxer:
    """Program stream bytes in, :class:`AccessUnit` out (video only; audio and padding are skipped)."""

    codec: Codec | None = None  # from the program stream map; None until one arrives (then H.264 assumed)
    units_out: int = 0
    skipped_bytes: int = 0
    _buf: bytearray = field(default_factory=bytearray)
    _video_ids: set[int] = field(default_factory=lambda: {VIDEO_ID})
    _au: bytearray = field(default_factory=bytearray)
    _au_pts: int | None = None
    _au_damaged: bool = False
    _synced: bool = False  # wait for a pack header: a receiver may start in the middle of a frame

    def gap(self) -> None:
        """Packets were lost before the next ``feed``: the unit in progress is damaged, resync."""
        self._buf.clear()
        self._au_damaged = True
        self._synced = False

    def feed(self, data: bytes) -> list[AccessUnit]:
        """Parse what is complete; returns the access units finished by this data."""
        self._buf += data
        out: list[AccessUnit] = []
        buf = self._buf
        pos = 0
        n = len(buf)
        while True:
            start = buf.find(b"\x00\x00\x01", pos)
            if start < 0:
                keep = max(pos, n - 3)
                self.skipped_bytes += keep - pos
                pos = keep
                break
            if start > pos:
                self.skipped_bytes += start - pos
            if start + 4 > n:
                pos = start
                break
            sid = buf[start + 3]
            if not self._synced and sid != _PACK:
                pos = start + 3  # after a gap only a pack header is a safe place to start again
                continue
            size = self._unit_size(buf, start, sid)
            if size is None:  # incomplete
                pos = start
                break
            if size < 0:  # not a start code we know: skip it
                pos = start + 3
                continue
            unit = bytes(buf[start : start + size])
            pos = start + size
            self._synced = True
            self._handle(sid, unit, out)
        del buf[:pos]
        if len(buf) > _MAX_BUFFER:
            self.skipped_bytes += len(buf)
            buf.clear()
        return out

    def flush(self) -> list[AccessUnit]:
        """The unit in progress at the end of the stream."""
        out: list[AccessUnit] = []
        self._finish(out)
        return out

    # -- parsing ------------------------------------------------------------------------------------
    @staticmethod
    def _unit_size(buf: bytearray, start: int, sid: int) -> int | None:
        """Bytes of the unit at ``start``: None when not all here yet, -1 when not a PS start code."""
        n = len(buf)
        if sid == _PACK:
            if start + 14 > n:
                return None
            if buf[start + 4] >> 6 == 0b01:  # MPEG-2 pack header
                return 14 + (buf[start + 13] & 0x07)
            return 12  # MPEG-1
        if sid == _END:
            return 4
        if sid >= 0xBB:  # system header, PSM, PES of any stream: 16-bit length after the id
            if start + 6 > n:
                return None
            size = 6 + struct.unpack_from(">H", buf, start + 4)[0]
            return None if start + size > n else size
        return -1

    def _handle(self, sid: int, unit: bytes, out: list[AccessUnit]) -> None:
        if sid == _PSM:
            self._parse_psm(unit)
        elif sid in self._video_ids:
            self._parse_pes(unit, out)

    def _parse_psm(self, unit: bytes) -> None:
        if len(unit) < 12:
            return
        info_len = struct.unpack_from(">H", unit, 8)[0]
        pos = 10 + info_len
        if pos + 2 > len(unit):
            return
        map_len = struct.unpack_from(">H", unit, pos)[0]
        pos += 2
        end = min(len(unit) - 4, pos + map_len)  # CRC_32 at the end
        while pos + 4 <= end:
            stream_type, es_id = unit[pos], unit[pos + 1]
            es_info = struct.unpack_from(">H", unit, pos + 2)[0]
            codec = STREAM_TYPES.get(stream_type)
            if codec is not None and 0xE0 <= es_id <= 0xEF:
                self.codec = codec
                self._video_ids = {es_id}
            pos += 4 + es_info

    def _parse_pes(self, unit: bytes, out: list[AccessUnit]) -> None:
        if len(unit) < 9 or unit[6] >> 6 != 0b10:  # MPEG-2 PES header only (cameras send nothing else)
            return
        flags = unit[7]
        header_len = unit[8]
        payload_at = 9 + header_len
        if payload_at > len(unit):
            return
        pts = _pts(unit[9:14]) if flags & 0x80 and header_len >= 5 else None
        if pts is not None and (self._au or self._au_damaged):
            self._finish(out)  # a PTS starts the next frame
        if pts is not None:
            self._au_pts = pts
        self._au += unit[payload_at:]

    def _finish(self, out: list[AccessUnit]) -> None:
        if self._au:
            out.append(AccessUnit(self.codec or "h264", self._au_pts, bytes(self._au), self._au_damaged))
            self.units_out += 1
        self._au.clear()
        self._au_pts = None
        self._au_damaged = False


def iter_units(data: bytes) -> Iterator[AccessUnit]:
    """Every access unit of a complete program stream (tests, tools)."""
    demux = PsDemuxer()
    yield from demux.feed(data)
    yield from demux.flush()


# -- the muxer (what a camera sends) ----------------------------------------------------------------
def _ts_bytes(prefix: int, ts: int) -> bytes:
    ts &= (1 << 33) - 1
    return bytes(
        [
            (prefix << 4) | (((ts >> 30) & 0x07) << 1) | 1,
            (ts >> 22) & 0xFF,
            (((ts >> 15) & 0x7F) << 1) | 1,
            (ts >> 7) & 0xFF,
            ((ts & 0x7F) << 1) | 1,
        ]
    )


def pack_header(scr: int, *, mux_rate: int = 6106) -> bytes:
    """An MPEG-2 pack header (14 bytes, no stuffing) with the system clock reference in 90 kHz ticks."""
    scr &= (1 << 33) - 1
    b = bytes(
        [
            0x44 | ((scr >> 27) & 0x38) | ((scr >> 28) & 0x03),
            (scr >> 20) & 0xFF,
            (((scr >> 15) & 0x1F) << 3) | 0x04 | ((scr >> 13) & 0x03),
            (scr >> 5) & 0xFF,
            ((scr & 0x1F) << 3) | 0x04,  # SCR extension 0
            0x01,
        ]
    )
    rate = bytes([(mux_rate >> 14) & 0xFF, (mux_rate >> 6) & 0xFF, ((mux_rate & 0x3F) << 2) | 0x03])
    return b"\x00\x00\x01\xba" + b + rate + b"\xf8"  # 5 reserved bits, no stuffing


def system_header(*, rate_bound: int = 6106) -> bytes:
    body = bytes(
        [
            0x80 | ((rate_bound >> 15) & 0x7F),
            (rate_bound >> 7) & 0xFF,
            ((rate_bound & 0x7F) << 1) | 0x01,
            0x04,  # audio bound 1, fixed 0, CSPS 0
            0xE1,  # audio lock, video lock, marker, video bound 1
            0xFF,  # packet rate restriction 0, reserved
            VIDEO_ID,
            0xE0 | 0x20 | 0x00,  # '11', P-STD buffer bound scale 1, size bound (high bits)
            0x80,  # 128 * 1024 bytes
        ]
    )
    return b"\x00\x00\x01\xbb" + struct.pack(">H", len(body)) + body


def program_stream_map(codec: Codec) -> bytes:
    """A PSM naming one video elementary stream 0xE0 with its stream type (0x1B or 0x24)."""
    es_map = bytes([STREAM_TYPE_OF[codec], VIDEO_ID]) + b"\x00\x00"
    body = bytes([0x80 | 0x00, 0x01]) + b"\x00\x00" + struct.pack(">H", len(es_map)) + es_map
    crc = _crc32_mpeg(b"\x00\x00\x01\xbc" + struct.pack(">H", len(body) + 4) + body)
    return b"\x00\x00\x01\xbc" + struct.pack(">H", len(body) + 4) + body + struct.pack(">I", crc)


def _crc32_mpeg(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def pes_packets(
    es: bytes, pts: int | None, *, stream_id: int = VIDEO_ID, max_payload: int = 65_000
) -> list[bytes]:
    """PES packets carrying ``es``; the first one has the PTS."""
    out: list[bytes] = []
    for pos in range(0, max(len(es), 1), max_payload):
        chunk = es[pos : pos + max_payload]
        header = _ts_bytes(0b0010, pts) if pts is not None and pos == 0 else b""
        flags = 0x80 if header else 0x00
        body = bytes([0x80, flags, len(header)]) + header + chunk
        out.append(b"\x00\x00\x01" + bytes([stream_id]) + struct.pack(">H", len(body)) + body)
    return out


def mux_frame(codec: Codec, es: bytes, pts: int, *, keyframe: bool) -> bytes:
    """One camera frame as a pack: header, (system header and PSM on keyframes), the PES packets."""
    parts = [pack_header(pts)]
    if keyframe:
        parts += [system_header(), program_stream_map(codec)]
    parts += pes_packets(es, pts)
    return b"".join(parts)
