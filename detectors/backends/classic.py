"""The classic backend: OpenCV and numpy only, no weights. The zero-download fallback.

Two background models per camera, updated with time constants in seconds (so the detect rate does not
change their meaning):
- fast (``fast_tau_s``, about a second): what moves;
- slow (``slow_tau_s``, minutes): the empty scene.
A pixel that differs from the slow model but not from the fast one has stopped there. Once it has
been so for ``static_s`` it is *latched*: the slow model stops learning under it, so the object never
fades into the background however long it stays, until the pixels match the background again (the
object left). A blob whose outline is an edge in the background but not in the frame is a ghost
(something that stood in the first frames, or a parked van that left) and is learnt into the
background at once; the outline, not the inside, decides, because a plain object (a table top) on a
textured road has less structure inside than the road it hides and is still real.
A blob reports how long its pixels have stood still (the median of their accumulated still time, a
lower bound: time under passers-by is not counted) in ``data["static_s"]``, so the tracker's
stationary clock starts when the object stopped, not ``static_s`` later when it was latched. Each
pixel also remembers since when it has differed from the slow model. The foreground that has stayed at least ``occupancy_s`` is returned as an occupancy mask, from which the
crowding rule estimates a head count: people standing together stay, walkers crossing do not.

People standing still are foreground that stays too, but they fidget: each pixel keeps a recent rate of
change while it is foreground (``restless_tau_s``; the frame it turns foreground is not counted, so an
object's arrival is not). A blob whose mean rate exceeds ``restless_max`` is reported with
``data["still_reset"]``: its standing clock restarts (on vtest.avi two people talking by a sign score
0.10-0.19, a drawn stall with walkers crossing in front of it at most 0.08). Changes caused by someone
walking past in front (a moving region lying largely outside what stands, and where it just was) and
changes a smooth change of light explains (headlights, a shadow passing) are not counted.

What the weather and the camera do is not an object:
- a shaking camera (a pole in the wind): each frame is shifted back onto the slow model by the
  whole-picture shift that phase correlation finds (``stabilise_px``);
- global light (clouds, street lights switching): every comparison uses the frame scaled by the
  median gain against the slow model;
- shadows: a pixel darker than the background by a ratio in ``shadow_ratio`` with the same hue and
  texture is background in shade; the other way round (the background was learnt in a shadow that
  moved on) where the background has texture to compare; and a static blob made mostly
  (``relit_max``) of background under other light is learnt away like a ghost.
Measured on the quality suite (``bench/bench_quality.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import cv2
import numpy as np
from pydantic import Field

from detectors.backends.base import BackendConfigBase, Detector, FrameInput, register
from detectors.detections import Detections

logger = logging.getLogger(__name__)
STATIC_CLASS = "static_object"



def exceeds(a: np.ndarray, b: np.ndarray, threshold: float) -> np.ndarray:
    """Pixels where any colour channel of ``a`` and ``b`` differs by more than ``threshold``: the same mask as
    ``np.abs(a - b).max(axis=2) > threshold``, through OpenCV's absdiff (no temporaries: ~20x faster)."""
    if a.dtype != b.dtype:
        b = b.astype(a.dtype)
    d = cv2.absdiff(a, b)
    return np.maximum(np.maximum(d[..., 0], d[..., 1]), d[..., 2]) > threshold

class ClassicConfig(BackendConfigBase):
    type: Literal["classic"] = "classic"
    work_width: int = Field(320, ge=80, le=1920, description="Frames are analysed at this width.")
    fast_tau_s: float = Field(1.0, gt=0, le=60, description="Time constant of the fast background.")
    slow_tau_s: float = Field(120.0, gt=0, le=86_400, description="Time constant of the slow background.")
    warmup_s: float = Field(4.0, ge=0, le=600, description="Seconds learning the scene before reporting.")
    threshold: int = Field(28, ge=1, le=255, description="Colour difference that counts as foreground.")
    static_s: float = Field(2.0, ge=0, le=600, description="Seconds a pixel must stand still to be latched.")
    release_s: float = Field(
        2.0, ge=0, le=600, description="Seconds a latched pixel must match the background."
    )
    min_area: float = Field(0.0015, gt=0, le=1, description="Minimum static blob area (fraction of frame).")
    relight_fraction: float = Field(
        0.5, gt=0, le=1, description="Foreground share that means a scene change."
    )
    occupancy_s: float = Field(
        2.0, ge=0, le=600, description="Seconds foreground must stay to count as occupancy (crowding)."
    )
    restless_tau_s: float = Field(
        4.0, gt=0, le=600, description="Time constant of each pixel's recent-change rate inside foreground."
    )
    stabilise_px: float = Field(
        3.0,
        ge=0,
        le=32,
        description="Largest whole-picture shift (work pixels) undone before comparing (camera shake); 0: off.",
    )
    light_sigma_px: float = Field(
        12.0, gt=0, le=100, description="Scale (work pixels) of light changes not counted as fidgeting."
    )
    shadow_ratio: tuple[float, float] = Field(
        (0.5, 0.92),
        description="Brightness ratios to the background that may be a shadow (same hue and "
        "texture), not an object; (0, 0): off.",
    )
    relit_max: float = Field(
        0.8, gt=0, le=1.01, description="A static blob this much made of relit background is learnt away."
    )
    restless_max: float = Field(
        0.095,
        ge=0,
        le=1,
        description="A blob whose pixels changed more often than this recently (mean rate per detect) is alive "
        "(people standing fidget), not a static object: its standing clock restarts.",
    )


