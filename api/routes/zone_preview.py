"""The zone editor's server side: preview edited zones with the worker's own pipeline before saving,
list the recorded clips a preview may run on, and list or restore saved zone versions.

The API never runs detectors itself (layers): a :class:`ZonePreviewer` is passed into ``create_app``
by ``gridpatrol`` (``gridpatrol/zone_preview.py``); without one the preview answers 503.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Protocol

import anyio
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from api.deps import (
    BusDep,
    ConfigurableCamera,
    ConfigureUser,
    CurrentUser,
    ScopeDep,
    SessionDep,
    VisibleCamera,
    remote_addr,
    x_access,
)
from models.bus.messages import CONFIG_CHANGES, ConfigChange
from models.db.tables import User, ZoneRevision
from models.errors import BusError, NotFound, Unavailable
from models.grid.zones import save_zones
from models.grid.zonespec import ZonesDocument, ZonesFile, parse_zones
from models.identity.audit import record_access

router = APIRouter(prefix="/api", tags=["zones"])

#: a clip name: one file of the clips folder, never a path
CLIP_NAME = r"^[A-Za-z0-9_\-\u4e00-\u9fff][A-Za-z0-9_.\-\u4e00-\u9fff]{0,120}\.(mp4|ts|mkv|avi|mov)$"
MAX_VERSIONS = 50


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PreviewSource(_Strict):
    """Where the preview's frames come from."""

    kind: Literal["clip", "recent"] = Field(
        description="clip: a recorded clip of the clips folder (GET /api/zones/clips); recent: the camera's "
        "live stream read now for 'seconds'"
    )
    clip: str | None = Field(default=None, pattern=CLIP_NAME, description="kind=clip: the clip's file name")
    seconds: float = Field(
        default=10.0, ge=1.0, le=60.0, description="kind=recent: seconds of the live stream"
    )


class PreviewIn(_Strict):
    document: dict[str, Any] = Field(description="The edited zones document, as PUT .../zones takes it")
    source: PreviewSource
    fps: float = Field(
        default=2.0, gt=0.0, le=10.0, description="Frames analysed per second (the worker's detect rate)"
    )


class PreviewBox(_Strict):
    xyxy_norm: tuple[float, float, float, float] = Field(
        description="Box corners normalised to 0..1 (x right, y down)"
    )
    label: str = Field(description="Class name of the detection")


class PreviewEvent(_Strict):
    type: Literal["started", "updated", "ended"]
    rule: str = Field(description="fire_lane_blockage | road_occupation | crowding")
    zone: str
    t: float = Field(description="Seconds from the start of the source")
    started_t: float = Field(description="When the condition began, seconds from the start of the source")
    details: dict[str, Any] = Field(
        default_factory=dict, description="What the rule measured (count, coverage, classes)"
    )
    boxes: list[PreviewBox] = Field(
        default_factory=list, description="The detections that made the rule fire"
    )
    image: str | None = Field(
        default=None, description="The annotated frame as a data: URL (JPEG), for the first few events"
    )


class PreviewOut(_Strict):
    camera_id: int
    source: PreviewSource
    backend: str = Field(description="The detector backend the workers run")
    frames: int = Field(description="Frames analysed")
    detector_runs: int = Field(description="Frames the detector ran on (the motion gate skips still frames)")
    duration_s: float = Field(description="Seconds of the source analysed")
    resolution_wh: tuple[int, int] | None = None
    truncated: bool = Field(default=False, description="The preview stopped at its frame or time bound")
    cpu_s: float = Field(description="CPU seconds the preview took")
    events: list[PreviewEvent]


class ClipOut(_Strict):
    name: str
    size_bytes: int
    modified_at: datetime


class ZonePreviewer(Protocol):
    """Runs zones over frames with the worker's pipeline (implemented in gridpatrol/zone_preview.py)."""

    def clips(self) -> list[ClipOut]: ...

    def preview(
        self, *, camera_id: int, zones: ZonesFile, source: PreviewSource, fps: float
    ) -> PreviewOut: ...


class ZoneVersionOut(_Strict):
    version: int
    author: str | None
    saved_at: datetime
    zones: int = Field(description="Number of zones in this version")
    document: ZonesDocument


class RestoreIn(_Strict):
    version: int = Field(
        ge=1, description="The saved version to bring back (it is saved again as a new version)"
    )
    based_on: int | None = Field(
        default=None, ge=0, description="The version the editor shows; refused (409) when someone saved since"
    )


