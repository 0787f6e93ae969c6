"""The media hub: one upstream session per camera stream, shared by every subscriber, forwarded without
decoding (see :mod:`rtsp_gateway.media` for the interface consumers see).

An upstream opens on the first subscriber and closes ``linger_s`` after the last one leaves. Each chunk
read from the camera is rewritten once (stable SSRC, continuous sequence numbers and timestamps across
reconnects) and appended to every subscriber's bounded queue in one step, so fan-out costs one list
extend per subscriber per socket read, never one await per packet per viewer. A new subscriber starts
at once from the cached current GOP; one whose queue overflows skips to the next keyframe, and one that
keeps overflowing without catching up is ended with :class:`SlowConsumer`. A lost camera is retried with
backoff while subscribers stay; they resume at the next keyframe with ``discontinuity`` set.

Sources come from a resolver passed in by the wiring layer: ``resolver(camera_id, stream)`` returns an
``rtsp://`` URL (credentials in it are used towards the camera and never shown), ``replay://NAME``
(a clip of the ``replays`` table), or any :class:`~rtsp_gateway.upstream.MediaSource`; it raises
:class:`NoSuchStream` for a camera or sub-stream that does not exist. Replays are also reachable by name
without a camera (:meth:`MediaHub.subscribe_replay`), which the RTSP server maps to ``/replay/NAME``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from models.errors import StreamError
from rtsp_gateway import rtp
from rtsp_gateway.media import (
    ConsumerKind,
    HubError,
    HubLimit,
    HubStats,
    NoSuchStream,
    RtpPacket,
    SlowConsumer,
    StreamKind,
    TrackInfo,
    UpstreamGone,
)
from rtsp_gateway.upstream import MediaSource, RtspUpstream, SourceChunk, UpstreamTimeouts

logger = logging.getLogger(__name__)

#: ``resolver(camera_id, stream)`` → an rtsp:// or replay:// URL, or a ready MediaSource; NoSuchStream if none
SourceResolver = Callable[[int, StreamKind], Awaitable["str | MediaSource"]]

REPLAY_SCHEME: Final = "replay://"
#: consumers that count as people watching (viewers-per-camera limit and metrics)
_PEOPLE: Final = frozenset({"rtsp", "mse"})


@dataclass(frozen=True)
class HubSettings:
    """Limits and timings of the hub (the gateway's settings build one)."""

    linger_s: float = 10.0
    max_viewers_per_camera: int = 64
    max_sessions_per_user: int = 16
    #: per-subscriber queue bound; overflowing it skips the subscriber to the next keyframe
    queue_bytes: int = 8_000_000
    #: overflows in a row (without the subscriber ever emptying its queue) before SlowConsumer
    max_skips: int = 3
    #: the current GOP is cached up to this size, and at most half of ``queue_bytes`` (a bigger GOP is
    #: not cached: new subscribers then wait for the next keyframe). Packets are shared by all queues,
    #: so memory grows with the slowest subscriber's backlog, not with the number of subscribers.
    gop_cache_bytes: int = 4_000_000
    #: how long ``subscribe`` waits for the camera's track parameters
    open_timeout_s: float = 15.0
    #: connection attempts before the first subscriber is told the camera is unreachable
    first_open_attempts: int = 2
    retry_initial_s: float = 0.5
    retry_max_s: float = 10.0
    #: a camera lost for this long ends its subscribers with UpstreamGone
    give_up_after_s: float = 60.0
    payload_type: int = 96
    upstream_timeouts: UpstreamTimeouts = UpstreamTimeouts()


@dataclass(frozen=True)
class StreamKey:
    """What one upstream serves: a camera stream, or a replay addressed by name."""

    camera_id: int
    stream: StreamKind = "main"
    replay: str | None = None

    def __str__(self) -> str:
        return f"replay {self.replay}" if self.replay else f"camera {self.camera_id}/{self.stream}"


_CLOSED: Final = object()


class HubSubscription:
    """One consumer of one upstream (implements :class:`rtsp_gateway.media.Subscription`)."""

    def __init__(
        self, hub: MediaHub, upstream: _Upstream, *, user_id: int | None, consumer: ConsumerKind
    ) -> None:
        self.camera_id = upstream.key.camera_id
        self.stream: StreamKind = upstream.key.stream
        self.replay = upstream.key.replay
        self.user_id = user_id
        self.consumer: ConsumerKind = consumer
        self._hub = hub
        self._upstream = upstream
        self._queue: deque[RtpPacket] = deque()
        self._queued_bytes = 0
        self._wake = asyncio.Event()
        self._waiting_key = True
        self._gap = False
        self._skips = 0
        self._end: object | BaseException | None = None
        self._bytes_sent = 0
        self._sink: Callable[[list[RtpPacket]], bool] | None = None
        self._ended = asyncio.Event()

    @property
    def info(self) -> TrackInfo:
        info = self._upstream.info
        if info is None:
            raise UpstreamGone(f"{self._upstream.key}: track not known yet")
        return info

    @property
    def bytes_sent(self) -> int:
        return self._bytes_sent

    @property
    def closed(self) -> bool:
        return self._end is not None

    async def packets(self) -> AsyncIterator[RtpPacket]:
        """Packets one by one (see :meth:`batches` for the cheaper way)."""
        async for batch in self.batches():
            for packet in batch:
                yield packet

    async def batches(self) -> AsyncIterator[list[RtpPacket]]:
        """Everything queued at once, as a list (one write per batch keeps a server's fan-out cheap).
        Ends when the hub ends the subscription; raises UpstreamGone or SlowConsumer with the reason."""
        while True:
            if self._queue:
                batch = list(self._queue)
                self._queue.clear()
                size = self._queued_bytes
                self._queued_bytes = 0
                self._bytes_sent += size
                self._hub._bytes_out += size
                yield batch
                continue
            end = self._end
            if end is not None:
                if isinstance(end, BaseException):
                    raise end
                return
            self._skips = 0  # it caught up: a later overflow starts the count again
            self._wake.clear()
            await self._wake.wait()

    def deliver_to(self, sink: Callable[[list[RtpPacket]], bool]) -> None:
        """Hand batches to ``sink`` synchronously from the fan-out instead of queueing them: no task
        wake-up per viewer per upstream read (an RTSP server writes them to its transport in the call).
        ``sink`` returns False when it could not take the batch (its send buffer is full): that counts as
        an overflow (skip to the next keyframe, then SlowConsumer). What is queued now (the cached GOP)
        goes to the sink at once. Do not iterate :meth:`batches` as well; await :meth:`ended` instead."""
        self._sink = sink
        if self._queue:
            batch = list(self._queue)
            size = self._queued_bytes
            self._queue.clear()
            self._queued_bytes = 0
            self._to_sink(sink, batch, size, keyframe_start=False)

    async def ended(self) -> None:
        """Wait until the hub ends the subscription; raises its reason (UpstreamGone, SlowConsumer...)."""
        await self._ended.wait()
        if isinstance(self._end, BaseException):
            raise self._end

    def close(self) -> None:
        self._queue.clear()
        self._queued_bytes = 0
        self._hub._remove(self, None)

    # -- hub side ----------------------------------------------------------------------------------

    def _offer(self, batch: list[RtpPacket], size: int, key_index: int) -> None:
        """Queue a fan-out batch (called by the hub for every chunk)."""
        if self._waiting_key:
            if key_index < 0:
                return
            if key_index:
                batch = batch[key_index:]
                size = sum(len(p.data) for p in batch)
            self._waiting_key = False
            if self._gap:
                self._gap = False
                batch = [replace(batch[0], discontinuity=True), *batch[1:]]
            key_index = -1  # resumed here: not yet proof of keeping up
        elif self._sink is None and self._queued_bytes + size > self._hub.settings.queue_bytes:
            self._overflow()
            if self._end is None:
                self._offer(batch, size, key_index)
            return
        if self._sink is not None:
            self._to_sink(self._sink, batch, size, keyframe_start=key_index >= 0)
            return
        self._queue.extend(batch)
        self._queued_bytes += size
        self._wake.set()

    def _to_sink(
        self,
        sink: Callable[[list[RtpPacket]], bool],
        batch: list[RtpPacket],
        size: int,
        *,
        keyframe_start: bool,
    ) -> None:
        if sink(batch):
            self._bytes_sent += size
            self._hub._bytes_out += size
            if keyframe_start:
                self._skips = 0  # a whole GOP went through since the last skip: it keeps up
            return
        self._hub._dropped += len(batch)
        self._overflow()

    def _overflow(self) -> None:
        hub = self._hub
        hub._dropped += len(self._queue)
        self._queue.clear()
        self._queued_bytes = 0
        self._skips += 1
        if self._skips > hub.settings.max_skips:
            hub._slow_ended += 1
            logger.info("%s subscriber of user %s ended: too slow", self._upstream.key, self.user_id)
            hub._remove(
                self, SlowConsumer(f"{self._upstream.key}: the viewer could not keep up with the stream")
            )
            return
        self._waiting_key = True
        self._gap = True

    def _restart_at_keyframe(self) -> None:
        """After an upstream loss: drop nothing queued, but take new packets from the next keyframe."""
        self._waiting_key = True
        self._gap = True

    def _finish(self, end: object | BaseException) -> None:
        if self._end is None:
            self._end = end
            self._wake.set()
            self._ended.set()


class _Upstream:
    """One source session and its subscribers; the task reads, rewrites and fans out."""

    def __init__(self, key: StreamKey) -> None:
        self.key = key
        self.subscribers: list[HubSubscription] = []
        self.info: TrackInfo | None = None
        self.ready = asyncio.Event()
        self.failure: HubError | None = None
        self.task: asyncio.Task[None] | None = None
        self.linger: asyncio.TimerHandle | None = None
        self.ssrc = random.getrandbits(32)
        self.seq_offset = random.getrandbits(16)
        self.ts_offset = random.getrandbits(32)
        self.last_out_seq: int | None = None
        self.last_out_ts = 0
        self.last_out_at = 0.0
        self.resync = False
        self.last_key_ts: int | None = None
        self.gop: list[RtpPacket] | None = None
        self.gop_bytes = 0
        self.param_sets: dict[str, bytes] = {}


class MediaHub:
    """At most one upstream per camera stream, fanned out to any number of subscribers (see module doc)."""

    def __init__(
        self,
        resolver: SourceResolver,
        *,
        settings: HubSettings | None = None,
        replays: Mapping[str, Path] | None = None,
    ) -> None:
        self.resolver = resolver
        self.settings = settings or HubSettings()
        self.replays: dict[str, Path] = dict(replays or {})
        self._upstreams: dict[StreamKey, _Upstream] = {}
        self._bytes_in = 0
        self._bytes_out = 0
        self._dropped = 0
        self._slow_ended = 0
        self._reconnects = 0
        self._closed = False
        self._gop_limit = min(self.settings.gop_cache_bytes, self.settings.queue_bytes // 2)

    # -- public ------------------------------------------------------------------------------------

    async def subscribe(
        self, camera_id: int, *, stream: StreamKind = "main", user_id: int | None, consumer: ConsumerKind
    ) -> HubSubscription:
        """Join the camera stream's upstream (see :meth:`rtsp_gateway.media.Hub.subscribe`)."""
        return await self._subscribe(StreamKey(camera_id, stream), user_id=user_id, consumer=consumer)

    async def subscribe_replay(
        self, name: str, *, user_id: int | None, consumer: ConsumerKind
    ) -> HubSubscription:
        """Join the replay ``name`` of the ``replays`` table (served by the RTSP server at
        ``/replay/NAME``); NoSuchStream when there is no such replay."""
        if name not in self.replays:
            raise NoSuchStream(f"no replay named {name!r}")
        return await self._subscribe(StreamKey(0, "main", replay=name), user_id=user_id, consumer=consumer)

    def replay_names(self) -> list[str]:
        return sorted(self.replays)

    def stats(self) -> HubStats:
        viewers: dict[ConsumerKind, int] = {}
        for up in self._upstreams.values():
            for sub in up.subscribers:
                viewers[sub.consumer] = viewers.get(sub.consumer, 0) + 1
        return HubStats(
            upstreams=sum(1 for up in self._upstreams.values() if up.info is not None),
            viewers=viewers,
            bytes_in=self._bytes_in,
            bytes_out=self._bytes_out,
            dropped_packets=self._dropped,
            slow_consumers_ended=self._slow_ended,
            upstream_reconnects=self._reconnects,
        )

    def upstream_keys(self) -> list[StreamKey]:
        """The streams with an upstream session open or opening (tests and metrics)."""
        return list(self._upstreams)

    async def close(self) -> None:
        """End every subscription and upstream (process shutdown)."""
        self._closed = True
        ups = list(self._upstreams.values())
        for up in ups:
            self._stop(up, None)
        tasks = [up.task for up in ups if up.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- subscribing -------------------------------------------------------------------------------

    async def _subscribe(
        self, key: StreamKey, *, user_id: int | None, consumer: ConsumerKind
    ) -> HubSubscription:
        if self._closed:
            raise UpstreamGone("the media hub is shutting down")
        self._check_limits(key, user_id=user_id, consumer=consumer)
        up = self._upstreams.get(key)
        if up is None:
            up = _Upstream(key)
            self._upstreams[key] = up
            up.task = asyncio.create_task(self._run(up), name=f"upstream {key}")
        if up.linger is not None:
            up.linger.cancel()
            up.linger = None
        sub = HubSubscription(self, up, user_id=user_id, consumer=consumer)
        up.subscribers.append(sub)
        if up.gop:
            sub._waiting_key = False
            sub._queue.extend(up.gop)
            sub._queued_bytes = up.gop_bytes
        try:
            async with asyncio.timeout(self.settings.open_timeout_s):
                await up.ready.wait()
        except TimeoutError as err:
            self._remove(sub, None)
            raise UpstreamGone(f"{key}: the camera did not start streaming in time") from err
        except BaseException:
            self._remove(sub, None)
            raise
        if up.failure is not None:
            self._remove(sub, None)
            raise up.failure
        return sub

    def _check_limits(self, key: StreamKey, *, user_id: int | None, consumer: ConsumerKind) -> None:
        s = self.settings
        if consumer in _PEOPLE:
            watching = sum(
                1
                for up in self._upstreams.values()
                if up.key.camera_id == key.camera_id and up.key.replay == key.replay
                for sub in up.subscribers
                if sub.consumer in _PEOPLE
            )
            if watching >= s.max_viewers_per_camera:
                what = f"回放 {key.replay}" if key.replay else f"摄像机 {key.camera_id}"
                raise HubLimit(
                    f"{what} 的观看人数已达上限 {s.max_viewers_per_camera}"
                    f" ({key} already has {watching} viewers)",
                    limit="viewers_per_camera",
                )
        if user_id is not None:
            sessions = sum(
                1 for up in self._upstreams.values() for sub in up.subscribers if sub.user_id == user_id
            )
            if sessions >= s.max_sessions_per_user:
                raise HubLimit(
                    f"同时观看的视频路数已达上限 {s.max_sessions_per_user}"
                    f" (user {user_id} already has {sessions} live sessions)",
                    limit="sessions_per_user",
                )

    def _remove(self, sub: HubSubscription, end: BaseException | None) -> None:
        sub._finish(end if end is not None else _CLOSED)
        up = sub._upstream
        with contextlib.suppress(ValueError):
            up.subscribers.remove(sub)
            if not up.subscribers and up.linger is None and self._upstreams.get(up.key) is up:
                loop = asyncio.get_running_loop()
                up.linger = loop.call_later(self.settings.linger_s, self._linger_over, up)

    def _linger_over(self, up: _Upstream) -> None:
        up.linger = None
        if not up.subscribers:
            logger.info("%s closing upstream: no subscribers for %.0f s", up.key, self.settings.linger_s)
            self._stop(up, None)

    def _stop(self, up: _Upstream, end: HubError | None) -> None:
        """End the upstream and its subscribers (``end`` is raised in them; None ends them quietly)."""
        if self._upstreams.get(up.key) is up:
            del self._upstreams[up.key]
        if up.linger is not None:
            up.linger.cancel()
            up.linger = None
        for sub in list(up.subscribers):
            sub._finish(end if end is not None else _CLOSED)
        up.subscribers.clear()
        if end is not None and up.failure is None and up.info is None:
            up.failure = end
        up.ready.set()
        if up.task is not None and up.task is not asyncio.current_task():
            up.task.cancel()

    # -- the upstream task -------------------------------------------------------------------------

    async def _open_source(self, key: StreamKey) -> MediaSource:
        if key.replay is not None:
            target: str | MediaSource = REPLAY_SCHEME + key.replay
        else:
            target = await self.resolver(key.camera_id, key.stream)
        if not isinstance(target, str):
            return target
        if target.startswith(REPLAY_SCHEME):
            name = target[len(REPLAY_SCHEME) :]
            path = self.replays.get(name)
            if path is None:
                raise NoSuchStream(f"{key}: no replay named {name!r}")
            from rtsp_gateway.replay import ReplaySource  # PyAV is imported only where replays are used

            return ReplaySource(path, label=str(key))
        return RtspUpstream(target, timeouts=self.settings.upstream_timeouts, label=str(key))

    async def _run(self, up: _Upstream) -> None:
        s = self.settings
        attempts = 0
        lost_since: float | None = None
        try:
            while True:
                source: MediaSource | None = None
                try:
                    source = await self._open_source(up.key)
                    async with asyncio.timeout(s.open_timeout_s):
                        info = await source.open()
                    self._set_info(up, info)
                    if lost_since is not None:
                        logger.info("%s upstream back after %.1f s", up.key, time.monotonic() - lost_since)
                    attempts = 0
                    lost_since = None
                    while True:
                        chunk = await source.read()
                        self._fan_out(up, chunk)
                except NoSuchStream as err:
                    self._stop(up, err)
                    return
                except (StreamError, OSError, TimeoutError) as err:
                    now = time.monotonic()
                    attempts += 1
                    if up.info is None and attempts >= s.first_open_attempts:
                        logger.warning("%s cannot open upstream: %s", up.key, err)
                        self._stop(up, UpstreamGone(f"{up.key}: the camera cannot be reached"))
                        return
                    if lost_since is None:
                        lost_since = now
                        if up.info is not None:
                            logger.warning("%s upstream lost, reconnecting: %s", up.key, err)
                            self._lost(up)
                    elif now - lost_since > s.give_up_after_s:
                        logger.warning("%s upstream gone for %.0f s: %s", up.key, now - lost_since, err)
                        self._stop(up, UpstreamGone(f"{up.key}: the camera is unreachable"))
                        return
                finally:
                    if source is not None:
                        await source.close()
                delay = min(s.retry_max_s, s.retry_initial_s * 2 ** max(0, attempts - 1))
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                self._reconnects += 1
        except asyncio.CancelledError:
            pass
        except Exception:  # a bug must not leave subscribers hanging
            logger.exception("%s upstream task failed", up.key)
            self._stop(up, UpstreamGone(f"{up.key}: internal error"))

    def _set_info(self, up: _Upstream, info: TrackInfo) -> None:
        for nal in info.parameter_sets:
            kind = rtp.parameter_set_kind(info.codec, nal)
            if kind and kind not in up.param_sets:
                up.param_sets[kind] = nal
        up.info = _public_info(info, up.param_sets, ssrc=up.ssrc, payload_type=self.settings.payload_type)
        up.resync = True
        up.last_key_ts = None
        up.ready.set()

    def _lost(self, up: _Upstream) -> None:
        up.gop = None
        up.gop_bytes = 0
        for sub in up.subscribers:
            sub._restart_at_keyframe()

    def _fan_out(self, up: _Upstream, chunk: SourceChunk) -> None:
        """Rewrite one chunk of source packets and queue it for every subscriber (the hot path)."""
        info = up.info
        assert info is not None
        codec = info.codec
        pt = self.settings.payload_type
        received_at = chunk.received_at
        out: list[RtpPacket] = []
        size = 0
        key_index = -1
        params_changed = False
        for data, is_rtcp in chunk.packets:
            self._bytes_in += len(data)
            if is_rtcp:
                if not up.resync:
                    packet = RtpPacket(
                        rtp.rewrite_rtcp(data, ssrc=up.ssrc, ts_offset=up.ts_offset), received_at, rtcp=True
                    )
                    out.append(packet)
                    size += len(packet.data)
                continue
            header = rtp.parse_header(data)
            if header is None:
                continue
            payload = rtp.payload_of(data, header)
            key = False
            if header.timestamp != up.last_key_ts and rtp.is_keyframe_payload(codec, payload):
                key = True
                up.last_key_ts = header.timestamp
            if len(payload) < 1024:
                for nal in rtp.parameter_sets_in(codec, payload):
                    kind = rtp.parameter_set_kind(codec, nal)
                    if kind and up.param_sets.get(kind) != nal:
                        up.param_sets[kind] = nal
                        params_changed = True
            if up.resync:
                # a (re)connection: nobody can use packets before its first keyframe, so they are not
                # numbered; the keyframe continues the outgoing sequence and timestamps
                if not key:
                    continue
                up.resync = False
                if up.last_out_seq is not None:
                    elapsed = max(1, int((received_at - up.last_out_at) * info.clock_rate))
                    up.seq_offset = (up.last_out_seq + 1 - header.seq) & 0xFFFF
                    up.ts_offset = (up.last_out_ts + elapsed - header.timestamp) & 0xFFFFFFFF
            seq = (header.seq + up.seq_offset) & 0xFFFF
            ts = (header.timestamp + up.ts_offset) & 0xFFFFFFFF
            packet = RtpPacket(
                rtp.rewrite(data, seq=seq, timestamp=ts, ssrc=up.ssrc, payload_type=pt),
                received_at,
                keyframe=key,
            )
            up.last_out_seq = seq
            up.last_out_ts = ts
            up.last_out_at = received_at
            if key:
                if key_index < 0:
                    key_index = len(out)
                up.gop = []
                up.gop_bytes = 0
            if up.gop is not None:
                up.gop.append(packet)
                up.gop_bytes += len(data)
            out.append(packet)
            size += len(data)
        if params_changed:
            up.info = _public_info(info, up.param_sets, ssrc=up.ssrc, payload_type=pt)
        if up.gop is not None and up.gop_bytes > self._gop_limit:
            up.gop = None
        if not out:
            return
        for sub in list(up.subscribers):
            sub._offer(out, size, key_index)


def _public_info(
    info: TrackInfo, param_sets: Mapping[str, bytes], *, ssrc: int, payload_type: int
) -> TrackInfo:
    """The track as viewers see it: the hub's SSRC and payload type, the newest parameter sets, an fmtp
    built from them alone (nothing of the camera's own SDP, which may name addresses)."""
    order = ("sps", "pps") if info.codec == "h264" else ("vps", "sps", "pps")
    sets = tuple(param_sets[k] for k in order if k in param_sets) or info.parameter_sets
    width, height = info.width, info.height
    return TrackInfo(
        codec=info.codec,
        payload_type=payload_type,
        clock_rate=info.clock_rate,
        parameter_sets=sets,
        fmtp=rtp.sdp_fmtp(info.codec, sets),
        width=width,
        height=height,
        ssrc=ssrc,
    )
