"""The worker's evidence names the camera: a camera called in Chinese, a crowd zone, one frame with a
person in it; the stored JPEG carries the banner with the camera's name, the zone, the rule, its case
code and the local time in Asia/Shanghai, as drawn for that text and no other."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import cv2
import numpy as np
from PIL import Image

from detectors.backends import ClassicConfig, Detector
from detectors.backends.base import FrameInput
from detectors.detections import Detections
from detectors.evidence import EvidenceLabels, banner_text
from gridpatrol.worker import Worker
from ingest.leases import MemoryLeaseStore
from ingest.settings import IngestSettings
from models.bus.memory import MemoryBus
from models.db.engine import make_engine, make_session_factory, transaction
from models.db.tables import Camera
from models.evidence.drawing import draw_banner, open_jpeg
from models.evidence.store import FileEvidenceStore
from models.grid.zones import save_zones
from tests.conftest import seed
from tests.support.databases import sqlite_copy

NAME = "东门广场 3 号枪机"
SQUARE = [[0.2, 0.55], [0.8, 0.55], [0.8, 0.98], [0.2, 0.98]]
AT = datetime(2026, 11, 30, 9, 5, 3, tzinfo=UTC).timestamp()  # 17:05:03 in Shanghai


class OnePerson(Detector):
    """Sees one person standing in the square (the rule, its evidence and the store downstream are real)."""

    class_names = ("person",)

    def detect_batch(self, frames: Sequence[FrameInput]) -> list[Detections]:
        box = np.array([[300, 220, 340, 330]], np.float32)
        return [Detections(box, [0.9], [0], self.class_names) for _ in frames]


def scene() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = np.repeat(np.repeat(rng.integers(60, 200, (36, 64, 3), np.uint8), 10, axis=0), 10, axis=1)
    return cv2.GaussianBlur(img, (9, 9), 0)


def test_stored_evidence_names_the_camera_zone_rule_and_local_time(
    _sqlite_template: Path, tmp_path: Path
) -> None:
    engine = make_engine(sqlite_copy(_sqlite_template, tmp_path))
    factory = make_session_factory(engine)
    seed(factory, tmp_path)
    zone = {
        "name": "广场",
        "kind": "crowd_area",
        "polygon": SQUARE,
        "min_people": 1,
        "dwell_s": 0,
        "clear_s": 0,
    }
    with transaction(factory) as session:
        camera = session.get(Camera, 1)
        assert camera is not None
        camera.name = NAME
        save_zones(session, 1, {"zones": [zone]}, author=None)
    store = FileEvidenceStore(tmp_path / "evidence")
    worker = Worker(
        worker_id="w-evidence",
        session_factory=factory,
        bus=MemoryBus(),
        leases=MemoryLeaseStore(),
        evidence=store,
        backend=ClassicConfig(),
        ingest=IngestSettings(worker_capacity=0),  # frames come from this test, not from a camera reader
        detector=OnePerson(),
        timezone=ZoneInfo("Asia/Shanghai"),
    )
    try:
        worker.refresh()
        frame = scene()
        worker.on_frame("1", frame, AT, None)
        files = sorted((tmp_path / "evidence").rglob("*.jpg"))
        assert len(files) == 1
        stored = np.asarray(open_jpeg(files[0].read_bytes())).astype(int)
    finally:
        worker.detector.close()  # never started: no threads to stop
        engine.dispose()

    wall = datetime.fromtimestamp(AT, UTC).astimezone(ZoneInfo("Asia/Shanghai"))
    text = banner_text(
        rule="crowding", event="started", zone="广场", labels=EvidenceLabels(camera=NAME), t=AT, wall=wall
    )
    assert text.splitlines()[1] == f"摄像头：{NAME} ｜ 区域：广场 ｜ 2026-11-30 17:05:03 +08:00"

    def banner(words: str) -> np.ndarray:
        return np.asarray(draw_banner(Image.fromarray(frame[:, :, ::-1].copy()), words)).astype(int)

    expected = banner(text)
    band = (np.abs(expected - frame[:, :, ::-1].astype(int)).max(axis=2) > 0).any(axis=1)
    assert band[:10].all() and not band[120:].any()  # the banner is at the top (the zone is below)
    right = np.abs(stored[band] - expected[band]).mean()
    wrong = np.abs(stored[band] - banner(text.replace(NAME, "西门停车场 1 号球机"))[band]).mean()
    assert right < 7 and wrong > 3 * right, (right, wrong)  # JPEG noise, against another camera's name
