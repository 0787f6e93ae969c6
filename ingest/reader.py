"""PyAV stream reader: one named thread per camera, reconnecting, never blocking anyone.

RTSP (TCP by default, UDP selectable), plain files and HTTP sources go through the same code. The
thread opens the source with open/read timeouts, demuxes and decodes, feeds the camera's
:class:`~ingest.health.CameraHealth`, offers every frame to the display tap, and puts the frames
the :class:`~ingest.sampling.Sampler` picks on its output (a latest-wins queue that never blocks).
On an error it waits with exponential backoff and jitter and reconnects; live sources also
reconnect at end of stream, files end (or loop). An :class:`threading.Event` stops the thread and an
:class:`~ingest.handoff.EndOfStream` sentinel always closes the stream. URLs in logs and errors are
redacted (:func:`models.secrets.redact_url`).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

import av
import av.error

from ingest.handoff import EndOfStream, Item, LatestFrameQueue, SampledFrame
from ingest.health import CameraHealth, CameraState
from ingest.sampling import DisplayTap, Sampler, SamplingOptions
from ingest.urls import is_live, scheme_of, scrub
from models.errors import StreamError
from models.grid.credentials import ENCRYPTED_PREFIX
from models.secrets import redact_url

logger = logging.getLogger(__name__)

# After this many packets in a row that the decoder rejects, the connection is considered garbage.
MAX_CONSECUTIVE_DECODE_ERRORS = 50


class SourceError(StreamError):
    """A source failed to open or broke; ``reason`` is short and machine-readable (see classify_error)."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class StreamOptions:
    """How to open and keep a source open."""

    transport: Literal["tcp", "udp"] = "tcp"  # RTSP lower transport
    open_timeout_s: float = 5.0
    read_timeout_s: float = 5.0
    decode_threads: int = 1  # 1 scales best with many cameras; 0 = FFmpeg's choice (one big stream)
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    max_retries: int | None = None  # None = forever; after that the camera is FAILED
    reconnect_at_eof: bool | None = None  # None: live sources (rtsp, http, ...) yes, files no
    loop: bool = False  # files: start again at the end (simulated cameras)
    realtime: bool = False  # files: pace reading to the stream's clock instead of as fast as possible

    def __post_init__(self) -> None:
        if self.open_timeout_s <= 0 or self.read_timeout_s <= 0:
            raise ValueError("timeouts must be > 0")
        if self.backoff_initial_s <= 0 or self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("need 0 < backoff_initial_s <= backoff_max_s")


class FrameOutput(Protocol):
    """Where sampled frames and the end sentinel go; ``put`` must never block."""

    def put(self, item: Item) -> None: ...


class PacketSink(Protocol):
    """Sees each connection's compressed packets before decoding (event clips, ``ingest.clips``);
    called from the reader thread, so it must be quick and must not raise."""

    def on_stream(self, stream: av.video.stream.VideoStream) -> None: ...

    def on_packet(self, packet: av.Packet) -> None: ...

    def on_close(self) -> None: ...


#: ``opener(url, options)`` → (container, release): a source that is not opened by URL alone (a GB/T 28181
#: channel is a SIP session whose PS arrives over RTP: ``ingest.gb28181.media``); ``release`` is called
#: after the container is closed
SourceOpener = Callable[[str, "StreamOptions"], tuple[av.container.InputContainer, Callable[[], None]]]


def backoff_delay(attempt: int, options: StreamOptions, rng: random.Random) -> float:
    """Exponential backoff with +-25% jitter so that cameras behind one switch do not retry in step."""
    base = min(options.backoff_max_s, options.backoff_initial_s * (2 ** min(attempt, 30)))
    return base * rng.uniform(0.75, 1.25)


def classify_error(err: BaseException, *, elapsed_s: float, timeout_s: float) -> str:
    """A short machine-readable reason for an open/read failure."""
    if isinstance(err, ConnectionRefusedError):
        return "refused"
    if isinstance(err, av.error.HTTPUnauthorizedError | av.error.HTTPForbiddenError | PermissionError):
        return "unauthorized"
    if isinstance(err, av.error.HTTPNotFoundError | FileNotFoundError):
        return "not_found"
    if isinstance(err, av.error.ExitError | TimeoutError) or elapsed_s >= 0.9 * timeout_s:
        return "timeout"  # PyAV's timeout interrupts FFmpeg, which reports ExitError or invalid data
    if isinstance(err, av.error.EOFError | EOFError):
        return "eof"
    if isinstance(err, av.error.InvalidDataError):
        return "invalid_data"
    if isinstance(err, OSError):
        return "io_error"
    return "error"


@dataclass
class _Connection:
    container: av.container.InputContainer
    stream: av.video.stream.VideoStream
    opened_at: float = field(default_factory=time.monotonic)
    release: Callable[[], None] | None = None  # from a SourceOpener


