"""The zone editor's preview: edited (unsaved) zones run over a recorded clip or a few seconds of the
camera's live stream with the workers' own pipeline (``detectors.pipeline.Pipeline``, same backend).

Sources: ``clip`` is a file of the clips folder (``<data dir>/clips``: recordings an operator placed
there, or clips also replayed by ``gridpatrol gateway --replay``); ``recent`` reads the camera's stream
now for N seconds (the API process opens it like a worker would). Bounded work: at most
``max_frames`` frames and ``max_cpu_s`` CPU seconds per preview, one preview at a time per process.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path

import av
import cv2
import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.routes.zone_preview import ClipOut, PreviewBox, PreviewEvent, PreviewOut, PreviewSource
from detectors.backends import BackendConfigBase, Detector, build_detector
from detectors.evidence import EvidenceLabels
from detectors.pipeline import Pipeline
from detectors.rules import RuleHit
from gridpatrol.analyze import sample_clip
from models.db.tables import Camera
from models.errors import CameraError, NotFound, StreamError, Unavailable
from models.grid.credentials import CredentialKeyring, camera_secret
from models.grid.zonespec import ZonesFile

logger = logging.getLogger(__name__)

CLIP_SUFFIXES = frozenset({".mp4", ".ts", ".mkv", ".avi", ".mov"})
#: annotated frames returned with the answer (each a JPEG of some 30-80 kB)
MAX_IMAGES = 4
#: frames are scaled down to this width before analysis (the preview answers in seconds, not minutes)
MAX_WIDTH = 960


@dataclass(frozen=True)
class PreviewLimits:
    max_frames: int = 600
    max_cpu_s: float = 30.0
    max_clip_s: float = 600.0


class ZonePreviewService:
    """Implements ``api.routes.zone_preview.ZonePreviewer`` with the detectors."""

    def __init__(
        self,
        *,
        clips_dir: Path,
        backend: BackendConfigBase | Callable[[], BackendConfigBase],
        session_factory: sessionmaker[Session] | None = None,
        keyring: Callable[[], CredentialKeyring | None] | None = None,
        limits: PreviewLimits | None = None,
        tz: tzinfo | None = None,
    ) -> None:
        self.clips_dir = clips_dir
        self._backend = backend
        self._factory = session_factory
        self._keyring = keyring
        self.limits = limits or PreviewLimits()
        self.tz = tz
        self._busy = threading.Lock()

    def clips(self) -> list[ClipOut]:
        if not self.clips_dir.is_dir():
            return []
        found = []
        for path in self.clips_dir.iterdir():
            if path.suffix.lower() in CLIP_SUFFIXES and path.is_file():
                st = path.stat()
                found.append(
                    ClipOut(
                        name=path.name,
                        size_bytes=st.st_size,
                        modified_at=datetime.fromtimestamp(st.st_mtime, UTC),
                    )
                )
        return sorted(found, key=lambda c: (-c.modified_at.timestamp(), c.name))

    def _clip_path(self, name: str) -> Path:
        path = self.clips_dir / name
        if (
            "/" in name
            or "\\" in name
            or path.resolve().parent != self.clips_dir.resolve()
            or not path.is_file()
        ):
            raise NotFound(f"clip {name} not found in the clips folder")
        return path

    def _camera_name(self, camera_id: int) -> str:
        """The name the evidence banner shows ("" when this process has no database)."""
        if self._factory is None:
            return ""
        with self._factory() as session:
            return session.scalar(select(Camera.name).where(Camera.id == camera_id)) or ""

    def _camera_url(self, camera_id: int) -> str:
        if self._factory is None:
            raise Unavailable("previews of the live stream are not served by this process")
        with self._factory() as session:
            cam = session.get(Camera, camera_id)
            if cam is None:
                raise NotFound("camera not found")
            url = camera_secret(cam.name, "url", cam.url, self._keyring() if self._keyring else None)
        if not url:
            raise NotFound("the camera has no stream URL")
        return url

    def _frames(
        self, camera_id: int, source: PreviewSource, fps: float
    ) -> Iterator[tuple[np.ndarray, float]]:
        if source.kind == "clip":
            assert source.clip is not None
            for frame, t in sample_clip(self._clip_path(source.clip), fps=fps):
                if t > self.limits.max_clip_s:
                    return
                yield frame, t
            return
        yield from live_frames(self._camera_url(camera_id), seconds=source.seconds, fps=fps)

    def preview(self, *, camera_id: int, zones: ZonesFile, source: PreviewSource, fps: float) -> PreviewOut:
        if not self._busy.acquire(timeout=30):
            raise Unavailable("another zone preview is running: try again in a moment")
        try:
            return self._run(camera_id=camera_id, zones=zones, source=source, fps=fps)
        except CameraError as err:  # the clip or the stream could not be read (StreamError, credentials)
            raise Unavailable(f"the preview could not read its frames: {err}") from err
        finally:
            self._busy.release()

    def _run(self, *, camera_id: int, zones: ZonesFile, source: PreviewSource, fps: float) -> PreviewOut:
        config = self._backend() if callable(self._backend) else self._backend
        detector: Detector = build_detector(config)
        cpu0 = time.thread_time()
        events: list[PreviewEvent] = []
        frames = 0
        last_t = 0.0
        size: tuple[int, int] | None = None
        truncated = False
        pipeline = Pipeline(
            zones, detector, stream=f"preview-{camera_id}", epoch=datetime.now(UTC), tz=self.tz,
            labels=EvidenceLabels(camera=self._camera_name(camera_id)),
        )  # fmt: skip
        try:
            for frame, t in self._frames(camera_id, source, fps):
                frame = _scaled(frame)
                h, w = frame.shape[:2]
                size = (w, h)
                frames += 1
                last_t = t
                for hit in pipeline.process(frame, t):
                    events.append(self._event(pipeline, hit, frame, with_image=len(events) < MAX_IMAGES))
                if frames >= self.limits.max_frames or time.thread_time() - cpu0 > self.limits.max_cpu_s:
                    truncated = True
                    break
            for hit in pipeline.flush(last_t):
                events.append(self._event(pipeline, hit, None, with_image=False))
        finally:
            detector.forget(pipeline.stream)
            detector.close()
        cpu_s = round(time.thread_time() - cpu0, 2)
        logger.info(
            "%s: zone preview over %s: %d frames, %d events, %.1f CPU s",
            camera_id,
            source.kind,
            frames,
            len(events),
            cpu_s,
        )
        return PreviewOut(
            camera_id=camera_id, source=source, backend=config.type, frames=frames, detector_runs=pipeline.detections_run,
            duration_s=round(last_t, 2), resolution_wh=size, truncated=truncated, cpu_s=cpu_s, events=events,
        )  # fmt: skip

    def _event(
        self, pipeline: Pipeline, hit: RuleHit, frame: np.ndarray | None, *, with_image: bool
    ) -> PreviewEvent:
        boxes: list[PreviewBox] = []
        if frame is not None and hit.type != "ended" and pipeline.last_tracked is not None:
            rule = next((r for r in pipeline.rules if r.zone.name == hit.zone), None)
            if rule is not None:
                h, w = frame.shape[:2]
                _ok, counted, _details = rule.measure(pipeline.last_tracked, resolution_wh=(w, h), wall=None)
                for (x1, y1, x2, y2), name in zip(counted.xyxy.tolist(), counted.names, strict=True):
                    boxes.append(
                        PreviewBox(xyxy_norm=(_n(x1 / w), _n(y1 / h), _n(x2 / w), _n(y2 / h)), label=name)
                    )
        image = None
        if with_image and hit.evidence is not None:
            ok, buf = cv2.imencode(".jpg", hit.evidence, [cv2.IMWRITE_JPEG_QUALITY, 75])
            if ok:
                image = "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")
        return PreviewEvent(
            type=hit.type, rule=hit.rule, zone=hit.zone, t=round(hit.t, 2), started_t=round(hit.started_t, 2),
            details=_jsonable(hit.details), boxes=boxes, image=image,
        )  # fmt: skip


def _n(value: float) -> float:
    return round(min(1.0, max(0.0, value)), 4)


def _jsonable(details: dict[str, object]) -> dict[str, object]:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in details.items()}


def _scaled(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    if w <= MAX_WIDTH:
        return frame
    return cv2.resize(frame, (MAX_WIDTH, round(h * MAX_WIDTH / w)), interpolation=cv2.INTER_AREA)


def live_frames(url: str, *, seconds: float, fps: float) -> Iterator[tuple[np.ndarray, float]]:
    """(BGR frame, seconds since the first frame) from a camera stream, ``fps`` a second for ``seconds``."""
    try:
        container = av.open(url, options={"rtsp_transport": "tcp", "timeout": "5000000"}, timeout=(5.0, 5.0))
    except (av.error.FFmpegError, OSError) as err:
        raise StreamError(f"cannot open the camera's stream ({type(err).__name__})") from err
    with container:
        stream = container.streams.video[0]
        start: float | None = None
        next_t = 0.0
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            start = frame.time if start is None else start
            t = frame.time - start
            if t > seconds:
                return
            if t + 1e-6 < next_t:
                continue
            next_t = t + 1.0 / fps
            yield frame.to_ndarray(format="bgr24"), t
