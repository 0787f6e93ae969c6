"""A ByteTrack-like IoU tracker that also measures how long each object has stood still.

Two association passes as in ByteTrack: confident detections first, then the weak ones against the
tracks still unmatched, so that a partly hidden parked car keeps its track. New tracks start only from
confident detections. A track is stationary while its box overlaps the box where it stopped (IoU, or
one box lying almost wholly inside the other: a static blob that merges with a neighbour or a
passer-by grows, it does not move); two consecutive frames away from it restart the clock, so a
passing car is not a parked one. A track that the detector lost for a while (``away_gap_s``) and
that comes back away from where it stood restarts its clock, and takes a confident detection's class:
it is something else (on the suite's night scene a walker matched the lost track of the van's static
blob, IoU 0.27, and was reported as an object left in the fire lane for 30 s).

A detector that knows how long an object has stood still (the classic backend's pixel ages) says so in
``data["static_s"]``; the clock then counts from when the object stopped, not from when the tracker
first saw it with confidence.

A detector that sees an object's inside keep changing (the classic backend: people standing and
talking fidget, a stall does not) marks it in ``data["still_reset"]``: its stationary clock restarts,
however long the box itself has not moved. So does a track that turns from a person into a thing or
back (``alive_classes``): people talking by a sign that a passing bus hides become a static blob for
a few seconds, and their standing time is not an object's.

A weak detection that continues a track is reported with the track's class and, in
``data["track_score"]``, the best score the track has had: a parked stall that YOLOv3-tiny calls an
umbrella at 0.5 once and at 0.15 (or a kite) after is still that umbrella, not noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detectors.detections import Detections, box_iou


@dataclass
class TrackerConfig:
    high_score: float = 0.4
    low_score: float = 0.1
    match_iou: float = 0.25
    lost_s: float = 6.0
    lost_still_s: float = 30.0  # a parked object the detector misses for a while keeps its clock
    still_after_s: float = 3.0
    still_iou: float = 0.6
    still_contain: float = 0.85  # intersection over the smaller box that still counts as "not moved"
    move_strikes: int = 2
    away_gap_s: float = 1.0  # unseen longer than this and back elsewhere: a new object, not a moved one
    alive_classes: tuple[str, ...] = ("person",)  # a track turning from one of these into a thing restarts


@dataclass
class _Track:
    track_id: int
    xyxy: np.ndarray
    class_id: int
    score: float
    last_t: float
    still_xyxy: np.ndarray
    still_since: float
    strikes: int = 0
    best: float = 0.0

    def update(
        self,
        *,
        xyxy: np.ndarray,
        class_id: int,
        score: float,
        t: float,
        static_s: float,
        reset: bool,
        cfg: TrackerConfig,
        alive_ids: frozenset[int] = frozenset(),
    ) -> None:
        self.xyxy = xyxy
        if t - self.last_t > cfg.away_gap_s and not _same_place(xyxy, self.still_xyxy, cfg):
            # Lost for a while and found elsewhere: not the object that stood here. A confident detection
            # is a new object (its own class); a weak one only continues the track (YOLOv3-tiny sees a
            # stall at night as an umbrella at 0.1-0.3, now and then), but neither keeps the standing time.
            if score >= cfg.high_score:
                self.class_id, self.best = class_id, score
            self.score, self.best, self.last_t = score, max(self.best, score), t
            self.still_xyxy, self.strikes = xyxy, 0
            self.still_since = t if reset else t - static_s
            return
        if score >= self.score * 0.8 or score >= self.best * 0.8:
            # people standing that a passing bus hides become a static blob: a person's standing time
            # is not an object's, so a change between people and things restarts the clock
            reset = reset or (class_id in alive_ids) != (self.class_id in alive_ids)
            self.class_id = class_id
        self.score = score
        self.best = max(self.best, score)
        self.last_t = t
        if reset:
            self.still_xyxy, self.still_since, self.strikes = xyxy, t, 0
            return
        if _same_place(xyxy, self.still_xyxy, cfg):
            self.strikes = 0
            self.still_since = min(self.still_since, t - static_s)
            return
        self.strikes += 1
        if self.strikes >= cfg.move_strikes:
            self.still_xyxy = xyxy
            self.still_since = t - static_s
            self.strikes = 0


def _same_place(a: np.ndarray, b: np.ndarray, cfg: TrackerConfig) -> bool:
    """True when box ``a`` has not moved from ``b``: IoU, or one box (nearly) inside the other."""
    if box_iou(a[None], b[None])[0, 0] >= cfg.still_iou:
        return True
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return False
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return smaller > 0 and float(iw * ih / smaller) >= cfg.still_contain


def _greedy_match(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Pairs (row, col) by descending IoU above ``threshold``, each row and column used once."""
    pairs: list[tuple[int, int]] = []
    if iou.size == 0:
        return pairs
    rows, cols = np.nonzero(iou >= threshold)
    order = np.argsort(-iou[rows, cols])
    used_r: set[int] = set()
    used_c: set[int] = set()
    for k in order:
        r, c = int(rows[k]), int(cols[k])
        if r in used_r or c in used_c:
            continue
        used_r.add(r)
        used_c.add(c)
        pairs.append((r, c))
    return pairs


