"""The worker's side of the tile board: encode a watched camera's frame at most once per tick.

The control thread refreshes which cameras are watched (one board read for all of them, every
second); a frame thread asks :meth:`TilePublisher.due` (no I/O) and, when a tile is due, encodes it
(:meth:`TilePublisher.offer`, one JPEG whatever the number of viewers). A thread of its own posts the
tiles, so a slow or absent Redis never holds up the frames: a camera's unsent tile is replaced by its
next one. Unwatched cameras cost a dictionary lookup per frame.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence

import cv2
import numpy as np

from models.errors import BusError
from models.live.board import TileBoard
from models.live.tiles import Tile, TileDetection

logger = logging.getLogger(__name__)

#: tiles per second of a watched camera, and while a rule is active on it
DEFAULT_FPS = 1.0
ALARM_FPS = 2.0
JPEG_QUALITY = 70
#: frames arrive on a sampling clock with jitter: a tile is due a little before its exact period
_SLACK = 0.85


def tile_detections(
    xyxy: np.ndarray, confidence: np.ndarray, labels: Sequence[str], *, frame_wh: tuple[int, int]
) -> tuple[TileDetection, ...]:
    """Pixel boxes of a frame as normalised :class:`TileDetection` (for the snapshot overlay)."""
    w, h = frame_wh
    if w <= 0 or h <= 0:
        return ()
    out = []
    for (x1, y1, x2, y2), score, label in zip(
        np.asarray(xyxy).reshape(-1, 4), np.asarray(confidence).reshape(-1), labels, strict=True
    ):
        box = (float(x1) / w, float(y1) / h, float(x2) / w, float(y2) / h)
        out.append(TileDetection(tuple(min(1.0, max(0.0, v)) for v in box), str(label), float(score)))  # type: ignore[arg-type]
    return tuple(out)


def encode_jpeg(frame_bgr: np.ndarray, *, width: int, quality: int = JPEG_QUALITY) -> tuple[bytes, int, int]:
    """The frame scaled down to ``width`` (never up; even height) as JPEG bytes, with its size."""
    h, w = frame_bgr.shape[:2]
    if width < w:
        new_h = max(2, int(round(h * width / w / 2)) * 2)
        frame_bgr = cv2.resize(frame_bgr, (width, new_h), interpolation=cv2.INTER_AREA)
        w, h = width, new_h
    ok, buf = cv2.imencode(".jpg", frame_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes(), w, h


class TilePublisher:
    def __init__(
        self,
        board: TileBoard,
        *,
        worker_id: str = "",
        fps: float = DEFAULT_FPS,
        alarm_fps: float = ALARM_FPS,
        refresh_s: float = 1.0,
        quality: int = JPEG_QUALITY,
    ) -> None:
        self.board = board
        self.worker_id = worker_id
        self.fps, self.alarm_fps, self.refresh_s, self.quality = fps, alarm_fps, refresh_s, quality
        self._wanted: dict[int, int] = {}
        self._next_refresh = 0.0
        self._last_tile: dict[int, float] = {}
        self._mailbox: dict[int, Tile] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.encoded = 0
        self.published = 0
        self._failing = False

    # --- control thread ----------------------------------------------------------------------------
    def refresh_demand(self, camera_ids: Iterable[int], *, force: bool = False) -> None:
        """Re-read which of these cameras are watched (at most every ``refresh_s`` unless forced).
        Without an answer from the board, no camera is watched: encoding stops rather than guesses."""
        now = time.monotonic()
        if not force and now < self._next_refresh:
            return
        self._next_refresh = now + self.refresh_s
        try:
            wanted = self.board.wanted(camera_ids)
        except BusError as err:
            logger.warning("worker %s: could not read tile demand: %s", self.worker_id, err)
            wanted = {}
        self._wanted = wanted
        for gone in set(self._last_tile) - set(wanted):
            del self._last_tile[gone]

    # --- frame threads -----------------------------------------------------------------------------
    def due(self, camera_id: int, *, alarm: bool = False) -> int | None:
        """The width to encode this camera's frame at when it is watched and a tile is due; else None."""
        width = self._wanted.get(camera_id)
        if width is None:
            return None
        period = 1.0 / (self.alarm_fps if alarm else self.fps)
        if time.monotonic() - self._last_tile.get(camera_id, 0.0) < period * _SLACK:
            return None
        return width

    def offer(
        self,
        camera_id: int,
        frame_bgr: np.ndarray,
        *,
        captured_at: float,
        width: int,
        detections: tuple[TileDetection, ...] = (),
        rules: Sequence[str] = (),
    ) -> Tile:
        """Encode one tile (in the caller's thread) and hand it to the posting thread."""
        self._last_tile[camera_id] = time.monotonic()
        jpeg, w, h = encode_jpeg(frame_bgr, width=width, quality=self.quality)
        fh, fw = frame_bgr.shape[:2]
        tile = Tile(
            camera_id=camera_id, captured_at=captured_at, jpeg=jpeg, width=w, height=h, detections=detections,
            rules=tuple(sorted(set(rules))), worker=self.worker_id, source_wh=(fw, fh),
        )  # fmt: skip
        self.encoded += 1
        with self._cond:
            self._mailbox[camera_id] = tile  # an unsent older tile of this camera is dropped
            self._cond.notify()
        return tile

    # --- posting thread ------------------------------------------------------------------------------
    def start(self) -> TilePublisher:
        self._thread = threading.Thread(
            target=self._run, name=f"tile-publisher-{self.worker_id}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                while not self._mailbox and not self._stop.is_set():
                    self._cond.wait(timeout=1.0)
                tiles, self._mailbox = list(self._mailbox.values()), {}
            for tile in tiles:
                try:
                    self.board.publish(tile)
                    self.published += 1
                    if self._failing:
                        logger.info("worker %s: tiles are posted again", self.worker_id)
                        self._failing = False
                except BusError as err:
                    if not self._failing:
                        logger.warning("camera %s: tile not posted: %s", tile.camera_id, err)
                        self._failing = True
                except Exception:
                    logger.exception("camera %s: tile not posted", tile.camera_id)