class StreamReader:
    """Reads one camera in its own thread ``ingest-<camera_id>``."""

    def __init__(
        self,
        camera_id: str,
        url: str,
        *,
        stream: StreamOptions | None = None,
        sampling: SamplingOptions | None = None,
        health: CameraHealth | None = None,
        output: FrameOutput | None = None,
        seed: int | None = None,
        packet_sink: PacketSink | None = None,
        openers: Mapping[str, SourceOpener] | None = None,
    ) -> None:
        self.camera_id = camera_id
        self.url = url
        self.safe_url = redact_url(url)
        self.stream_options = stream or StreamOptions()
        self.sampling = sampling or SamplingOptions()
        self.health = health or CameraHealth(camera_id)
        self.output: FrameOutput = output if output is not None else LatestFrameQueue(1)
        self.display = DisplayTap(self.sampling.display_fps)
        self.packet_sink = packet_sink  # the camera's clip buffer: packets as read, no second session
        self.openers: Mapping[str, SourceOpener] = openers or {}  # by URL scheme (gb28181)
        self._release_now: Callable[[], None] | None = None  # the open connection's release (openers)
        self.errors: list[str] = []  # the last few failure messages (redacted), newest last
        self._sampler = Sampler(self.sampling)
        self._stop = threading.Event()
        self._rng = random.Random(seed)
        self._seq = 0
        self._reconnect_at_eof = (
            is_live(url) if self.stream_options.reconnect_at_eof is None else self.stream_options.reconnect_at_eof
        )
        self._thread = threading.Thread(target=self._run, name=f"ingest-{camera_id}", daemon=True)

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> StreamReader:
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Ask the thread to stop; wait up to ``timeout`` seconds (None: do not wait)."""
        self._stop.set()
        release = self._release_now
        if release is not None:  # an opened source (gb28181) blocks in its own read: end it now
            release()
        if timeout is not None and self._thread.is_alive():
            self._thread.join(timeout)

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- the thread ---------------------------------------------------------------------------------
    def _run(self) -> None:
        end_reason = "stopped"
        try:
            end_reason = self._loop()
        except Exception as err:  # the top of a long-running loop: never let a camera kill the worker
            logger.exception("%s: reader crashed", self.camera_id)
            self.health.set_state(CameraState.FAILED, f"crash: {type(err).__name__}")
            end_reason = "failed: crash"
        finally:
            self.display.clear()
            self.output.put(EndOfStream(self.camera_id, end_reason))

    def _loop(self) -> str:
        opts = self.stream_options
        failures = 0
        while not self._stop.is_set():
            self.health.set_state(CameraState.CONNECTING)
            frames_before = self.health.input.count
            ended = "error"
            failure: SourceError | None = None
            try:
                conn = self._open()
                try:
                    self.health.set_state(CameraState.STREAMING)
                    if self.packet_sink is not None:
                        self.packet_sink.on_stream(conn.stream)
                    ended = self._read(conn)
                finally:
                    if self.packet_sink is not None:
                        self.packet_sink.on_close()
                    conn.container.close()
                    if conn.release is not None:
                        self._release_now = None
                        conn.release()
            except SourceError as err:
                failure = err
            except Exception as err:  # top of the reconnect loop: a codec surprise must not end the camera
                logger.exception("%s: unexpected error reading %s", self.camera_id, self.safe_url)
                failure = SourceError(f"unexpected {type(err).__name__} reading {self.safe_url}", reason="error")
            if failure is not None:
                reason = failure.reason
                self._remember(str(failure))
                if self.health.input.count > frames_before:
                    failures = 0  # it streamed: the next wait starts short again
                # an undecryptable URL stays so until an operator fixes the key: no retry storm
                if reason == "credentials" or (opts.max_retries is not None and failures >= opts.max_retries):
                    self.health.set_state(CameraState.FAILED, reason)
                    logger.warning("%s: giving up: %s", self.camera_id, failure)
                    return f"failed: {reason}"
                delay = backoff_delay(failures, opts, self._rng)
                failures += 1
                self.health.set_state(CameraState.BACKOFF, reason, retry_in_s=delay)
                logger.info("%s: %s; retry %d in %.1fs", self.camera_id, failure, failures, delay)
                if self._stop.wait(delay):
                    break
                self.health.reconnects += 1
                continue
            if ended == "stopped":
                break
            failures = 0
            if opts.loop and not is_live(self.url):
                self._sampler.reset()
                continue
            if not self._reconnect_at_eof:
                self.health.set_state(CameraState.STOPPED, "eof")
                return "eof"
            self.health.set_state(CameraState.BACKOFF, "eof", retry_in_s=opts.backoff_initial_s)
            if self._stop.wait(opts.backoff_initial_s):
                break
            self.health.reconnects += 1
        self.health.set_state(CameraState.STOPPED, "stopped")
        return "stopped"

    def _remember(self, message: str) -> None:
        self.errors.append(message)
        del self.errors[:-10]

    def _open(self) -> _Connection:
        opts = self.stream_options
        if self.url.startswith(ENCRYPTED_PREFIX):  # the worker could not decrypt it (models.grid.credentials)
            raise SourceError("the camera's credentials cannot be decrypted with this worker's key", reason="credentials")
        options: dict[str, str] = {}
        scheme = scheme_of(self.url)
        if scheme in {"rtsp", "rtsps"}:
            options = {
                "rtsp_transport": opts.transport,
                "timeout": str(int(opts.read_timeout_s * 1_000_000)),  # socket I/O timeout, microseconds
                "allowed_media_types": "video",
            }
        elif scheme in {"http", "https"}:
            options = {"timeout": str(int(opts.read_timeout_s * 1_000_000))}
        started = time.monotonic()
        release: Callable[[], None] | None = None
        try:
            if scheme in self.openers:
                container, release = self.openers[scheme](self.url, opts)
            else:
                container = av.open(self.url, options=options, timeout=(opts.open_timeout_s, opts.read_timeout_s))
        except (av.error.FFmpegError, OSError) as err:
            raise self._translate(err, "open", started, opts.open_timeout_s) from None
        except StreamError as err:  # the opener's own failure (e.g. the device refused the INVITE)
            raise SourceError(f"open {self.safe_url} failed: {err}", reason="unavailable") from None
        try:
            stream = container.streams.video[0]
        except IndexError:
            container.close()
            if release is not None:
                release()
            raise SourceError(f"no video stream in {self.safe_url}", reason="no_video") from None
        cc = stream.codec_context
        if self.sampling.keyframes_only:
            cc.skip_frame = "NONKEY"
        else:
            cc.thread_count = self.stream_options.decode_threads
            cc.thread_type = "AUTO" if self.stream_options.decode_threads != 1 else "SLICE"
        h = self.health
        h.codec = cc.name
        h.resolution_wh = (cc.width, cc.height) if cc.width else None
        rate = stream.average_rate or stream.guessed_rate
        h.nominal_fps = float(rate) if rate else None
        logger.info(
            "%s: streaming %s (%s %sx%s)", self.camera_id, self.safe_url, cc.name, cc.width, cc.height
        )
        self._release_now = release
        return _Connection(container, stream, release=release)

    def _translate(self, err: BaseException, phase: str, started: float, timeout_s: float) -> SourceError:
        # ``from None`` on purpose: FFmpeg's message names the URL with its credentials.
        reason = classify_error(err, elapsed_s=time.monotonic() - started, timeout_s=timeout_s)
        detail = scrub(getattr(err, "strerror", None) or str(err) or type(err).__name__, self.url)
        return SourceError(f"{phase} {self.safe_url} failed ({reason}): {detail}", reason=reason)

    def _packets(self, conn: _Connection) -> Iterator[av.Packet]:
        started = time.monotonic()
        try:
            yield from conn.container.demux(conn.stream)
        except (av.error.FFmpegError, OSError) as err:
            raise self._translate(err, "read", started, self.stream_options.read_timeout_s) from None

    def _read(self, conn: _Connection) -> str:
        """Demux and decode until the end of the stream (``"eof"``) or a stop (``"stopped"``)."""
        stop = self._stop
        health = self.health
        codec = conn.stream.codec_context
        time_base = float(conn.stream.time_base) if conn.stream.time_base else None
        keyframes_only = self.sampling.keyframes_only
        sampler, display, output, sink = self._sampler, self.display, self.output, self.packet_sink
        pace = self.stream_options.realtime and not is_live(self.url)
        pace_origin: tuple[float, float] | None = None
        bad_in_a_row = 0
        now = time.time
        sampler.reset()
        for packet in self._packets(conn):
            if stop.is_set():
                return "stopped"
            health.bytes_in += packet.size
            if sink is not None:
                sink.on_packet(packet)
            if keyframes_only and not packet.is_keyframe and packet.size:
                continue  # NONKEY would drop it inside the decoder; skipping here saves the call
            try:
                frames = codec.decode(packet)
            except av.error.FFmpegError:
                health.decode_errors += 1
                bad_in_a_row += 1
                if bad_in_a_row >= MAX_CONSECUTIVE_DECODE_ERRORS:
                    raise SourceError(
                        f"{bad_in_a_row} undecodable packets in a row from {self.safe_url}",
                        reason="decode_errors",
                    ) from None
                continue
            bad_in_a_row = 0
            for frame in frames:
                pts = frame.pts
                stream_ts = pts * time_base if pts is not None and time_base else None
                if pace and stream_ts is not None:
                    if pace_origin is None:
                        pace_origin = (time.monotonic(), stream_ts)
                    wait = pace_origin[0] + (stream_ts - pace_origin[1]) - time.monotonic()
                    if wait > 0 and stop.wait(wait):
                        return "stopped"
                capture_ts = now()
                key = frame.key_frame
                health.on_frame(capture_ts, keyframe=key)
                display.offer(frame, capture_ts)
                if sampler.due(stream_ts, capture_ts):
                    self._seq += 1
                    image = sampler.convert(frame)
                    health.analysed.tick(capture_ts)
                    output.put(SampledFrame(self.camera_id, image, capture_ts, stream_ts, bool(key), self._seq))
        return "eof"
