"""The onnx backend: onnxruntime running YOLO-family models. The CPU workhorse.

Understands two output layouts, told apart by shape:
- ultralytics exports (YOLOv8/11): ``(1, 4 + nc, N)``, rows cx, cy, w, h, class scores;
- Darknet YOLOv3/v4(-tiny) converted by ``detectors.darknet`` (and YOLOv5-style exports):
  ``(1, N, 5 + nc)``, columns cx, cy, w, h, objectness, class probabilities.
Boxes are in the letterboxed input's pixels. Class names come from the model's ``names`` metadata
(both ultralytics and our importer write it) or from a ``names_path`` file.

Crowd zones: a small model at 416 px sees a person 100 px tall in a 768 px frame at 54 px, and merges
people who overlap in a group into fewer boxes (YOLOv3-tiny counted 4-7 of 8 on the benchmark).
For each region the pipeline names (``FrameInput.regions_norm``) the frame is cropped and detected
again at the model's full input size; the zoom classes (people) inside the region are taken from the
zoomed pass, everything else from the whole frame. One more inference per crowd zone, only on frames
where the whole frame already shows ``zoom_min_boxes`` people there: an empty square (most of the time
on a street) costs nothing, and a crowd of 5 is never fewer than 2 boxes even when merged.

Road and fire-lane zones: a drawn or odd-shaped stall, a pile of goods or a cart is no COCO class, and
YOLOv3-tiny scored the benchmark's stall >= 0.4 (enough to start a track) only 9 s after it appeared.
With ``static_foreground`` (on by default) the classic static-object detector also runs on frames whose
pipeline names such regions (``FrameInput.static_regions_norm``); a static blob standing in one of them
that no confident person box explains (people standing are the crowding rule's, not occupation) is
added as a ``static_object`` detection with its standing time. It looks only at the box around those
regions (often a band of the picture), at the same scale as the whole frame would be analysed.
The model's people that walk (a box not where one was the frame before) are passers-by for that pass:
someone walking in front of a pile of goods changes its pixels, and the pass would otherwise take the
pile for people fidgeting and restart its standing clock (the pile on the road with passers-by every
6 s: recall 0 before). People standing keep their boxes in place, so their fidgeting still counts.
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import Field

from detectors.backends.base import BackendConfigBase, Detector, FrameInput, register
from detectors.backends.classic import STATIC_CLASS, ClassicConfig, ClassicDetector
from detectors.detections import Detections, box_iou, nms
from models.errors import DetectorError

logger = logging.getLogger(__name__)


class OnnxConfig(BackendConfigBase):
    type: Literal["onnx"] = "onnx"
    model_path: Path = Field(description="A YOLO ONNX file (ultralytics export or `gridpatrol models import`).")
    names_path: Path | None = Field(None, description="Class names, one a line, when the model has none.")
    device: Literal["auto", "cuda", "cpu"] = Field("auto", description="auto: CUDA when onnxruntime has it.")
    input_size: int | None = Field(None, ge=32, le=4096, description="For models with a dynamic input size.")
    conf: float = Field(
        0.1, ge=0.0, le=1.0,
        description="Minimum score kept: weak detections only continue tracks (ByteTrack's low threshold).",
    )
    iou: float = Field(0.45, ge=0.0, le=1.0, description="NMS IoU threshold.")
    threads: int = Field(1, ge=0, le=256, description="Intra-op threads per session (0: onnxruntime decides).")
    zoom: bool = Field(True, description="Detect again on a crop of each crowd region (one more inference).")
    zoom_classes: list[str] = Field(["person"], description="Classes taken from the zoomed pass.")
    zoom_max_area: float = Field(
        0.5, gt=0.0, le=1.0, description="Regions larger than this share of the frame gain little: not zoomed."
    )
    zoom_min_boxes: int = Field(
        2, ge=0, le=1000,
        description="Zoom a region only when the whole frame shows at least this many boxes of the zoom "
        "classes there (a crowd is never fewer than 2 boxes, even merged; 0: always zoom).",
    )
    static_foreground: bool = Field(
        True, description="Also find static foreground (the classic detector) in road and fire-lane regions."
    )
    static: ClassicConfig = Field(
        default_factory=ClassicConfig, description="The static-foreground detector's settings."
    )
    static_explained_by: list[str] = Field(
        ["person"], description="Classes whose confident boxes explain a static blob (it is not added)."
    )
    static_explain_score: float = Field(
        0.4, ge=0.0, le=1.0, description="Score from which a box explains a static blob."
    )
    static_passers: bool = Field(
        True,
        description="Boxes of the explaining classes that moved since the previous frame are passers-by for "
        "the static pass: what moves there does not make a static blob look alive.",
    )


_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


def noise_sigma(grey: np.ndarray) -> float:
    """The sensor noise of a grey picture in grey levels (Immerkaer's Laplacian difference; the median,
    not the mean, keeps edges and texture out of it)."""
    lap = cv2.filter2D(grey, cv2.CV_32F, _NOISE_KERNEL)
    return float(np.median(np.abs(lap[1:-1:4, 1:-1:4]))) / (0.6745 * 6)


def night_picture(frame_bgr: np.ndarray, *, max_chroma: float = 6.0, min_noise: float = 3.0) -> np.ndarray:
    """A grey picture (a camera's infrared night mode) smoothed by an edge-preserving filter and its
    contrast stretched to the full range (1st to 99th percentile); colour pictures unchanged.

    Infrared night pictures are low in contrast and high in sensor noise. On the quality suite's night
    scenes (seven crowds, five stalls, new noise each) YOLOv3-tiny counted 72 % of the people as they
    came and saw none of the stalls; smoothed only, 89 % and no stall; stretched only, 72 % and every
    stall; both, 77 % and every stall, each crowd reported within 3 s after its dwell. The static pass
    looks at the same prepared picture: in the raw one the suite's night stall made no static blob.
    A night picture is grey (``max_chroma``: mean |B-G| + |G-R| below it; colour footage scores 25-50)
    and noisy (``min_noise``: grey levels of sensor noise, ``noise_sigma``; the suite's night 9): a
    clean grey picture (a test pattern, a grey generated scene) is left alone, so a coloured object
    entering it does not switch the preparation on and off."""
    if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
        return frame_bgr
    sample = frame_bgr[::4, ::4]
    b, g, r = sample[..., 0], sample[..., 1], sample[..., 2]
    if float(cv2.absdiff(b, g).mean() + cv2.absdiff(g, r).mean()) > max_chroma:
        return frame_bgr
    grey = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
    if noise_sigma(grey) < min_noise:
        return frame_bgr
    smooth = cv2.bilateralFilter(grey, 5, 40, 5)
    lo, hi = np.percentile(smooth[::4, ::4], (1, 99))
    gain = 255.0 / max(float(hi - lo), 1.0)
    return cv2.cvtColor(cv2.convertScaleAbs(smooth, alpha=gain, beta=-float(lo) * gain), cv2.COLOR_GRAY2BGR)


def letterbox(frame_bgr: np.ndarray, size: int) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Resize keeping the aspect ratio and pad to ``size``² with grey; returns NCHW RGB 0..1. A grey
    night picture is smoothed and stretched first (``night_picture``)."""
    frame_bgr = night_picture(frame_bgr)
    h, w = frame_bgr.shape[:2]
    r = min(size / h, size / w)
    nw, nh = round(w * r), round(h * r)
    resized = cv2.resize(frame_bgr, (nw, nh), interpolation=cv2.INTER_LINEAR)
    top, left = (size - nh) // 2, (size - nw) // 2
    canvas = np.full((size, size, 3), 114, np.uint8)
    canvas[top : top + nh, left : left + nw] = resized
    blob = cv2.dnn.blobFromImage(canvas, 1 / 255.0, swapRB=True)  # one pass: BGR→RGB, HWC→NCHW, 0..1
    return blob, r, (left, top)


def decode(
    output: np.ndarray, *, nc: int, conf: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's raw output → (xyxy in input pixels, score, class id), thresholded, before NMS."""
    out = output[0] if output.ndim == 3 else output
    if out.shape[0] == 4 + nc and out.shape[1] != 4 + nc:  # ultralytics: (4 + nc, N)
        out = out.T
        boxes, cls_scores = out[:, :4], out[:, 4:]
    elif out.shape[1] == 5 + nc:  # darknet / yolov5: (N, 5 + nc)
        boxes, cls_scores = out[:, :4], out[:, 5:] * out[:, 4:5]
    elif out.shape[1] == 4 + nc:
        boxes, cls_scores = out[:, :4], out[:, 4:]
    else:
        raise DetectorError(f"unrecognised YOLO output shape {output.shape} for {nc} classes")
    class_id = cls_scores.argmax(axis=1)
    score = cls_scores[np.arange(len(cls_scores)), class_id]
    keep = score >= conf
    boxes, score, class_id = boxes[keep], score[keep], class_id[keep]
    xyxy = np.empty_like(boxes)
    xyxy[:, 0] = boxes[:, 0] - boxes[:, 2] / 2
    xyxy[:, 1] = boxes[:, 1] - boxes[:, 3] / 2
    xyxy[:, 2] = boxes[:, 0] + boxes[:, 2] / 2
    xyxy[:, 3] = boxes[:, 1] + boxes[:, 3] / 2
    return xyxy, score, class_id


def merge_zoomed(
    whole: Detections, zoomed: Sequence[tuple[tuple[int, int, int, int], Detections]], *,
    zoom_ids: Sequence[int], iou: float,
) -> Detections:
    """The zoom classes anchored inside each region from its zoomed pass (boxes in crop pixels, at the
    crop box's offset); everything else from the whole frame."""
    if not zoomed:
        return whole
    keep = np.ones(len(whole), bool)
    anchors = whole.anchors_bottom_center()
    parts_xyxy, parts_score, parts_class = [whole.xyxy], [whole.confidence], [whole.class_id]
    for (x1, y1, x2, y2), dets in zoomed:
        if len(whole):
            inside = (anchors[:, 0] >= x1) & (anchors[:, 0] < x2) & (anchors[:, 1] >= y1) & (anchors[:, 1] < y2)
            keep &= ~(inside & np.isin(whole.class_id, zoom_ids))
        take = np.isin(dets.class_id, zoom_ids)
        xyxy = dets.xyxy[take].copy()
        xyxy[:, [0, 2]] += x1
        xyxy[:, [1, 3]] += y1
        parts_xyxy.append(xyxy)
        parts_score.append(dets.confidence[take])
        parts_class.append(dets.class_id[take])
    parts_xyxy[0], parts_score[0], parts_class[0] = whole.xyxy[keep], whole.confidence[keep], whole.class_id[keep]
    xyxy = np.concatenate(parts_xyxy).astype(np.float32)
    score = np.concatenate(parts_score).astype(np.float32)
    class_id = np.concatenate(parts_class).astype(np.int64)
    # Overlapping regions (two crowd zones side by side) find the same person twice.
    order = nms(xyxy, score, class_id, iou=iou)
    return Detections.from_yolo_output(
        xyxy=xyxy[order], confidence=score[order], class_id=class_id[order], class_names=whole.class_names
    )


def fuse_static(
    dets: Detections, blobs: Detections, *, regions_px: Sequence[tuple[int, int, int, int]],
    explained_ids: Sequence[int], explain_score: float, static_id: int,
) -> Detections:
    """``dets`` plus the static ``blobs`` anchored in a region and not explained by a confident box of
    an ``explained_ids`` class (the blob lies mostly inside it); blobs become class ``static_id``."""
    keep = np.zeros(len(blobs), bool)
    if len(blobs):
        anchors = blobs.anchors_bottom_center()
        for x1, y1, x2, y2 in regions_px:
            keep |= (anchors[:, 0] >= x1) & (anchors[:, 0] < x2) & (anchors[:, 1] >= y1) & (anchors[:, 1] < y2)
        explainers = dets.xyxy[np.isin(dets.class_id, explained_ids) & (dets.confidence >= explain_score)]
        if len(explainers):
            b, e = blobs.xyxy[:, None, :], explainers[None, :, :]
            iw = np.clip(np.minimum(b[..., 2], e[..., 2]) - np.maximum(b[..., 0], e[..., 0]), 0, None)
            ih = np.clip(np.minimum(b[..., 3], e[..., 3]) - np.maximum(b[..., 1], e[..., 1]), 0, None)
            inside = (iw * ih) / np.maximum(blobs.area[:, None], 1e-9)
            keep &= ~(inside >= 0.5).any(axis=1)
    n, m = len(dets), int(keep.sum())
    if m == 0:
        return dets
    static_s = blobs.data.get("static_s", np.zeros(len(blobs), np.float32))[keep]
    reset = blobs.data.get("still_reset", np.zeros(len(blobs), bool))[keep]
    return Detections(
        xyxy=np.concatenate([dets.xyxy, blobs.xyxy[keep]]),
        confidence=np.concatenate([dets.confidence, blobs.confidence[keep]]),
        class_id=np.concatenate([dets.class_id, np.full(m, static_id, np.int64)]),
        class_names=dets.class_names,
        data={  # the model's boxes have stood 0 s as far as the detector knows
            "static_s": np.concatenate([dets.data.get("static_s", np.zeros(n, np.float32)), static_s]),
            "still_reset": np.concatenate([dets.data.get("still_reset", np.zeros(n, bool)), reset]),
        },
        metadata=dets.metadata,
    )


def walking(
    now_xyxy: np.ndarray, before_xyxy: np.ndarray, *, iou: float = 0.5, contain: float = 0.85
) -> np.ndarray:
    """The boxes of ``now_xyxy`` not where any box of ``before_xyxy`` was (IoU, or one box almost wholly
    inside the other: a group seen as one box then as two has not moved)."""
    if len(now_xyxy) == 0 or len(before_xyxy) == 0:
        return now_xyxy
    a, b = now_xyxy[:, None, :], before_xyxy[None, :, :]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    smaller = np.maximum(np.minimum(area(a), area(b)), 1e-9)
    same = (box_iou(now_xyxy, before_xyxy) >= iou) | (iw * ih / smaller >= contain)
    return now_xyxy[~same.any(axis=1)]


def _names_from_metadata(meta: dict[str, str]) -> tuple[str, ...] | None:
    raw = meta.get("names")
    if not raw:
        return None
    value: Any = ast.literal_eval(raw)
    if isinstance(value, dict):
        return tuple(str(value[k]) for k in sorted(value))
    return tuple(str(v) for v in value)


@register(OnnxConfig)
class OnnxDetector(Detector):
    def __init__(self, config: OnnxConfig) -> None:
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise DetectorError("the onnx backend needs onnxruntime: pip install onnxruntime") from err
        if not config.model_path.is_file():
            raise DetectorError(
                f"ONNX model not found: put a YOLO ONNX file at {config.model_path} "
                "(an ultralytics export, or convert Darknet .cfg + .weights with `gridpatrol models import`)"
            )
        self.config = config
        available = ort.get_available_providers()
        providers = ["CPUExecutionProvider"]
        if config.device != "cpu" and "CUDAExecutionProvider" in available:
            providers.insert(0, "CUDAExecutionProvider")
        elif config.device == "cuda":
            raise DetectorError("device 'cuda' asked but onnxruntime has no CUDA provider (pip install onnxruntime-gpu)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = config.threads
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(config.model_path), options, providers=providers)
        except Exception as err:  # onnxruntime raises its own untyped errors for a bad file
            raise DetectorError(f"cannot load ONNX model {config.model_path}: {err}") from err
        self.providers = self.session.get_providers()
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        shape = inp.shape
        static = isinstance(shape[2], int) and isinstance(shape[3], int)
        self.input_size = int(shape[2]) if static else int(config.input_size or 640)
        self.batch_fixed = isinstance(shape[0], int) and shape[0] == 1
        meta = self.session.get_modelmeta().custom_metadata_map
        names = None
        if config.names_path is not None:
            names = tuple(n.strip() for n in config.names_path.read_text().splitlines() if n.strip())
        names = names or _names_from_metadata(meta)
        if not names:
            raise DetectorError(f"{config.model_path} has no class names: set names_path to a names file")
        self.model_names = names
        self.images_run = 0  # model inferences so far, whole frames and zoomed crops (for benchmarks)
        #: per stream: the crop the static pass looks at (frame size and box in px) and its detector
        self._static_crops: dict[str, tuple[tuple[int, int, int, int, int, int], ClassicDetector]] = {}
        self._people_before: dict[str, np.ndarray] = {}  # per stream: the previous frame's people (px)
        if config.static_foreground:
            if STATIC_CLASS not in names:
                names = (*names, STATIC_CLASS)
        self.class_names = names
        logger.info("onnx model %s: input %s, %d classes, providers %s",
                    config.model_path, self.input_size, len(names), self.providers)

    def detect_batch(self, frames: Sequence[FrameInput]) -> list[Detections]:
        if not frames:
            return []
        whole = self._infer([f.frame_bgr for f in frames])
        zoom_ids = [i for i, n in enumerate(self.class_names) if n in self.config.zoom_classes]
        crops: list[np.ndarray] = []
        owners: list[tuple[int, tuple[int, int, int, int]]] = []  # frame index, crop box (px)
        for i, f in enumerate(frames):
            for box in self._zoom_boxes(f, whole[i], zoom_ids):
                x1, y1, x2, y2 = box
                crops.append(f.frame_bgr[y1:y2, x1:x2])
                owners.append((i, box))
        zoomed: list[list[tuple[tuple[int, int, int, int], Detections]]] = [[] for _ in frames]
        for (i, box), dets in zip(owners, self._infer(crops), strict=True):
            zoomed[i].append((box, dets))
        merged = [
            merge_zoomed(w, z, zoom_ids=zoom_ids, iou=self.config.iou) for w, z in zip(whole, zoomed, strict=True)
        ]
        return [self._with_static(f, d) for f, d in zip(frames, merged, strict=True)]

    def _infer(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """The model on each image (whole frames or crops), boxes in the image's pixels."""
        if not images:
            return []
        prepared = [letterbox(img, self.input_size) for img in images]
        self.images_run += len(prepared)
        if self.batch_fixed:
            outputs = [self.session.run(None, {self.input_name: p[0]})[0] for p in prepared]
        else:
            batch = np.concatenate([p[0] for p in prepared])
            raw = self.session.run(None, {self.input_name: batch})[0]
            outputs = [raw[i : i + 1] for i in range(len(prepared))]
        return [
            self._postprocess(out, ratio=p[1], pad=p[2], shape=img.shape[:2])
            for out, p, img in zip(outputs, prepared, images, strict=True)
        ]

    def _with_static(self, item: FrameInput, dets: Detections) -> Detections:
        """Add the static foreground standing in the frame's road and fire-lane regions."""
        if not self.config.static_foreground or not item.static_regions_norm:
            return dets
        h, w = item.frame_bgr.shape[:2]
        regions = [
            (int(x1 * w), int(y1 * h), int(np.ceil(x2 * w)), int(np.ceil(y2 * h)))
            for x1, y1, x2, y2 in item.static_regions_norm
        ]
        explained = [i for i, n in enumerate(self.class_names) if n in self.config.static_explained_by]
        passers = None
        if self.config.static_passers:
            people = dets.xyxy[np.isin(dets.class_id, explained)]
            passers = walking(people, self._people_before.get(item.stream, people[:0]))
            self._people_before[item.stream] = people
        blobs = self._static_blobs(item, regions, passers)
        return fuse_static(
            dets, blobs, regions_px=regions, explained_ids=explained,
            explain_score=self.config.static_explain_score, static_id=self.class_names.index(STATIC_CLASS),
        )

    def _static_blobs(
        self,
        item: FrameInput,
        regions: Sequence[tuple[int, int, int, int]],
        passers_xyxy: np.ndarray | None = None,
    ) -> Detections:
        """The static-object detector on the box around the regions only (road and fire-lane zones are
        often a band of the picture: 1.6 times fewer pixels than the whole frame on the benchmark street).

        Each stream gets a detector whose work width and minimum blob area are scaled to its crop, so a
        blob is judged at the same scale and size as on the whole frame.
        """
        h, w = item.frame_bgr.shape[:2]
        x1, y1 = min(r[0] for r in regions), min(r[1] for r in regions)
        x2, y2 = max(r[2] for r in regions), max(r[3] for r in regions)
        x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, max(x2, x1 + 16)), min(h, max(y2, y1 + 16))
        key = (w, h, x1, y1, x2, y2)
        known = self._static_crops.get(item.stream)
        if known is None or known[0] != key:
            cfg = self.config.static
            share_w, share_area = (x2 - x1) / w, (x2 - x1) * (y2 - y1) / (w * h)
            crop_cfg = cfg.model_copy(update={
                "work_width": max(80, round(min(cfg.work_width, w) * share_w)),
                "min_area": min(1.0, cfg.min_area / share_area),
            })
            known = self._static_crops[item.stream] = (key, ClassicDetector(crop_cfg))
        # a night picture prepared as for the model (night_picture): in the raw one a stall is no blob
        crop = FrameInput(night_picture(item.frame_bgr[y1:y2, x1:x2]), item.t, item.stream)
        passers = None if passers_xyxy is None else [passers_xyxy - np.float32([x1, y1, x1, y1])]
        blobs = known[1].detect_batch([crop], passers_xyxy=passers)[0]
        if len(blobs):
            blobs.xyxy[:, [0, 2]] += x1
            blobs.xyxy[:, [1, 3]] += y1
        return blobs

    def forget(self, stream: str) -> None:
        self._static_crops.pop(stream, None)
        self._people_before.pop(stream, None)

    def _zoom_boxes(self, item: FrameInput, whole: Detections, zoom_ids: Sequence[int]) -> list[tuple[int, int, int, int]]:
        """Pixel boxes of the regions worth a second, zoomed pass: small enough to gain from it, and
        where the whole frame already shows ``zoom_min_boxes`` people (an empty square costs nothing)."""
        if not self.config.zoom or not item.regions_norm:
            return []
        h, w = item.frame_bgr.shape[:2]
        anchors = whole.anchors_bottom_center()[np.isin(whole.class_id, zoom_ids)] if len(whole) else np.zeros((0, 2))
        out = []
        for x1, y1, x2, y2 in item.regions_norm:
            if (x2 - x1) * (y2 - y1) > self.config.zoom_max_area:
                continue
            box = (int(x1 * w), int(y1 * h), int(np.ceil(x2 * w)), int(np.ceil(y2 * h)))
            if box[2] - box[0] < 16 or box[3] - box[1] < 16:
                continue
            inside = (
                (anchors[:, 0] >= box[0]) & (anchors[:, 0] < box[2]) & (anchors[:, 1] >= box[1]) & (anchors[:, 1] < box[3])
            )
            if int(inside.sum()) >= self.config.zoom_min_boxes:
                out.append(box)
        return out

    def _postprocess(
        self, output: np.ndarray, *, ratio: float, pad: tuple[float, float], shape: tuple[int, ...]
    ) -> Detections:
        xyxy, score, class_id = decode(output, nc=len(self.model_names), conf=self.config.conf)
        keep = nms(xyxy, score, class_id, iou=self.config.iou)
        xyxy, score, class_id = xyxy[keep], score[keep], class_id[keep]
        xyxy[:, [0, 2]] = (xyxy[:, [0, 2]] - pad[0]) / ratio
        xyxy[:, [1, 3]] = (xyxy[:, [1, 3]] - pad[1]) / ratio
        h, w = shape[:2]
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w - 1)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h - 1)
        return Detections.from_yolo_output(
            xyxy=xyxy, confidence=score, class_id=class_id, class_names=self.class_names
        )
