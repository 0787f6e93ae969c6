"""A recorded clip played as a camera: demuxed with PyAV (never decoded), its H.264/H.265 access units
turned into Annex-B NAL units and RTP packets, paced at the clip's real rate and looped forever.

It is a :class:`~rtsp_gateway.upstream.MediaSource`, so to the hub a replay is just another camera.
Timestamps continue across loops (each pass is shifted by the clip's duration).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from models.errors import StreamError
from rtsp_gateway import rtp
from rtsp_gateway.media import Codec, TrackInfo
from rtsp_gateway.upstream import SourceChunk

logger = logging.getLogger(__name__)

CLOCK_RATE = 90_000
_CODECS: dict[str, Codec] = {"h264": "h264", "hevc": "h265"}


@dataclass(frozen=True, slots=True)
class _Frame:
    """One access unit of the clip: decode time and presentation time in seconds, its NAL units."""

    dts_s: float
    pts_s: float
    nal_units: list[bytes]


def parameter_sets_from_extradata(codec: Codec, extradata: bytes) -> tuple[tuple[bytes, ...], int]:
    """Parameter sets and NAL length size from avcC/hvcC extradata (or Annex-B extradata, size 0)."""
    if not extradata:
        return (), 4
    if extradata[0] != 1:  # Annex-B extradata (MPEG-TS, raw streams)
        return tuple(n for n in rtp.split_annexb(extradata) if rtp.parameter_set_kind(codec, n)), 0
    units: list[bytes] = []
    if codec == "h264":
        if len(extradata) < 7:
            return (), 4
        size_length = (extradata[4] & 0x03) + 1
        pos = 5
        for count_mask in (0x1F, 0xFF):  # SPS count (low 5 bits), then PPS count
            if pos >= len(extradata):
                break
            count = extradata[pos] & count_mask
            pos += 1
            for _ in range(count):
                size = int.from_bytes(extradata[pos : pos + 2], "big")
                units.append(extradata[pos + 2 : pos + 2 + size])
                pos += 2 + size
        return tuple(u for u in units if rtp.parameter_set_kind(codec, u)), size_length
    if len(extradata) < 23:
        return (), 4
    size_length = (extradata[21] & 0x03) + 1
    pos = 23
    for _ in range(extradata[22]):
        if pos + 3 > len(extradata):
            break
        count = int.from_bytes(extradata[pos + 1 : pos + 3], "big")
        pos += 3
        for _ in range(count):
            size = int.from_bytes(extradata[pos : pos + 2], "big")
            units.append(extradata[pos + 2 : pos + 2 + size])
            pos += 2 + size
    return tuple(u for u in units if rtp.parameter_set_kind(codec, u)), size_length


class _ClipReader:
    """The demuxing half (blocking; runs in a worker thread): one pass over the clip, frame by frame."""

    def __init__(self, path: Path) -> None:
        try:
            self.container: Any = av.open(str(path))
        except (av.error.FFmpegError, OSError) as err:
            raise StreamError(f"cannot open replay clip {path.name}: {err}") from err
        videos = self.container.streams.video
        if not videos:
            self.container.close()
            raise StreamError(f"replay clip {path.name} has no video")
        self.stream = videos[0]
        codec = _CODECS.get(self.stream.codec_context.name)
        if codec is None:
            self.container.close()
            raise StreamError(f"replay clip {path.name} is {self.stream.codec_context.name}, not H.264/H.265")
        self.codec: Codec = codec
        extradata = bytes(self.stream.codec_context.extradata or b"")
        self.parameter_sets, self.size_length = parameter_sets_from_extradata(codec, extradata)
        self.width = self.stream.codec_context.width or None
        self.height = self.stream.codec_context.height or None
        self.time_base = float(self.stream.time_base or 0)
        self.bsf: Any = None
        if self.size_length:  # length-prefixed samples (mp4/mkv): to Annex-B
            bsf_cls = getattr(getattr(av, "bitstream", None), "BitStreamFilterContext", None)
            if bsf_cls is not None:
                name = "h264_mp4toannexb" if codec == "h264" else "hevc_mp4toannexb"
                try:
                    self.bsf = bsf_cls(name, self.stream)
                except (av.error.FFmpegError, ValueError, TypeError):
                    self.bsf = None
        self.packets = self.container.demux(self.stream)

    def next_frames(self) -> list[_Frame] | None:
        """The access units of the next demuxed packet ([] for an empty one), None at the end."""
        for packet in self.packets:
            if packet.size == 0 or packet.dts is None:
                continue
            return self._frames(packet)
        return None

    def _frames(self, packet: Any) -> list[_Frame]:
        outs = self.bsf.filter(packet) if self.bsf is not None else [packet]
        frames: list[_Frame] = []
        for out in outs:
            data = bytes(out)
            if self.size_length and self.bsf is None:
                nals = rtp.split_length_prefixed(data, size_length=self.size_length)
                if packet.is_keyframe and not any(rtp.parameter_set_kind(self.codec, n) for n in nals):
                    nals = [*self.parameter_sets, *nals]
            else:
                nals = rtp.split_annexb(data)
            dts = out.dts if out.dts is not None else packet.dts
            pts = out.pts if out.pts is not None else dts
            frames.append(_Frame(dts * self.time_base, pts * self.time_base, nals))
        return frames

    def close(self) -> None:
        self.container.close()


class ReplaySource:
    """A clip looped as a live camera (:class:`~rtsp_gateway.upstream.MediaSource`)."""

    def __init__(self, path: Path, *, label: str = "", payload_type: int = 96) -> None:
        self.path = Path(path)
        self.label = label or f"replay {self.path.name}"
        self.payload_type = payload_type
        self._reader: _ClipReader | None = None
        self._packetizer: rtp.Packetizer | None = None
        self._t0 = 0.0
        self._first_dts: float | None = None
        self._offset_s = 0.0
        self._last_dts = 0.0
        self._frame_s = 0.04
        self._pending: list[_Frame] = []
        self.loops = 0

    async def open(self) -> TrackInfo:
        self._reader = await asyncio.to_thread(_ClipReader, self.path)
        reader = self._reader
        self._packetizer = rtp.Packetizer(
            reader.codec,
            payload_type=self.payload_type,
            ssrc=random.getrandbits(32),
            first_seq=random.getrandbits(16),
        )
        rate = reader.stream.average_rate or reader.stream.guessed_rate
        if rate:
            self._frame_s = 1.0 / float(rate)
        self._t0 = time.monotonic()
        return TrackInfo(
            codec=reader.codec,
            payload_type=self.payload_type,
            clock_rate=CLOCK_RATE,
            parameter_sets=reader.parameter_sets,
            width=reader.width,
            height=reader.height,
        )

    async def read(self) -> SourceChunk:
        reader, packetizer = self._reader, self._packetizer
        if reader is None or packetizer is None:
            raise StreamError(f"{self.label}: not open")
        while not self._pending:
            frames = await asyncio.to_thread(reader.next_frames)
            if frames is None:  # end of the clip: start again, later by the clip's duration
                await asyncio.to_thread(reader.close)
                self._offset_s += self._last_dts - (self._first_dts or 0.0) + self._frame_s
                self._first_dts = None
                self.loops += 1
                self._reader = reader = await asyncio.to_thread(_ClipReader, self.path)
                continue
            self._pending = frames
        frame = self._pending.pop(0)
        if self._first_dts is None:
            self._first_dts = frame.dts_s
        self._last_dts = frame.dts_s
        stream_s = self._offset_s + frame.dts_s - self._first_dts
        delay = self._t0 + stream_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        ts = int(round((self._offset_s + frame.pts_s - self._first_dts) * CLOCK_RATE))
        packets = packetizer.packetize(frame.nal_units, ts)
        return SourceChunk(time.monotonic(), [(p, False) for p in packets])

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            await asyncio.to_thread(reader.close)
