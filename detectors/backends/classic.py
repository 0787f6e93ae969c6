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
background once it has looked so for ``ghost_s`` (a pool of headlight flattens a stall's outline for a
frame); the outline, not the inside, decides, because a plain object (a table top) on a
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
walking past in front (a moving region lying largely outside what stands, and where it just was; then,
for up to ``pass_s``, the region that moved on from there, though it lies wholly in front of a pile)
and changes a smooth change of light explains (headlights, a shadow passing) are not counted.

What the weather and the camera do is not an object:
- a shaking camera (a pole in the wind): each frame is shifted back onto the slow model by the
  whole-picture shift that phase correlation finds (``stabilise_px``);
- global light (clouds, street lights switching): every comparison uses the frame scaled by the
  median gain against the slow model;
- shadows: a pixel darker than the background by a ratio in ``shadow_ratio`` with the same hue and
  texture is background in shade; the other way round (the background was learnt in a shadow that
  moved on) where the background has texture to compare; and a static blob made mostly
  (``relit_max``) of background under other light, or whose difference from the background fades in
  across its outline instead of stepping (headlights the background learnt while warming up), is
  learnt away like a ghost.
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
#: share of a moving region inside boxes where a person was seen walking that makes it a passer-by
SEEN_SHARE = 0.2
#: work pixels a region followed across the front of a standing object must move between two detects
WALK_STEP_PX = 5.0



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
    ghost_s: float = Field(
        1.0,
        ge=0,
        le=60,
        description="Seconds a static blob must look like a ghost before it is learnt away (a pool of "
        "headlight on an object flattens its outline for a frame or two).",
    )
    pass_s: float = Field(
        4.0,
        ge=0,
        le=60,
        description="Longest time a walker is followed across the front of a standing object after entering "
        "it (at 45 px/s, a pile of goods 110 px wide takes 3.5 s); what moves there is not fidgeting.",
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
        self.passing_since = np.full(shape, np.inf, np.float32)  # since when something passes there
        self.relit = np.zeros(shape, bool)  # the background under other light (this frame)
        self.ghostly = np.zeros(shape, np.float32)  # seconds each latched pixel's blob has looked a ghost
        self.window = cv2.createHanningWindow((shape[1], shape[0]), cv2.CV_32F)


class ClassicDetector(Detector):
    class_names = (STATIC_CLASS,)

    def __init__(self, config: ClassicConfig) -> None:
        self.config = config
        self._models: dict[str, _SceneModel] = {}
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
        self._kernel3 = cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3))
        # how far a walker gets between two detects (45 px/s at 768 px, 2 fps: 9 work pixels)
        self._step_kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (11, 11))

    def forget(self, stream: str) -> None:
        self._models.pop(stream, None)

    def detect_batch(
        self, frames: Sequence[FrameInput], *, passers_xyxy: Sequence[np.ndarray] | None = None
    ) -> list[Detections]:
        """``passers_xyxy``: per frame, boxes (frame pixels) where another detector saw someone walking
        by (the onnx backend's moving people): what moves there is a passer-by, not fidgeting."""
        if passers_xyxy is None:
            return [self._detect_one(f) for f in frames]
        return [self._detect_one(f, p) for f, p in zip(frames, passers_xyxy, strict=True)]

    def _detect_one(self, item: FrameInput, passers_xyxy: np.ndarray | None = None) -> Detections:
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
        passing = self._passing(fast_fg, model.latched, _box_mask(passers_xyxy, fast_fg.shape, ww / w0))
        carried, since = self._carried(fast_fg, model.passing_since, item.t)
        model.passing_since = np.where(passing, item.t, np.where(carried, since, np.inf)).astype(np.float32)
        passing |= carried
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
        model.ghostly[~model.latched] = 0.0

        stayed = slow_fg & (item.t - model.fg_since >= cfg.occupancy_s)
        occupancy = (stayed | model.latched).astype(np.uint8)
        if not warm:
            return self._empty_with(np.zeros_like(occupancy))
        blobs = self._blobs(model, img_c, min_px=cfg.min_area * ww * wh, t=item.t, dt=dt)
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

    def _passing(self, moving: np.ndarray, latched: np.ndarray, seen: np.ndarray | None = None) -> np.ndarray:
        """Moving pixels that belong to something passing by: a moving region lying largely outside
        what stands (a walker in front of a large object sticks out above and below it; a person
        fidgeting moves inside the blob the group has become), or one that ``seen`` (where a person
        was seen walking) touches: a walker in front of a pile of goods lies wholly inside it."""
        n, labels = cv2.connectedComponents(moving.astype(np.uint8), connectivity=8)
        if n <= 1:
            return np.zeros(moving.shape, bool)
        standing = cv2.dilate(latched.astype(np.uint8), self._kernel) > 0
        flat = labels.ravel()
        counts = np.bincount(flat, minlength=n)
        outside = np.bincount(flat, weights=(~standing).ravel().astype(np.float64), minlength=n)
        passing = outside > 0.3 * counts
        if seen is not None:
            inside = np.bincount(flat, weights=seen.ravel().astype(np.float64), minlength=n)
            passing |= inside > SEEN_SHARE * counts
        passing[0] = False
        return passing[labels]

    def _carried(
        self, moving: np.ndarray, passing_since: np.ndarray, t: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Moving regions that lie mostly where something was passing by in the previous frame (a
        walker who entered the front of a pile of goods and now lies wholly inside it), for at most
        ``pass_s`` since it was seen entering (people fidgeting where a walker once brushed them are
        not carried for ever); and since when each pixel's passer-by has been passing."""
        n, labels, stats, _ = cv2.connectedComponentsWithStats(moving.astype(np.uint8), connectivity=8)
        if n <= 1 or not np.isfinite(passing_since).any():
            return np.zeros(moving.shape, bool), np.full(moving.shape, np.inf, np.float32)
        near_since = cv2.erode(np.minimum(passing_since, 1e9), self._step_kernel)  # earliest close by
        near = np.bincount(labels.ravel(), weights=(near_since < 1e9).ravel().astype(np.float64), minlength=n)
        carried = np.zeros(n, bool)
        since = np.full(n, np.inf)
        was = np.isfinite(passing_since)
        r = self._step_kernel.shape[0] // 2
        H, W = moving.shape
        for i in np.nonzero(near > 0.5 * stats[:, cv2.CC_STAT_AREA])[0]:
            if i == 0:
                continue
            x, y, w, h = (int(v) for v in stats[i, :4])
            x0, y0, x1, y1 = max(x - r, 0), max(y - r, 0), min(x + w + r, W), min(y + h + r, H)
            region = labels[y0:y1, x0:x1] == i
            since[i] = float(near_since[y0:y1, x0:x1][region].min())
            if t - since[i] > self.config.pass_s:
                continue
            # a walker moves on, people fidgeting stay where they were (their heads and arms move
            # the region's centre by 2-4 px: at 2 px the people talking by the sign were carried)
            before = was[y0:y1, x0:x1] & (cv2.dilate(region.astype(np.uint8), self._step_kernel) > 0)
            ys, xs = np.nonzero(region)
            ys0, xs0 = np.nonzero(before)
            carried[i] = np.hypot(xs.mean() - xs0.mean(), ys.mean() - ys0.mean()) >= WALK_STEP_PX
        return carried[labels], since[labels].astype(np.float32)

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

    def _in_background_light(self, gray: np.ndarray, gray_bg: np.ndarray, standing: np.ndarray) -> np.ndarray:
        """``gray`` brought to the background's light for the ghost test: divided by the light ratio (frame
        over background) around each pixel, measured where nothing stands and the ratio could be light.
        A soft shadow drifting over a pile of goods dims its outline with its surroundings; unmatched,
        the pile looked like a ghost and was learnt away (moving shadows, road: reported twice before).
        Where the light is within 10 % of the background's, ``gray`` itself."""
        low, high = self.config.shadow_ratio
        low = low if low < high else 0.5
        ratio = (gray.astype(np.float32) + 8.0) / (gray_bg.astype(np.float32) + 8.0)
        free = ((standing == 0) & (ratio >= low) & (ratio <= 1.0 / low)).astype(np.float32)
        sigma = self.config.light_sigma_px
        weight = cv2.GaussianBlur(free, (0, 0), sigma)
        light = cv2.GaussianBlur(ratio * free, (0, 0), sigma) / np.maximum(weight, 1e-3)
        other = (np.abs(light - 1.0) > 0.1) & (weight > 0.05)
        if not other.any():
            return gray
        out = gray.astype(np.float32)
        out[other] /= light[other]
        return out

    def _empty_with(self, occupancy: np.ndarray) -> Detections:
        dets = Detections.empty(self.class_names)
        dets.metadata["occupancy_mask"] = occupancy
        return dets

    def _blobs(
        self, model: _SceneModel, img: np.ndarray, *, min_px: float, t: float, dt: float
    ) -> list[tuple[list[float], float, float, float]]:
        """Boxes (work pixels), confidences, standing times and restlessness of latched blobs; ghosts are
        learnt away once they have looked so for ``ghost_s`` (until then they are not reported)."""
        mask = cv2.morphologyEx(model.latched.astype(np.uint8), cv2.MORPH_CLOSE, self._kernel)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self._kernel)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        if n <= 1:
            return []
        gray_now = cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_BGR2GRAY)
        gray_bg = cv2.cvtColor(model.slow.astype(np.uint8), cv2.COLOR_BGR2GRAY)
        gray_now = self._in_background_light(gray_now, gray_bg, mask)
        diff = (img - model.slow).mean(axis=2)
        out: list[tuple[list[float], float, float, float]] = []
        H, W = mask.shape
        for i in range(1, n):
            x, y, w, h, area = (int(v) for v in stats[i])
            if area < min_px:
                continue
            x0, y0, x1, y1 = max(x - 2, 0), max(y - 2, 0), min(x + w + 2, W), min(y + h + 2, H)
            region = (labels[y0:y1, x0:x1] == i).astype(np.uint8)
            outline = cv2.morphologyEx(region, cv2.MORPH_GRADIENT, self._kernel3) > 0
            blob = labels == i
            if _edge_energy(gray_bg[y0:y1, x0:x1], outline) > 1.3 * _edge_energy(
                gray_now[y0:y1, x0:x1], outline
            ):
                # Headlights sweeping over a stall flatten its outline for a frame: one frame is no
                # proof, and a stall learnt away in pieces leaves its edges in the background, which
                # makes the rest of it look like a ghost too (road under headlights: recall 0 before).
                model.ghostly[blob] += dt
                if float(model.ghostly[blob].max()) < self.config.ghost_s:  # a ghost grows
                    continue
                model.slow[blob] = img[blob]
                model.latched[blob] = False
                model.age[blob] = 0.0
                model.fg_since[blob] = t
                continue
            model.ghostly[blob] = 0.0
            fill = area / float(w * h)
            step = _outline_step(diff[y0:y1, x0:x1], outline)
            if float(model.relit[blob].mean()) >= self.config.relit_max or step < self.config.threshold:
                # the background under other light (a shadow learnt while warming up has moved on):
                # the same hue and texture over nearly all of it; or a difference that fades in
                # smoothly across the outline, where a thing's outline is a step of at least
                # ``threshold`` (headlights learnt while warming up, gone: two people more in the
                # square before); learnt at once, like a ghost
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


