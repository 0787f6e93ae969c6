"""The worker's per-camera pipeline: motion gate → detector → tracker → rules → rule events.

``Pipeline.process(frame_bgr, t)`` is the one-camera path; ``process_many`` batches the detector call
across cameras (what the yolo backend wants on a GPU). ``analyze_frames`` runs a recorded clip through
the same pipeline for ``gridpatrol analyze``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta, tzinfo
from typing import Any

import cv2
import numpy as np

from detectors.backends import BackendConfigBase, Detector, FrameInput, build_detector, parse_backend_config
from detectors.detections import Detections
from detectors.evidence import EvidenceLabels
from detectors.motion import MotionConfig, MotionGate
from detectors.rules import RuleHit, ZoneRule, build_rule
from detectors.tracking import Tracker, TrackerConfig
from detectors.zones import ZoneSet
from models.grid.zonespec import ZonesFile, ZoneSpec, parse_zones

logger = logging.getLogger(__name__)


def crowd_region(polygon_norm: np.ndarray) -> tuple[float, float, float, float]:
    """The box a detector should look at for people (or objects) whose feet are in a zone.

    People are counted by their bottom-centre, so their bodies stand above the zone: the zone's
    bounding box is extended up by 0.2 of the frame (a standing person in a street view) and a little
    sideways.
    """
    x1, y1 = polygon_norm.min(axis=0)
    x2, y2 = polygon_norm.max(axis=0)
    return (max(0.0, x1 - 0.05), max(0.0, y1 - 0.2), min(1.0, x2 + 0.05), min(1.0, y2 + 0.02))


class Pipeline:
    """One camera's analysis state. Zones can be replaced live with ``set_zones``."""

    def __init__(
        self,
        zones: ZonesFile | Sequence[ZoneSpec],
        detector: Detector,
        *,
        stream: str = "default",
        motion: MotionConfig | None = None,
        gate: bool = True,
        tracker: TrackerConfig | None = None,
        epoch: datetime | None = None,
        tz: tzinfo | None = None,
        labels: EvidenceLabels | None = None,
    ) -> None:
        self.detector = detector
        self.labels = labels  # the camera's name (and case codes) drawn on the evidence
        self.stream = stream
        self.gate = MotionGate(motion) if gate else None
        self.tracker = Tracker(tracker)
        self.epoch = epoch
        #: rules see the wall clock in the installation's zone: schedules and banners are local time
        self.tz = tz
        self._last: Detections | None = None
        self.last_tracked: Detections | None = None  # for live tiles and the quality benchmark
        self.frames = 0
        self.detections_run = 0
        self.rules: list[ZoneRule] = []
        self.zones = ZoneSet([])
        self.set_zones(zones)

    def set_zones(self, zones: ZonesFile | Sequence[ZoneSpec]) -> None:
        """Apply a new zones version; rule states restart (an open episode is re-detected)."""
        specs = zones.zones if isinstance(zones, ZonesFile) else list(zones)
        self.zones = ZoneSet(specs)
        self.rules = [build_rule(z, labels=self.labels) for z in self.zones.rule_zones]
        self.regions_norm = tuple(
            crowd_region(z.polygon_norm) for z in self.zones.rule_zones if z.spec.kind == "crowd_area"
        )
        self.static_regions_norm = tuple(
            crowd_region(z.polygon_norm) for z in self.zones.rule_zones if z.spec.kind in ("road", "fire_lane")
        )

    def frame_input(self, frame_bgr: np.ndarray, t: float) -> FrameInput:
        return FrameInput(frame_bgr, t, self.stream, self.regions_norm, self.static_regions_norm)

    def needs_detection(self, frame_bgr: np.ndarray, t: float) -> bool:
        """Motion gate: False when the frame has not changed since the detector last ran."""
        self.frames += 1
        if self.gate is None or self._last is None:
            return True
        return self.gate.should_detect(frame_bgr, t)

    def step(self, frame_bgr: np.ndarray, t: float, detections: Detections | None) -> list[RuleHit]:
        """Track and run the rules; ``detections=None`` reuses the last ones (the gate said: unchanged)."""
        if detections is None:
            detections = self._last if self._last is not None else Detections.empty(self.detector.class_names)
        else:
            self.detections_run += 1
            if self.gate is not None and self._last is None:
                self.gate.should_detect(frame_bgr, t)  # take this frame as the gate's reference
            self._last = detections
        h, w = frame_bgr.shape[:2]
        detections = self.zones.unmasked(detections, (w, h))
        keep = self.zones.analysis_mask((w, h))
        occupancy = detections.metadata.get("occupancy_mask")
        if keep is not None and occupancy is not None:
            oh, ow = occupancy.shape[:2]
            small = cv2.resize(keep, (ow, oh), interpolation=cv2.INTER_NEAREST)
            detections.metadata = {**detections.metadata, "occupancy_mask": occupancy & small}
        tracked = self.tracker.update(detections, t)
        self.last_tracked = tracked
        wall = self.epoch + timedelta(seconds=t) if self.epoch is not None else None
        if wall is not None and self.tz is not None:
            wall = wall.astimezone(self.tz)
        events = []
        for rule in self.rules:
            event = rule.evaluate(tracked, frame=frame_bgr, t=t, wall=wall)
            if event is not None:
                events.append(event)
        return events

    def process(self, frame_bgr: np.ndarray, t: float) -> list[RuleHit]:
        detections = None
        if self.needs_detection(frame_bgr, t):
            detections = self.detector.detect_batch([self.frame_input(frame_bgr, t)])[0]
        return self.step(frame_bgr, t, detections)

    def flush(self, t: float) -> list[RuleHit]:
        """End open episodes (the stream ended)."""
        events = []
        for rule in self.rules:
            if rule.machine.state == "active":
                rule.machine.state = "idle"
                events.append(RuleHit(
                    type="ended", rule=rule.rule, zone=rule.zone.name, t=t, started_t=rule.machine.since,
                    details={"end_of_stream": True},
                ))
        return events


