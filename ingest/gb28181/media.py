"""Live media of GB/T 28181 channels, shared: one INVITE per channel whatever the number of consumers.

:class:`ChannelFeeds` keeps one :class:`ChannelFeed` per (device, channel). The first subscriber opens
the session (SSRC allocated, RTP receiver bound, INVITE with our offer, ACK; for TCP active we then
connect to the port of the device's answer); every later one only adds its sink. The last one leaving
starts a short linger, after which the feed sends BYE and frees its port and SSRC. While subscribers
stay, a session that goes silent for ``media_timeout_s`` (or that the device ends with BYE) is
replaced: BYE, then a new INVITE (re-INVITE on loss).

Sinks are called in the receiver thread with each RTP payload (PS bytes) in sequence order:
``sink(payload, rtp_timestamp, marker, gap_before)``; they must not block. Signalling runs on the
platform's event loop (the loop of :class:`Signalling`); ``subscribe`` may be called from any other
thread, ``subscribe_async`` from any loop.

URLs: a camera whose URL is ``gb28181://<device_id>/<channel_id>`` is read through these feeds by a
worker in the platform's process (:meth:`ChannelFeeds.open_for_reader`, the ``gb28181`` opener of
ingest's readers); a worker in another process reads the camera through the gateway's RTSP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from ingest.gb28181.decode import PsPipe, open_ps
from ingest.gb28181.rtp_receiver import Mode, RtpReceiver
from ingest.gb28181.sdp import Transport, build_offer, parse_answer
from ingest.gb28181.ssrc import SsrcPool
from models.errors import GridPatrolError, StreamError

logger = logging.getLogger(__name__)

SCHEME = "gb28181"
Sink = Callable[[bytes, int, bool, bool], None]
T = TypeVar("T")


class Signalling(Protocol):
    """What the feeds need of the SIP platform (``ingest.gb28181.platform.GbPlatform`` is one)."""

    async def invite(self, device_id: str, channel_id: str, offer_sdp: str) -> Any:
        """INVITE, wait for 200 OK, ACK; the dialog (with ``.answer_sdp``); raises on failure."""
        ...

    async def bye(self, dialog: Any) -> None: ...


def parse_url(url: str) -> tuple[str, str]:
    """``gb28181://<device_id>/<channel_id>`` → (device_id, channel_id); ValueError naming the part."""
    head, sep, rest = url.partition("://")
    if not sep or head.lower() != SCHEME:
        raise ValueError(f"not a {SCHEME}:// URL: {url!r}")
    device_id, _, channel_id = rest.strip("/").partition("/")
    if not (device_id.isdigit() and len(device_id) == 20):
        raise ValueError(f"the device ID in {url!r} must be 20 digits")
    channel_id = channel_id or device_id
    if not (channel_id.isdigit() and len(channel_id) == 20):
        raise ValueError(f"the channel ID in {url!r} must be 20 digits")
    return device_id, channel_id


def channel_url(device_id: str, channel_id: str) -> str:
    return f"{SCHEME}://{device_id}/{channel_id}"


@dataclass(frozen=True)
class MediaOptions:
    """Where and how media is received."""

    ip: str = "127.0.0.1"  # the address written in our offers: where devices send media
    bind_ip: str = "0.0.0.0"
    ports: tuple[int, int] | None = None  # (first, last) media ports; None: any free port
    transport: Transport = "udp"
    linger_s: float = 5.0  # BYE this long after the last subscriber left
    media_timeout_s: float = 10.0  # no RTP for this long while watched: BYE and INVITE again
    invite_timeout_s: float = 15.0


@dataclass
class _Session:
    ssrc: str
    receiver: RtpReceiver
    dialog: Any = None
    started_at: float = field(default_factory=time.monotonic)


class FeedHandle:
    """One subscriber's hold on a channel feed; ``close`` (idempotent, any thread) lets go."""

    def __init__(self, feeds: ChannelFeeds, feed: ChannelFeed, sink: Sink) -> None:
        self._feeds = feeds
        self.feed = feed
        self.sink = sink
        self._closed = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.feed._remove_sink(self.sink)
        self._feeds._call_soon(self._feeds._release(self.feed))


