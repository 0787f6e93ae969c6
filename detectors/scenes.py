"""Test scenes with known truth, composited onto real footage, for the quality suite.

The base is a real fixed outdoor camera (Debian's ``vtest.avi``: pedestrians walking, parked vans),
looped at the detect rate. Onto it we paste, at known times and places:
- people cut out of the same footage against its person-free median background, and the two men
  standing in front of the bus in ultralytics' ``bus.jpg`` (cut out with GrabCut), gathering in a square;
- in the fire lane: a cardboard crate about 1.5 m across (its box covers 12 % of the lane), the van
  of vtest.avi enlarged, or the rear half of the bus of ``bus.jpg``;
- on the road: a drawn market stall, the bus, or a pile of crates;
and build hard negatives where nothing may fire (a van driving through, three people chatting, the
condition itself: a light switching, shadows or headlights sweeping).

Every scene is played under one *condition*: slow illumination drift, a sudden lighting change,
sensor noise, low-bitrate H.264 or H.265 (the frames go through PyAV's libx264 / libx265 and back),
camera jitter of ±2 px, night (a grey infrared picture with noise), rain streaks, headlights sweeping,
moving shadows, a far view (the footage shrunk to a quarter of the frame, so every object is small), or
passers-by occluding the object; ``clear`` is the footage as it is. Scenes are deterministic: every
random draw is seeded with crc32 of the scene's name. The footage is never committed: the caller
decodes it from the installed package.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
import cv2
import numpy as np

W, H = 768, 576
LANE = [(460, 230), (740, 230), (740, 400), (460, 400)]
ROAD = [(0, 165), (420, 165), (420, 295), (0, 295)]
CROWD = [(15, 360), (345, 360), (345, 566), (15, 566)]
FIRE, ROAD_RULE, CROWD_RULE = "fire_lane_blockage", "road_occupation", "crowding"
RULES = (FIRE, ROAD_RULE, CROWD_RULE)
DWELL_S = {FIRE: 10.0, ROAD_RULE: 10.0, CROWD_RULE: 5.0}
CONDITIONS = (
    "clear",
    "drift",
    "sudden_light",
    "noise",
    "h264",
    "h265",
    "jitter",
    "night",
    "rain",
    "headlights",
    "shadows",
    "far",
    "occlusion",
)
Effect = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]


@dataclass
class Sprite:
    """A pasted thing: BGR pixels and a 0..1 alpha mask."""

    bgr: np.ndarray
    alpha: np.ndarray

    @classmethod
    def solid(cls, bgr: np.ndarray) -> Sprite:
        return cls(bgr, np.ones(bgr.shape[:2], np.float32))

    def scaled(self, factor: float) -> Sprite:
        h, w = self.bgr.shape[:2]
        size = (max(1, round(w * factor)), max(1, round(h * factor)))
        return Sprite(
            cv2.resize(self.bgr, size, interpolation=cv2.INTER_AREA),
            cv2.resize(self.alpha, size, interpolation=cv2.INTER_AREA),
        )


@dataclass
class Placement:
    sprite: Sprite
    x: int
    y: int
    t0: float
    t1: float
    jitter: int = 0
    vx: float = 0.0  # pixels per second, for moving things
    front: bool = False  # drawn after everything else (a passer-by between the camera and the object)


@dataclass
class Episode:
    rule: str
    zone: str
    onset_t: float
    end_t: float
    k: int | None = None


@dataclass
class Scene:
    name: str
    duration_s: float
    placements: list[Placement] = field(default_factory=list)
    truth: list[Episode] = field(default_factory=list)
    offset_s: float = 0.0
    condition: str = "clear"
    effect: Effect | None = None
    #: the whole view shrunk into a corner of a wider one (``far``): zones and person sizes follow
    view_scale: float = 1.0
    codec: tuple[str, int] | None = None  # (encoder, bit rate) the frames go through

    @property
    def negative(self) -> bool:
        return not self.truth


def zones_file(*, person_area: float, min_people: int = 6, scale: float = 1.0) -> dict[str, Any]:
    """The zones every scene is analysed with (pixel polygons of the 768x576 view, normalised);
    ``scale`` < 1 for a view shrunk into the top-left corner of the frame."""

    def norm(poly: list[tuple[int, int]]) -> list[list[float]]:
        return [[round(x * scale / W, 4), round(y * scale / H, 4)] for x, y in poly]

    return {
        "zones": [
            {"name": "fire lane", "kind": "fire_lane", "polygon": norm(LANE), "dwell_s": 10, "clear_s": 8},
            {"name": "road", "kind": "road", "polygon": norm(ROAD), "dwell_s": 10, "clear_s": 8},
            {
                "name": "square",
                "kind": "crowd_area",
                "polygon": norm(CROWD),
                "dwell_s": 5,
                "clear_s": 4,
                "min_people": min_people,
                "person_area": round(person_area * scale * scale, 6),
            },
        ]
    }


# --- sprites ----------------------------------------------------------------------------------------


def median_background(frames: Sequence[np.ndarray]) -> np.ndarray:
    return np.median(np.stack(frames[:: max(1, len(frames) // 40)]), axis=0).astype(np.uint8)


def cut_people(frames: Sequence[np.ndarray], background: np.ndarray, *, limit: int = 40) -> list[Sprite]:
    """Isolated walkers cut out against the median background, with their masks."""
    out: list[Sprite] = []
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    for frame in frames[:: max(1, len(frames) // 60)]:
        diff = cv2.absdiff(frame, background).max(axis=2)
        mask = cv2.morphologyEx((diff > 35).astype(np.uint8), cv2.MORPH_CLOSE, kernel)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
        for i in range(1, n):
            x, y, w, h, area = (int(v) for v in stats[i])
            if not (70 <= h <= 150 and 25 <= w <= 70 and 1.6 <= h / w <= 4.0 and area > 0.45 * w * h):
                continue
            if x < 3 or y < 3 or x + w > W - 3 or y + h > H - 3:
                continue
            alpha = cv2.GaussianBlur((labels[y : y + h, x : x + w] == i).astype(np.float32), (3, 3), 0)
            out.append(Sprite(frame[y : y + h, x : x + w].copy(), alpha))
            if len(out) >= limit:
                return out
    return out


def grabcut_sprite(image: np.ndarray, box_xyxy: tuple[int, int, int, int], *, height: int) -> Sprite:
    """The object inside ``box_xyxy`` of a photo, cut out with GrabCut and scaled to ``height`` pixels."""
    x1, y1, x2, y2 = box_xyxy
    pad = 16
    crop = image[max(y1 - pad, 0) : y2 + pad, max(x1 - pad, 0) : x2 + pad]
    factor = 320 / (y2 - y1)  # GrabCut needs some resolution; the cut-out is scaled down after
    crop = cv2.resize(crop, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    mask = np.zeros(crop.shape[:2], np.uint8)
    p = round(pad * factor)
    rect = (p, p, crop.shape[1] - 2 * p, crop.shape[0] - 2 * p)
    cv2.setRNGSeed(0)  # GrabCut's GMMs start from k-means: the same cut-out every run
    cv2.grabCut(
        crop,
        mask,
        rect,
        np.zeros((1, 65), np.float64),
        np.zeros((1, 65), np.float64),
        5,
        cv2.GC_INIT_WITH_RECT,
    )
    alpha = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.float32)
    ys, xs = np.nonzero(alpha > 0.5)
    if len(ys) == 0:
        raise ValueError(f"GrabCut found nothing in {box_xyxy}")
    cut = Sprite(
        crop[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].copy(),
        alpha[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].copy(),
    )
    return cut.scaled(height / cut.bgr.shape[0])


def bus_people(bus_jpg: np.ndarray) -> list[Sprite]:
    """The two men standing in front of the bus in ultralytics' bus.jpg, at vtest.avi's person size."""
    return [
        grabcut_sprite(bus_jpg, (55, 395, 255, 900), height=105),
        grabcut_sprite(bus_jpg, (222, 400, 345, 865), height=100),
    ]


def bus_sprite(bus_jpg: np.ndarray) -> Sprite:
    """The rear half of the bus in bus.jpg (wheel, door, "cero emisiones"), about 2.5 m across the lane."""
    crop = bus_jpg[225:705, 345:770]
    return Sprite.solid(cv2.resize(crop, (130, 147), interpolation=cv2.INTER_AREA))


def van_sprite(background: np.ndarray) -> Sprite:
    """The white van parked at the top right of vtest's view, enlarged as if nearer the camera."""
    return Sprite.solid(cv2.resize(background[50:100, 650:725], (150, 100), interpolation=cv2.INTER_CUBIC))


