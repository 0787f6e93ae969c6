"""The canonical detections type: what every backend returns and every later stage reads.

Arrays are named by format (``xyxy`` in pixels of the analysed frame). Adapters turn a backend's own
result into ``Detections`` so that no other module imports a backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Detections:
    """N detections of one frame.

    ``class_names`` maps ``class_id`` to a name; ``data`` holds extra per-detection arrays (the tracker
    adds ``stationary_s``); ``metadata`` holds frame-level extras (the classic backend's occupancy mask).
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    class_names: tuple[str, ...]
    tracker_id: np.ndarray | None = None
    data: dict[str, np.ndarray] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        n = len(self.xyxy)
        self.confidence = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        self.class_id = np.asarray(self.class_id, dtype=np.int64).reshape(-1)
        self.class_names = tuple(self.class_names)
        if len(self.confidence) != n or len(self.class_id) != n:
            raise ValueError(
                f"Detections: xyxy has {n} rows but confidence has {len(self.confidence)}"
                f" and class_id {len(self.class_id)}"
            )
        if n and (np.any(self.xyxy[:, 2] < self.xyxy[:, 0]) or np.any(self.xyxy[:, 3] < self.xyxy[:, 1])):
            raise ValueError("Detections: xyxy must have x2 >= x1 and y2 >= y1")
        if n and (self.class_id.min() < 0 or self.class_id.max() >= len(self.class_names)):
            raise ValueError(f"Detections: class_id outside 0..{len(self.class_names) - 1}")
        if self.tracker_id is not None:
            self.tracker_id = np.asarray(self.tracker_id, dtype=np.int64).reshape(-1)
            if len(self.tracker_id) != n:
                raise ValueError("Detections: tracker_id length differs from xyxy")
        for key, value in self.data.items():
            arr = np.asarray(value)
            if len(arr) != n:
                raise ValueError(f"Detections: data[{key!r}] has {len(arr)} rows, expected {n}")
            self.data[key] = arr

    # --- construction ---------------------------------------------------------------------------
    @classmethod
    def empty(cls, class_names: Sequence[str] = ()) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), tuple(class_names))

    @classmethod
    def from_yolo_output(
        cls,
        *,
        xyxy: np.ndarray,
        confidence: np.ndarray,
        class_id: np.ndarray,
        class_names: Sequence[str],
    ) -> Detections:
        """From decoded YOLO-family output (boxes already in frame pixels, after NMS)."""
        return cls(xyxy=xyxy, confidence=confidence, class_id=class_id, class_names=tuple(class_names))

    @classmethod
    def from_ultralytics(cls, result: Any) -> Detections:
        """From one ``ultralytics.engine.results.Results`` (its ``boxes`` and ``names``)."""
        names_map: Mapping[int, str] = result.names
        names = tuple(names_map[i] for i in range(len(names_map)))
        boxes = result.boxes
        if boxes is None or len(boxes) == 0:
            return cls.empty(names)

        def arr(x: Any) -> np.ndarray:
            return x.cpu().numpy() if hasattr(x, "cpu") else np.asarray(x)

        tracker_id = arr(boxes.id).astype(np.int64) if getattr(boxes, "id", None) is not None else None
        return cls(
            xyxy=arr(boxes.xyxy), confidence=arr(boxes.conf), class_id=arr(boxes.cls).astype(np.int64),
            class_names=names, tracker_id=tracker_id,
        )

    # --- views ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: np.ndarray | slice | list[int]) -> Detections:
        """Select rows by a boolean mask, an index array or a slice; metadata is kept."""
        return Detections(
            xyxy=self.xyxy[index],
            confidence=self.confidence[index],
            class_id=self.class_id[index],
            class_names=self.class_names,
            tracker_id=None if self.tracker_id is None else self.tracker_id[index],
            data={k: v[index] for k, v in self.data.items()},
            metadata=self.metadata,
        )

    @property
    def names(self) -> list[str]:
        """The class name of each detection."""
        return [self.class_names[i] for i in self.class_id]

    @property
    def area(self) -> np.ndarray:
        return (self.xyxy[:, 2] - self.xyxy[:, 0]) * (self.xyxy[:, 3] - self.xyxy[:, 1])

    def anchors_bottom_center(self) -> np.ndarray:
        """(N, 2) bottom-centre points: where an object touches the ground."""
        return np.stack([(self.xyxy[:, 0] + self.xyxy[:, 2]) / 2, self.xyxy[:, 3]], axis=1)

    def class_mask(self, names: Sequence[str]) -> np.ndarray:
        """Boolean mask of detections whose class is in ``names``."""
        wanted = np.array([n in set(names) for n in self.class_names], dtype=bool)
        return wanted[self.class_id] if len(self) else np.zeros(0, bool)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of two xyxy arrays."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def nms(xyxy: np.ndarray, scores: np.ndarray, class_id: np.ndarray, *, iou: float) -> np.ndarray:
    """Class-aware non-maximum suppression; returns kept indices, best first."""
    if len(xyxy) == 0:
        return np.zeros(0, np.int64)
    # Offsetting boxes by class keeps classes apart in one pass (the torchvision batched_nms trick).
    offset = class_id[:, None].astype(np.float32) * (float(xyxy.max()) + 1.0)
    boxes = xyxy + offset
    order = np.argsort(-scores)
    keep: list[int] = []
    while len(order):
        i = int(order[0])
        keep.append(i)
        if len(order) == 1:
            break
        ious = box_iou(boxes[i : i + 1], boxes[order[1:]])[0]
        order = order[1:][ious <= iou]
    return np.array(keep, np.int64)