class Tracker:
    """Per-camera tracker: ``update(detections, t)`` returns them with ids and ``stationary_s``."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self._tracks: list[_Track] = []
        self._next_id = 1

    def __len__(self) -> int:
        return len(self._tracks)

    def update(self, detections: Detections, t: float) -> Detections:
        cfg = self.config
        self._tracks = [
            tr
            for tr in self._tracks
            if t - tr.last_t
            <= (cfg.lost_still_s if tr.last_t - tr.still_since >= cfg.still_after_s else cfg.lost_s)
        ]
        n = len(detections)
        hint = detections.data.get("static_s")
        static = np.zeros(n, np.float32) if hint is None else np.clip(np.asarray(hint, np.float32), 0, None)
        reset_hint = detections.data.get("still_reset")
        reset = np.zeros(n, bool) if reset_hint is None else np.asarray(reset_hint, bool)
        alive_ids = frozenset(i for i, name in enumerate(detections.class_names) if name in cfg.alive_classes)
        out_ids = np.full(n, -1, np.int64)
        out_still = np.zeros(n, np.float32)
        out_best = detections.confidence.astype(np.float32).copy()
        out_class = detections.class_id.copy()
        high = np.nonzero(detections.confidence >= cfg.high_score)[0]
        low = np.nonzero((detections.confidence < cfg.high_score) & (detections.confidence >= cfg.low_score))[
            0
        ]

        free = list(range(len(self._tracks)))
        for subset in (high, low):
            if len(subset) == 0 or not free:
                continue
            track_boxes = np.stack([self._tracks[i].xyxy for i in free])
            iou = box_iou(track_boxes, detections.xyxy[subset])
            matched_rows: set[int] = set()
            for r, c in _greedy_match(iou, cfg.match_iou):
                track = self._tracks[free[r]]
                d = int(subset[c])
                track.update(
                    xyxy=detections.xyxy[d],
                    class_id=int(detections.class_id[d]),
                    score=float(detections.confidence[d]),
                    t=t,
                    static_s=float(static[d]),
                    reset=bool(reset[d]),
                    cfg=cfg,
                    alive_ids=alive_ids,
                )
                out_ids[d] = track.track_id
                out_still[d] = t - track.still_since
                out_best[d] = track.best
                out_class[d] = track.class_id
                matched_rows.add(r)
            free = [idx for r, idx in enumerate(free) if r not in matched_rows]

        for d in high:
            if out_ids[d] >= 0:
                continue
            box = detections.xyxy[d].copy()
            track = _Track(
                track_id=self._next_id,
                xyxy=box,
                class_id=int(detections.class_id[d]),
                score=float(detections.confidence[d]),
                last_t=t,
                still_xyxy=box,
                still_since=t if reset[d] else t - float(static[d]),
                best=float(detections.confidence[d]),
            )
            self._next_id += 1
            self._tracks.append(track)
            out_ids[d] = track.track_id
            out_still[d] = t - track.still_since

        keep = out_ids >= 0  # weak detections that matched no track are dropped, as ByteTrack does
        tracked = detections[keep]
        tracked.tracker_id = out_ids[keep]
        tracked.class_id = out_class[keep]
        tracked.data["stationary_s"] = out_still[keep]
        tracked.data["track_score"] = out_best[keep]
        return tracked
