"""The annotated snapshot of a rule event, in Chinese: what a grid leader reads on a ticket.

The zone and the boxes that count are drawn over the frame; a banner names the rule, the event, its case
code, the camera, the zone and the local time. Text is drawn with Pillow in a CJK font on a dark plate
with an outline (``models.evidence.drawing``), so it stays readable on any background and at 640 px.
The banner goes to the top or the bottom edge, whichever is farther from the zone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import numpy as np
from PIL import Image

from detectors.detections import Detections
from detectors.zones import ZoneGeometry
from models.evidence.drawing import BoxShape, ZoneShape, draw_banner, draw_overlay
from models.grid.zonespec import RuleName
from models.tickets.categories import DEFAULT_CATEGORIES, RULE_CATEGORY, CategoryPolicy

EventType = Literal["started", "updated", "ended"]

#: the rules as people call them (UI-GUIDE words: the same on tickets, in the UI and on the evidence)
RULE_TITLES: dict[str, str] = {
    "road_occupation": "占道经营",
    "fire_lane_blockage": "消防通道堵塞",
    "crowding": "人员聚集",
}
EVENT_TITLES: dict[str, str] = {"started": "开始", "updated": "持续", "ended": "结束"}
#: the detector classes that the rules count by default, in Chinese; other classes keep their name
CLASS_TITLES: dict[str, str] = {
    "person": "行人",
    "car": "汽车",
    "truck": "货车",
    "bus": "客车",
    "motorcycle": "摩托车",
    "bicycle": "自行车",
    "umbrella": "遮阳伞",
    "bench": "长椅",
    "chair": "椅子",
    "dining table": "桌子",
    "suitcase": "箱包",
    "backpack": "背包",
    "handbag": "手提包",
    "potted plant": "盆栽",
    "static_object": "遗留物",
}


def case_codes(categories: Mapping[str, CategoryPolicy] | None = None) -> dict[str, str]:
    """rule → case code of its ticket category, from the ticket settings (the defaults when None)."""
    policies = DEFAULT_CATEGORIES if categories is None else categories
    return {rule: policies[cat].case_code for rule, cat in RULE_CATEGORY.items() if cat in policies}


@dataclass(frozen=True)
class EvidenceLabels:
    """What the banner names besides the zone and the time: the camera, and each rule's case code."""

    camera: str = ""
    case_codes: Mapping[str, str] = field(default_factory=case_codes)


def banner_time(wall: datetime) -> str:
    """``2026-11-30 17:05:03 +08:00``: the local time people read, with its offset (never ambiguous)."""
    offset = wall.strftime("%z")
    zone = f" {offset[:3]}:{offset[3:]}" if offset else ""
    return wall.strftime("%Y-%m-%d %H:%M:%S") + zone


def banner_text(
    *, rule: RuleName, event: EventType, zone: str, labels: EvidenceLabels, t: float, wall: datetime | None
) -> str:
    """Two lines: the rule, the event and the case code; then the camera, the zone and the time."""
    title = f"{RULE_TITLES.get(rule, rule)}（{EVENT_TITLES.get(event, event)}）"
    code = labels.case_codes.get(rule)
    first = f"{title}  案件编码：{code}" if code else title
    when = banner_time(wall) if wall is not None else f"视频第 {t:.1f} 秒"
    where = [f"摄像头：{labels.camera}"] if labels.camera else []
    second = " ｜ ".join([*where, f"区域：{zone}", when])
    return f"{first}\n{second}"


def annotate(
    frame: np.ndarray,
    *,
    zone: ZoneGeometry,
    detections: Detections,
    rule: RuleName,
    event: EventType,
    t: float,
    labels: EvidenceLabels,
    wall: datetime | None = None,
) -> np.ndarray:
    """A copy of the BGR ``frame`` with the zone, the boxes that count and the banner drawn on it."""
    h, w = frame.shape[:2]
    image = Image.fromarray(np.ascontiguousarray(frame[:, :, ::-1]))
    boxes = []
    for i, (x1, y1, x2, y2) in enumerate(detections.xyxy.tolist()):
        name = detections.class_names[detections.class_id[i]]
        box = (x1 / w, y1 / h, x2 / w, y2 / h)
        boxes.append(BoxShape(box, CLASS_TITLES.get(name, name), float(detections.confidence[i])))
    polygon = [(float(x), float(y)) for x, y in zone.polygon_norm]
    draw_overlay(image, zones=[ZoneShape(zone.name, zone.spec.kind, polygon)], boxes=boxes)
    text = banner_text(rule=rule, event=event, zone=zone.name, labels=labels, t=t, wall=wall)
    # the banner covers the edge farther from the zone, so that the lane and the objects stay in view
    draw_banner(image, text, bottom=float(zone.polygon_norm[:, 1].mean()) < 0.5)
    return np.asarray(image)[:, :, ::-1].copy()
