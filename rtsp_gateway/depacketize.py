"""RTP → access units for H.264 (RFC 6184: single NAL, STAP-A, FU-A) and H.265 (RFC 7798: single, AP, FU).

An access unit is one frame's NAL units (no start codes), closed by the marker bit or by the next
timestamp. A sequence gap, a broken fragment or a subscription discontinuity drops what was being
assembled and everything after it until the next keyframe, so a decoder never sees a frame whose
references are missing. Parameter sets are tracked from the track's SDP and from in-band NAL units;
they are taken out of the frames (the init segment carries them) and a change is reported so the
muxer can write a new init segment.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass

from rtsp_gateway.media import Codec, RtpPacket

logger = logging.getLogger(__name__)

#: a frame larger than this is broken or hostile: dropped (4K intra frames stay far below it)
MAX_ACCESS_UNIT_BYTES = 8 * 1024 * 1024
_H264_PARAMS = {7: 1, 8: 2}  # SPS, PPS → index in (SPS, PPS) counting from 1
_H265_PARAMS = {32: 0, 33: 1, 34: 2}  # VPS, SPS, PPS
_H264_DROP = {9}  # access unit delimiter
_H265_DROP = {35}


@dataclass(frozen=True, slots=True)
class AccessUnit:
    """One frame as NAL units, with the RTP timestamp and the parameter sets that decode it."""

    nals: tuple[bytes, ...]
    timestamp: int
    keyframe: bool
    #: H.264 (SPS, PPS) or H.265 (VPS, SPS, PPS) in force for this frame
    parameter_sets: tuple[bytes, ...]
    #: receive time (``time.monotonic()``) of the access unit's last packet
    received_at: float

    @property
    def size(self) -> int:
        return sum(len(n) for n in self.nals)


def rtp_payload(data: bytes) -> tuple[int, int, bool, bytes] | None:
    """(sequence number, timestamp, marker, payload) of an RTP packet, or None when it is not one."""
    if len(data) < 12 or data[0] >> 6 != 2:
        return None
    first, second, seq, ts = struct.unpack_from(">BBHI", data)
    offset = 12 + 4 * (first & 0x0F)
    if first & 0x10:  # header extension
        if len(data) < offset + 4:
            return None
        offset += 4 + 4 * struct.unpack_from(">H", data, offset + 2)[0]
    end = len(data)
    if first & 0x20:  # padding
        end -= data[-1]
    if offset > end:
        return None
    return seq, ts, bool(second & 0x80), data[offset:end]


class Depacketizer:
    """Reassembles one track's access units; feed it every packet of a subscription in order."""

    def __init__(self, codec: Codec, parameter_sets: tuple[bytes, ...] = (), *, camera_id: int = 0) -> None:
        self.codec: Codec = codec
        self.camera_id = camera_id
        self._params: list[bytes | None] = [None] * (2 if codec == "h264" else 3)
        for nal in parameter_sets:
            self._store_parameter_set(nal)
        self._expected_seq: int | None = None
        self._timestamp: int | None = None
        self._nals: list[bytes] = []
        self._size = 0
        self._fu: bytearray | None = None
        self._waiting_for_keyframe = True
        #: access units dropped while waiting for a keyframe (after loss or at the start)
        self.dropped = 0

    @property
    def parameter_sets(self) -> tuple[bytes, ...]:
        """The parameter sets known now, or () until all of them were seen."""
        if any(p is None for p in self._params):
            return ()
        return tuple(p for p in self._params if p is not None)

    def _nal_type(self, nal: bytes) -> int:
        return nal[0] & 0x1F if self.codec == "h264" else (nal[0] >> 1) & 0x3F

    def _store_parameter_set(self, nal: bytes) -> bool:
        """Keep a parameter set NAL unit; True when it was one."""
        if not nal:
            return False
        kind = self._nal_type(nal)
        index = (_H264_PARAMS.get(kind, 0) - 1) if self.codec == "h264" else _H265_PARAMS.get(kind, -1)
        if index < 0:
            return False
        self._params[index] = bytes(nal)
        return True

    def _reset(self, *, why: str) -> None:
        if self._nals or self._fu is not None:
            logger.debug("camera %s: dropping a partial frame (%s)", self.camera_id, why)
        self._nals, self._size, self._fu = [], 0, None
        self._timestamp = None
        self._waiting_for_keyframe = True

    def push(self, packet: RtpPacket) -> list[AccessUnit]:
        """Add one packet; returns the access units it completed (usually none or one)."""
        if packet.rtcp:
            return []
        parsed = rtp_payload(packet.data)
        if parsed is None:
            return []
        seq, ts, marker, payload = parsed
        if packet.discontinuity or (self._expected_seq is not None and seq != self._expected_seq):
            self._reset(why="packet loss")
        self._expected_seq = (seq + 1) & 0xFFFF
        done: list[AccessUnit] = []
        if self._timestamp is not None and ts != self._timestamp and (self._nals or self._fu is not None):
            if self._fu is not None:  # a fragment never finished: the frame is broken
                self._reset(why="unfinished fragment")
            else:
                done += self._finish(packet.received_at)
        self._timestamp = ts
        if not self._take(payload):
            self._reset(why="malformed payload")
            return done
        if self._size > MAX_ACCESS_UNIT_BYTES:
            logger.warning("camera %s: frame over %s bytes dropped", self.camera_id, MAX_ACCESS_UNIT_BYTES)
            self._reset(why="oversized frame")
            return done
        if marker and self._fu is None:
            done += self._finish(packet.received_at)
        return done

    def _add(self, nal: bytes) -> None:
        if nal:
            self._nals.append(nal)
            self._size += len(nal)

    def _take(self, payload: bytes) -> bool:
        """Unpack one RTP payload into NAL units; False when it is malformed."""
        if not payload:
            return False
        if self.codec == "h264":
            kind, header_len, aggregate, fragment = payload[0] & 0x1F, 1, 24, 28
        else:
            if len(payload) < 2:
                return False
            kind, header_len, aggregate, fragment = (payload[0] >> 1) & 0x3F, 2, 48, 49
        if kind == aggregate:
            pos = header_len
            while pos + 2 <= len(payload):
                (size,) = struct.unpack_from(">H", payload, pos)
                if pos + 2 + size > len(payload):
                    return False
                self._add(payload[pos + 2 : pos + 2 + size])
                pos += 2 + size
            return True
        if kind == fragment:
            if len(payload) < header_len + 1:
                return False
            fu = payload[header_len]
            start, end = bool(fu & 0x80), bool(fu & 0x40)
            if start:
                if self.codec == "h264":
                    header = bytes([(payload[0] & 0xE0) | (fu & 0x1F)])
                else:
                    header = bytes([(payload[0] & 0x81) | ((fu & 0x3F) << 1), payload[1]])
                self._fu = bytearray(header)
            elif self._fu is None:
                return False  # a middle or last fragment whose start was lost
            self._fu += payload[header_len + 1 :]
            self._size += len(payload) - header_len - 1
            if end:
                nal, self._fu = bytes(self._fu), None
                self._nals.append(nal)
            return True
        if self.codec == "h264" and not 1 <= kind <= 23:
            return False  # STAP-B, MTAP, FU-B: not sent by cameras in packetization-mode 0/1
        self._add(payload)
        return True

    def _finish(self, received_at: float) -> list[AccessUnit]:
        nals, ts = self._nals, self._timestamp
        self._nals, self._size = [], 0
        frame: list[bytes] = []
        keyframe = False
        drop = _H264_DROP if self.codec == "h264" else _H265_DROP
        for nal in nals:
            if self._store_parameter_set(nal):
                continue
            kind = self._nal_type(nal)
            if kind in drop:
                continue
            keyframe = keyframe or (kind == 5 if self.codec == "h264" else 16 <= kind <= 21)
            frame.append(nal)
        params = self.parameter_sets
        if not frame or ts is None:
            return []
        if self._waiting_for_keyframe and not (keyframe and params):
            self.dropped += 1
            return []
        self._waiting_for_keyframe = False
        return [AccessUnit(tuple(frame), ts, keyframe, params, received_at)]