class _SceneModel:
    """The per-camera state of the classic detector."""

    def __init__(self, img: np.ndarray, t: float) -> None:
        self.fast = img.copy()
        self.slow = img.copy()
        self.start_t = t
        self.last_t = t
        shape = img.shape[:2]
        self.age = np.zeros(shape, np.float32)
        self.clear = np.zeros(shape, np.float32)
        self.latched = np.zeros(shape, bool)
        self.fg_since = np.full(shape, t, np.float64)  # since when each pixel differs from the slow model
        self.prev = img.copy()
        self.prev_fg = np.zeros(shape, bool)
        self.change = np.zeros(shape, np.float32)  # recent rate of change while foreground (0..1)
        self.prev_passing = np.zeros(shape, bool)
        self.relit = np.zeros(shape, bool)  # the background under other light (this frame)
        self.window = cv2.createHanningWindow((shape[1], shape[0]), cv2.CV_32F)


class ClassicDetector(Detector):
    class_names = (STATIC_CLASS,)

    def __init__(self, config: ClassicConfig) -> None:
        self.config = config
        self._models: dict[str, _SceneModel] = {}
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
        self._kernel3 = cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3))

    def forget(self, stream: str) -> None:
        self._models.pop(stream, None)

    def detect_batch(self, frames: Sequence[FrameInput]) -> list[Detections]:
        return [self._detect_one(f) for f in frames]

    def _detect_one(self, item: FrameInput) -> Detections:
        cfg = self.config
        h0, w0 = item.frame_bgr.shape[:2]
        ww = min(cfg.work_width, w0)
        wh = max(1, round(h0 * ww / w0))
        small = cv2.resize(item.frame_bgr, (ww, wh), interpolation=cv2.INTER_AREA)
        img = cv2.GaussianBlur(small, (5, 5), 0).astype(np.float32)
        model = self._models.get(item.stream)
        if model is None or model.slow.shape != img.shape or item.t < model.last_t:
            model = self._models[item.stream] = _SceneModel(img, item.t)
        dt = max(item.t - model.last_t, 0.0)
        model.last_t = item.t
        warm = item.t - model.start_t >= cfg.warmup_s
        img = self._steady(img, model)

        # Median gain against the slow model: a cloud or street lights switching on is not an object.
        # Every comparison uses the compensated frame, or a sudden change would look like motion
        # everywhere (and like fidgeting on every standing object).
        gain = float(np.median((model.slow[..., 1] + 8.0) / (img[..., 1] + 8.0)))
        img_c = np.clip(img * gain, 0, 255)
        img = img_c
        fast_fg = exceeds(img, model.fast, cfg.threshold)
        slow_fg = exceeds(img_c, model.slow, cfg.threshold)
        shadow, model.relit = self._light(img_c, model.slow)
        differs = slow_fg.copy()  # fidgeting is measured on all of it: grey clothes can look like shade
        slow_fg &= ~shadow
        if warm and slow_fg.mean() > cfg.relight_fraction:
            logger.info(
                "%s: scene changed (%.0f%% foreground), relearning the background",
                item.stream,
                100 * slow_fg.mean(),
            )
            model = self._models[item.stream] = _SceneModel(img, item.t)
            model.start_t = item.t - cfg.warmup_s
            return self._empty_with(np.zeros(img.shape[:2], np.uint8))

        a_fast = 1.0 - np.exp(-dt / cfg.fast_tau_s) if dt else 0.0
        tau_slow = cfg.slow_tau_s if warm else cfg.fast_tau_s * 2
        a_slow = 1.0 - np.exp(-dt / tau_slow) if dt else 0.0
        model.fast += a_fast * (img - model.fast)
        learn = ~model.latched
        model.slow[learn] += a_slow * (img_c[learn] - model.slow[learn])

        # Inside foreground that was already there, how often pixels change: people standing fidget,
        # a stall does not. The frame where a pixel turns foreground (arrival) is not counted.
        # Someone walking past in front of a standing object changes its pixels too: not counted, where
        # it is nor where it just was.
        passing = self._passing(fast_fg, model.latched)
        changed = self._changed(img, model.prev) & differs & model.prev_fg & ~passing & ~model.prev_passing
        model.prev_passing = passing
        a_change = 1.0 - np.exp(-dt / cfg.restless_tau_s) if dt else 0.0
        model.change += a_change * (changed.astype(np.float32) - model.change)
        model.change[~differs] = 0.0
        model.prev, model.prev_fg = img, differs

        still = slow_fg & ~fast_fg
        model.age[still] += dt
        model.age[~slow_fg] = 0.0
        gone = ~slow_fg & ~model.latched
        model.fg_since[gone] = item.t
        if warm:
            model.latched |= model.age >= cfg.static_s
        model.clear[model.latched & ~slow_fg] += dt
        model.clear[slow_fg] = 0.0
        released = model.latched & (model.clear >= cfg.release_s)
        model.latched &= ~released
        model.clear[released] = 0.0

        stayed = slow_fg & (item.t - model.fg_since >= cfg.occupancy_s)
        occupancy = (stayed | model.latched).astype(np.uint8)
        if not warm:
            return self._empty_with(np.zeros_like(occupancy))
        blobs = self._blobs(model, img_c, min_px=cfg.min_area * ww * wh, t=item.t)
        scale = w0 / ww
        if not blobs:
            return self._empty_with(occupancy)
        xyxy = np.array([b[0] for b in blobs], np.float32) * scale
        xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], 0, w0 - 1)
        xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], 0, h0 - 1)
        dets = Detections(
            xyxy=xyxy,
            confidence=np.array([b[1] for b in blobs], np.float32),
            class_id=np.zeros(len(blobs), np.int64),
            class_names=self.class_names,
            data={
                "static_s": np.array([b[2] for b in blobs], np.float32),
                "restless": np.array([b[3] for b in blobs], np.float32),
                "still_reset": np.array([b[3] > cfg.restless_max for b in blobs], bool),
            },
        )
        dets.metadata["occupancy_mask"] = occupancy
        return dets

    def _steady(self, img: np.ndarray, model: _SceneModel) -> np.ndarray:
        """``img`` shifted back onto the slow model when the whole picture moved (a pole swaying in the
        wind: a pixel or two), found by phase correlation; otherwise ``img`` itself."""
        limit = self.config.stabilise_px
        if limit <= 0:
            return img
        (dx, dy), response = cv2.phaseCorrelate(model.slow.mean(axis=2), img.mean(axis=2), model.window)
        if response < 0.2 or not 0.15 <= max(abs(dx), abs(dy)) <= limit:
            return img
        m = np.float32([[1, 0, -dx], [0, 1, -dy]])
        h, w = img.shape[:2]
        return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def _light(self, img: np.ndarray, background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixels that are the background in shadow (a cloud, a tree, a building): darker by a ratio in
        ``shadow_ratio``, the same hue, the same texture (the HSV/brightness-distortion test of
        Cucchiara et al. and Horprasert et al., with a texture check); and pixels that are the
        background under other light, darker or brighter (a blob made mostly of these is no object)."""
        low, high = self.config.shadow_ratio
        if low >= high:
            none = np.zeros(img.shape[:2], bool)
            return none, none
        ratio = (img + 8.0) / (background + 8.0)
        alpha = ratio.mean(axis=2)
        gray, gray_bg = img.mean(axis=2), background.mean(axis=2)
        texture = gray - cv2.GaussianBlur(gray, (0, 0), 2.0)
        texture_bg = gray_bg - cv2.GaussianBlur(gray_bg, (0, 0), 2.0)
        same = np.abs(ratio - alpha[..., None]).max(axis=2) < 0.1 * alpha
        same &= np.abs(texture - alpha * texture_bg) < 0.5 * self.config.threshold
        shadow = (alpha >= low) & (alpha <= high)
        # The other way round (the background was learnt in a shadow that has moved on), but only where
        # the background has texture to compare: a white van on a plain grey road has the same hue too.
        textured = cv2.GaussianBlur(np.abs(texture_bg), (0, 0), 2.0) > 3.0
        lit = (alpha >= 1.0 / high) & (alpha <= 1.0 / low) & textured
        relit = same & (alpha >= low) & (alpha <= 1.0 / low)
        return (shadow | lit) & same, relit

    def _passing(self, moving: np.ndarray, latched: np.ndarray) -> np.ndarray:
        """Moving pixels that belong to something passing by: a moving region lying largely outside
        what stands (a walker in front of a large object sticks out above and below it; a person
        fidgeting moves inside the blob the group has become)."""
        n, labels = cv2.connectedComponents(moving.astype(np.uint8), connectivity=8)
        if n <= 1:
            return np.zeros(moving.shape, bool)
        standing = cv2.dilate(latched.astype(np.uint8), self._kernel) > 0
        flat = labels.ravel()
        counts = np.bincount(flat, minlength=n)
        outside = np.bincount(flat, weights=(~standing).ravel().astype(np.float64), minlength=n)
        passing = outside > 0.3 * counts
        passing[0] = False
        return passing[labels]

    def _changed(self, img: np.ndarray, prev: np.ndarray) -> np.ndarray:
        """Pixels whose colour changed since the previous frame beyond what a smooth change of light
        explains (headlights or a shadow passing over a standing object scale its pixels, they do not
        change its pattern): the previous frame is first scaled by the local brightness ratio."""
        sigma = self.config.light_sigma_px
        now = cv2.GaussianBlur(img.mean(axis=2), (0, 0), sigma) + 8.0
        before = cv2.GaussianBlur(prev.mean(axis=2), (0, 0), sigma) + 8.0
        ratio = now / before
        relit = np.where((np.abs(ratio - 1.0) > 0.1)[..., None], prev * ratio[..., None], prev)
        return exceeds(img, relit, self.config.threshold)

    def _empty_with(self, occupancy: np.ndarray) -> Detections:
        dets = Detections.empty(self.class_names)
        dets.metadata["occupancy_mask"] = occupancy
        return dets

    def _blobs(
        self, model: _SceneModel, img: np.ndarray, *, min_px: float, t: float
    ) -> list[tuple[list[float], float, float, float]]:
        """Boxes (work pixels), confidences, standing times and restlessness of latched blobs; ghosts are
        learnt away."""
        mask = cv2.morphologyEx(model.latched.astype(np.uint8), cv2.MORPH_CLOSE, self._kernel)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self._kernel)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        if n <= 1:
            return []
        gray_now = cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_BGR2GRAY)
        gray_bg = cv2.cvtColor(model.slow.astype(np.uint8), cv2.COLOR_BGR2GRAY)
        out: list[tuple[list[float], float, float, float]] = []
        H, W = mask.shape
        for i in range(1, n):
            x, y, w, h, area = (int(v) for v in stats[i])
            if area < min_px:
                continue
            x0, y0, x1, y1 = max(x - 2, 0), max(y - 2, 0), min(x + w + 2, W), min(y + h + 2, H)
            region = (labels[y0:y1, x0:x1] == i).astype(np.uint8)
            outline = cv2.morphologyEx(region, cv2.MORPH_GRADIENT, self._kernel3) > 0
            if _edge_energy(gray_bg[y0:y1, x0:x1], outline) > 1.3 * _edge_energy(
                gray_now[y0:y1, x0:x1], outline
            ):
                blob = labels == i
                model.slow[blob] = img[blob]
                model.latched[blob] = False
                model.age[blob] = 0.0
                model.fg_since[blob] = t
                continue
            fill = area / float(w * h)
            blob = labels == i
            if float(model.relit[blob].mean()) >= self.config.relit_max:
                # the background under other light (a shadow learnt while warming up has moved on):
                # the same hue and texture over nearly all of it; learnt at once, like a ghost
                model.slow[blob] = img[blob]
                model.latched[blob] = False
                model.age[blob] = 0.0
                model.fg_since[blob] = t
                continue
            restless = float(model.change[blob].mean())
            if restless > self.config.restless_max:  # people fidgeting: their standing clock restarts
                model.age[blob] = 0.0
            standing = float(np.median(model.age[blob]))
            out.append(([x, y, x + w, y + h], float(min(0.95, 0.5 + 0.5 * fill)), standing, restless))
        return out


def _edge_energy(gray: np.ndarray, region: np.ndarray) -> float:
    """Mean gradient magnitude of ``gray`` over the pixels of ``region``."""
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    mag = np.abs(gx) + np.abs(gy)
    return float(mag[region].mean()) if region.any() else 0.0


register(ClassicConfig)(ClassicDetector)
