"""PS bytes → PyAV: a pipe the receiver writes into and FFmpeg's ``mpeg`` demuxer reads from.

FFmpeg probes 5 MB / 5 s of input by default before it names the codec, which delays the first frame
of a GB/T 28181 stream by about 5 s; with the program stream map in the first pack, 4 KiB and no
analysis are enough (``probesize=4096``, ``analyzeduration=0``). Demuxing and decoding go packet by
packet inside try/except, so that a lost RTP packet costs a frame or a GOP's tail, never the stream.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

import av
import av.error

logger = logging.getLogger(__name__)

OPEN_OPTIONS = {"probesize": "4096", "analyzeduration": "0", "fpsprobesize": "0"}
_MAX_BUFFERED = 16 * 1024 * 1024


class PsPipe:
    """A one-way byte pipe between a receiver thread (``write``) and PyAV (``read``).

    ``write`` never blocks: past ``max_buffered`` bytes the oldest data is dropped (the demuxer finds
    the next pack header). ``read`` waits up to ``read_timeout_s`` for data and then raises
    TimeoutError, which PyAV passes up as the reason the stream ended; after ``close`` it returns b"".
    """

    def __init__(self, *, read_timeout_s: float = 5.0, max_buffered: int = _MAX_BUFFERED) -> None:
        self.read_timeout_s = read_timeout_s
        self.max_buffered = max_buffered
        self.dropped_bytes = 0
        self.bytes_written = 0
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._closed = False
        self._cond = threading.Condition()

    def write(self, data: bytes) -> None:
        if not data:
            return
        with self._cond:
            if self._closed:
                return
            self._chunks.append(data)
            self._size += len(data)
            self.bytes_written += len(data)
            while self._size > self.max_buffered and len(self._chunks) > 1:
                old = self._chunks.popleft()
                self._size -= len(old)
                self.dropped_bytes += len(old)
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def read(self, size: int = -1) -> bytes:
        with self._cond:
            if not self._chunks and not self._closed:
                if not self._cond.wait_for(lambda: self._chunks or self._closed, self.read_timeout_s):
                    self._closed = True  # later reads see the end (FFmpeg reads again while closing)
                    raise TimeoutError(f"no media for {self.read_timeout_s:.0f} s")
            if not self._chunks:
                return b""
            if size < 0:
                size = self._size
            out = bytearray()
            while self._chunks and len(out) < size:
                chunk = self._chunks.popleft()
                take = size - len(out)
                if len(chunk) > take:
                    self._chunks.appendleft(chunk[take:])
                    chunk = chunk[:take]
                out += chunk
            self._size -= len(out)
            return bytes(out)

    def seekable(self) -> bool:
        return False


def open_ps(pipe: Any, *, timeout_s: float | None = None) -> Any:
    """An input container on a PS byte source with fast probing (the program stream map names the codec)."""
    timeout = (timeout_s, timeout_s) if timeout_s else None
    return av.open(pipe, mode="r", format="mpeg", options=dict(OPEN_OPTIONS), timeout=timeout)


def decode_frames(container: Any, *, stats: dict[str, int] | None = None) -> Iterator[Any]:
    """Every frame of the container's video, demuxed and decoded one packet at a time; a packet the
    decoder rejects is counted in ``stats["decode_errors"]`` and skipped."""
    counts = stats if stats is not None else {}
    counts.setdefault("decode_errors", 0)
    counts.setdefault("packets", 0)
    stream = container.streams.video[0]
    codec = stream.codec_context
    for packet in container.demux(stream):
        if packet.size == 0:
            continue
        counts["packets"] += 1
        try:
            frames = codec.decode(packet)
        except av.error.FFmpegError:
            counts["decode_errors"] += 1
            continue
        yield from frames
    try:
        yield from codec.decode(None)
    except av.error.FFmpegError:
        counts["decode_errors"] += 1
