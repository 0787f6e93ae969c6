"""The tracker: stable ids, ByteTrack's weak-detection pass, and stationary time."""

from __future__ import annotations

import numpy as np

from detectors.tracking import Tracker
from tests.detectors.support import dets


def test_ids_are_stable_and_new_objects_get_new_ids() -> None:
    tr = Tracker()
    a = tr.update(dets([(0, 0, 10, 10, "car")]), 0.0)
    b = tr.update(dets([(1, 0, 11, 10, "car"), (50, 50, 60, 60, "person")]), 0.5)
    assert a.tracker_id is not None and b.tracker_id is not None
    assert b.tracker_id[0] == a.tracker_id[0] and b.tracker_id[1] != a.tracker_id[0]


def test_parked_car_accumulates_stationary_time_through_misses() -> None:
    tr = Tracker()
    out = None
    for i in range(40):
        t = i * 0.5
        if i % 7 == 3:
            tr.update(dets([]), t)  # a missed detection
            continue
        jitter = (i % 3) - 1  # detector boxes jitter by a pixel or two
        out = tr.update(dets([(100 + jitter, 100, 200 + jitter, 160, "car")]), t)
    assert out is not None and out.tracker_id is not None
    assert out.data["stationary_s"][0] == 19.5
    assert out.tracker_id[0] == 1


def test_passing_car_is_never_stationary_long() -> None:
    tr = Tracker()
    longest = 0.0
    for i in range(40):
        x = 20 * i  # 40 px per second at 2 fps: a slow car
        out = tr.update(dets([(x, 100, x + 100, 160, "car")]), i * 0.5)
        longest = max(longest, float(out.data["stationary_s"].max()))
    assert longest < 2.0


def test_weak_detection_keeps_a_track_but_does_not_start_one() -> None:
    tr = Tracker()
    tr.update(dets([(0, 0, 100, 100, "car")]), 0.0)
    weak = tr.update(dets([(2, 0, 102, 100, "car"), (300, 300, 400, 400, "car")], score=0.2), 0.5)
    assert weak.tracker_id is not None and weak.tracker_id.tolist() == [1]


def test_lost_tracks_expire() -> None:
    tr = Tracker()
    tr.update(dets([(0, 0, 100, 100, "car")]), 0.0)
    assert len(tr) == 1
    tr.update(dets([]), 10.0)
    assert len(tr) == 0


def test_parked_object_missed_for_a_while_keeps_its_clock() -> None:
    tr = Tracker()
    for i in range(20):
        tr.update(dets([(100, 100, 200, 160, "umbrella")]), i * 0.5)
    tr.update(dets([]), 15.0)  # missed for 10 s: longer than lost_s, shorter than lost_still_s
    out = tr.update(dets([(101, 100, 201, 160, "umbrella")]), 20.0)
    assert out.tracker_id is not None and out.tracker_id.tolist() == [1]
    assert out.data["stationary_s"][0] == 20.0


def test_detector_static_age_starts_the_clock_when_the_object_stopped() -> None:
    # The classic backend reports a blob only once it has stood 2.5 s: the clock counts from then back.
    tr = Tracker()
    first = dets([(100, 100, 200, 160, "static_object")])
    first.data["static_s"] = np.array([2.5], np.float32)
    out = tr.update(first, 10.0)
    assert out.data["stationary_s"].tolist() == [2.5]
    again = dets([(100, 100, 200, 160, "static_object")])
    again.data["static_s"] = np.array([3.0], np.float32)
    assert tr.update(again, 10.5).data["stationary_s"].tolist() == [3.0]


def test_parked_object_merging_with_a_passer_by_keeps_its_clock() -> None:
    # A static blob grows while someone stands next to it, then shrinks back: it never moved.
    tr = Tracker()
    out = None
    for i in range(30):
        t = i * 0.5
        grown = 5 <= t < 9
        out = tr.update(dets([(100, 100, 300 if grown else 200, 160, "static_object")]), t)
    assert out is not None and out.tracker_id is not None
    assert out.tracker_id.tolist() == [1] and out.data["stationary_s"][0] == 14.5


def test_weak_detections_of_a_confirmed_track_keep_its_class_and_best_score() -> None:
    tr = Tracker()
    tr.update(dets([(100, 100, 200, 160, "umbrella")], score=0.55), 0.0)
    # The next frames the detector calls it a car at 0.15 (YOLOv3-tiny on a drawn stall): same object.
    out = tr.update(dets([(101, 100, 201, 160, "car")], score=0.15), 0.5)
    assert out.names == ["umbrella"] and out.confidence.tolist() == [np.float32(0.15)]
    assert out.data["track_score"].tolist() == [np.float32(0.55)]


def test_still_reset_restarts_the_clock_of_an_object_that_has_not_moved() -> None:
    tr = Tracker()
    box = (100, 100, 130, 180, "static_object")
    for i in range(30):  # 15 s in place, but the detector sees its inside changing (someone fidgeting)
        d = dets([box])
        d.data["static_s"] = np.array([5.0], np.float32)
        d.data["still_reset"] = np.array([True])
        out = tr.update(d, i * 0.5)
        assert out.data["stationary_s"][0] == 0.0
    for i in range(30, 40):  # then it keeps still: the clock counts from here, not from the start
        d = dets([box])
        d.data["static_s"] = np.array([0.5 * (i - 29)], np.float32)
        d.data["still_reset"] = np.array([False])
        out = tr.update(d, i * 0.5)
    assert out.tracker_id is not None and out.data["stationary_s"][0] == 5.0
