"""Zone geometry at a frame's resolution: which detections are in a zone, how much of it they cover.

Zones are stored normalised (``models.grid.zonespec``); here they become pixel masks, cached per
resolution. A detection's position is its bottom-centre anchor, as supervision and Frigate use.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from detectors.detections import Detections
from models.grid.zonespec import ZoneSpec


class ZoneGeometry:
    """One zone, rasterised lazily for each frame size it meets."""

    def __init__(self, spec: ZoneSpec) -> None:
        self.spec = spec
        self.polygon_norm = np.asarray(spec.polygon, dtype=np.float64)
        self.counted = frozenset(spec.counted_classes())
        self._masks: dict[tuple[int, int], np.ndarray] = {}
        self._axes: dict[tuple[int, int], np.ndarray] = {}

    @property
    def name(self) -> str:
        return self.spec.name

    def polygon_px(self, resolution_wh: tuple[int, int]) -> np.ndarray:
        w, h = resolution_wh
        return np.round(self.polygon_norm * [w - 1, h - 1]).astype(np.int32)

    def mask(self, resolution_wh: tuple[int, int]) -> np.ndarray:
        """uint8 mask (h, w), 1 inside the zone."""
        m = self._masks.get(resolution_wh)
        if m is None:
            w, h = resolution_wh
            m = np.zeros((h, w), np.uint8)
            cv2.fillPoly(m, [self.polygon_px(resolution_wh)], 1)
            self._masks[resolution_wh] = m
        return m

    def area_px(self, resolution_wh: tuple[int, int]) -> int:
        return int(self.mask(resolution_wh).sum())

    def contains(self, detections: Detections, resolution_wh: tuple[int, int]) -> np.ndarray:
        """Boolean mask: anchor inside the zone (class and score filters not applied)."""
        if len(detections) == 0:
            return np.zeros(0, bool)
        w, h = resolution_wh
        anchors = detections.anchors_bottom_center()
        xs = np.clip(anchors[:, 0], 0, w - 1).astype(np.int64)
        # A box touching the bottom edge has its anchor on the last row.
        ys = np.clip(anchors[:, 1], 0, h - 1).astype(np.int64)
        return self.mask(resolution_wh)[ys, xs].astype(bool)

    def select(self, detections: Detections, resolution_wh: tuple[int, int]) -> Detections:
        """Detections this zone counts: anchor inside, class counted, score and area above minimum.

        A tracked detection's score is its track's best (``data["track_score"]``), as ByteTrack keeps a
        confirmed object through its weak detections.
        """
        if len(detections) == 0:
            return detections
        w, h = resolution_wh
        keep = self.contains(detections, resolution_wh)
        keep &= detections.class_mask(tuple(self.counted))
        score = detections.confidence
        best = detections.data.get("track_score")
        if best is not None:
            score = np.maximum(score, best)
        keep &= score >= self.spec.min_score
        keep &= detections.area >= self.spec.min_area * w * h
        return detections[keep]

    def coverage(self, detections: Detections, resolution_wh: tuple[int, int]) -> float:
        """Fraction of the zone's area covered by the union of the boxes."""
        if len(detections) == 0:
            return 0.0
        zone = self.mask(resolution_wh)
        boxes = np.zeros_like(zone)
        for x1, y1, x2, y2 in np.round(detections.xyxy).astype(np.int64):
            boxes[max(y1, 0) : max(y2, 0) + 1, max(x1, 0) : max(x2, 0) + 1] = 1
        area = int(zone.sum())
        return float((zone & boxes).sum()) / area if area else 0.0

    def across_axis(self, resolution_wh: tuple[int, int]) -> np.ndarray:
        """Unit vector (x, y) across the zone: the short side of its minimum-area rectangle in pixels."""
        axis = self._axes.get(resolution_wh)
        if axis is None:
            corners = cv2.boxPoints(cv2.minAreaRect(self.polygon_px(resolution_wh).astype(np.float32)))
            sides = (corners[1] - corners[0], corners[2] - corners[1])
            short = min(sides, key=lambda v: float(np.hypot(*v)))
            length = float(np.hypot(*short))
            axis = short / length if length > 0 else np.array([1.0, 0.0])
            self._axes[resolution_wh] = axis
        return axis

    def width_fraction(self, detections: Detections, resolution_wh: tuple[int, int]) -> np.ndarray:
        """Per detection: its width over the zone's own width where it stands, both in pixels.

        The zone's width is the chord through the detection's anchor along :meth:`across_axis`, so a
        lane that narrows with perspective is measured where the object stands. The detection's width
        is the smaller of its box's extent along that axis and its box's width: a box's height holds the
        object's height too, so a thin upright thing (a person the detector took for an object, a post)
        is not made wide by it. 0 for a detection whose anchor lies outside the zone.
        """
        if len(detections) == 0:
            return np.zeros(0)
        ux, uy = self.across_axis(resolution_wh)
        w, h = resolution_wh
        box_w = np.abs(detections.xyxy[:, 2] - detections.xyxy[:, 0])
        box_h = np.abs(detections.xyxy[:, 3] - detections.xyxy[:, 1])
        widths = np.minimum(box_w, box_w * abs(ux) + box_h * abs(uy))
        mask = self.mask(resolution_wh)
        reach = float(np.hypot(w, h))
        steps = np.arange(-np.ceil(reach), np.ceil(reach) + 1.0)
        out = np.zeros(len(detections))
        anchors = detections.anchors_bottom_center()
        x0s = np.clip(anchors[:, 0], 0, w - 1).astype(np.int64)  # as contains() places anchors
        y0s = np.clip(anchors[:, 1], 0, h - 1).astype(np.int64)
        centre = len(steps) // 2
        for i in range(len(detections)):
            xs = np.round(x0s[i] + steps * ux).astype(np.int64)
            ys = np.round(y0s[i] + steps * uy).astype(np.int64)
            ok = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
            inside = np.zeros(len(steps), bool)
            inside[ok] = mask[ys[ok], xs[ok]] > 0
            if not inside[centre]:
                continue
            # the run of inside samples through the anchor (a concave lane may cross the line twice)
            back = inside[centre::-1]
            ahead = inside[centre:]
            n_back = int(np.argmin(back)) if not back.all() else len(back)
            n_ahead = int(np.argmin(ahead)) if not ahead.all() else len(ahead)
            out[i] = float(widths[i]) / (n_back + n_ahead - 1)
        return out

    def occupancy(self, foreground: np.ndarray) -> float:
        """Fraction of the zone that a foreground mask (any resolution) covers."""
        h, w = foreground.shape[:2]
        zone = self.mask((w, h))
        area = int(zone.sum())
        return float(((foreground > 0) & (zone > 0)).sum()) / area if area else 0.0


class ZoneSet:
    """The zones of one camera: rule zones plus masks that remove areas from analysis."""

    def __init__(self, specs: Sequence[ZoneSpec]) -> None:
        self.rule_zones = [ZoneGeometry(s) for s in specs if s.kind != "mask"]
        self.masks = [ZoneGeometry(s) for s in specs if s.kind == "mask"]

    def unmasked(self, detections: Detections, resolution_wh: tuple[int, int]) -> Detections:
        """Drop detections whose anchor lies in any mask zone."""
        if not self.masks or len(detections) == 0:
            return detections
        inside = np.zeros(len(detections), bool)
        for mask in self.masks:
            inside |= mask.contains(detections, resolution_wh)
        return detections[~inside]

    def analysis_mask(self, resolution_wh: tuple[int, int]) -> np.ndarray | None:
        """uint8 mask, 1 where analysis happens; None when there are no masks."""
        if not self.masks:
            return None
        w, h = resolution_wh
        out = np.ones((h, w), np.uint8)
        for mask in self.masks:
            out &= 1 - mask.mask(resolution_wh)
        return out
