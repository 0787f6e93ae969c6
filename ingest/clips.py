"""Event clips: a per-camera ring buffer of compressed packets and its remux to MP4, without decoding.

The reader hands every demuxed packet of its connection to the camera's :class:`ClipRecorder` (a
:class:`~ingest.reader.PacketSink`); the recorder keeps the last ``buffer_s`` seconds (and at most
``buffer_bytes``) of them. A detection asks for a clip of ``pre_s`` seconds before its time and
``post_s`` after: the clip starts at the last keyframe at or before ``at - pre_s`` (the earliest
buffered keyframe when the buffer is shorter), collects packets until ``at + post_s``, and the
:class:`ClipWriter` thread remuxes it to a ``+faststart`` MP4 (H.264 as ``avc1``, H.265 as ``hvc1``, the
tag Safari requires) and hands the bytes to a callback. A reconnect or a stop ends pending clips with
what they hold; a clip that holds nothing is reported as failed, never as an empty file.

Times are wall-clock (epoch seconds) of the packet's arrival, the clock rule events use (capture time).
"""

from __future__ import annotations

import io
import logging
import os
import queue
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

import av
import av.error

logger = logging.getLogger(__name__)

#: bookkeeping per buffered packet beyond its payload (tuple, ints, deque slot), for the byte bound
PACKET_OVERHEAD = 120


@dataclass(frozen=True, slots=True)
class ClipOptions:
    """How much to buffer per camera and what a clip covers."""

    buffer_s: float = 15.0
    buffer_bytes: int = 24 * 1024 * 1024
    pre_s: float = 10.0
    post_s: float = 20.0
    max_pending: int = 4  # clips of one camera waiting for their post-roll at once
    temp_dir: str | None = None  # where the MP4 is muxed before it is read back (None: the system's)

    def __post_init__(self) -> None:
        if self.buffer_s <= 0 or self.buffer_bytes <= 0:
            raise ValueError("buffer_s and buffer_bytes must be > 0")
        if self.pre_s < 0 or self.post_s <= 0:
            raise ValueError("need pre_s >= 0 and post_s > 0")
        if self.pre_s > self.buffer_s:
            raise ValueError(f"the buffer ({self.buffer_s} s) must hold the pre-roll ({self.pre_s} s)")
        if self.max_pending < 1:
            raise ValueError("max_pending must be >= 1")

    @property
    def max_clip_bytes(self) -> int:
        """A pending clip stops growing here (a camera far above the bitrate the bound was sized for)."""
        return int(self.buffer_bytes * (self.pre_s + self.post_s) / self.buffer_s) + self.buffer_bytes


@dataclass(frozen=True, slots=True)
class BufferedPacket:
    data: bytes
    pts: int | None
    dts: int | None
    keyframe: bool
    arrived: float  # epoch seconds


@dataclass(frozen=True, slots=True)
class ClipResult:
    """What became of one requested clip: ``data`` is the MP4, or None with a ``reason``."""

    data: bytes | None
    started_at: float | None = None  # epoch seconds of the clip's first frame
    duration_s: float = 0.0
    codec: str | None = None
    reason: str | None = None


OnClip = Callable[[ClipResult], None]


@dataclass(slots=True)
class _Pending:
    until: float
    on_done: OnClip
    template: StreamTemplate
    packets: list[BufferedPacket] = field(default_factory=list)
    size: int = 0


class StreamTemplate:
    """The connection's codec parameters, copied out of the input container so that muxing can happen
    in another thread after the connection is gone."""

    def __init__(self, stream: av.video.stream.VideoStream) -> None:
        self._holder = av.open(io.BytesIO(), "w", format="mp4")
        self.stream = self._holder.add_stream_from_template(stream)
        self.codec = stream.codec_context.name
        self.time_base: Fraction = stream.time_base or Fraction(1, 90_000)