def crate_sprite(seed: int = 7) -> Sprite:
    """A cardboard crate about 1.5 m across: a front face and a lit top, packing tape, printed marks.
    85 x 68 px, its box covers 12 % of the fire lane."""
    rng = np.random.default_rng(seed)
    w, h, top = 85, 68, 16
    s = np.zeros((h, w, 3), np.float32)
    s[:top] = (120, 170, 205)  # top face, lit
    s[top:] = (60, 105, 150)  # front face, cardboard brown
    s += rng.normal(0, 6, s.shape)  # corrugated board is not flat colour
    s[:, w // 2 - 4 : w // 2 + 4] = (150, 175, 190)  # tape
    cv2.rectangle(s, (8, top + 10), (30, top + 30), (30, 30, 30), 2)  # printed "this way up" marks
    cv2.line(s, (52, top + 14), (52, top + 40), (30, 30, 30), 2)
    cv2.line(s, (66, top + 14), (66, top + 40), (30, 30, 30), 2)
    cv2.rectangle(s, (0, 0), (w - 1, h - 1), (35, 55, 80), 2)
    cv2.line(s, (0, top), (w - 1, top), (40, 70, 100), 2)
    return Sprite.solid(np.clip(s, 0, 255).astype(np.uint8))


def crate_pile() -> Sprite:
    """Goods piled on the road: three crates, two below and one on top."""
    c = crate_sprite(3).scaled(0.8)
    ch, cw = c.bgr.shape[:2]
    bgr = np.zeros((2 * ch, 2 * cw, 3), np.uint8)
    alpha = np.zeros((2 * ch, 2 * cw), np.float32)
    for x, y in ((0, ch), (cw, ch), (cw // 2, 0)):
        bgr[y : y + ch, x : x + cw] = c.bgr
        alpha[y : y + ch, x : x + cw] = 1.0
    return Sprite(bgr, alpha)


def stall_sprite() -> Sprite:
    """A market stall: a striped umbrella over a table with goods."""
    s = np.zeros((120, 140, 3), np.uint8)
    alpha = np.zeros((120, 140), np.float32)
    cv2.ellipse(s, (70, 45), (68, 40), 0, 180, 360, (40, 40, 220), -1)
    for a in range(180, 360, 30):
        cv2.ellipse(s, (70, 45), (68, 40), 0, a, a + 15, (240, 240, 240), -1)
    cv2.ellipse(alpha, (70, 45), (68, 40), 0, 180, 360, 1.0, -1)
    cv2.line(s, (70, 45), (70, 80), (60, 60, 60), 3)
    cv2.line(alpha, (70, 45), (70, 80), 1.0, 3)
    cv2.rectangle(s, (15, 75), (125, 110), (30, 70, 120), -1)
    cv2.rectangle(alpha, (15, 75), (125, 110), 1.0, -1)
    for i, colour in enumerate([(0, 200, 255), (0, 160, 0), (200, 80, 0), (0, 0, 180)]):
        cv2.circle(s, (30 + 25 * i, 72), 9, colour, -1)
        cv2.circle(alpha, (30 + 25 * i, 72), 9, 1.0, -1)
    return Sprite(s, alpha)


# --- rendering --------------------------------------------------------------------------------------


def _paste(img: np.ndarray, sprite: Sprite, x: int, y: int) -> None:
    h, w = sprite.bgr.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if x1 <= x0 or y1 <= y0:
        return
    a = sprite.alpha[y0 - y : y1 - y, x0 - x : x1 - x, None]
    src = sprite.bgr[y0 - y : y1 - y, x0 - x : x1 - x].astype(np.float32)
    dst = img[y0:y1, x0:x1].astype(np.float32)
    img[y0:y1, x0:x1] = (a * src + (1 - a) * dst).astype(np.uint8)


def _far_view(img: np.ndarray, footage: Sequence[np.ndarray], index: int, scale: float) -> np.ndarray:
    """The scene shrunk into the top-left corner of a wider view whose rest is the same street at other
    moments: every object, person and zone is ``scale`` times smaller."""
    out = np.empty_like(img)
    n = len(footage)
    tiles = [
        img,
        footage[(index + n // 4) % n],
        footage[(index + n // 2) % n],
        footage[(index + 3 * n // 4) % n],
    ]
    tw, th = round(W * scale), round(H * scale)
    cells = [(0, 0), (tw, 0), (0, th), (tw, th)]
    for tile, (x, y) in zip(tiles, cells, strict=True):
        cw, ch = min(tw, W - x), min(th, H - y)
        if cw > 0 and ch > 0:
            out[y : y + ch, x : x + cw] = cv2.resize(tile, (tw, th), interpolation=cv2.INTER_AREA)[:ch, :cw]
    return out


def _through_codec(
    frames: Iterable[tuple[np.ndarray, float]], *, encoder: str, bit_rate: int, fps: float
) -> Iterator[tuple[np.ndarray, float]]:
    """Encode the frames at ``bit_rate`` with ``encoder`` (libx264 / libx265) and decode them again, one
    packet per frame (zero-latency tuning, as cameras stream)."""
    enc = av.CodecContext.create(encoder, "w")
    enc.width, enc.height, enc.pix_fmt = W, H, "yuv420p"
    enc.time_base = Fraction(1, round(fps))
    enc.framerate = Fraction(round(fps))
    enc.bit_rate = bit_rate
    enc.gop_size = round(4 * fps)  # a keyframe every 4 s
    options = {"preset": "veryfast", "tune": "zerolatency"}
    if encoder == "libx265":
        options["x265-params"] = "log-level=none"
    enc.options = options
    dec = av.CodecContext.create("hevc" if encoder == "libx265" else "h264", "r")
    times: list[float] = []
    for i, (img, t) in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(img, format="bgr24")
        frame.pts = i
        times.append(t)
        for packet in enc.encode(frame):
            for out in dec.decode(packet):
                yield out.to_ndarray(format="bgr24"), times.pop(0)
    for packet in enc.encode(None):
        for out in dec.decode(packet):
            yield out.to_ndarray(format="bgr24"), times.pop(0)
    for out in dec.decode(None):
        yield out.to_ndarray(format="bgr24"), times.pop(0)


def _composite(
    scene: Scene, footage: Sequence[np.ndarray], *, fps: float, footage_fps: float
) -> Iterator[tuple[np.ndarray, float]]:
    # crc32, not hash(): str hashes change per process (PYTHONHASHSEED), and so did every run's jitter.
    seed = zlib.crc32(scene.name.encode())
    rng = np.random.default_rng(seed)
    ordered = sorted(scene.placements, key=lambda p: (p.front, p.y + p.sprite.bgr.shape[0]))
    for i in range(int(scene.duration_s * fps)):
        t = i / fps
        index = int((t + scene.offset_s) * footage_fps) % len(footage)
        img = footage[index].copy()
        for p in ordered:
            if p.t0 <= t < p.t1:
                dx, dy = rng.integers(-p.jitter, p.jitter + 1, 2) if p.jitter else (0, 0)
                _paste(img, p.sprite, int(p.x + p.vx * (t - p.t0) + dx), int(p.y + dy))
        if scene.view_scale != 1.0:
            img = _far_view(img, footage, index, scene.view_scale)
        if scene.effect is not None:
            img = scene.effect(img, t, np.random.default_rng([seed, i]))
        yield img, t


def render(
    scene: Scene, footage: Sequence[np.ndarray], *, fps: float = 2.0, footage_fps: float = 10.0
) -> Iterator[tuple[np.ndarray, float]]:
    """(BGR frame, t) pairs of ``scene`` at ``fps``; the footage loops."""
    frames = _composite(scene, footage, fps=fps, footage_fps=footage_fps)
    if scene.codec is None:
        return frames
    encoder, bit_rate = scene.codec
    return _through_codec(frames, encoder=encoder, bit_rate=bit_rate, fps=fps)


# --- conditions -------------------------------------------------------------------------------------


def _gain(img: np.ndarray, bgr_gain: tuple[float, float, float] | float) -> np.ndarray:
    return np.clip(img.astype(np.float32) * np.asarray(bgr_gain, np.float32), 0, 255).astype(np.uint8)


def _drift(img: np.ndarray, t: float, rng: np.random.Generator) -> np.ndarray:
    """Dusk falling (45 % darker over a minute, the light reddening) under passing clouds (±12 %)."""
    dusk = 1.0 - 0.45 * min(t / 60.0, 1.0)
    cloud = 1.0 + 0.12 * np.sin(2 * np.pi * t / 17.0)
    g = dusk * cloud
    return _gain(img, (g * (1.0 - 0.25 * (1 - dusk)), g, g))


def _sudden(img: np.ndarray, t: float, rng: np.random.Generator) -> np.ndarray:
    """Street lights switching: the picture drops to 55 % at 17 s and comes back at 31 s."""
    return _gain(img, 0.55 if 17.0 <= t < 31.0 else 1.0)


def _noise(img: np.ndarray, t: float, rng: np.random.Generator) -> np.ndarray:
    """Sensor noise: Gaussian, sigma 12, per channel."""
    return np.clip(img.astype(np.int16) + rng.normal(0, 12, img.shape).astype(np.int16), 0, 255).astype(
        np.uint8
    )


def _jitter(img: np.ndarray, t: float, rng: np.random.Generator) -> np.ndarray:
    """A pole swaying in the wind: the whole picture shifts by up to 2 px each frame."""
    dx, dy = (int(v) for v in rng.integers(-2, 3, 2))
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(img, m, (W, H), borderMode=cv2.BORDER_REPLICATE)


def _night(img: np.ndarray, t: float, rng: np.random.Generator) -> np.ndarray:
    """An infrared night picture: grey, low contrast, soft, with strong sensor noise."""
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32)
    gray = cv2.GaussianBlur(gray, (3, 3), 0) * 0.45 + 25
    gray += rng.normal(0, 9, gray.shape)
    out = np.clip(gray, 0, 255).astype(np.uint8)
    return cv2.cvtColor(out, cv2.COLOR_GRAY2BGR)


def _rain(img: np.ndarray, t: float, rng: np.random.Generator) -> np.ndarray:
    """Rain: a dull picture crossed by 350 bright streaks a frame, falling at a slant."""
    out = cv2.GaussianBlur(img, (3, 3), 0).astype(np.float32) * 0.85
    streaks = np.zeros((H, W), np.float32)
    n = 350
    xs, ys = rng.integers(0, W, n), rng.integers(0, H, n)
    lengths = rng.integers(12, 30, n)
    for x, y, length in zip(xs, ys, lengths, strict=True):
        cv2.line(streaks, (int(x), int(y)), (int(x + 0.3 * length), int(y + length)), 1.0, 1)
    streaks = cv2.GaussianBlur(streaks, (3, 3), 0)
    out += 70 * streaks[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)


def _headlights(img: np.ndarray, t: float, rng: np.random.Generator) -> np.ndarray:
    """Dusk, and every 9 s a car's headlights sweep along the road and over the lane: two bright pools
    of light moving at 120 px/s."""
    out = img.astype(np.float32) * 0.6
    phase = t % 9.0
    cx = -200 + 120 * phase
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    light = np.zeros((H, W), np.float32)
    for x0, y0, rx, ry in ((cx, 250, 170, 70), (cx - 60, 330, 150, 60)):
        light += np.exp(-(((xx - x0) / rx) ** 2 + ((yy - y0) / ry) ** 2))
    out += 150 * np.clip(light, 0, 1.2)[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)


def _shadows(img: np.ndarray, t: float, rng: np.random.Generator) -> np.ndarray:
    """Shadows of clouds and trees drifting over the street at 12 px/s (35 % darker, soft edges)."""
    shade = np.zeros((H, W), np.float32)
    for x0, y0, rx, ry in (
        (100, 250, 130, 80),
        (450, 420, 160, 90),
        (650, 200, 110, 120),
        (250, 480, 90, 70),
    ):
        x = (x0 + 12 * t) % (W + 300) - 150
        cv2.ellipse(shade, (int(x), y0), (rx, ry), 15, 0, 360, 1.0, -1)
    shade = cv2.GaussianBlur(shade, (0, 0), 15)  # one sun: overlapping shadows are no darker
    return np.clip(img.astype(np.float32) * (1 - 0.35 * shade[..., None]), 0, 255).astype(np.uint8)


EFFECTS: dict[str, Effect] = {
    "drift": _drift,
    "sudden_light": _sudden,
    "noise": _noise,
    "jitter": _jitter,
    "night": _night,
    "rain": _rain,
    "headlights": _headlights,
    "shadows": _shadows,
}
CODECS = {"h264": ("libx264", 80_000), "h265": ("libx265", 50_000)}  # bits/s at 2 fps: ~1 Mb/s at 25 fps


# --- the suite --------------------------------------------------------------------------------------


@dataclass
class Props:
    """What the scenes are built from."""

    people: list[Sprite]
    crate: Sprite
    van: Sprite
    bus: Sprite
    stall: Sprite
    pile: Sprite
    person_area: float


def build_props(footage: Sequence[np.ndarray], bus_jpg: np.ndarray) -> Props:
    background = median_background(footage)
    people = cut_people(footage, background)
    if len(people) < 10:
        raise ValueError(f"only {len(people)} people could be cut out of the footage")
    person_area = float(np.mean([p.alpha.sum() for p in people])) / (W * H)
    people += bus_people(bus_jpg)
    return Props(
        people,
        crate_sprite(),
        van_sprite(background),
        bus_sprite(bus_jpg),
        stall_sprite(),
        crate_pile(),
        person_area,
    )


def _crowd(
    people: list[Sprite],
    k: int,
    *,
    t0: float,
    t1: float,
    seed: int,
    step_s: float = 1.0,
    prefer: Sequence[int] = (),
) -> list[Placement]:
    """k people walking up one by one from t0, standing close together, leaving one by one before t1."""
    rng = np.random.default_rng(seed)
    picks = list(prefer) + list(rng.choice(len(people), size=k - len(prefer), replace=len(people) < k))
    cols = 5
    out = []
    for j, idx in enumerate(picks):
        sprite = people[int(idx)]
        h, w = sprite.bgr.shape[:2]
        cx = 50 + (j % cols) * 60 + int(rng.integers(-8, 9))
        bottom = 450 + (j // cols) * 70 + int(rng.integers(-8, 9))
        out.append(Placement(sprite, cx - w // 2, bottom - h, t0 + j * step_s, t1 - j * step_s, jitter=2))
    return out


def _passers_by(
    people: list[Sprite],
    *,
    x0: int,
    x1: int,
    bottom: int,
    t0: float,
    t1: float,
    seed: int,
    every_s: float = 5.0,
    speed: float = 45.0,
) -> list[Placement]:
    """People walking across x0..x1 in front of an object (feet at ``bottom``), one every ``every_s``."""
    rng = np.random.default_rng(seed)
    out = []
    t = t0
    while t < t1:
        sprite = people[int(rng.integers(0, len(people)))]
        h, w = sprite.bgr.shape[:2]
        rightward = bool(rng.integers(0, 2))
        start = x0 - w if rightward else x1
        out.append(
            Placement(
                sprite,
                start,
                bottom - h,
                t,
                t + (x1 - x0 + w) / speed,
                vx=speed if rightward else -speed,
                front=True,
            )
        )
        t += every_s
    return out


# Which object each condition puts in the fire lane and on the road (every kind under several
# conditions; the crate, the hardest, under the most).
FIRE_OBJECT = {
    "clear": "crate",
    "drift": "van",
    "sudden_light": "crate",
    "noise": "bus",
    "h264": "crate",
    "h265": "van",
    "jitter": "crate",
    "night": "van",
    "rain": "crate",
    "headlights": "bus",
    "shadows": "crate",
    "far": "crate",
    "occlusion": "crate",
}
ROAD_OBJECT = {
    "clear": "stall",
    "drift": "pile",
    "sudden_light": "bus",
    "noise": "stall",
    "h264": "pile",
    "h265": "stall",
    "jitter": "bus",
    "night": "stall",
    "rain": "pile",
    "headlights": "stall",
    "shadows": "pile",
    "far": "stall",
    "occlusion": "pile",
}


def condition_scenes(condition: str, props: Props) -> list[Scene]:
    """Four scenes under ``condition``: one per rule with one true episode, and a hard negative."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; one of {', '.join(CONDITIONS)}")
    ci = CONDITIONS.index(condition)
    extra: dict[str, Any] = {
        "condition": condition,
        "effect": EFFECTS.get(condition),
        "codec": CODECS.get(condition),
    }
    if condition == "far":
        extra["view_scale"] = 0.5
    occl = condition == "occlusion"
    p = props

    fire_kind = FIRE_OBJECT[condition]
    sprite = {"crate": p.crate, "van": p.van, "bus": p.bus}[fire_kind]
    sh, sw = sprite.bgr.shape[:2]
    fx, fy = 600 - sw // 2 + 10 * (ci % 3), 365 - sh  # feet on the lane's lower half
    fire = [Placement(sprite, fx, fy, 8, 36)]
    if occl:
        fire += _passers_by(p.people, x0=460, x1=740, bottom=fy + sh + 12, t0=9, t1=36, seed=ci)

    road_kind = ROAD_OBJECT[condition]
    sprite = {"stall": p.stall, "pile": p.pile, "bus": p.bus}[road_kind]
    sh, sw = sprite.bgr.shape[:2]
    rx, ry = 90 + 40 * (ci % 4), 285 - sh
    road = [Placement(sprite, rx, ry, 8, 36)]
    if occl:
        road += _passers_by(p.people, x0=0, x1=420, bottom=292, t0=9, t1=36, seed=100 + ci, every_s=6.0)

    k = 8 if ci % 2 else 10
    crowd = _crowd(p.people, k, t0=6, t1=38 + k, seed=ci, prefer=(len(p.people) - 2, len(p.people) - 1))
    if occl:
        crowd += _passers_by(p.people, x0=15, x1=345, bottom=566, t0=8, t1=40, seed=200 + ci, every_s=4.0)

    negative = [
        Placement(p.van, -150, 262, 6, 22, vx=60.0),  # drives through the lane's row
        Placement(p.bus, 440, 285 - 147, 24, 40, vx=-40.0),  # and along the road
        *_crowd(p.people, 3, t0=5, t1=40, seed=300 + ci),  # three people chat in the square
    ]
    offset = 7.0 * ci
    return [
        Scene(
            f"{condition}: {fire_kind} in the fire lane",
            52,
            fire,
            [Episode(FIRE, "fire lane", 8, 36)],
            offset_s=offset,
            **extra,
        ),
        Scene(
            f"{condition}: {road_kind} on the road",
            52,
            road,
            [Episode(ROAD_RULE, "road", 8, 36)],
            offset_s=offset + 20,
            **extra,
        ),
        Scene(
            f"{condition}: crowd of {k}",
            50,
            crowd,
            [Episode(CROWD_RULE, "square", 11, 33 + k, k=k)],
            offset_s=offset + 40,
            **extra,
        ),
        Scene(f"{condition}: negative", 46, negative, offset_s=offset + 60, **extra),
    ]


def build_suite(props: Props, conditions: Sequence[str] = CONDITIONS) -> list[Scene]:
    """Every condition's four scenes (52 for all thirteen)."""
    return [scene for c in conditions for scene in condition_scenes(c, props)]


# --- playing and scoring ----------------------------------------------------------------------------


@dataclass
class Run:
    """One scene played through a pipeline: its rule events and the crowding rule's head counts."""

    scene: Scene
    events: list[Any]
    counts: list[tuple[float, int]]
    frames: int
    detected: int


def play(scene: Scene, footage: Sequence[np.ndarray], detector: Any, *, person_area: float) -> Run:
    """Run ``scene`` through the worker's exact pipeline (motion gate, detector, tracker, rules) at 2 fps."""
    from detectors.pipeline import Pipeline
    from detectors.rules import CrowdingRule
    from models.grid.zonespec import parse_zones

    zones = parse_zones(zones_file(person_area=person_area, scale=scene.view_scale))
    pipeline = Pipeline(zones, detector, stream=scene.name)
    crowd_rule = next(r for r in pipeline.rules if isinstance(r, CrowdingRule))
    events: list[Any] = []
    counts: list[tuple[float, int]] = []
    last_t = 0.0
    try:
        for frame, t in render(scene, footage):
            events += pipeline.process(frame, t)
            last_t = t
            if pipeline.last_tracked is not None:
                counts.append(
                    (t, crowd_rule.count(pipeline.last_tracked, (frame.shape[1], frame.shape[0]))[0])
                )
        events += pipeline.flush(last_t)
    finally:
        detector.forget(scene.name)
    for e in events:
        e.evidence = None  # a scene's snapshots would hold hundreds of MB over a suite
    return Run(scene, events, counts, pipeline.frames, pipeline.detections_run)


def _tally() -> dict[str, Any]:
    return {"tp": 0, "fp": 0, "fn": 0, "delays": [], "late": []}


def score(runs: Sequence[Run]) -> dict[str, Any]:
    """Episode-level precision, recall and onset-to-``started`` delay, per rule and per condition.

    A ``started`` matches a true episode of the same rule and zone between onset - 2 s and end + 5 s;
    every other ``started`` is a false positive (on a hard negative, also a negative event).
    """
    per: dict[str, dict[str, dict[str, Any]]] = {}
    total = {r: _tally() for r in RULES}
    negative_events: dict[str, int] = {}
    count_ok: list[bool] = []
    for run in runs:
        scene = run.scene
        cond = per.setdefault(scene.condition, {r: _tally() for r in RULES})
        negative_events.setdefault(scene.condition, 0)
        started = [e for e in run.events if e.type == "started"]
        used: set[int] = set()
        for ep in scene.truth:
            match = next(
                (
                    i
                    for i, e in enumerate(started)
                    if i not in used
                    and e.rule == ep.rule
                    and e.zone == ep.zone
                    and ep.onset_t - 2 <= e.t <= ep.end_t + 5
                ),
                None,
            )
            for tally in (cond[ep.rule], total[ep.rule]):
                if match is None:
                    tally["fn"] += 1
                else:
                    tally["tp"] += 1
                    tally["delays"].append(started[match].t - ep.onset_t)
                    tally["late"].append(started[match].t - ep.onset_t - DWELL_S[ep.rule])
            if match is not None:
                used.add(match)
            if ep.k:
                hold = [c for t, c in run.counts if ep.onset_t + 4 <= t <= ep.end_t - 2]
                count_ok.extend(abs(c - ep.k) <= 0.2 * ep.k for c in hold)
        for i, e in enumerate(started):
            if i not in used:
                cond[e.rule]["fp"] += 1
                total[e.rule]["fp"] += 1
                negative_events[scene.condition] += scene.negative
    for tally in [*total.values(), *(t for c in per.values() for t in c.values())]:
        tp, fp, fn = tally["tp"], tally["fp"], tally["fn"]
        tally["precision"] = tp / (tp + fp) if tp + fp else None
        tally["recall"] = tp / (tp + fn) if tp + fn else None
        tally["delay_max_s"] = max(tally["delays"]) if tally["delays"] else None
        tally["late_max_s"] = max(tally["late"]) if tally["late"] else None
    return {
        "per_condition": per,
        "total": total,
        "hard_negative_events": negative_events,
        "crowd_count_within_20pct": float(np.mean(count_ok)) if count_ok else None,
    }


#: the goals: minimum precision and recall per rule in every condition group
GOAL = {FIRE: 0.9, ROAD_RULE: 0.9, CROWD_RULE: 0.8}
LATE_MAX_S = 5.0


def misses(result: dict[str, Any], *, skip: Sequence[str] = ()) -> list[str]:
    """The goals ``result`` (from :func:`score`) misses, one line each; empty when all are met."""
    out = []
    for condition, rules in result["per_condition"].items():
        if condition in skip:
            continue
        for rule, tally in rules.items():
            for what in ("precision", "recall"):
                value = tally[what]
                if value is not None and value < GOAL[rule]:
                    out.append(f"{condition} {rule} {what} {value:.2f} < {GOAL[rule]}")
            if tally["late_max_s"] is not None and tally["late_max_s"] > LATE_MAX_S:
                out.append(f"{condition} {rule} started {tally['late_max_s']:.1f} s after the dwell")
    for condition, n in result["hard_negative_events"].items():
        if n and condition not in skip:
            out.append(f"{condition}: {n} events on the hard negative")
    return out
