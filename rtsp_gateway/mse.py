"""The browser live view: fragmented MP4 over a WebSocket for Media Source Extensions, or JPEG frames.

One :class:`CameraMuxer` per camera stream, shared by all its browser viewers: it holds one hub
subscription (consumer ``mse``), reassembles access units, writes the init segment and one moof+mdat
fragment per frame (``rtsp_gateway.fmp4``) and keeps the init segment and the current GOP so a new
viewer starts playing at once. Each viewer has a bounded queue; one that falls behind loses what is
queued and resumes at the next keyframe, never holding back the others. A viewer whose browser cannot
play the codec gets JPEGs from one decoder per camera (``rtsp_gateway.jpeg_fallback``), running only
while such a viewer exists.

:class:`LiveViewServer` speaks the WebSocket protocol (after go2rtc's MSE protocol) over any transport
that can receive and send text and bytes, so the API app and the gateway process serve it alike:

1. client → ``{"type": "mse", "value": "avc1.640029,hvc1.1.6.L153.B0"}`` (codecs the browser plays,
   from ``MediaSource.isTypeSupported``);
2. server → ``{"type": "mse", "value": "video/mp4; codecs=\\"avc1.640028\\""}`` then binary messages:
   the init segment, then one fragment per frame; or ``{"type": "mjpeg"}`` then binary JPEG frames;
3. server → ``{"type": "error", "value": "..."}`` on failure; the caller ends the channel with
   ``{"type": "end", "reason": "revoked|expired|access_changed|upstream_gone"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from rtsp_gateway import fmp4
from rtsp_gateway.depacketize import AccessUnit, Depacketizer
from rtsp_gateway.jpeg_fallback import JpegFeed
from rtsp_gateway.media import (
    Hub,
    HubError,
    HubLimit,
    NoSuchStream,
    RtpPacket,
    StreamKind,
    Subscription,
    TrackInfo,
)

logger = logging.getLogger(__name__)

Mode = Literal["mse", "mjpeg"]
#: a GOP longer than this is not cached whole (the viewer then waits for the next keyframe)
GOP_CACHE_BYTES = 16 * 1024 * 1024
#: per viewer: more than this queued means the viewer is behind
VIEWER_QUEUE_BYTES = 8 * 1024 * 1024
VIEWER_QUEUE_ITEMS = 400


@dataclass(slots=True)
class Fragment:
    """One frame as an fMP4 fragment, with what latency measurements need."""

    data: bytes
    keyframe: bool
    #: ``time.monotonic()`` when the frame's last packet arrived from the camera
    received_at: float


@dataclass(eq=False)
class Viewer:
    """One browser's queue (touched on the event loop only)."""

    mode: Mode
    items: deque[bytes] = field(default_factory=deque)
    queued_bytes: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    skipping: bool = False
    dropped: int = 0
    sent: int = 0
    #: why the stream ended for this viewer (set by the muxer)
    ended: str | None = None
    #: receive time of the newest queued fragment (latency measurements)
    last_received_at: float = 0.0

    def offer(self, data: bytes, *, keyframe: bool, received_at: float = 0.0) -> None:
        if self.skipping and not keyframe:
            return
        if self.queued_bytes + len(data) > VIEWER_QUEUE_BYTES or len(self.items) >= VIEWER_QUEUE_ITEMS:
            self.dropped += len(self.items)
            self.items.clear()
            self.queued_bytes = 0
            self.skipping = True
            if not keyframe:
                return
        self.skipping = False
        self.items.append(data)
        self.queued_bytes += len(data)
        self.last_received_at = received_at
        self.wake.set()

    def offer_init(self, data: bytes) -> None:
        """A new init segment: what is queued belongs to the old one and stays before it."""
        self.items.append(data)
        self.queued_bytes += len(data)
        self.skipping = True  # media after a new init starts at a keyframe
        self.wake.set()

    def end(self, reason: str) -> None:
        self.ended = reason
        self.wake.set()


