"""A GB/T 28181 channel as a media hub source: its PS demuxed to H.264/H.265 access units and
re-packetised as RFC 6184/7798 RTP, so the gateway serves a GB camera to RTSP and browser viewers like
any other (:class:`~rtsp_gateway.upstream.MediaSource`).

The channel's feed (:class:`~ingest.gb28181.media.ChannelFeeds`) is shared: the hub's one upstream per
camera is one subscriber, next to the worker's reader, and the INVITE is sent only once for both.
Nothing is decoded. Frames that lost packets are dropped until the next keyframe, so viewers see a
short freeze rather than smeared pictures.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time

from ingest.gb28181.media import ChannelFeeds, FeedHandle
from ingest.gb28181.ps import AccessUnit, PsDemuxer
from models.errors import StreamError
from rtsp_gateway import rtp
from rtsp_gateway.media import Codec, TrackInfo
from rtsp_gateway.upstream import SourceChunk

logger = logging.getLogger(__name__)

CLOCK_RATE = 90_000
MAX_QUEUED_UNITS = 250  # about 10 s at 25 fps; beyond that the oldest go (the hub is not reading)


def _nal_kinds(codec: Codec, nals: list[bytes]) -> tuple[bool, list[bytes]]:
    """(keyframe?, parameter sets) of an access unit's NAL units."""
    params = [n for n in nals if rtp.parameter_set_kind(codec, n)]
    if codec == "h264":
        key = any(n and n[0] & 0x1F == 5 for n in nals)
    else:
        key = any(len(n) > 1 and 16 <= (n[0] >> 1) & 0x3F <= 21 for n in nals)
    return key, params


class GbChannelSource:
    """One hub upstream session of a GB/T 28181 channel."""

    def __init__(
        self,
        feeds: ChannelFeeds,
        device_id: str,
        channel_id: str,
        *,
        label: str = "",
        payload_type: int = 96,
        idle_s: float = 10.0,
    ) -> None:
        self.feeds = feeds
        self.device_id = device_id
        self.channel_id = channel_id
        self.label = label or f"gb28181 {device_id}/{channel_id}"
        self.payload_type = payload_type
        self.idle_s = idle_s
        self.dropped_units = 0
        self._demux = PsDemuxer()
        self._units: collections.deque[AccessUnit] = collections.deque()
        self._ready = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: FeedHandle | None = None
        self._packetizer: rtp.Packetizer | None = None
        self._codec: Codec = "h264"
        self._waiting_key = True

    # -- the receiver thread's side ---------------------------------------------------------------------
    def _sink(self, payload: bytes, _ts: int, _marker: bool, gap: bool) -> None:
        if gap:
            self._demux.gap()
        units = self._demux.feed(payload)
        if units and self._loop is not None:
            self._loop.call_soon_threadsafe(self._push, units)

    def _push(self, units: list[AccessUnit]) -> None:
        self._units.extend(units)
        while len(self._units) > MAX_QUEUED_UNITS:
            self._units.popleft()
            self.dropped_units += 1
            self._waiting_key = True
        self._ready.set()

    # -- MediaSource ------------------------------------------------------------------------------------
    async def open(self) -> TrackInfo:
        self._loop = asyncio.get_running_loop()
        self._handle = await self.feeds.subscribe_async(self.device_id, self.channel_id, self._sink)
        try:
            async with asyncio.timeout(self.idle_s):
                while True:
                    unit = await self._next_unit()
                    codec: Codec = unit.codec
                    nals = rtp.split_annexb(unit.data)
                    key, params = _nal_kinds(codec, nals)
                    if key and params and not unit.damaged:
                        break
        except TimeoutError:
            await self.close()
            raise StreamError(f"{self.label}: no keyframe within {self.idle_s:.0f} s") from None
        self._codec = codec
        self._units.appendleft(unit)  # the keyframe is the first thing read() hands on
        self._waiting_key = False
        self._packetizer = rtp.Packetizer(
            codec,
            payload_type=self.payload_type,
            ssrc=random.getrandbits(32),
            first_seq=random.getrandbits(16),
        )
        logger.info("%s: %s track open for the hub", self.label, codec)
        return TrackInfo(
            codec=codec, payload_type=self.payload_type, clock_rate=CLOCK_RATE, parameter_sets=tuple(params)
        )

    async def _next_unit(self) -> AccessUnit:
        while not self._units:
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), self.idle_s)
            except TimeoutError:
                raise StreamError(f"{self.label}: no media for {self.idle_s:.0f} s") from None
        return self._units.popleft()

    async def read(self) -> SourceChunk:
        packetizer = self._packetizer
        if packetizer is None:
            raise StreamError(f"{self.label}: not open")
        while True:
            unit = await self._next_unit()
            nals = rtp.split_annexb(unit.data)
            if unit.damaged:
                self._waiting_key = True  # a frame with holes: skip to the next keyframe
                self.dropped_units += 1
                continue
            if self._waiting_key:
                key, _ = _nal_kinds(self._codec, nals)
                if not key:
                    self.dropped_units += 1
                    continue
                self._waiting_key = False
            packets = packetizer.packetize(nals, unit.pts if unit.pts is not None else 0)
            return SourceChunk(time.monotonic(), [(p, False) for p in packets])

    async def close(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.close()


def source_for_url(feeds: ChannelFeeds | None, url: str, *, label: str = "") -> GbChannelSource:
    """The hub source of a ``gb28181://device/channel`` camera URL; UpstreamGone when this process runs
    no GB/T 28181 platform (the gateway must run in the platform's process: ``gridpatrol serve``)."""
    from ingest.gb28181.media import parse_url
    from rtsp_gateway.media import UpstreamGone

    if feeds is None:
        raise UpstreamGone(f"{label or url}: GB/T 28181 cameras play only where the platform runs (serve)")
    try:
        device_id, channel_id = parse_url(url)
    except ValueError as err:
        raise UpstreamGone(f"{label or url}: {err}") from None
    return GbChannelSource(feeds, device_id, channel_id, label=label)
