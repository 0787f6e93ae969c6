"""Zones: the zones-file schema (errors name the zone and the field) and the geometry."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from detectors.zones import ZoneGeometry, ZoneSet
from models.errors import InvalidInput
from models.grid.zonespec import ZoneSpec, parse_zones
from tests.detectors.support import dets

SQUARE = [[0.1, 0.5], [0.4, 0.5], [0.4, 0.9], [0.1, 0.9]]


def zone(**kw: Any) -> dict[str, Any]:
    return {"name": "east lane", "kind": "fire_lane", "polygon": SQUARE, "dwell_s": 10, **kw}


def test_issue_example_parses() -> None:
    zf = parse_zones('{"zones": [{"name": "east lane", "kind": "fire_lane", "polygon": '
                     '[[0.1, 0.5], [0.4, 0.5], [0.4, 0.9], [0.1, 0.9]], "dwell_s": 10}]}')
    assert zf.zones[0].kind == "fire_lane" and len(zf.zones[0].polygon) == 4
    closed = parse_zones({"zones": [zone(polygon=[*SQUARE, SQUARE[0]])]})
    assert len(closed.zones[0].polygon) == 4


@pytest.mark.parametrize(
    ("bad", "field", "message"),
    [
        (zone(kind="parking"), "kind", "Input should be"),
        (zone(polygon=[[0.1, 0.1], [0.9, 0.9], [0.9, 0.1], [0.1, 0.9]]), "polygon", "not simple"),
        (zone(polygon=[[0.1, 0.1], [1.2, 0.1], [0.5, 0.5]]), "polygon", "outside 0..1"),
        (zone(polygon=[[0.1, 0.1], [0.2, 0.2]]), "polygon", "at least 3"),
        (zone(polygon=[[0.1, 0.1], [0.1001, 0.1], [0.1, 0.1001]]), "polygon", "no area"),
        (zone(polygon=[[0.5 + 0.4 * np.cos(a), 0.5 + 0.4 * np.sin(a)] for a in np.linspace(0, 6, 80)]),
         "polygon", "at most 64"),
        (zone(dwell_s=-1), "dwell_s", "greater than or equal"),
        (zone(coverage=1.5), "coverage", "less than or equal"),
        (zone(coverage=-0.1), "coverage", "greater than or equal"),
        (zone(min_object_m=0), "min_object_m", "greater than"),
        (zone(min_object_m="half a metre"), "min_object_m", "valid number"),
        (zone(lane_width_m=0), "lane_width_m", "greater than"),
        (zone(min_object_m=5), None, "min_object_m (5 m) is wider than the lane (lane_width_m 4 m)"),
        (zone(min_people=0), "min_people", "greater than or equal"),
        (zone(colour="red"), "colour", "Extra inputs"),
        (zone(schedule=["7:00-9:00"]), "schedule", "HH:MM"),
        (zone(kind="road", schedule=["25:00-09:00"]), "schedule", "HH:MM"),
        (zone(kind="crowd_area", density_per_m2=2.0), None, "needs area_m2"),
    ],
)
def test_bad_zone_names_zone_and_field(bad: dict[str, Any], field: str | None, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_zones({"zones": [bad]})
    assert info.value.where == "zone 'east lane'"
    assert info.value.field == field
    assert message in str(info.value)


def test_duplicate_names_and_unknown_top_level_key() -> None:
    with pytest.raises(InvalidInput, match="used twice"):
        parse_zones({"zones": [zone(), zone()]})
    with pytest.raises(InvalidInput, match="Extra inputs"):
        parse_zones({"zones": [], "camera": 1})


def test_anchor_class_score_and_area_filters() -> None:
    z = ZoneGeometry(ZoneSpec(name="road", kind="road", polygon=[(0.0, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0)],
                      min_score=0.5, min_area=0.001))
    res = (1000, 1000)
    d = dets([
        (100, 300, 200, 600, "car"),      # anchor y=600: inside
        (100, 100, 200, 400, "car"),      # anchor y=400: outside although the box overlaps
        (300, 600, 400, 700, "person"),   # not a road class
        (500, 600, 510, 610, "car"),      # too small: 100 px < 0.001 * 1e6
    ])
    assert z.contains(d, res).tolist() == [True, False, True, True]
    assert z.select(d, res).xyxy.tolist() == [[100, 300, 200, 600]]
    weak = dets([(100, 300, 200, 600, "car")], score=0.4)
    assert len(z.select(weak, res)) == 0
    only_people = ZoneGeometry(ZoneSpec(name="p", kind="road", classes=["person"], polygon=z.spec.polygon))
    assert only_people.select(d, res).names == ["person"]


def test_masks_remove_detections_and_area() -> None:
    specs = [
        ZoneSpec(name="all", kind="crowd_area", polygon=[(0, 0), (1, 0), (1, 1), (0, 1)]),
        ZoneSpec(name="tree", kind="mask", polygon=[(0, 0), (0.5, 0), (0.5, 0.5), (0, 0.5)]),
    ]
    zs = ZoneSet(specs)
    assert [z.name for z in zs.rule_zones] == ["all"] and [z.name for z in zs.masks] == ["tree"]
    d = dets([(10, 10, 20, 40, "person"), (60, 60, 70, 90, "person")])
    assert zs.unmasked(d, (100, 100)).xyxy[:, 0].tolist() == [60]
    keep = zs.analysis_mask((100, 100))
    assert keep is not None and keep[10, 10] == 0 and keep[80, 80] == 1


def test_coverage_and_occupancy() -> None:
    z = ZoneGeometry(ZoneSpec(name="lane", kind="fire_lane", polygon=[(0, 0), (1, 0), (1, 1), (0, 1)]))
    d = dets([(0, 0, 49, 99, "car"), (0, 0, 49, 99, "car")])
    assert z.coverage(d, (100, 100)) == pytest.approx(0.5)
    fg = np.zeros((50, 50), np.uint8)
    fg[:, :10] = 1
    assert z.occupancy(fg) == pytest.approx(0.2)


def test_select_takes_a_tracks_best_score() -> None:
    zone = ZoneGeometry(ZoneSpec(name="r", kind="road", polygon=[(0, 0), (1, 0), (1, 1), (0, 1)], min_score=0.3))
    weak = dets([(10, 10, 60, 60, "umbrella")], score=0.15)
    assert len(zone.select(weak, (100, 100))) == 0
    weak.data["track_score"] = np.array([0.5], np.float32)
    assert len(zone.select(weak, (100, 100))) == 1


def test_fire_lane_defaults_and_stored_coverage() -> None:
    """A new lane reports any object 0.5 m across or more (coverage off); a lane saved with the old
    default ``coverage: 0.15`` still parses and keeps that share as its stricter condition."""
    new = parse_zones({"zones": [zone()]}).zones[0]
    assert (new.min_object_m, new.lane_width_m, new.coverage) == (0.5, 4.0, None)
    assert "coverage" not in new.model_dump(exclude_none=True)  # what the store writes for a new lane
    old = parse_zones({"zones": [zone(coverage=0.15)]}).zones[0]
    assert old.coverage == 0.15
    assert parse_zones({"zones": [zone(coverage=0)]}).zones[0].coverage == 0  # 0: off, as None


LANE_RES = (640, 360)


def lane(polygon: list[tuple[float, float]]) -> ZoneGeometry:
    return ZoneGeometry(ZoneSpec(name="lane", kind="fire_lane", polygon=polygon))


def px(points: list[tuple[int, int]]) -> list[tuple[float, float]]:
    return [(x / LANE_RES[0], y / LANE_RES[1]) for x, y in points]


def test_width_across_a_lane_going_away_from_the_camera() -> None:
    # A lane running up the picture, narrowing with distance: 200 px wide at the bottom, 100 at the top.
    z = lane(px([(270, 60), (370, 60), (420, 350), (220, 350)]))
    assert np.allclose(np.abs(z.across_axis(LANE_RES)), [1, 0], atol=0.1)
    d = dets([
        (290, 280, 350, 340, "static_object"),  # 60 px wide near the bottom, where the lane is ~190 px
        (300, 90, 330, 120, "static_object"),   # 30 px wide near the top, where the lane is ~120 px
        (10, 280, 70, 340, "static_object"),    # anchor outside the lane
        (300, 200, 312, 300, "static_object"),  # tall and thin (a person the detector missed): 12 px wide
    ])
    f = z.width_fraction(d, LANE_RES)
    assert f[0] == pytest.approx(60 / 193, abs=0.01)
    assert f[1] == pytest.approx(30 / 121, abs=0.02)
    assert f[2] == 0.0
    assert f[3] == pytest.approx(12 / 183, abs=0.01)


def test_width_across_a_lane_crossing_the_picture() -> None:
    # A lane running left to right, 80 px tall: across it is up and down the picture.
    z = lane(px([(20, 200), (620, 200), (620, 280), (20, 280)]))
    assert np.allclose(np.abs(z.across_axis(LANE_RES)), [0, 1], atol=0.05)
    d = dets([
        (100, 230, 300, 270, "static_object"),  # a long low object: 40 px of the lane's 80
        (400, 190, 410, 270, "static_object"),  # a post: tall but 10 px wide
    ])
    f = z.width_fraction(d, LANE_RES)
    assert f[0] == pytest.approx(40 / 81, abs=0.03)
    assert f[1] == pytest.approx(10 / 81, abs=0.03)