class CameraMuxer:
    """One camera stream's fMP4 muxer, GOP cache and viewers; see the module docstring."""

    def __init__(
        self,
        hub: Hub,
        *,
        camera_id: int,
        stream: StreamKind,
        jpeg_fps: float = 8.0,
        gop_cache: bool = True,
        on_idle: Callable[[CameraMuxer], None] | None = None,
    ) -> None:
        self._hub = hub
        self.camera_id = camera_id
        self.stream: StreamKind = stream
        self._jpeg_fps = jpeg_fps
        self._gop_cache_on = gop_cache
        self._on_idle = on_idle
        self._viewers: set[Viewer] = set()
        #: viewers waiting for the stream to be ready (they keep the muxer open)
        self.waiting = 0
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._subscription: Subscription | None = None
        self.format: fmp4.TrackFormat | None = None
        self.init: bytes | None = None
        self.gop: list[Fragment] = []
        self._gop_bytes = 0
        self._gop_complete = False
        self._sequence = 0
        self._decode_time = 0
        self._last_ts: int | None = None
        self._last_duration = 0
        self._info: TrackInfo | None = None
        self._jpeg: JpegFeed | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.error: HubError | None = None
        self._params: tuple[bytes, ...] = ()
        self._gop_units: list[AccessUnit] = []
        #: fragments written since the start (for tests and metrics)
        self.fragments = 0

    @property
    def viewers(self) -> int:
        return len(self._viewers)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name=f"mse-{self.camera_id}-{self.stream}")

    async def wait_ready(self) -> fmp4.TrackFormat:
        """The track format once the first keyframe arrived; raises the hub's error if it failed."""
        await self._ready.wait()
        if self.format is None:
            raise self.error or HubError("the stream ended")
        return self.format

    def attach(self, mode: Mode) -> Viewer:
        """A new viewer, its queue primed with the init segment and the current GOP (MSE) or started
        on the JPEG decoder (fallback)."""
        viewer = Viewer(mode)
        self._viewers.add(viewer)
        if not self.running:  # the stream ended between the viewer's wait and now
            viewer.end("upstream_gone")
            return viewer
        if mode == "mse":
            if self.init is not None:
                viewer.offer_init(self.init)
                if self._gop_cache_on and self._gop_complete:
                    for frag in self.gop:
                        viewer.offer(frag.data, keyframe=frag.keyframe, received_at=frag.received_at)
        elif self._jpeg is None and self._info is not None:
            self._start_jpeg(self._info)
        return viewer

    def detach(self, viewer: Viewer) -> None:
        self._viewers.discard(viewer)
        if self._jpeg is not None and not any(v.mode == "mjpeg" for v in self._viewers):
            self._jpeg.stop()
            self._jpeg = None
        self.release_if_unused()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def release_if_unused(self) -> None:
        """Close a muxer nobody attached to (its first viewer gave up before the stream was ready)."""
        if not self._viewers and not self.waiting:
            self.close()
            if self._on_idle is not None:
                self._on_idle(self)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._jpeg is not None:
            self._jpeg.stop()
            self._jpeg = None

    def _start_jpeg(self, info: TrackInfo) -> None:
        loop = self._loop
        assert loop is not None

        def deliver(jpeg: bytes) -> None:  # from the decoder thread
            with contextlib.suppress(RuntimeError):  # the loop closed
                loop.call_soon_threadsafe(self._fan_out_jpeg, jpeg)

        self._jpeg = JpegFeed(
            camera_id=self.camera_id,
            codec=info.codec,
            clock_rate=info.clock_rate,
            fps=self._jpeg_fps,
            on_jpeg=deliver,
        )
        self._jpeg.start()
        for frag_unit in self._gop_units:
            self._jpeg.put(frag_unit)

    def _fan_out_jpeg(self, jpeg: bytes) -> None:
        for viewer in self._viewers:
            if viewer.mode == "mjpeg":
                viewer.offer(jpeg, keyframe=True)

    async def _run(self) -> None:
        reason = "upstream_gone"
        try:
            sub = await self._hub.subscribe(self.camera_id, stream=self.stream, user_id=None, consumer="mse")
        except HubError as err:
            self.error = err
            self._ready.set()
            self._end_all(
                "not_found"
                if isinstance(err, NoSuchStream)
                else "limit"
                if isinstance(err, HubLimit)
                else reason
            )
            return
        self._subscription = sub
        info = sub.info
        self._info = info
        depacketizer = Depacketizer(info.codec, info.parameter_sets, camera_id=self.camera_id)
        try:
            async for batch in _batches(sub):
                for packet in batch:
                    for unit in depacketizer.push(packet):
                        self._add(unit, info)
        except HubError as err:
            logger.info("camera %s: live view upstream ended: %s", self.camera_id, err)
            self.error = err
        except asyncio.CancelledError:
            reason = "closed"
            raise
        finally:
            sub.close()
            self._ready.set()
            self._end_all(reason)

    def _add(self, unit: AccessUnit, info: TrackInfo) -> None:
        fmt = self.format
        if unit.keyframe and (fmt is None or self.init is None or unit.parameter_sets != self._params):
            try:
                fmt = fmp4.track_format(info.codec, unit.parameter_sets, timescale=info.clock_rate)
            except (ValueError, IndexError) as err:
                logger.warning(
                    "camera %s: unreadable parameter sets (%s); waiting for the next keyframe",
                    self.camera_id,
                    err,
                )
                return
            self._params = unit.parameter_sets
            self.format = fmt
            self.init = fmp4.init_segment(fmt)
            for viewer in self._viewers:
                if viewer.mode == "mse":
                    viewer.offer_init(self.init)
            self._ready.set()
        if fmt is None:
            return
        if self._last_ts is not None:
            delta = (unit.timestamp - self._last_ts) % 2**32
            if 0 < delta < info.clock_rate * 10:  # a jump (reconnect, clock reset) keeps the last duration
                self._last_duration = delta
                self._decode_time += delta
            else:
                self._decode_time += self._last_duration or info.clock_rate // 25
        self._last_ts = unit.timestamp
        self._sequence += 1
        # a frame's duration is known only when the next one arrives: waiting would add a frame of latency,
        # so it is taken from the previous frame; baseMediaDecodeTime stays exact either way
        duration = self._last_duration or info.clock_rate // 25
        data = fmp4.fragment(
            sequence=self._sequence,
            decode_time=self._decode_time,
            duration=duration,
            nals=list(unit.nals),
            keyframe=unit.keyframe,
        )
        frag = Fragment(data, unit.keyframe, unit.received_at)
        self.fragments += 1
        self._cache(frag, unit)
        for viewer in self._viewers:
            if viewer.mode == "mse":
                viewer.offer(data, keyframe=unit.keyframe, received_at=unit.received_at)
        if self._jpeg is not None:
            self._jpeg.put(unit)

    def _cache(self, frag: Fragment, unit: AccessUnit) -> None:
        if frag.keyframe:
            self.gop, self._gop_units, self._gop_bytes, self._gop_complete = [], [], 0, True
        if not self._gop_complete:
            return
        self._gop_bytes += len(frag.data)
        if self._gop_bytes > GOP_CACHE_BYTES:
            self.gop, self._gop_units, self._gop_complete = [], [], False
            return
        self.gop.append(frag)
        self._gop_units.append(unit)

    def _end_all(self, reason: str) -> None:
        for viewer in self._viewers:
            viewer.end(reason)


