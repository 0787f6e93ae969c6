"""JPEG frames for browsers that cannot play the camera's codec (H.265 in many Chromium builds).

One decoder per camera, shared by all its fallback viewers and running only while one exists: a
named thread decodes every frame (P-frames need their references) with PyAV and encodes a JPEG at
most ``fps`` times per second of stream time. Frames reach the thread through a bounded queue; when it
overflows the thread is behind, so the queue is emptied and decoding resumes at the next keyframe.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

import av
import av.error
import cv2

from rtsp_gateway.depacketize import AccessUnit
from rtsp_gateway.media import Codec

logger = logging.getLogger(__name__)

QUEUE_FRAMES = 120
#: JPEGs wider than this are scaled down (a fallback view is a preview, not the full picture)
MAX_WIDTH = 1280
JPEG_QUALITY = 75
_STOP = object()


class JpegFeed:
    """Decodes one camera's access units in a thread and hands JPEGs to ``on_jpeg`` (from that thread)."""

    def __init__(
        self,
        *,
        camera_id: int,
        codec: Codec,
        clock_rate: int,
        fps: float,
        on_jpeg: Callable[[bytes], None],
    ) -> None:
        self.camera_id = camera_id
        self._codec = codec
        self._interval = clock_rate / fps
        self._on_jpeg = on_jpeg
        self._queue: queue.Queue[object] = queue.Queue(maxsize=QUEUE_FRAMES)
        self._thread = threading.Thread(target=self._run, name=f"jpeg-fallback-{camera_id}", daemon=True)
        self._waiting_for_keyframe = True
        #: JPEGs made so far
        self.encoded = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end (it does after the frame in hand); does not wait."""
        while True:
            try:
                self._queue.put_nowait(_STOP)
                return
            except queue.Full:
                self._drain()

    def _drain(self) -> None:
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass

    def put(self, unit: AccessUnit) -> None:
        """Hand over one frame (never blocks: a full queue restarts at the next keyframe)."""
        if self._waiting_for_keyframe and not unit.keyframe:
            return
        self._waiting_for_keyframe = False
        try:
            self._queue.put_nowait(unit)
        except queue.Full:
            logger.info("camera %s: JPEG fallback behind, skipping to the next keyframe", self.camera_id)
            self._drain()
            self._waiting_for_keyframe = True

    def _run(self) -> None:
        decoder = av.CodecContext.create("h264" if self._codec == "h264" else "hevc", "r")
        start_code = b"\x00\x00\x00\x01"
        last_params: tuple[bytes, ...] = ()
        last_encoded: int | None = None
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            assert isinstance(item, AccessUnit)
            try:
                data = b""
                if item.keyframe and item.parameter_sets != last_params:
                    last_params = item.parameter_sets
                    data = b"".join(start_code + p for p in last_params)
                data += b"".join(start_code + n for n in item.nals)
                frames = decoder.decode(av.Packet(data))
            except av.error.FFmpegError as err:
                logger.warning("camera %s: JPEG fallback could not decode a frame: %s", self.camera_id, err)
                continue
            due = last_encoded is None or (item.timestamp - last_encoded) % 2**32 >= self._interval
            if not frames or not due or not self._queue.empty():
                continue  # not due yet, or behind: only the newest decoded frame is worth a JPEG
            last_encoded = item.timestamp
            frame = frames[-1]
            if frame.width > MAX_WIDTH:
                frame = frame.reformat(
                    width=MAX_WIDTH, height=frame.height * MAX_WIDTH // frame.width // 2 * 2
                )
            ok, jpeg = cv2.imencode(
                ".jpg", frame.to_ndarray(format="bgr24"), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
            )
            if ok:
                self.encoded += 1
                self._on_jpeg(jpeg.tobytes())