class ClipRecorder:
    """One camera's packet ring and its pending clips. Fed by the reader thread; ``request`` is called
    from any thread. Never raises into the reader."""

    def __init__(
        self,
        camera_id: str,
        options: ClipOptions,
        writer: ClipWriter,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.camera_id = camera_id
        self.options = options
        self.writer = writer
        self.clock = clock
        self._ring: deque[BufferedPacket] = deque()
        self._bytes = 0
        self._template: StreamTemplate | None = None
        self._pending: list[_Pending] = []
        self._lock = threading.Lock()
        self.clips_requested = 0
        self.clips_refused = 0

    # -- the reader's side (PacketSink) --------------------------------------------------------------
    def on_stream(self, stream: av.video.stream.VideoStream) -> None:
        """A new connection: earlier packets belong to another timeline and codec setup."""
        try:
            template = StreamTemplate(stream)
        except (av.error.FFmpegError, ValueError) as err:  # a codec MP4 cannot hold (MJPEG...): no clips
            logger.warning(
                "%s: no event clips for %s video: %s", self.camera_id, stream.codec_context.name, err
            )
            template = None
        with self._lock:
            self._finish_all("reconnected")
            self._ring.clear()
            self._bytes = 0
            self._template = template

    def on_packet(self, packet: av.Packet) -> None:
        if self._template is None or not packet.size or packet.pts is None and packet.dts is None:
            return
        item = BufferedPacket(bytes(packet), packet.pts, packet.dts, bool(packet.is_keyframe), self.clock())
        with self._lock:
            self._ring.append(item)
            self._bytes += len(item.data) + PACKET_OVERHEAD
            self._trim(item.arrived)
            if self._pending:
                self._feed(item)

    def on_close(self) -> None:
        with self._lock:
            self._finish_all("stream ended")
            self._ring.clear()
            self._bytes = 0
            self._template = None

    # -- the detector's side --------------------------------------------------------------------------
    def request(self, *, at: float, on_done: OnClip) -> bool:
        """Start a clip around ``at`` (epoch seconds); ``on_done`` gets its result once the post-roll has
        been read. False when no clip can be made (no stream, too many pending): ``on_done`` is not called."""
        with self._lock:
            template = self._template
            if template is None or len(self._pending) >= self.options.max_pending:
                self.clips_refused += 1
                return False
            self.clips_requested += 1
            pending = _Pending(until=at + self.options.post_s, on_done=on_done, template=template)
            start = self._start_index(at - self.options.pre_s)
            if start is not None:
                for i in range(start, len(self._ring)):
                    self._add(pending, self._ring[i])
            self._pending.append(pending)
            if self._ring and self._ring[-1].arrived >= pending.until:
                self._finish(pending, None)
            return True

    @property
    def buffered_bytes(self) -> int:
        return self._bytes

    @property
    def buffered_s(self) -> float:
        ring = self._ring
        return ring[-1].arrived - ring[0].arrived if len(ring) > 1 else 0.0

    # -- under the lock ---------------------------------------------------------------------------------
    def _trim(self, now: float) -> None:
        ring, opts = self._ring, self.options
        while len(ring) > 1 and (now - ring[0].arrived > opts.buffer_s or self._bytes > opts.buffer_bytes):
            self._bytes -= len(ring.popleft().data) + PACKET_OVERHEAD

    def _start_index(self, target: float) -> int | None:
        """The last keyframe at or before ``target``, else the first keyframe; None without one."""
        found = None
        for i, p in enumerate(self._ring):
            if not p.keyframe:
                continue
            if p.arrived > target:
                return i if found is None else found
            found = i
        return found

    def _add(self, pending: _Pending, item: BufferedPacket) -> None:
        if not pending.packets and not item.keyframe:
            return  # a clip starts at a keyframe: the decoder needs one
        pending.packets.append(item)
        pending.size += len(item.data)

    def _feed(self, item: BufferedPacket) -> None:
        for pending in list(self._pending):
            self._add(pending, item)
            if item.arrived >= pending.until:
                self._finish(pending, None)
            elif pending.size >= self.options.max_clip_bytes:
                logger.warning("%s: clip cut short at %d bytes", self.camera_id, pending.size)
                self._finish(pending, None)

    def _finish(self, pending: _Pending, why: str | None) -> None:
        self._pending.remove(pending)
        if why is not None:
            logger.info("%s: clip ends early (%s) with %d packets", self.camera_id, why, len(pending.packets))
        self.writer.submit(self.camera_id, pending.template, pending.packets, pending.on_done)

    def _finish_all(self, why: str) -> None:
        for pending in list(self._pending):
            self._finish(pending, why)


class ClipWriter:
    """Remuxes finished clips to MP4 in one named thread, so that no reader waits on muxing or disk."""

    def __init__(
        self, *, temp_dir: str | None = None, max_queued: int = 32, name: str = "ingest-clips"
    ) -> None:
        self.temp_dir = temp_dir
        self._queue: queue.Queue[tuple[str, StreamTemplate, list[BufferedPacket], OnClip] | None] = (
            queue.Queue(max_queued)
        )
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.written = 0
        self.failed = 0

    def start(self) -> ClipWriter:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued, then end."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)

    @property
    def queued(self) -> int:
        """Finished clips waiting to be muxed."""
        return self._queue.qsize()

    def submit(
        self, camera_id: str, template: StreamTemplate, packets: list[BufferedPacket], on_done: OnClip
    ) -> None:
        try:
            self._queue.put_nowait((camera_id, template, packets, on_done))
        except queue.Full:
            self.failed += 1
            logger.error(
                "%s: clip dropped: %d clips already wait for the writer", camera_id, self._queue.qsize()
            )
            _call(camera_id, on_done, ClipResult(None, reason="writer busy"))

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            camera_id, template, packets, on_done = job
            try:
                result = remux_mp4(template, packets, temp_dir=self.temp_dir)
            except Exception as err:  # top of the writer loop: one bad clip must not end the others
                logger.exception("%s: clip not written", camera_id)
                result = ClipResult(None, reason=f"mux failed: {type(err).__name__}")
            if result.data is None:
                self.failed += 1
            else:
                self.written += 1
            _call(camera_id, on_done, result)


def _call(camera_id: str, on_done: OnClip, result: ClipResult) -> None:
    try:
        on_done(result)
    except Exception:  # the callback stores and publishes; its failure is logged, the writer goes on
        logger.exception("%s: clip callback failed", camera_id)


def remux_mp4(
    template: StreamTemplate, packets: list[BufferedPacket], *, temp_dir: str | None = None
) -> ClipResult:
    """The packets (starting at a keyframe) as an MP4 with the index first (``+faststart``), timestamps
    starting at 0. ``+faststart`` rewrites the file at the end, so it is muxed to a temporary file."""
    if not packets:
        return ClipResult(None, reason="no video buffered")
    first = packets[0]
    base = first.dts if first.dts is not None else first.pts
    assert base is not None
    fd, path = tempfile.mkstemp(suffix=".mp4", prefix="clip-", dir=temp_dir)
    os.close(fd)
    try:
        out = av.open(path, "w", format="mp4", options={"movflags": "+faststart"})
        try:
            stream = out.add_stream_from_template(template.stream)
            if template.codec == "hevc":
                stream.codec_context.codec_tag = (
                    "hvc1"  # FFmpeg writes hev1 by default; Safari plays only hvc1
                )
            last_dts = None
            for p in packets:
                pts = p.pts if p.pts is not None else p.dts
                dts = p.dts if p.dts is not None else p.pts
                assert pts is not None and dts is not None
                if last_dts is not None and dts - base <= last_dts:
                    continue  # a duplicate or backwards timestamp (an RTSP clock jump) would fail the muxer
                packet = av.Packet(p.data)
                packet.stream = stream
                packet.time_base = template.time_base
                packet.pts = pts - base
                packet.dts = dts - base
                packet.is_keyframe = p.keyframe
                out.mux(packet)
                last_dts = dts - base
        finally:
            out.close()
        with open(path, "rb") as fh:
            data = fh.read()
    finally:
        os.unlink(path)
    last = packets[-1]
    end = last.pts if last.pts is not None else last.dts
    assert end is not None
    duration = float((end - base) * template.time_base)
    return ClipResult(data, started_at=first.arrived, duration_s=max(duration, 0.0), codec=template.codec)


class ClipRecorders:
    """The recorders of one worker's cameras (created on demand) and their shared writer."""

    def __init__(self, options: ClipOptions) -> None:
        self.options = options
        self.writer = ClipWriter(temp_dir=options.temp_dir)
        self._recorders: dict[str, ClipRecorder] = {}
        self._lock = threading.Lock()

    def start(self) -> ClipRecorders:
        self.writer.start()
        return self

    def stop(self) -> None:
        with self._lock:
            recorders = list(self._recorders.values())
        for recorder in recorders:
            recorder.on_close()  # pending clips are written with what they hold
        self.writer.stop()

    def sink_for(self, camera_id: str) -> ClipRecorder:
        """The camera's recorder, handed to its reader as the packet sink."""
        with self._lock:
            recorder = self._recorders.get(camera_id)
            if recorder is None:
                recorder = self._recorders[camera_id] = ClipRecorder(camera_id, self.options, self.writer)
            return recorder

    def forget(self, camera_id: str) -> None:
        with self._lock:
            recorder = self._recorders.pop(camera_id, None)
        if recorder is not None:
            recorder.on_close()

    def request(self, camera_id: str, *, at: float, on_done: OnClip) -> bool:
        with self._lock:
            recorder = self._recorders.get(camera_id)
        return recorder is not None and recorder.request(at=at, on_done=on_done)

    def buffered_bytes(self) -> dict[str, int]:
        with self._lock:
            return {cid: r.buffered_bytes for cid, r in self._recorders.items()}
