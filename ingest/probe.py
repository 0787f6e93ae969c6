"""Check a camera before registering it: open it with the worker's reader and report what it sends.

``probe(url, seconds=5)`` runs one :class:`~ingest.reader.StreamReader` (no retries) for a few
seconds and returns a JSON-ready dict; ``gridpatrol cameras probe URL [--json]`` prints it.
"""

from __future__ import annotations

import queue
import time
from typing import Any, Literal

from ingest.handoff import EndOfStream, LatestFrameQueue
from ingest.reader import StreamOptions, StreamReader
from ingest.sampling import SamplingOptions


def probe(
    url: str,
    *,
    seconds: float = 5.0,
    keyframes_only: bool = False,
    transport: Literal["tcp", "udp"] = "tcp",
    open_timeout_s: float = 5.0,
    read_timeout_s: float = 5.0,
) -> dict[str, Any]:
    """Read ``url`` for ``seconds`` and describe it.

    Keys: ``url`` (redacted), ``ok`` (frames were decoded), ``state``/``reason`` (the reader's
    final health state), ``codec``, ``resolution_wh``, ``nominal_fps`` (what the stream declares),
    ``input_fps`` (frames per second of stream time: the camera's real rate; with
    ``keyframes_only`` the keyframe rate), ``decode_fps`` (frames
    decoded per second of wall time), ``frames_decoded``, ``keyframes``,
    ``keyframe_interval_s`` (mean gap between keyframes in stream time, None below two),
    ``decode_errors``, ``bytes``, ``seconds`` (time spent reading) and ``errors`` (redacted messages).
    """
    frames: LatestFrameQueue = LatestFrameQueue(10_000)
    reader = StreamReader(
        "probe",
        url,
        stream=StreamOptions(
            transport=transport,
            open_timeout_s=open_timeout_s,
            read_timeout_s=read_timeout_s,
            max_retries=0,
            reconnect_at_eof=False,
            decode_threads=0,
        ),
        # Every frame is sampled (at a token size) so that stream times give the real rates.
        sampling=SamplingOptions(analysis_fps=0, analysis_width=16, keyframes_only=keyframes_only, display_fps=0),
        output=frames,
    )
    started = time.monotonic()
    reader.start()
    deadline = started + seconds + open_timeout_s
    first_frame_at: float | None = None
    key_ts: list[float] = []
    first_ts: float | None = None  # stream time of the first and last timed frame
    last_ts = 0.0
    timed = 0
    end: EndOfStream | None = None
    while end is None:
        remaining = deadline - time.monotonic()
        if first_frame_at is not None:
            remaining = min(remaining, first_frame_at + seconds - time.monotonic())
        if remaining <= 0:
            break
        try:
            item = frames.get(timeout=min(remaining, 0.2))
        except queue.Empty:
            continue
        if isinstance(item, EndOfStream):
            end = item
            break
        if first_frame_at is None:
            first_frame_at = time.monotonic()
        if item.stream_ts is not None:
            timed += 1
            first_ts = item.stream_ts if first_ts is None else first_ts
            last_ts = item.stream_ts
            if item.keyframe:
                key_ts.append(item.stream_ts)
    reader.stop(timeout=read_timeout_s + 1.0)
    elapsed = time.monotonic() - (first_frame_at or started)
    snap = reader.health.snapshot()
    decoded = int(snap["frames_in"])
    span = last_ts - first_ts if first_ts is not None else 0.0
    if span > 0 and timed > 1:
        input_fps = (timed - 1) / span  # the camera's own rate, immune to start-up bursts and decode speed
    else:
        input_fps = decoded / elapsed if decoded and elapsed > 0 else 0.0
    gaps = [b - a for a, b in zip(key_ts, key_ts[1:], strict=False) if b > a]
    return {
        "url": reader.safe_url,
        "ok": decoded > 0,
        "state": snap["state"],
        "reason": snap["reason"],
        "codec": snap["codec"],
        "resolution_wh": snap["resolution_wh"],
        "nominal_fps": snap["nominal_fps"],
        "input_fps": round(input_fps, 2),
        "decode_fps": round(decoded / elapsed, 2) if decoded and elapsed > 0 else 0.0,
        "frames_decoded": decoded,
        "keyframes": int(snap["keyframes"]),
        "keyframe_interval_s": round(sum(gaps) / len(gaps), 3) if gaps else None,
        "decode_errors": int(snap["decode_errors"]),
        "bytes": int(snap["bytes_in"]),
        "seconds": round(elapsed, 2),
        "errors": list(reader.errors),
    }