def get_previewer(request: Request) -> ZonePreviewer:
    previewer: ZonePreviewer | None = getattr(request.app.state, "zone_previewer", None)
    if previewer is None:
        raise Unavailable("zone preview is not served by this process")
    return previewer


PreviewerDep = Annotated[ZonePreviewer, Depends(get_previewer)]


@router.get("/zones/clips", response_model=list[ClipOut], openapi_extra=x_access("configure"))
def list_clips(_user: ConfigureUser, request: Request) -> list[ClipOut]:
    """Recorded clips a preview can run on (the clips folder, ``<data dir>/clips``), newest first; none
    when this process serves no preview."""
    previewer: ZonePreviewer | None = getattr(request.app.state, "zone_previewer", None)
    return previewer.clips() if previewer is not None else []


@router.post(
    "/cameras/{camera_id}/zones/preview", response_model=PreviewOut, openapi_extra=x_access("configure")
)
async def preview_zones(
    camera: ConfigurableCamera,
    body: PreviewIn,
    previewer: PreviewerDep,
    request: Request,
    session: SessionDep,
    scope: ScopeDep,
) -> PreviewOut:
    """Run the edited zones (not saved) over a recorded clip or the camera's live stream with the workers'
    pipeline, and answer when and where each rule would have fired, with its boxes. Bad zones are a 422
    naming the zone and field; the work is bounded (frames and CPU time: ``truncated`` says it stopped).
    The preview shows the camera's pictures: it is in the access log like any other view."""
    zones = parse_zones(body.document, ZonesDocument)
    if body.source.kind == "clip" and not body.source.clip:
        raise NotFound("choose a clip (GET /api/zones/clips)")
    camera_id = camera.id
    record_access(
        session, scope=scope, allowed=True, channel="api", object_type="camera", object_id=camera_id,
        remote_addr=remote_addr(request), detail={"path": request.url.path[:200], "preview": body.source.kind},
    )  # fmt: skip
    session.commit()
    return await anyio.to_thread.run_sync(
        lambda: previewer.preview(
            camera_id=camera_id, zones=ZonesFile(zones=zones.zones), source=body.source, fps=body.fps
        )
    )


@router.get(
    "/cameras/{camera_id}/zones/versions",
    response_model=list[ZoneVersionOut],
    openapi_extra=x_access("camera"),
)
def zone_versions(cam: VisibleCamera, session: SessionDep) -> list[ZoneVersionOut]:
    """The camera's saved zone versions, newest first (at most 50), each with its author and document."""
    rows = session.execute(
        select(ZoneRevision, User.username)
        .outerjoin(User, User.id == ZoneRevision.author_id)
        .where(ZoneRevision.camera_id == cam.id)
        .order_by(ZoneRevision.version.desc())
        .limit(MAX_VERSIONS)
    ).all()
    out = []
    for rev, username in rows:
        doc = ZonesDocument.model_validate(
            {
                **rev.document,
                "camera_id": cam.id,
                "version": rev.version,
                "author": username,
                "saved_at": rev.created_at,
            }
        )
        out.append(
            ZoneVersionOut(
                version=rev.version,
                author=username,
                saved_at=rev.created_at,
                zones=len(doc.zones),
                document=doc,
            )
        )
    return out


@router.post(
    "/cameras/{camera_id}/zones/restore", response_model=ZonesDocument, openapi_extra=x_access("configure")
)
def restore_zones(
    camera: ConfigurableCamera, user: CurrentUser, session: SessionDep, bus: BusDep, body: RestoreIn
) -> ZonesDocument:
    """Save an older version again as the newest one (the history keeps both); announced to workers."""
    rev = session.scalar(
        select(ZoneRevision).where(ZoneRevision.camera_id == camera.id, ZoneRevision.version == body.version)
    )
    if rev is None:
        raise NotFound(f"zones version {body.version} not found")
    z = save_zones(session, camera.id, {**rev.document, "version": body.based_on}, author=user, channel="api")
    session.commit()
    if bus is not None:
        try:
            bus.publish(CONFIG_CHANGES, [ConfigChange(kind="zones", camera_id=camera.id, version=z.version)])
        except BusError:
            pass  # workers also poll zone versions
    return z.as_document()