def _box_mask(xyxy: np.ndarray | None, shape: tuple[int, ...], scale: float) -> np.ndarray | None:
    """The pixels of a work image of ``shape`` inside boxes given in frame pixels (``scale``: work/frame)."""
    if xyxy is None:
        return None
    mask = np.zeros(shape[:2], bool)
    for x1, y1, x2, y2 in np.asarray(xyxy, np.float64).reshape(-1, 4) * scale:
        mask[max(int(y1), 0) : int(np.ceil(y2)), max(int(x1), 0) : int(np.ceil(x2))] = True
    return mask


def _outline_step(diff: np.ndarray, outline: np.ndarray) -> float:
    """Median gradient magnitude of the difference from the background over the pixels of ``outline``
    (Sobel: a step of ``d`` reads about ``2d`` after the frames' blur)."""
    gx = cv2.Sobel(diff, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(diff, cv2.CV_32F, 0, 1, ksize=3)
    return float(np.median((np.abs(gx) + np.abs(gy))[outline])) if outline.any() else 0.0


def _edge_energy(gray: np.ndarray, region: np.ndarray) -> float:
    """Mean gradient magnitude of ``gray`` over the pixels of ``region``."""
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    mag = np.abs(gx) + np.abs(gy)
    return float(mag[region].mean()) if region.any() else 0.0


register(ClassicConfig)(ClassicDetector)
