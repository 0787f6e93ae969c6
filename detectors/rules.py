"""The three rules. Each is a small state machine with hysteresis: ``started`` once the condition has
held for its dwell, ``updated`` at most every ``update_every_s`` while it holds, ``ended`` once it has
been gone for ``clear_s``; short gaps (a missed detection, a passer-by hiding the object) neither end
an episode nor restart its onset. Never one event per frame.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import cv2
import numpy as np

from detectors.detections import Detections
from detectors.evidence import EventType, EvidenceLabels, annotate
from detectors.evidence import banner_time as banner_time  # re-exported: the local-time format of banners
from detectors.zones import ZoneGeometry
from models.grid.zonespec import RULE_OF_KIND, RuleName

VEHICLES = frozenset({"car", "truck", "bus", "motorcycle"})


@dataclass
class RuleHit:
    """One transition of a rule in a zone; ``evidence`` is the annotated BGR frame (not serialised)."""

    type: EventType
    rule: RuleName
    zone: str
    t: float
    started_t: float
    details: dict[str, Any] = field(default_factory=dict)
    evidence: np.ndarray | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type, "rule": self.rule, "zone": self.zone, "t": round(self.t, 3),
            "started_t": round(self.started_t, 3), **self.details,
        }

    def to_json_line(self) -> str:
        return json.dumps(self.to_json(), sort_keys=False)

    def evidence_jpeg(self, *, quality: int = 85) -> bytes | None:
        if self.evidence is None:
            return None
        ok, buf = cv2.imencode(".jpg", self.evidence, [cv2.IMWRITE_JPEG_QUALITY, quality])
        return buf.tobytes() if ok else None


class Hysteresis:
    """idle → pending → active → idle, with an onset dwell and a clearing time."""

    def __init__(self, *, onset_s: float, clear_s: float, update_every_s: float) -> None:
        self.onset_s = onset_s
        self.clear_s = clear_s
        self.update_every_s = update_every_s
        self.state: Literal["idle", "pending", "active"] = "idle"
        self.since = 0.0
        self.last_true = 0.0
        self.last_emit = 0.0

    def step(self, condition: bool, t: float) -> EventType | None:
        if condition:
            if self.state == "idle":
                self.state, self.since = "pending", t
            self.last_true = t
            if self.state == "pending" and t - self.since >= self.onset_s:
                self.state, self.last_emit = "active", t
                return "started"
            if self.state == "active" and t - self.last_emit >= self.update_every_s:
                self.last_emit = t
                return "updated"
            return None
        if self.state == "idle" or t - self.last_true < self.clear_s:
            return None
        was_active = self.state == "active"
        self.state = "idle"
        return "ended" if was_active else None


class ZoneRule:
    """Base: measures a condition on one frame's tracked detections and runs the state machine."""

    rule: RuleName

    def __init__(self, zone: ZoneGeometry, *, onset_s: float, labels: EvidenceLabels | None = None) -> None:
        self.zone = zone
        self.labels = labels or EvidenceLabels()  # the camera's name and the case codes, for the evidence
        spec = zone.spec
        self.machine = Hysteresis(onset_s=onset_s, clear_s=spec.clear_s, update_every_s=spec.update_every_s)

    def measure(
        self, detections: Detections, *, resolution_wh: tuple[int, int], wall: datetime | None
    ) -> tuple[bool, Detections, dict[str, Any]]:
        raise NotImplementedError

    def evaluate(
        self, detections: Detections, *, frame: np.ndarray, t: float, wall: datetime | None = None
    ) -> RuleHit | None:
        h, w = frame.shape[:2]
        condition, evidence, details = self.measure(detections, resolution_wh=(w, h), wall=wall)
        kind = self.machine.step(condition, t)
        if kind is None:
            return None
        if kind == "ended":
            details = {}
        return RuleHit(
            type=kind, rule=self.rule, zone=self.zone.name, t=t, started_t=self.machine.since,
            details=details,
            evidence=annotate(
                frame, zone=self.zone, detections=evidence, rule=self.rule, event=kind, t=t, labels=self.labels,
                wall=wall,
            ),
        )


class CrowdingRule(ZoneRule):
    """At least ``min_people`` people (or a density) in the zone for ``dwell_s``."""

    rule: RuleName = "crowding"

    def __init__(self, zone: ZoneGeometry, *, labels: EvidenceLabels | None = None) -> None:
        super().__init__(zone, onset_s=zone.spec.dwell_s, labels=labels)

    def count(self, detections: Detections, resolution_wh: tuple[int, int]) -> tuple[int, Detections]:
        people = self.zone.select(detections, resolution_wh)
        occupancy = detections.metadata.get("occupancy_mask")
        if "person" not in detections.class_names and occupancy is not None:
            # classic backend: no person detector, so turn foreground occupancy into a head count.
            w, h = resolution_wh
            zone_frac = self.zone.area_px(resolution_wh) / float(w * h)
            covered = self.zone.occupancy(occupancy) * zone_frac
            return int(round(covered / self.zone.spec.person_area)), people
        return len(people), people

    def measure(
        self, detections: Detections, *, resolution_wh: tuple[int, int], wall: datetime | None
    ) -> tuple[bool, Detections, dict[str, Any]]:
        spec = self.zone.spec
        n, people = self.count(detections, resolution_wh)
        if spec.area_m2 is not None and spec.density_per_m2 is not None:
            density = n / spec.area_m2
            return density >= spec.density_per_m2, people, {"count": n, "density_per_m2": round(density, 3)}
        return n >= spec.min_people, people, {"count": n}


