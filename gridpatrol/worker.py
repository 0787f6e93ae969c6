"""The worker: cameras it holds leases on → sampled frames → detector pipeline → rule events on the bus.

Frames never leave this process: a confirmed event's annotated frame is written to the evidence store
and only its key travels. Camera and zone changes arrive as config-change messages and, as a safety
net (a CLI change in another process, a lost message), by polling the database every few seconds.
Publishing never blocks the frame thread: events wait in a bounded outbox (``gridpatrol.outbox``) that
a publisher thread drains to the bus, retrying while the bus is down; when it is full the oldest
``updated`` events go first, and its depth and drops show in the posted health and in Prometheus.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from detectors.backends import BackendConfigBase, Detector, build_detector
from detectors.evidence import EvidenceLabels
from detectors.pipeline import Pipeline
from detectors.rules import RuleHit
from gridpatrol.outbox import HARD_LIMIT, SOFT_LIMIT, EventOutbox, OutboxCollector, OutboxPublisher
from gridpatrol.process_metrics import AnalysisLatency
from ingest.clips import ClipRecorders, ClipResult
from ingest.leases import LeaseStore
from ingest.reader import SourceOpener, StreamOptions
from ingest.settings import IngestSettings
from ingest.supervisor import CameraSpec, CameraSupervisor
from models.bus.health_board import HealthBoard
from models.bus.messages import CONFIG_CHANGES, ConfigChange, EventClip, RuleEvent
from models.bus.protocol import Bus
from models.db.tables import Camera
from models.errors import BusError, GridPatrolError
from models.evidence.store import EvidenceStore
from models.grid.cameras import analysed_stream
from models.grid.credentials import CredentialKeyring, CredentialsError, camera_secret, unreadable_marker
from models.grid.zones import current_zones, zone_versions
from models.grid.zonespec import parse_zones
from models.live.publisher import TilePublisher, tile_detections
from models.live.tiles import TileDetection

#: URL schemes whose streams only a source inside a platform process can open (ingest.reader openers)
HOSTED_SCHEMES = frozenset({"gb28181"})

logger = logging.getLogger(__name__)


@dataclass
class _Camera:
    spec: CameraSpec
    zones_version: int
    pipeline: Pipeline | None  # None while the camera has no rule zones: nothing to analyse


#: how long after its post-roll a clip may take to be written and linked before it counts as unavailable
CLIP_GRACE_S = 120.0


def to_message(camera_id: int, ev: RuleHit, *, evidence_key: str | None, clip_due: datetime | None = None) -> RuleEvent:
    """A detector rule event (times in epoch seconds) as the versioned bus message."""
    details: dict[str, Any] = dict(ev.details)
    count = int(details.get("people", details.get("objects", 0)) or 0)
    score = float(details.get("coverage", details.get("density", 0.0)) or 0.0)
    return RuleEvent(
        event_id=f"{camera_id}:{ev.zone}:{ev.rule}:{ev.started_t:.3f}:{ev.type}:{ev.t:.3f}",
        type=ev.type,
        camera_id=camera_id,
        zone=ev.zone,
        rule=ev.rule,
        episode_start=datetime.fromtimestamp(ev.started_t, UTC),
        at=datetime.fromtimestamp(ev.t, UTC),
        count=count,
        score=score,
        evidence_key=evidence_key,
        clip_due=clip_due,
    )


class Worker:
    def __init__(
        self,
        *,
        worker_id: str,
        session_factory: sessionmaker[Session],
        bus: Bus,
        leases: LeaseStore,
        evidence: EvidenceStore,
        backend: BackendConfigBase,
        ingest: IngestSettings,
        poll_s: float = 5.0,
        detector: Detector | None = None,
        health_board: HealthBoard | None = None,
        outbox_limits: tuple[int, int] = (SOFT_LIMIT, HARD_LIMIT),
        credentials: CredentialKeyring | None = None,
        timezone: tzinfo = UTC,
        case_codes: Mapping[str, str] | None = None,
        tiles: TilePublisher | None = None,
        openers: Mapping[str, SourceOpener] | None = None,
    ) -> None:
        self.worker_id = worker_id
        self.tiles = tiles  # wall tiles and snapshots of watched cameras (models/live); None: none
        self.timezone = timezone  # schedules and evidence banners are in the installation's time zone
        self.case_codes = dict(case_codes or {})  # rule → case code on the evidence; empty: the defaults
        self.credentials = credentials  # decrypts camera URLs; None: only legacy plain-text ones work
        self._credential_errors: set[int] = set()
        self.openers = dict(openers or {})
        self._skipped: set[int] = set()
        self.factory, self.bus, self.evidence, self.ingest = session_factory, bus, evidence, ingest
        self.poll_s = poll_s
        self.health_board = health_board
        self._states: dict[str, str] = {}
        self.detector = detector or build_detector(backend)
        self.cameras: dict[str, _Camera] = {}
        self.frames_analysed = 0
        self.outbox = EventOutbox(soft_limit=outbox_limits[0], hard_limit=outbox_limits[1])
        self.publisher = OutboxPublisher(self.outbox, bus, name=f"worker-publisher-{worker_id}")
        self._lock = threading.Lock()  # the detector and pipelines are used by one frame at a time
        self._stop = threading.Event()
        # event clips: each reader feeds its camera's packet ring (no second session at the camera)
        self.clips = ClipRecorders(ingest.clip_options()) if ingest.clips_enabled else None
        self.supervisor = CameraSupervisor(
            worker_id=worker_id,
            leases=leases,
            on_frame=self.on_frame,
            capacity=ingest.worker_capacity,
            lease_ttl_s=ingest.lease_ttl_s,
            stagger_s=ingest.connect_stagger_s,
            packet_sinks=self.clips.sink_for if self.clips is not None else None,
            openers=openers,  # gb28181:// cameras when the GB/T 28181 platform runs in this process
        )
        self.supervisor.health.attach_metrics(OutboxCollector(self.outbox, worker_id=worker_id))
        #: gridpatrol_detector_seconds: analysis time per frame (gridpatrol/process_metrics.py)
        self.analysis_latency = AnalysisLatency(backend=backend.type)
        self.supervisor.health.attach_metrics(self.analysis_latency)
        self._thread = threading.Thread(target=self._control, name=f"worker-control-{worker_id}", daemon=True)

    # --- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> Worker:
        self.refresh()
        self.publisher.start()
        if self.tiles is not None:
            self.tiles.start()
        if self.clips is not None:
            self.clips.start()
        self.supervisor.start()
        self._thread.start()
        logger.info("worker %s: started with %d cameras known", self.worker_id, len(self.cameras))
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.supervisor.stop()
        if self.clips is not None:
            self.clips.stop()  # clips cut short are written and reported before the publisher ends
        self.publisher.stop()  # after the frames: it sends what they left, then ends
        if self.tiles is not None:
            self.tiles.stop()
        self.detector.close()

    # --- configuration -----------------------------------------------------------------------------------
    def refresh(self, only_camera: int | None = None) -> None:
        """Re-read enabled cameras and their zone versions; rebuild the pipelines that changed."""
        with self.factory() as session:
            stmt = select(Camera.id, Camera.url, Camera.sub_url, Camera.analysis_stream).where(Camera.enabled.is_(True))
            if only_camera is not None:
                stmt = stmt.where(Camera.id == only_camera)
            rows = list(session.execute(stmt))
            versions = zone_versions(session)
            # the sub-stream by default (lower resolution: cheaper to decode); zones are normalised, so they
            # fit either stream
            names = {cid: analysed_stream(setting, has_sub=bool(sub)) for cid, _, sub, setting in rows}
            docs = {
                cid: current_zones(session, cid).document
                for cid, *_ in rows
                if versions.get(cid, 0) != (self.cameras[str(cid)].zones_version if str(cid) in self.cameras else -1)
                # another stream, another resolution: the tracker and background models start afresh
                or (str(cid) in self.cameras and self.cameras[str(cid)].spec.stream_name != names[cid])
            }
        specs = {}
        for cid, stored_main, stored_sub, _ in rows:
            key = str(cid)
            name = names[cid]
            column, stored = ("sub_url", stored_sub) if name == "sub" else ("url", stored_main)
            url = self._stream_url(cid, stored, column=column)
            if not self._can_open(cid, url):
                continue  # left to a worker that can (not claimed here, so its lease stays free)
            spec = CameraSpec(
                key, url, stream=self._stream_options(url), sampling=self.ingest.sampling_options(), stream_name=name
            )
            specs[key] = spec
            known = self.cameras.get(key)
            version = versions.get(cid, 0)
            with self._lock:
                if known is None or cid in docs:
                    self.cameras[key] = _Camera(spec, version, self._pipeline(key, docs.get(cid)))
                    if known is not None:
                        logger.info(
                            "worker %s: camera %s zones now version %d, analysing its %s stream",
                            self.worker_id, key, version, name,
                        )  # fmt: skip
                else:
                    known.spec = spec
        if only_camera is None:
            with self._lock:
                for gone in set(self.cameras) - set(specs):
                    del self.cameras[gone]
                    self.detector.forget(gone)
                    if self.clips is not None:
                        self.clips.forget(gone)
            self.supervisor.set_cameras(specs.values())
        else:
            for spec in specs.values():
                self.supervisor.upsert(spec)

    def _can_open(self, camera_id: int, url: str) -> bool:
        """A camera only a process-hosted source can read (``gb28181://``: the GB/T 28181 platform holds the
        SIP session and the media) is read only by a worker running beside that platform; any other worker
        leaves it alone instead of claiming it and failing forever."""
        scheme = url.partition("://")[0].lower()
        if scheme not in HOSTED_SCHEMES or scheme in self.openers:
            return True
        if camera_id not in self._skipped:
            logger.info("worker %s: camera %s is a %s camera: left to the worker beside the platform", self.worker_id, camera_id, scheme)
            self._skipped.add(camera_id)
        return False

    def _stream_url(self, camera_id: int, stored: str, *, column: str = "url") -> str:
        """The URL a reader opens, decrypted here in the worker. One that cannot be decrypted becomes a
        marker (no secret in it) that its reader reports as ``failed``/``credentials``: never a crash."""
        try:
            url = camera_secret(str(camera_id), column, stored, self.credentials)
        except CredentialsError as err:
            if camera_id not in self._credential_errors:
                logger.error("camera %s: %s", camera_id, err)
                self._credential_errors.add(camera_id)
            return unreadable_marker(stored)
        self._credential_errors.discard(camera_id)
        return url or ""

    def _stream_options(self, url: str) -> StreamOptions:
        options = self.ingest.stream_options()
        if url.startswith("file:") or "://" not in url:
            # a recorded clip registered as a camera (demo, replay): play it in real time, forever
            options = dataclasses.replace(options, loop=True, realtime=True)
        return options

    def _pipeline(self, camera_id: str, document: dict[str, Any] | None) -> Pipeline | None:
        if not document or not document.get("zones"):
            return None
        try:
            zones = parse_zones(document)
        except GridPatrolError as err:  # stored documents were validated; a newer schema may disagree
            logger.error("camera %s: zones cannot be used: %s", camera_id, err)
            return None
        if not any(z.kind != "mask" for z in zones.zones):
            return None
        self.detector.forget(camera_id)
        with self.factory() as session:  # the evidence banner names the camera (read when its zones change)
            camera_name = session.scalar(select(Camera.name).where(Camera.id == int(camera_id))) or ""
        labels = EvidenceLabels(camera=camera_name, **({"case_codes": self.case_codes} if self.case_codes else {}))
        # frame times are epoch seconds: the epoch makes evidence show the wall-clock time
        return Pipeline(
            zones, self.detector, stream=camera_id, epoch=datetime.fromtimestamp(0, UTC), tz=self.timezone,
            labels=labels,
        )  # fmt: skip

    def _control(self) -> None:
        cursor: str | None = None
        next_poll = time.monotonic() + self.poll_s
        next_health = 0.0
        while not self._stop.is_set():
            try:
                cursor, deliveries = self.bus.read_broadcast(CONFIG_CHANGES, after=cursor, block_ms=500)
                for d in deliveries:
                    if isinstance(d.message, ConfigChange):
                        self.refresh(d.message.camera_id if d.message.kind != "cameras" else None)
                if self.tiles is not None:  # which owned cameras someone watches (once a second)
                    self.tiles.refresh_demand(int(c) for c in self.supervisor.owned())
                if time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + self.poll_s
                    self.refresh()
                if time.monotonic() >= next_health:
                    next_health = time.monotonic() + 2.0
                    self.post_health()
            except Exception:  # keep controlling cameras through database or bus hiccups
                logger.exception("worker %s: control loop error", self.worker_id)
                self._stop.wait(1.0)

    # --- frames ------------------------------------------------------------------------------------------
    def on_frame(self, camera_id: str, frame_bgr: np.ndarray, capture_ts: float, stream_ts: float | None) -> None:
        tile: tuple[int, tuple[TileDetection, ...], list[str]] | None = None
        events: list[RuleHit] = []
        with self._lock:
            cam = self.cameras.get(camera_id)
            if cam is None:
                return
            pipeline = cam.pipeline
            if pipeline is not None:
                started = time.perf_counter()
                try:
                    events = pipeline.process(frame_bgr, capture_ts)
                except Exception:
                    logger.exception("camera %s: detection failed on a frame", camera_id)
                    return
                self.analysis_latency.observe(time.perf_counter() - started)
                self.frames_analysed += 1
                if self.tiles is not None:
                    tile = self._tile_extras(int(camera_id), pipeline, frame_bgr)
        if pipeline is None:  # no rule zones: nothing to analyse, but a watched wall still shows the camera
            self._offer_tile(int(camera_id), frame_bgr, capture_ts, None)
        elif tile is not None:
            self._offer_tile(int(camera_id), frame_bgr, capture_ts, tile)
        if events:
            self._emit(int(camera_id), events)

    def _tile_extras(
        self, camera_id: int, pipeline: Pipeline, frame_bgr: np.ndarray
    ) -> tuple[int, tuple[TileDetection, ...], list[str]] | None:
        """Under the lock: when this camera's tile is due, its width, latest detections and active rules."""
        assert self.tiles is not None
        rules = [r.rule for r in pipeline.rules if r.machine.state == "active"]
        width = self.tiles.due(camera_id, alarm=bool(rules))
        if width is None:
            return None
        found = pipeline.last_tracked
        boxes: tuple[TileDetection, ...] = ()
        if found is not None and len(found.xyxy):
            labels = [found.class_names[i] for i in found.class_id]
            h, w = frame_bgr.shape[:2]
            boxes = tile_detections(found.xyxy, found.confidence, labels, frame_wh=(w, h))
        return width, boxes, rules

    def _offer_tile(
        self,
        camera_id: int,
        frame_bgr: np.ndarray,
        capture_ts: float,
        extras: tuple[int, tuple[TileDetection, ...], list[str]] | None,
    ) -> None:
        """One JPEG of a watched camera's frame, whatever the number of viewers (models/live)."""
        if self.tiles is None:
            return
        if extras is None:
            width = self.tiles.due(camera_id)
            if width is None:
                return
            extras = (width, (), [])
        width, boxes, rules = extras
        try:
            self.tiles.offer(
                camera_id, frame_bgr, captured_at=capture_ts, width=width, detections=boxes, rules=rules
            )
        except Exception:  # a tile is a convenience: never lose the frame's analysis over it
            logger.exception("camera %s: tile not encoded", camera_id)

    @property
    def events_published(self) -> int:
        return self.outbox.published

    def _emit(self, camera_id: int, events: list[RuleHit]) -> None:
        """Evidence to the store, messages to the outbox: the bus is the publisher thread's business."""
        messages: list[RuleEvent] = []
        for ev in events:
            key = None
            jpeg = ev.evidence_jpeg() if ev.type != "updated" or ev.evidence is not None else None
            if jpeg:
                key = self.evidence.put(jpeg, prefix=f"cam-{camera_id}", at=datetime.fromtimestamp(ev.t, UTC))
            message = to_message(camera_id, ev, evidence_key=key)
            if ev.type == "started" and self.clips is not None:
                message = self._request_clip(camera_id, ev.t, message)
            messages.append(message)
            logger.info("camera %s: %s %s in zone %s", camera_id, ev.rule, ev.type, ev.zone)
        self.outbox.put(messages)

    def _request_clip(self, camera_id: int, at: float, message: RuleEvent) -> RuleEvent:
        """Ask the camera's clip buffer for this event's clip; the event then announces it (``clip_due``)
        and an :class:`EventClip` follows on the same topic once the post-roll has been recorded."""
        assert self.clips is not None

        def done(result: ClipResult) -> None:  # the clip writer's thread
            key, reason = None, result.reason
            if result.data is not None:
                try:
                    key = self.evidence.put(result.data, prefix=f"cam-{camera_id}", suffix=".mp4", at=datetime.fromtimestamp(at, UTC))
                except OSError as err:  # a full or unmounted volume: the ticket says "unavailable"
                    logger.error("camera %s: event clip not stored: %s", camera_id, err)
                    reason = "not stored"
            started = datetime.fromtimestamp(result.started_at, UTC) if result.started_at is not None else None
            self.outbox.put([
                EventClip(
                    event_id=message.event_id, camera_id=camera_id, clip_key=key, started_at=started,
                    duration_s=result.duration_s, reason=None if key else (reason or "not recorded"),
                )
            ])  # fmt: skip

        if not self.clips.request(str(camera_id), at=at, on_done=done):
            return message
        due = datetime.fromtimestamp(at + self.clips.options.post_s + CLIP_GRACE_S, UTC)
        return message.model_copy(update={"clip_due": due})

    def health(self) -> dict[str, dict[str, Any]]:
        """Owned cameras' stream health with their events waiting in (and dropped by) the outbox."""
        return {cid: {**snap, **self.outbox.camera_health(cid)} for cid, snap in self.supervisor.health_snapshot().items()}

    def post_health(self) -> None:
        """Post the owned cameras' health for the API, and keep ``cameras.status`` current."""
        snaps = self.health()
        if self.health_board is not None and snaps:
            try:
                self.health_board.publish(self.worker_id, snaps)
            except BusError as err:
                logger.warning("worker %s: could not post health: %s", self.worker_id, err)
        changed = {cid: str(s["state"]) for cid, s in snaps.items() if self._states.get(cid) != s["state"]}
        if changed:
            with self.factory.begin() as session:
                for cid, state in changed.items():
                    session.execute(update(Camera).where(Camera.id == int(cid)).values(status=state))
            self._states.update(changed)