class ChannelFeed:
    """The media session of one channel and its subscribers' sinks."""

    def __init__(self, feeds: ChannelFeeds, device_id: str, channel_id: str) -> None:
        self.feeds = feeds
        self.device_id = device_id
        self.channel_id = channel_id
        self.label = f"{device_id}/{channel_id}"
        self.session: _Session | None = None
        self.invites = 0  # INVITEs sent (the first and every re-INVITE)
        self.byes = 0
        self._sinks: list[Sink] = []
        self._sinks_lock = threading.Lock()
        self._lock: asyncio.Lock | None = None
        self._linger: asyncio.TimerHandle | None = None

    @property
    def subscribers(self) -> int:
        return len(self._sinks)

    def _add_sink(self, sink: Sink) -> None:
        with self._sinks_lock:
            self._sinks = [*self._sinks, sink]

    def _remove_sink(self, sink: Sink) -> None:
        with self._sinks_lock:
            self._sinks = [s for s in self._sinks if s is not sink]

    def _on_packet(self, payload: bytes, timestamp: int, marker: bool, gap: bool) -> None:
        for sink in self._sinks:  # copy-on-write list: no lock on the hot path
            try:
                sink(payload, timestamp, marker, gap)
            except Exception:  # one consumer's bug must not starve the others
                logger.exception("%s: a media subscriber failed", self.label)

    def stats(self) -> dict[str, Any]:
        s = self.session
        r = s.receiver.stats if s else None
        return {
            "subscribers": self.subscribers,
            "invites": self.invites,
            "byes": self.byes,
            "ssrc": s.ssrc if s else None,
            "port": s.receiver.port if s else None,
            "packets": r.packets if r else 0,
            "lost": r.lost if r else 0,
            "reordered": r.reordered if r else 0,
            "wrong_ssrc": r.wrong_ssrc if r else 0,
        }

    # -- session (on the platform's loop) -----------------------------------------------------------
    async def start(self) -> None:
        feeds = self.feeds
        opts = feeds.options
        ssrc = feeds.ssrcs.allocate()
        mode: Mode = opts.transport
        receiver: RtpReceiver | None = None
        try:
            receiver = feeds._new_receiver(mode, ssrc, self)
            offer = build_offer(
                channel_id=self.channel_id,
                ip=opts.ip,
                port=receiver.port or 9,
                transport=opts.transport,
                ssrc=ssrc,
                platform_id=feeds.platform_id,
            )
            receiver.start()
            self.invites += 1
            async with asyncio.timeout(opts.invite_timeout_s):
                dialog = await feeds.signalling.invite(self.device_id, self.channel_id, offer)
            answer = parse_answer(dialog.answer_sdp)
            if answer.ssrc is not None and answer.ssrc != ssrc:
                logger.info(
                    "%s: the device answers with SSRC %s for our %s; filtering on its",
                    self.label,
                    answer.ssrc,
                    ssrc,
                )
                receiver.ssrc = answer.ssrc_int
            if mode == "tcp-active":
                receiver.connect_to(answer.ip, answer.port)
        except BaseException as err:
            if receiver is not None:
                receiver.stop(timeout=None)
            feeds.ssrcs.release(ssrc)
            if isinstance(err, TimeoutError):
                raise StreamError(
                    f"{self.label}: no answer to INVITE within {opts.invite_timeout_s:.0f} s"
                ) from None
            if isinstance(err, GridPatrolError | OSError | ValueError):  # SIP errors, device refusals
                raise StreamError(f"{self.label}: cannot start live play: {err}") from err
            raise
        self.session = _Session(ssrc, receiver, dialog)
        logger.info(
            "%s: live play started (%s, port %d, SSRC %s)", self.label, opts.transport, receiver.port, ssrc
        )

    async def stop(self) -> None:
        session, self.session = self.session, None
        if session is None:
            return
        session.receiver.stop(timeout=None)
        self.feeds.ssrcs.release(session.ssrc)
        if session.dialog is not None and not _ended(session.dialog):
            self.byes += 1
            try:
                await self.feeds.signalling.bye(session.dialog)
            except Exception as err:  # the device may be gone already; the dialog is over for us anyway
                logger.info("%s: BYE failed: %s", self.label, err)
        logger.info("%s: live play stopped", self.label)

    def lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock


def _ended(dialog: Any) -> bool:
    ended = getattr(dialog, "ended", None)
    return bool(ended is not None and ended.is_set())


@dataclass(frozen=True)
class OpenedSource:
    """A PyAV container on a channel's PS and what to call when the reader is done with it."""

    container: Any
    release: Callable[[], None]


class ChannelFeeds:
    """All live channel feeds of one platform; signalling happens on ``loop``."""

    def __init__(
        self,
        signalling: Signalling,
        *,
        loop: asyncio.AbstractEventLoop,
        ssrcs: SsrcPool,
        options: MediaOptions | None = None,
        platform_id: str | None = None,
    ) -> None:
        self.signalling = signalling
        self.loop = loop
        self.ssrcs = ssrcs
        self.options = options or MediaOptions()
        self.platform_id = platform_id
        self._feeds: dict[tuple[str, str], ChannelFeed] = {}
        self._next_port = self.options.ports[0] if self.options.ports else 0
        self._monitor: asyncio.Task[None] | None = None
        self._closed = False

    def feed(self, device_id: str, channel_id: str) -> ChannelFeed | None:
        return self._feeds.get((device_id, channel_id))

    # -- subscribing --------------------------------------------------------------------------------
    def subscribe(
        self, device_id: str, channel_id: str, sink: Sink, *, timeout_s: float | None = None
    ) -> FeedHandle:
        """From a thread (never the platform's loop): join the channel's feed, starting it if needed."""
        future = asyncio.run_coroutine_threadsafe(self._acquire(device_id, channel_id, sink), self.loop)
        wait = timeout_s if timeout_s is not None else self.options.invite_timeout_s + 5.0
        try:
            return future.result(wait)
        except TimeoutError:
            future.cancel()
            raise StreamError(
                f"{device_id}/{channel_id}: live play did not start within {wait:.0f} s"
            ) from None

    async def subscribe_async(self, device_id: str, channel_id: str, sink: Sink) -> FeedHandle:
        """From any event loop: join the channel's feed, starting it if needed."""
        return await self._on_loop(self._acquire(device_id, channel_id, sink))

    async def _on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        if asyncio.get_running_loop() is self.loop:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def _call_soon(self, coro: Coroutine[Any, Any, None]) -> None:
        if self.loop.is_closed():
            coro.close()
            return
        try:
            asyncio.run_coroutine_threadsafe(coro, self.loop)
        except RuntimeError:  # loop closed meanwhile
            coro.close()

    async def _acquire(self, device_id: str, channel_id: str, sink: Sink) -> FeedHandle:
        if self._closed:
            raise StreamError("the GB/T 28181 media feeds are closed")
        key = (device_id, channel_id)
        feed = self._feeds.get(key)
        if feed is None:
            feed = self._feeds[key] = ChannelFeed(self, device_id, channel_id)
        if self._monitor is None:
            self._monitor = asyncio.create_task(self._watch(), name="gb-media-monitor")
        if feed._linger is not None:
            feed._linger.cancel()
            feed._linger = None
        feed._add_sink(sink)
        handle = FeedHandle(self, feed, sink)
        try:
            async with feed.lock():
                if feed.session is None:
                    await feed.start()
        except BaseException:
            handle.close()
            raise
        return handle

    async def _release(self, feed: ChannelFeed) -> None:
        if feed.subscribers or feed._linger is not None:
            return
        linger = self.options.linger_s
        feed._linger = self.loop.call_later(linger, lambda: asyncio.ensure_future(self._expire(feed)))

    async def _expire(self, feed: ChannelFeed) -> None:
        feed._linger = None
        async with feed.lock():
            if feed.subscribers:
                return
            await feed.stop()
            if not feed.subscribers and self._feeds.get((feed.device_id, feed.channel_id)) is feed:
                del self._feeds[(feed.device_id, feed.channel_id)]

    # -- loss ---------------------------------------------------------------------------------------
    async def _watch(self) -> None:
        """Every second: a watched session silent for media_timeout_s, or ended by the device, is replaced."""
        timeout = self.options.media_timeout_s
        while not self._closed:
            await asyncio.sleep(min(1.0, timeout / 4))
            now = time.monotonic()
            for feed in list(self._feeds.values()):
                s = feed.session
                if s is None or not feed.subscribers or feed.lock().locked():
                    continue
                idle = s.receiver.idle_for(now)
                silent = (idle if idle is not None else now - s.started_at) > timeout
                if silent or _ended(s.dialog):
                    why = (
                        "the device ended the session"
                        if _ended(s.dialog)
                        else f"no media for {timeout:.0f} s"
                    )
                    logger.warning("%s: %s; inviting again", feed.label, why)
                    await self._restart(feed)

    async def _restart(self, feed: ChannelFeed) -> None:
        async with feed.lock():
            await feed.stop()
            if not feed.subscribers:
                return
            try:
                await feed.start()
            except StreamError as err:
                logger.warning("%s: re-INVITE failed: %s", feed.label, err)

    async def device_lost(self, device_id: str) -> None:
        """The device went offline or unregistered: its sessions end (subscribers see silence)."""
        for feed in [f for f in self._feeds.values() if f.device_id == device_id]:
            async with feed.lock():
                await feed.stop()

    async def aclose(self) -> None:
        """BYE every session (on the platform's loop)."""
        self._closed = True
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        for feed in list(self._feeds.values()):
            if feed._linger is not None:
                feed._linger.cancel()
            await feed.stop()
        self._feeds.clear()

    # -- receivers ----------------------------------------------------------------------------------
    def _new_receiver(self, mode: Mode, ssrc: str, feed: ChannelFeed) -> RtpReceiver:
        opts = self.options
        if opts.ports is None or mode == "tcp-active":
            return RtpReceiver(
                mode=mode,
                on_packet=feed._on_packet,
                bind_ip=opts.bind_ip,
                port=0,
                ssrc=int(ssrc),
                label=feed.label,
            )
        first, last = opts.ports
        span = last - first + 1
        for _ in range(span):
            port = self._next_port
            self._next_port = first + (self._next_port - first + 1) % span
            try:
                return RtpReceiver(
                    mode=mode,
                    on_packet=feed._on_packet,
                    bind_ip=opts.bind_ip,
                    port=port,
                    ssrc=int(ssrc),
                    label=feed.label,
                )
            except OSError:
                continue
        raise StreamError(f"no free media port in {first}-{last}")

    # -- the worker's reader ------------------------------------------------------------------------
    def open_source(self, url: str, options: Any) -> tuple[Any, Callable[[], None]]:
        """The ``gb28181`` opener of ingest's readers (``ingest.reader.SourceOpener``)."""
        opened = self.open_for_reader(
            url, open_timeout_s=options.open_timeout_s, read_timeout_s=options.read_timeout_s
        )
        return opened.container, opened.release

    def open_for_reader(
        self, url: str, *, open_timeout_s: float = 5.0, read_timeout_s: float = 5.0
    ) -> OpenedSource:
        """A PyAV container on the channel's PS (blocking; ingest's reader thread calls it)."""
        try:
            device_id, channel_id = parse_url(url)
        except ValueError as err:
            raise StreamError(str(err)) from None
        pipe = PsPipe(read_timeout_s=read_timeout_s)
        handle = self.subscribe(
            device_id,
            channel_id,
            lambda payload, _ts, _marker, _gap: pipe.write(payload),
            timeout_s=self.options.invite_timeout_s + open_timeout_s,
        )

        def release() -> None:
            pipe.close()
            handle.close()

        try:
            container = open_ps(pipe)
        except BaseException:
            release()
            raise
        return OpenedSource(container, release)