def _stationary(detections: Detections, zone: ZoneGeometry, resolution_wh: tuple[int, int]) -> Detections:
    selected = zone.select(detections, resolution_wh)
    still = selected.data.get("stationary_s")
    if still is None:
        return selected[np.zeros(len(selected), bool)]
    return selected[still >= zone.spec.dwell_s]


class FireLaneRule(ZoneRule):
    """Anything left in the lane: a stationary object at least ``min_object_m`` across (measured
    against the lane's width, ``lane_width_m``), or a stationary vehicle of any size, for ``dwell_s``.

    Whatever share of the lane it covers, an object left in a fire passage blocks it. ``coverage``,
    when set (> 0), is a stricter condition for objects other than vehicles: together they must also
    cover that share of the lane's area. People are not objects left (the kind's classes leave them
    out). The dwell is the objects' stationary time as the tracker measures it, so the machine's own
    onset is immediate and a car that drives through never counts.
    """

    rule: RuleName = "fire_lane_blockage"

    def __init__(self, zone: ZoneGeometry, *, labels: EvidenceLabels | None = None) -> None:
        super().__init__(zone, onset_s=0.0, labels=labels)

    def measure(
        self, detections: Detections, *, resolution_wh: tuple[int, int], wall: datetime | None
    ) -> tuple[bool, Detections, dict[str, Any]]:
        still = _stationary(detections, self.zone, resolution_wh)
        if len(still) == 0:
            return False, still, {}
        spec = self.zone.spec
        vehicle = np.array([name in VEHICLES for name in still.names], bool)
        across = self.zone.width_fraction(still, resolution_wh)
        big = vehicle | (across * spec.lane_width_m >= spec.min_object_m)
        still = still[big]
        if len(still) == 0:
            return False, still, {}
        covered = self.zone.coverage(still, resolution_wh)
        details = {
            "objects": len(still), "coverage": round(covered, 3), "classes": sorted(set(still.names)),
            "widest_m": round(float((across[big] * spec.lane_width_m).max()), 2),
        }
        if spec.coverage and not vehicle[big].any() and covered < spec.coverage:
            return False, still, details
        return True, still, details


def in_schedule(windows: list[tuple[int, int]], wall: datetime | None) -> bool:
    """True when there is no schedule, no wall clock, or the time of day falls in a window. ``wall`` is
    in the installation's zone (the pipeline converts it): a 07:00-09:00 window is 07:00-09:00 there."""
    if not windows or wall is None:
        return True
    minute = wall.hour * 60 + wall.minute
    for start, end in windows:
        if start <= end and start <= minute < end:
            return True
        if start > end and (minute >= start or minute < end):
            return True
    return False


class RoadOccupationRule(ZoneRule):
    """Stationary road-occupying objects in a road zone for ``dwell_s``, within the daily schedule."""

    rule: RuleName = "road_occupation"

    def __init__(self, zone: ZoneGeometry, *, labels: EvidenceLabels | None = None) -> None:
        super().__init__(zone, onset_s=0.0, labels=labels)
        self.windows = zone.spec.windows_min()

    def measure(
        self, detections: Detections, *, resolution_wh: tuple[int, int], wall: datetime | None
    ) -> tuple[bool, Detections, dict[str, Any]]:
        if not in_schedule(self.windows, wall):
            return False, detections[np.zeros(len(detections), bool)], {}
        still = _stationary(detections, self.zone, resolution_wh)
        details = {"objects": len(still), "classes": sorted(set(still.names))}
        return len(still) > 0, still, details


RULES: dict[RuleName, type[CrowdingRule | FireLaneRule | RoadOccupationRule]] = {
    r.rule: r for r in (CrowdingRule, FireLaneRule, RoadOccupationRule)
}


def build_rule(zone: ZoneGeometry, *, labels: EvidenceLabels | None = None) -> ZoneRule:
    """The rule a zone's kind runs; ``labels`` name the camera and case codes on its evidence."""
    kind = zone.spec.kind
    if kind not in RULE_OF_KIND:
        raise ValueError(f"zone '{zone.name}': kind {kind!r} runs no rule")
    return RULES[RULE_OF_KIND[kind]](zone, labels=labels)
