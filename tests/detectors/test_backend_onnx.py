"""The onnx backend with the real YOLOv3-tiny COCO weights, converted by our Darknet importer."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from detectors.backends import FrameInput, OnnxConfig, build_detector
from detectors.backends.onnx import decode, fuse_static, letterbox
from detectors.darknet import parse_cfg
from detectors.detections import box_iou
from models.errors import DetectorError
from tests.detectors.support import NAMES, asset, dets, pasted_object

# bus.jpg (810x1080): the bus and the three people standing in full view. A fourth person, cut by the
# left edge (about a third of them visible), is not found by YOLOv3-tiny at 416 px.
BUS = (10, 230, 800, 750)
PEOPLE = [(50, 400, 245, 905), (222, 405, 345, 860), (670, 380, 810, 880)]

def test_bus_jpg_people_and_bus_are_found(yolov3_tiny_onnx: Path) -> None:
    detector = build_detector(OnnxConfig(model_path=yolov3_tiny_onnx))
    assert detector.providers[-1] == "CPUExecutionProvider"
    # the model's 80 COCO classes, then the static foreground found in road and fire-lane regions
    assert len(detector.class_names) == 81 and detector.class_names[0] == "person"
    assert detector.class_names[-1] == "static_object"
    image = cv2.imread(str(asset("bus.jpg")))
    dets = detector.detect(image)
    people = dets[dets.class_mask(["person"])]
    buses = dets[dets.class_mask(["bus"])]
    iou = box_iou(np.array(PEOPLE, np.float32), people.xyxy)
    assert (iou.max(axis=1) >= 0.5).all(), iou
    assert box_iou(np.array([BUS], np.float32), buses.xyxy).max() >= 0.7
    assert people.confidence.max() > 0.9

def test_batch_equals_single(yolov3_tiny_onnx: Path) -> None:
    detector = build_detector(OnnxConfig(model_path=yolov3_tiny_onnx))
    bus = cv2.imread(str(asset("bus.jpg")))
    zidane = cv2.imread(str(asset("zidane.jpg")))

    both = detector.detect_batch([FrameInput(bus), FrameInput(zidane)])
    assert both[0].xyxy.tolist() == detector.detect(bus).xyxy.tolist()
    assert sum(n == "person" for n in both[1].names) >= 2  # zidane.jpg: two people

def test_missing_model_says_what_to_put_where(tmp_path: Path) -> None:
    with pytest.raises(DetectorError, match=f"put a YOLO ONNX file at {tmp_path / 'x.onnx'}"):
        build_detector(OnnxConfig(model_path=tmp_path / "x.onnx"))

def test_letterbox_keeps_aspect() -> None:
    blob, ratio, (left, top) = letterbox(np.zeros((1080, 810, 3), np.uint8), 416)
    assert blob.shape == (1, 3, 416, 416) and ratio == pytest.approx(416 / 1080)
    assert (left, top) == (52, 0) and blob[0, 0, 0, 0] == pytest.approx(114 / 255)

def test_decode_ultralytics_and_darknet_layouts() -> None:
    nc = 3
    ultra = np.zeros((1, 4 + nc, 5), np.float32)
    ultra[0, :4, 2] = [100, 50, 20, 10]
    ultra[0, 4 + 1, 2] = 0.8
    xyxy, score, cls = decode(ultra, nc=nc, conf=0.25)
    assert xyxy.tolist() == [[90, 45, 110, 55]] and cls.tolist() == [1] and score[0] == pytest.approx(0.8)
    dark = np.zeros((1, 5, 5 + nc), np.float32)
    dark[0, 3, :4] = [100, 50, 20, 10]
    dark[0, 3, 4] = 0.5  # objectness multiplies the class probability
    dark[0, 3, 5 + 2] = 0.9
    xyxy, score, cls = decode(dark, nc=nc, conf=0.25)
    assert cls.tolist() == [2] and score[0] == pytest.approx(0.45)
    with pytest.raises(DetectorError, match="unrecognised"):
        decode(np.zeros((1, 7, 9)), nc=80, conf=0.2)

def test_importer_refuses_bad_input(tmp_path: Path) -> None:
    from detectors.darknet import convert

    with pytest.raises(DetectorError, match="start with a \\[net\\]"):
        parse_cfg("[convolutional]\nfilters=1\n")
    cfg = asset("yolov3-tiny.cfg").read_text()
    with pytest.raises(DetectorError, match="shorter than the cfg"):
        convert(cfg, b"\0" * 1000)
    with pytest.raises(DetectorError, match="not supported"):
        convert("[net]\nwidth=32\n[crnn]\n", b"\0" * 20)


def test_zoomed_people_replace_the_whole_frame_people_in_their_region() -> None:
    from detectors.backends.onnx import merge_zoomed
    from tests.detectors.support import NAMES, dets

    person, car = NAMES.index("person"), NAMES.index("car")
    # The whole frame merged two people into one box and saw a car; the zoomed crop (offset 100, 200)
    # sees the two people apart. A person outside the region stays as the whole frame found them.
    whole = dets([(110, 210, 190, 330, "person"), (120, 250, 300, 320, "car"), (500, 100, 540, 200, "person")])
    crop = dets([(10, 10, 45, 130, "person"), (50, 12, 90, 128, "person"), (20, 50, 200, 120, "car")])
    merged = merge_zoomed(whole, [((100, 200, 400, 400), crop)], zoom_ids=[person], iou=0.45)
    people = merged[merged.class_id == person]
    assert sorted(people.xyxy.tolist()) == [[110, 210, 145, 330], [150, 212, 190, 328], [500, 100, 540, 200]]
    assert merged[merged.class_id == car].xyxy.tolist() == [[120, 250, 300, 320]]  # not taken from the crop
    assert merge_zoomed(whole, [], zoom_ids=[person], iou=0.45) is whole


def test_zoom_region_finds_the_people_once(yolov3_tiny_onnx: Path) -> None:
    image = cv2.imread(str(asset("bus.jpg")))
    region = (0.0, 0.3, 1.0, 0.9)  # around the three people, less than half the frame: zoomed
    zoomed = build_detector(OnnxConfig(model_path=yolov3_tiny_onnx, zoom_max_area=0.7))
    dets = zoomed.detect_batch([FrameInput(image, regions_norm=(region,))])[0]
    people = dets[dets.class_mask(["person"])]
    iou = box_iou(np.array(PEOPLE, np.float32), people.xyxy)
    assert (iou.max(axis=1) >= 0.5).all(), iou
    pairwise = box_iou(people.xyxy, people.xyxy) - np.eye(len(people))
    assert pairwise.max() <= 0.45  # no person twice
    off = build_detector(OnnxConfig(model_path=yolov3_tiny_onnx, zoom=False))
    plain = off.detect_batch([FrameInput(image, regions_norm=(region,))])[0]
    assert plain.xyxy.tolist() == off.detect(image).xyxy.tolist()
    bus = plain.class_mask(["bus"])
    assert dets[dets.class_mask(["bus"])].xyxy.tolist() == plain[bus].xyxy.tolist()  # from the whole frame


def test_a_crowd_region_without_people_is_not_zoomed(yolov3_tiny_onnx: Path) -> None:
    image = cv2.imread(str(asset("bus.jpg")))
    detector = build_detector(OnnxConfig(model_path=yolov3_tiny_onnx, zoom_max_area=0.7))
    sky, people = (0.0, 0.0, 1.0, 0.2), (0.0, 0.3, 1.0, 0.9)
    detector.detect_batch([FrameInput(image, regions_norm=(sky,))])
    assert detector.images_run == 1  # the whole frame only: nobody stands in the sky
    detector.detect_batch([FrameInput(image, regions_norm=(sky, people))])
    assert detector.images_run == 1 + 2  # the whole frame and the crop around the three people
    always = build_detector(OnnxConfig(model_path=yolov3_tiny_onnx, zoom_max_area=0.7, zoom_min_boxes=0))
    always.detect_batch([FrameInput(image, regions_norm=(sky,))])
    assert always.images_run == 2


def test_fuse_static_adds_blobs_no_person_explains_in_the_regions() -> None:
    yolo = dets([(100, 100, 140, 200, "person"), (300, 100, 340, 200, "person")])
    yolo.confidence[1] = 0.2  # a weak person box explains nothing
    blobs = dets([
        (105, 110, 138, 195, "static_object"),  # the confident person standing: explained, dropped
        (298, 120, 360, 200, "static_object"),  # a stall the weak box half covers: kept
        (500, 100, 560, 150, "static_object"),  # outside every region: dropped
    ], score=0.7)
    blobs.data["static_s"] = np.array([8.0, 6.0, 9.0], np.float32)
    blobs.data["still_reset"] = np.array([False, False, False])
    person, static = NAMES.index("person"), NAMES.index("static_object")
    fused = fuse_static(yolo, blobs, regions_px=[(0, 0, 400, 300)], explained_ids=[person],
                        explain_score=0.4, static_id=static)
    assert fused.names == ["person", "person", "static_object"]
    assert fused.xyxy[2].tolist() == [298, 120, 360, 200]
    assert fused.data["static_s"].tolist() == [0.0, 0.0, 6.0]
    assert fused.data["still_reset"].tolist() == [False, False, False]
    assert fuse_static(yolo, blobs[np.zeros(3, bool)], regions_px=[(0, 0, 400, 300)], explained_ids=[person],
                       explain_score=0.4, static_id=static) is yolo


def test_static_foreground_finds_an_object_no_coco_class_describes(yolov3_tiny_onnx: Path) -> None:
    """A crate of coloured patches is left on a generated road: YOLO has no class for it, the static
    foreground in the road region has; without road regions (or with the flag off) it is not looked for."""
    rng = np.random.default_rng(0)
    patches = rng.integers(95, 150, (48, 64, 1), np.uint8)
    road = np.repeat(np.repeat(np.repeat(patches, 10, axis=0), 10, axis=1), 3, axis=2)  # 480 x 640
    crate = cv2.resize(pasted_object(), (180, 120), interpolation=cv2.INTER_NEAREST)
    region = ((0.1, 0.2, 0.9, 0.9),)
    on = build_detector(OnnxConfig(model_path=yolov3_tiny_onnx))
    off = build_detector(OnnxConfig(model_path=yolov3_tiny_onnx, static_foreground=False))
    assert "static_object" not in off.class_names
    found, unasked, flag_off = [], [], []
    for i in range(30):
        t = i * 0.5
        frame = road.copy()
        if t >= 5:
            frame[200:320, 250:430] = crate
        found.append(on.detect_batch([FrameInput(frame, t, "a", static_regions_norm=region)])[0])
        unasked.append(on.detect_batch([FrameInput(frame, t, "b")])[0])
        flag_off.append(off.detect_batch([FrameInput(frame, t, "a", static_regions_norm=region)])[0])
    last = found[-1][found[-1].class_mask(["static_object"])]
    assert len(last) == 1 and box_iou(last.xyxy, np.array([[250, 200, 430, 320]], np.float32))[0, 0] >= 0.7
    assert last.data["static_s"][0] >= 5.0
    assert not any(d.class_mask(["static_object"]).any() for d in unasked + flag_off)


def test_the_published_yolov3_tiny_cfg_is_flagged_and_the_corrected_one_is_not() -> None:
    from detectors.darknet import cfg_warnings
    from tests.detectors.support import asset

    published = asset("yolov3-tiny.cfg").read_text()
    (warning,) = cfg_warnings(parse_cfg(published))
    assert "mask = 1,2,3" in warning
    assert cfg_warnings(parse_cfg(published.replace("mask = 0,1,2\n", "mask = 1,2,3\n"))) == []