def process_many(
    detector: Detector, items: Sequence[tuple[Pipeline, np.ndarray, float]]
) -> list[list[RuleHit]]:
    """One frame for each of several cameras sharing ``detector``: one batched detector call."""
    wanted = [i for i, (p, frame, t) in enumerate(items) if p.needs_detection(frame, t)]
    batch = [items[i][0].frame_input(items[i][1], items[i][2]) for i in wanted]
    found = dict(zip(wanted, detector.detect_batch(batch), strict=True)) if batch else {}
    return [p.step(frame, t, found.get(i)) for i, (p, frame, t) in enumerate(items)]


def analyze_frames(
    frames: Iterable[tuple[np.ndarray, float]],
    zones: ZonesFile | Sequence[ZoneSpec] | dict[str, Any],
    backend_config: BackendConfigBase | dict[str, Any],
    *,
    gate: bool = True,
    epoch: datetime | None = None,
    tz: tzinfo | None = None,
    detector: Detector | None = None,
) -> Iterator[RuleHit]:
    """Run (frame_bgr, t) pairs through the worker's pipeline and yield rule events as they happen.

    Open episodes are ended at the last frame's time. Pass ``detector`` to reuse a built one.
    """
    if isinstance(zones, dict):
        zones = parse_zones(zones)
    if isinstance(backend_config, dict):
        backend_config = parse_backend_config(backend_config)
    own = detector is None
    detector = detector or build_detector(backend_config)
    pipeline = Pipeline(zones, detector, stream="analyze", gate=gate, epoch=epoch, tz=tz)
    last_t = 0.0
    try:
        for frame, t in frames:
            last_t = t
            yield from pipeline.process(frame, t)
        yield from pipeline.flush(last_t)
    finally:
        detector.forget("analyze")
        if own:
            detector.close()
    logger.info("analyze: %d frames, detector ran on %d", pipeline.frames, pipeline.detections_run)
