"""Synthetic street clips for the demo and the end-to-end tests: a fixed camera over a road with a
fire lane and a square, pedestrians walking through, and (optionally) a cart left in the fire lane, a
market stall set up on the road or a group of people gathering on the square for a while.

Drawn with OpenCV and encoded with PyAV (H.264, fixed GOP, no B-frames, so an RTSP server can stream
it as a camera would); no footage or weights are needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
import cv2
import numpy as np

#: the fire lane, normalised (x right, y down): the lower right part of the picture
FIRE_LANE = [[0.55, 0.55], [0.95, 0.55], [0.95, 0.95], [0.55, 0.95]]
#: the road, normalised
ROAD = [[0.05, 0.30], [0.50, 0.30], [0.50, 0.60], [0.05, 0.60]]
#: the square (a crowd area), normalised: the lower left part of the picture, below the road
SQUARE = [[0.04, 0.66], [0.50, 0.66], [0.50, 0.98], [0.04, 0.98]]
#: frame fraction one drawn person covers (body and head, 640x360), for the classic crowd count
PERSON_AREA = 0.0034


@dataclass(frozen=True)
class LeftObject:
    """Something left from ``t0`` to ``t1`` seconds of the clip: a cart in the fire lane, or a market
    stall (umbrella and table) on the road."""

    t0: float
    t1: float
    kind: Literal["cart", "stall"] = "cart"


@dataclass(frozen=True)
class Crowd:
    """``people`` walk up one by one from ``t0``, stand together on the square, and leave before ``t1``."""

    t0: float
    t1: float
    people: int = 8
    step_s: float = 0.5


def zones_document(*, dwell_s: float = 5.0, crowd: bool = False, min_people: int = 5) -> dict[str, Any]:
    """The zones the clips are drawn for: fire lane and road (and the square, a crowd area, when asked)."""
    zones: list[dict[str, Any]] = [
        {"name": "消防通道", "kind": "fire_lane", "polygon": FIRE_LANE, "dwell_s": dwell_s, "coverage": 0.05, "clear_s": 3},
        {"name": "道路", "kind": "road", "polygon": ROAD, "dwell_s": max(dwell_s, 10.0), "clear_s": 3},
    ]
    if crowd:
        zones.append(
            {"name": "广场", "kind": "crowd_area", "polygon": SQUARE, "dwell_s": dwell_s, "clear_s": 4,
             "min_people": min_people, "person_area": PERSON_AREA}
        )
    return {"zones": zones}


def _background(w: int, h: int) -> np.ndarray:
    img = np.full((h, w, 3), (120, 125, 120), np.uint8)
    cv2.rectangle(img, (0, 0), (w, int(0.25 * h)), (150, 160, 170), -1)  # buildings
    for i in range(6):
        x = int(i * w / 6)
        cv2.rectangle(img, (x + 5, 5), (x + int(w / 6) - 5, int(0.22 * h)), (110 + 10 * i, 120, 140), -1)
    cv2.rectangle(img, (0, int(0.28 * h)), (w, int(0.62 * h)), (80, 80, 80), -1)  # road
    for x in range(0, w, 60):
        cv2.line(img, (x, int(0.45 * h)), (x + 30, int(0.45 * h)), (230, 230, 230), 3)
    lane = (np.array(FIRE_LANE) * [w, h]).astype(np.int32)
    cv2.fillPoly(img, [lane], (60, 60, 170))  # red-painted fire lane
    cv2.polylines(img, [lane], True, (40, 200, 230), 3)
    rng = np.random.default_rng(7)
    noise = rng.integers(-6, 7, img.shape, dtype=np.int16)
    return np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def _draw_person(img: np.ndarray, x: int, y: int, bob: int, colour: tuple[int, int, int]) -> None:
    cv2.ellipse(img, (x, y - 28 + bob), (7, 8), 0, 0, 360, (60, 80, 110), -1)
    cv2.rectangle(img, (x - 8, y - 20 + bob), (x + 8, y + 10 + bob), colour, -1)


def _draw_people(img: np.ndarray, t: float) -> None:
    h, w = img.shape[:2]
    for i in range(3):
        speed = 0.06 + 0.02 * i
        x = int(((t * speed + i * 0.33) % 1.0) * w)
        y = int((0.66 + 0.08 * i) * h) if i != 1 else int(0.35 * h)
        bob = int(3 * math.sin(t * 6 + i))
        _draw_person(img, x, y, bob, (40 + 50 * i, 90, 160 - 40 * i))


def _draw_crowd(img: np.ndarray, crowd: Crowd, t: float) -> None:
    """People standing close together on the square, in two rows; the first to come is the last to go."""
    h, w = img.shape[:2]
    for j in range(crowd.people):
        if not (crowd.t0 + j * crowd.step_s <= t < crowd.t1 - j * crowd.step_s):
            continue
        col, row = j % 5, j // 5
        x = int((0.10 + 0.075 * col + 0.03 * row) * w)
        y = int((0.80 + 0.11 * row) * h)
        bob = int(2 * math.sin(t * 2.5 + 1.7 * j))  # people standing fidget a little
        _draw_person(img, x, y, bob, (50 + 23 * j % 150, 60 + 31 * j % 140, 170 - 17 * j % 120))


def _draw_stall(img: np.ndarray) -> None:
    """A market stall on the road: a striped umbrella over a table with goods."""
    h, w = img.shape[:2]
    cx, top = int(0.26 * w), int(0.33 * h)
    rx, ry = int(0.085 * w), int(0.07 * h)
    cv2.ellipse(img, (cx, top + ry), (rx, ry), 0, 180, 360, (40, 40, 220), -1)
    for a in range(180, 360, 30):
        cv2.ellipse(img, (cx, top + ry), (rx, ry), 0, a, a + 15, (240, 240, 240), -1)
    cv2.line(img, (cx, top + ry), (cx, int(0.50 * h)), (60, 60, 60), 3)
    x0, y0, x1, y1 = cx - int(0.07 * w), int(0.47 * h), cx + int(0.07 * w), int(0.56 * h)
    cv2.rectangle(img, (x0, y0), (x1, y1), (30, 70, 120), -1)
    for i, colour in enumerate([(0, 200, 255), (0, 160, 0), (200, 80, 0), (0, 0, 180)]):
        cv2.circle(img, (x0 + 12 + i * (x1 - x0 - 24) // 3, y0 - 5), 7, colour, -1)


def _draw_cart(img: np.ndarray) -> None:
    h, w = img.shape[:2]
    x0, y0 = int(0.62 * w), int(0.62 * h)
    x1, y1 = int(0.86 * w), int(0.86 * h)
    cv2.rectangle(img, (x0, y0), (x1, y1), (30, 140, 210), -1)  # goods
    cv2.rectangle(img, (x0, y0), (x1, y1), (20, 20, 20), 3)
    for k in range(1, 4):
        cv2.line(img, (x0, y0 + k * (y1 - y0) // 4), (x1, y0 + k * (y1 - y0) // 4), (20, 90, 150), 2)
    cv2.circle(img, (x0 + 15, y1 + 8), 9, (15, 15, 15), -1)
    cv2.circle(img, (x1 - 15, y1 + 8), 9, (15, 15, 15), -1)


def _as_list(left: LeftObject | Sequence[LeftObject] | None) -> list[LeftObject]:
    if left is None:
        return []
    return [left] if isinstance(left, LeftObject) else list(left)


def frame_at(
    t: float,
    *,
    size: tuple[int, int],
    left: LeftObject | Sequence[LeftObject] | None,
    crowd: Crowd | None = None,
    background: np.ndarray | None = None,
) -> np.ndarray:
    w, h = size
    img = (background if background is not None else _background(w, h)).copy()
    for thing in _as_list(left):
        if thing.t0 <= t < thing.t1:
            (_draw_cart if thing.kind == "cart" else _draw_stall)(img)
    if crowd is not None:
        _draw_crowd(img, crowd, t)
    _draw_people(img, t)
    return img


def write_clip(
    path: Path,
    *,
    seconds: float = 60.0,
    fps: int = 10,
    size: tuple[int, int] = (640, 360),
    left: LeftObject | Sequence[LeftObject] | None = LeftObject(15.0, 45.0),
    crowd: Crowd | None = None,
    gop: int | None = None,
    codec: Literal["h264", "h265"] = "h264",
) -> Path:
    """Write an H.264 (or H.265) MP4 (fixed GOP = 1 s by default, no B-frames); returns ``path``. ``left``
    are the things left in the scene (each for its own time), ``crowd`` a group gathering on the square."""
    path.parent.mkdir(parents=True, exist_ok=True)
    background = _background(*size)
    with av.open(str(path), mode="w") as container:
        stream = _video_stream(container, codec=codec, fps=fps, size=size, gop=gop or fps)
        for i in range(int(seconds * fps)):
            img = frame_at(i / fps, size=size, left=left, crowd=crowd, background=background)
            frame = av.VideoFrame.from_ndarray(img, format="bgr24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def transcode_clip(
    source: Path,
    path: Path,
    *,
    codec: Literal["h264", "h265"] = "h264",
    size: tuple[int, int] = (640, 480),
    fps: int = 10,
) -> Path:
    """Re-encode real footage (a fixed camera's recording) the way :func:`write_clip` encodes: fixed GOP
    of 1 s, no B-frames, ``size`` and ``fps`` (the source's frames are taken in order at that rate)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(source)) as src, av.open(str(path), mode="w") as container:
        stream = _video_stream(container, codec=codec, fps=fps, size=size, gop=fps)
        for i, frame in enumerate(src.decode(video=0)):
            out = frame.reformat(width=size[0], height=size[1], format="yuv420p")
            out.pts = i
            for packet in stream.encode(out):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _video_stream(
    container: Any, *, codec: Literal["h264", "h265"], fps: int, size: tuple[int, int], gop: int
) -> Any:
    """An encoder a camera-like stream comes from: fixed GOP, no B-frames (an RTSP server streams it as is)."""
    if codec == "h265":
        stream = container.add_stream("libx265", rate=fps)
        # x265 takes its GOP and B-frames through x265-params; hvc1 is the tag players expect in MP4
        stream.options = {
            "preset": "ultrafast",  # x265 is ten times slower than x264: the demo writes this at start
            "x265-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0:log-level=error",
        }
        stream.codec_tag = "hvc1"
    else:
        stream = container.add_stream("libx264", rate=fps)
        stream.options = {"preset": "veryfast", "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "bf": "0"}
    stream.width, stream.height = size
    stream.pix_fmt = "yuv420p"
    stream.codec_context.time_base = Fraction(1, fps)
    return stream
