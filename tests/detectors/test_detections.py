"""The canonical Detections type: validation, views and adapters."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from detectors.detections import Detections, box_iou, nms
from tests.detectors.support import NAMES, dets


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"xyxy": [[0, 0, 10, 10]], "confidence": [0.5, 0.6], "class_id": [0]}, "confidence has 2"),
        ({"xyxy": [[10, 0, 0, 10]], "confidence": [0.5], "class_id": [0]}, "x2 >= x1"),
        ({"xyxy": [[0, 0, 10, 10]], "confidence": [0.5], "class_id": [9]}, "class_id outside"),
        ({"xyxy": [[0, 0, 10, 10]], "confidence": [0.5], "class_id": [0], "tracker_id": [1, 2]}, "tracker_id"),
    ],
)
def test_invalid_detections_are_refused(kwargs: dict, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Detections(class_names=NAMES, **kwargs)


def test_views_and_anchors() -> None:
    d = dets([(0, 0, 10, 20, "person"), (100, 50, 140, 90, "car")])
    assert len(d) == 2 and d.names == ["person", "car"]
    np.testing.assert_allclose(d.anchors_bottom_center(), [[5, 20], [120, 90]])
    np.testing.assert_allclose(d.area, [200, 1600])
    cars = d[d.class_mask(["car"])]
    assert cars.names == ["car"] and cars.class_names == NAMES
    assert len(Detections.empty(NAMES)) == 0


def test_from_ultralytics_reads_boxes_names_and_ids() -> None:
    boxes = SimpleNamespace(
        xyxy=np.array([[1, 2, 3, 4]], np.float32), conf=np.array([0.7]), cls=np.array([2.0]), id=np.array([5.0]),
        __len__=None,
    )
    result = SimpleNamespace(names={0: "person", 1: "bicycle", 2: "car"}, boxes=_Boxes(boxes))
    d = Detections.from_ultralytics(result)
    assert d.names == ["car"] and d.tracker_id is not None and d.tracker_id.tolist() == [5]
    assert d.class_names == ("person", "bicycle", "car")


class _Boxes:
    """The attributes ultralytics' Boxes exposes (xyxy, conf, cls, id) over numpy arrays."""

    def __init__(self, ns: SimpleNamespace) -> None:
        self.xyxy, self.conf, self.cls, self.id = ns.xyxy, ns.conf, ns.cls, ns.id

    def __len__(self) -> int:
        return len(self.xyxy)


def test_nms_is_per_class() -> None:
    xyxy = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10]], np.float32)
    keep = nms(xyxy, np.array([0.9, 0.8, 0.7], np.float32), np.array([0, 0, 1]), iou=0.5)
    assert sorted(keep.tolist()) == [0, 2]
    assert box_iou(xyxy[:1], xyxy[1:2])[0, 0] == pytest.approx(81 / 119)