async def _batches(sub: Subscription) -> AsyncIterator[list[RtpPacket]]:
    """The subscription's packets in batches (the hub's cheaper ``batches()`` when it has one)."""
    batches = getattr(sub, "batches", None)
    if batches is not None:
        async for batch in batches():
            yield batch
        return
    async for packet in sub.packets():
        yield [packet]


class Channel(Protocol):
    """A WebSocket as the protocol needs it: receive text (raises when the client has gone), send."""

    def receive_text(self) -> Awaitable[str]: ...

    def send_text(self, data: str) -> Awaitable[None]: ...

    def send_bytes(self, data: bytes) -> Awaitable[None]: ...


def plays(codec: fmp4.Codec, offered: list[str]) -> bool:
    """Whether a browser that offered these codec strings plays the camera's codec (by family, as
    go2rtc does: a browser that plays one AVC profile plays the baseline/main/high that cameras send)."""
    families = ("avc1", "avc3") if codec == "h264" else ("hvc1", "hev1")
    return any(o.strip().lower().startswith(families) for o in offered)


class ProtocolError(ValueError):
    """The client did not speak the protocol."""


class LiveViewServer:
    """Serves live views of many cameras: one :class:`CameraMuxer` per camera stream with viewers."""

    def __init__(
        self,
        hub: Hub,
        *,
        jpeg_fps: float = 8.0,
        gop_cache: bool = True,
        negotiate_timeout_s: float = 10.0,
        max_viewers_per_camera: int = 64,
    ) -> None:
        self._hub = hub
        self._max_viewers = max_viewers_per_camera
        self._jpeg_fps = jpeg_fps
        self._gop_cache = gop_cache
        self._negotiate_timeout_s = negotiate_timeout_s
        self._muxers: dict[tuple[int, StreamKind], CameraMuxer] = {}

    def muxer(self, camera_id: int, stream: StreamKind = "main") -> CameraMuxer | None:
        return self._muxers.get((camera_id, stream))

    def _muxer_for(self, camera_id: int, stream: StreamKind) -> CameraMuxer:
        key = (camera_id, stream)
        muxer = self._muxers.get(key)
        if muxer is not None and not muxer.running and muxer.format is not None:
            muxer = None  # its upstream ended: the viewers still on it are being told; start afresh
        if muxer is None:
            muxer = CameraMuxer(
                self._hub,
                camera_id=camera_id,
                stream=stream,
                jpeg_fps=self._jpeg_fps,
                gop_cache=self._gop_cache,
                on_idle=self._forget,
            )
            self._muxers[key] = muxer
            muxer.start()
        return muxer

    def _forget(self, muxer: CameraMuxer) -> None:
        if self._muxers.get((muxer.camera_id, muxer.stream)) is muxer:
            del self._muxers[(muxer.camera_id, muxer.stream)]

    async def _negotiate(self, channel: Channel) -> list[str]:
        try:
            message = json.loads(
                await asyncio.wait_for(channel.receive_text(), timeout=self._negotiate_timeout_s)
            )
        except TimeoutError as err:
            raise ProtocolError('expected {"type": "mse", ...} first') from err
        except json.JSONDecodeError as err:
            raise ProtocolError("messages are JSON") from err
        if (
            not isinstance(message, dict)
            or message.get("type") != "mse"
            or not isinstance(message.get("value", ""), str)
        ):
            raise ProtocolError('expected {"type": "mse", "value": "<codecs>"} first')
        return [c.strip() for c in str(message.get("value", "")).split(",") if c.strip()]

    async def serve(
        self, *, camera_id: int, stream: StreamKind, user_id: int | None, channel: Channel
    ) -> str:
        """Run one viewer's live view until the client leaves or the stream ends; returns why it ended
        (``closed``, ``upstream_gone``, ``not_found``, ``limit``, ``protocol``; nothing was sent for
        ``not_found``). The caller authorised the viewer and sends the end message."""
        try:
            offered = await self._negotiate(channel)
        except ProtocolError as err:
            await channel.send_text(json.dumps({"type": "error", "value": str(err)}))
            return "protocol"
        muxer = self._muxer_for(camera_id, stream)
        if muxer.viewers + muxer.waiting >= self._max_viewers:
            # the hub counts the shared muxer once: the browser viewers of a camera are limited here
            message = f"camera {camera_id} already has {self._max_viewers} live viewers"
            await channel.send_text(json.dumps({"type": "error", "value": message}))
            return "limit"
        viewer: Viewer | None = None
        muxer.waiting += 1
        try:
            try:
                fmt = await muxer.wait_ready()
            except NoSuchStream:
                return "not_found"  # the caller answers as for a camera the viewer may not see
            except HubError as err:
                await channel.send_text(json.dumps({"type": "error", "value": str(err)}, ensure_ascii=False))
                return "limit" if isinstance(err, HubLimit) else "upstream_gone"
            mode: Mode = "mse" if plays(fmt.codec, offered) else "mjpeg"
            muxer.waiting -= 1
            viewer = muxer.attach(mode)
            logger.info(
                "camera %s: live view (%s, %s) for user %s", camera_id, mode, fmt.codec_string, user_id
            )
            hello = {"type": "mse", "value": fmt.mime} if mode == "mse" else {"type": "mjpeg"}
            await channel.send_text(json.dumps(hello))
            return await self._pump(viewer, channel)
        finally:
            if viewer is not None:
                muxer.detach(viewer)
            else:
                muxer.waiting -= 1
                muxer.release_if_unused()

    async def _pump(self, viewer: Viewer, channel: Channel) -> str:
        async def send() -> str:
            while True:
                await viewer.wake.wait()
                viewer.wake.clear()
                while viewer.items:
                    data = viewer.items.popleft()
                    viewer.queued_bytes -= len(data)
                    await channel.send_bytes(data)
                    viewer.sent += 1
                if viewer.ended is not None:
                    return "upstream_gone" if viewer.ended != "closed" else "closed"

        async def listen() -> str:
            with contextlib.suppress(Exception):  # the client went away: any transport's way of saying so
                while True:
                    await channel.receive_text()  # nothing else is expected from the client
            return "closed"

        tasks = [asyncio.create_task(send()), asyncio.create_task(listen())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            task = next(iter(done))
            if task.exception() is not None:  # a send failed: the client went away
                return "closed"
            return task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
