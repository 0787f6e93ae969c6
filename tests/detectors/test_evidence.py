"""The annotated snapshot of each rule, on a real frame: a Chinese banner (rule, case code, camera,
zone, local time) drawn in a CJK font on a plate that keeps it readable, at 640 px wide."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import cv2
import numpy as np
import pytest
from PIL import Image

from detectors.evidence import EvidenceLabels, annotate, banner_text, case_codes
from detectors.pipeline import Pipeline
from detectors.rules import RULES
from detectors.zones import ZoneGeometry
from models.evidence.drawing import cjk_font, draw_banner, find_cjk_font
from models.grid.zonespec import ZoneSpec, parse_zones
from models.tickets.categories import CategoryPolicy
from tests.detectors.support import NAMES, dets

SHANGHAI = ZoneInfo("Asia/Shanghai")
WALL = datetime(2026, 11, 30, 9, 5, 3, tzinfo=UTC).astimezone(SHANGHAI)
LABELS = EvidenceLabels(camera="东门广场 3 号枪机")
LOWER = [(0.3, 0.5), (0.6, 0.5), (0.6, 0.97), (0.3, 0.97)]
KIND = {"fire_lane_blockage": "fire_lane", "road_occupation": "road", "crowding": "crowd_area"}
ZONE_NAME = {"fire_lane_blockage": "东侧消防通道", "road_occupation": "文化路北侧", "crowding": "广场"}
TITLE = {"fire_lane_blockage": "消防通道堵塞", "road_occupation": "占道经营", "crowding": "人员聚集"}


@pytest.fixture(scope="module")
def frame(vtest_2fps: list[tuple[np.ndarray, float]]) -> np.ndarray:
    """A frame of the real footage at the 640x360 of a camera's sub-stream."""
    return cv2.resize(vtest_2fps[40][0], (640, 360), interpolation=cv2.INTER_AREA)


def zone(rule: str, polygon: list[tuple[float, float]] = LOWER) -> ZoneGeometry:
    return ZoneGeometry(ZoneSpec(name=ZONE_NAME[rule], kind=KIND[rule], polygon=polygon))  # type: ignore[arg-type]


def test_banner_says_rule_case_code_camera_zone_and_local_time() -> None:
    text = banner_text(
        rule="fire_lane_blockage", event="started", zone="东侧消防通道", labels=LABELS, t=3.0, wall=WALL
    )
    assert text.splitlines() == [
        "消防通道堵塞（开始）  案件编码：消防通道堵塞",
        "摄像头：东门广场 3 号枪机 ｜ 区域：东侧消防通道 ｜ 2026-11-30 17:05:03 +08:00",
    ]
    road = banner_text(
        rule="road_occupation", event="ended", zone="路", labels=EvidenceLabels(), t=12.25, wall=None
    )
    assert road.splitlines() == [
        "占道经营（结束）  案件编码：街面秩序/占道经营",
        "区域：路 ｜ 视频第 12.2 秒",
    ]
    # the case codes follow the ticket settings
    policy = CategoryPolicy(case_code="社会治安/人员聚集", accept_within_s=60, resolve_within_s=600)
    assert case_codes({"crowding": policy}) == {"crowding": "社会治安/人员聚集"}
    assert case_codes()["fire_lane_blockage"] == "消防通道堵塞"


@pytest.mark.parametrize("rule", sorted(RULES))
def test_evidence_of_each_rule_has_a_chinese_banner_in_a_cjk_font(
    frame: np.ndarray, rule: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    z = zone(rule)
    found = dets([(250, 230, 330, 300, "static_object"), (360, 250, 380, 330, "person")])
    event = "started"
    out = annotate(frame, zone=z, detections=found, rule=rule, event=event, t=1.0, labels=LABELS, wall=WALL)  # type: ignore[arg-type]
    assert out.shape == frame.shape and out.dtype == np.uint8
    path = tmp_path_factory.mktemp("evidence") / f"evidence-{rule}.png"
    cv2.imwrite(str(path), out)  # to look at: pytest --basetemp=/tmp/evidence-check

    # The same banner drawn alone on the bare frame gives the same pixels where the banner is: the band
    # at the top (the zone is in the lower half), and nothing of it elsewhere.
    text = banner_text(rule=rule, event=event, zone=z.name, labels=LABELS, t=1.0, wall=WALL)  # type: ignore[arg-type]
    assert TITLE[rule] in text and LABELS.camera in text and "+08:00" in text
    alone = np.asarray(draw_banner(Image.fromarray(frame[:, :, ::-1].copy()), text))[:, :, ::-1]
    changed = np.abs(alone.astype(int) - frame.astype(int)).max(axis=2) > 0
    rows = np.flatnonzero(changed.any(axis=1))
    assert rows.size and rows[0] == 0 and rows[-1] < 90, rows  # two lines at the top, under a quarter
    band = slice(0, rows[-1] + 1)
    assert np.array_equal(out[band], alone[band])
    # a dark plate under white text: readable whatever is behind it
    plate = out[band].astype(int)
    assert plate.mean() < frame[band].astype(int).mean()
    assert (plate.min(axis=2) > 230).sum() > 500  # white text strokes

    # drawn with a CJK font: each Chinese character has a glyph of its own (no "tofu" box repeated)
    font = cjk_font(16)
    assert "NotoSansCJK" in str(find_cjk_font()) or "CJK" in str(find_cjk_font())
    chars = sorted({c for c in text if "\u4e00" <= c <= "\u9fff"})
    assert len(chars) >= 8
    masks = {bytes(font.getmask(c)) for c in chars}
    assert len(masks) == len(chars)


def test_banner_goes_to_the_bottom_when_the_zone_is_at_the_top(frame: np.ndarray) -> None:
    top = [(0.1, 0.05), (0.9, 0.05), (0.9, 0.4), (0.1, 0.4)]
    z = zone("crowding", top)
    out = annotate(
        frame, zone=z, detections=dets([]), rule="crowding", event="updated", t=0, labels=LABELS, wall=WALL
    )
    changed = np.abs(out.astype(int) - frame.astype(int)).max(axis=2) > 0
    assert changed[-20:].mean() > 0.95  # the plate spans the bottom rows
    assert not changed[250:280, :40].any()  # the middle left of the picture is untouched


def test_a_long_banner_shrinks_to_fit_640_px(frame: np.ndarray) -> None:
    long = "摄像头：" + "很长的摄像头名称" * 6
    out = np.asarray(draw_banner(Image.fromarray(frame[:, :, ::-1].copy()), f"消防通道堵塞\n{long}"))
    changed = np.abs(out.astype(int) - frame[:, :, ::-1].astype(int)).max(axis=2) > 0
    assert changed[:, -3:].any()  # the plate reaches the right edge
    assert np.flatnonzero(changed.any(axis=1))[-1] < 60  # still two lines of at least 12 px


def test_pipeline_passes_the_camera_name_to_every_rule() -> None:
    zones = parse_zones({"zones": [{"name": "z", "kind": "fire_lane", "polygon": LOWER}]})

    class NoDetector:
        class_names = NAMES

    pipeline = Pipeline(zones, NoDetector(), labels=LABELS)  # type: ignore[arg-type]
    assert [r.labels.camera for r in pipeline.rules] == ["东门广场 3 号枪机"]
    assert Pipeline(zones, NoDetector()).rules[0].labels.camera == ""  # type: ignore[arg-type]
