"""Cameras the caller may see. One they may not see answers 404, exactly like one that does not exist."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request
from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from api.deps import (
    BusDep,
    ConfigurableCamera,
    CurrentUser,
    ScopeDep,
    SessionDep,
    StateDep,
    VisibleCamera,
    remote_addr,
    x_access,
)
from api.schemas import CameraOut, CameraPage, CameraPatchIn, ErrorOut
from models.bus.messages import CONFIG_CHANGES, ConfigChange
from models.db.engine import lock_rows
from models.db.tables import Camera, CameraOutage, GridNode
from models.errors import BusError, Conflict, InvalidInput
from models.grid.cameras import analysed_stream
from models.grid.outages import ongoing
from models.identity.audit import record_change

router = APIRouter(prefix="/api", tags=["cameras"])


def _host(url: str) -> str | None:
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def camera_out(cam: Camera, *, offline_since: datetime | None = None) -> CameraOut:
    return CameraOut(
        id=cam.id,
        name=cam.name,
        grid_id=cam.grid_id,
        grid_code=cam.grid.code if cam.grid else None,
        grid_name=cam.grid.name if cam.grid else None,
        lon=cam.lon,
        lat=cam.lat,
        enabled=cam.enabled,
        status=cam.status,
        has_onvif=bool(cam.onvif_url),
        stream_host=cam.stream_host or _host(cam.url),  # url: encrypted (no host) or a legacy plain row
        has_sub_stream=bool(cam.sub_url),
        analysis_stream=cam.analysis_stream or "auto",  # type: ignore[arg-type]
        analysed_stream=analysed_stream(cam.analysis_stream, has_sub=bool(cam.sub_url)),
        offline_since=offline_since,
        updated_at=cam.updated_at,
    )


@router.get("/cameras", response_model=CameraPage, openapi_extra=x_access("authenticated"))
def list_cameras(
    session: SessionDep,
    scope: ScopeDep,
    q: str | None = Query(default=None, max_length=100, description="Substring of the camera name"),
    grid: str | None = Query(default=None, max_length=64, description="Only cameras under this grid code"),
    limit: int = Query(default=100, ge=1, le=1000),
    offset: int = Query(default=0, ge=0, le=10_000_000),
) -> CameraPage:
    """Cameras visible to the caller, by name, paginated."""
    where = [scope.camera_filter()]
    if q:
        where.append(Camera.name.contains(q, autoescape=True))
    if grid:
        prefix = session.scalar(select(GridNode.path).where(GridNode.code == grid))
        if prefix is None:
            return CameraPage(items=[], total=0, limit=limit, offset=offset)
        where.append(Camera.grid_id.in_(select(GridNode.id).where(GridNode.path.startswith(prefix))))
    total = session.scalar(select(func.count()).select_from(Camera).where(*where)) or 0
    rows = session.scalars(
        select(Camera).options(joinedload(Camera.grid)).where(*where).order_by(Camera.name, Camera.id).limit(limit).offset(offset)
    ).all()
    outages = ongoing(session, [c.id for c in rows])
    items = [camera_out(c, offline_since=outages[c.id].started_at if c.id in outages else None) for c in rows]
    return CameraPage(items=items, total=total, limit=limit, offset=offset)


@router.get(
    "/cameras/{camera_id}", response_model=CameraOut, responses={404: {"model": ErrorOut}}, openapi_extra=x_access("camera")
)
def get_camera(cam: VisibleCamera, session: SessionDep) -> CameraOut:
    outage = ongoing(session, [cam.id]).get(cam.id)
    return camera_out(cam, offline_since=outage.started_at if outage else None)


@router.patch(
    "/cameras/{camera_id}",
    response_model=CameraOut,
    responses={403: {"model": ErrorOut}, 404: {"model": ErrorOut}, 409: {"model": ErrorOut}, 422: {"model": ErrorOut}},
    openapi_extra=x_access("configure"),
)
def update_camera(
    body: CameraPatchIn, request: Request, session: SessionDep, cam: ConfigurableCamera, user: CurrentUser, bus: BusDep
) -> CameraOut:
    """Rename, enable/disable, pin a camera to a grid node or choose the stream its worker analyses
    (admins and operators; logged). Workers apply the change within seconds, without a restart."""
    changes: dict[str, object] = {}
    if body.analysis_stream is not None:
        cam = lock_rows(session, Camera, [cam.id])[cam.id]  # an import may be changing its sub-stream now
        if body.analysis_stream == "sub" and not cam.sub_url:
            raise Conflict("the camera has no sub-stream (子码流): import its sub_url first, or choose main or auto")
        stored = None if body.analysis_stream == "auto" else body.analysis_stream
        if stored != cam.analysis_stream:
            cam.analysis_stream = stored
            changes["analysis_stream"] = body.analysis_stream
    if body.name is not None and body.name != cam.name:
        if session.scalar(select(Camera.id).where(Camera.name == body.name, Camera.id != cam.id)) is not None:
            raise Conflict(f"a camera named {body.name!r} exists")
        changes["name"] = cam.name = body.name
    if body.enabled is not None and body.enabled != cam.enabled:
        changes["enabled"] = cam.enabled = body.enabled
    if body.grid_code is not None:
        node = session.scalar(select(GridNode).where(GridNode.code == body.grid_code))
        if node is None:
            raise InvalidInput(f"no grid node has code {body.grid_code!r}", field="grid_code")
        cam.grid_id, cam.grid_override = node.id, True
        changes["grid_code"] = node.code
    if changes:
        record_change(
            session, user=user, channel="api", object_type="camera", object_id=cam.id, detail=changes,
            remote_addr=remote_addr(request),
        )  # fmt: skip
    session.commit()
    session.refresh(cam)
    if changes and bus is not None:
        try:
            bus.publish(CONFIG_CHANGES, [ConfigChange(kind="camera", camera_id=cam.id)])
        except BusError:
            pass  # workers also poll the cameras; they pick it up within seconds
    outage = ongoing(session, [cam.id]).get(cam.id)
    return camera_out(cam, offline_since=outage.started_at if outage else None)


class CameraHealthOut(BaseModel):
    """What the worker reading the camera last posted (``unknown`` when no worker holds it)."""

    model_config = ConfigDict(extra="ignore")

    camera_id: int
    state: str = Field(description="connecting | streaming | backoff | failed | stopped | unknown")
    reason: str | None = None
    worker: str | None = None
    state_since: datetime | None = Field(default=None, description="When the stream entered this state (ISO 8601 with offset)")
    next_retry_at: datetime | None = Field(
        default=None, validation_alias=AliasChoices("next_retry_at", "next_retry_ts"), description="When the next reconnect is due"
    )
    input_fps: float | None = None
    analysed_fps: float | None = None
    frames_in: int | None = None
    frames_analysed: int | None = None
    keyframes: int | None = None
    last_frame_age_s: float | None = None
    reconnects: int | None = None
    decode_errors: int | None = None
    bytes_in: int | None = None
    codec: str | None = None
    resolution_wh: list[int] | None = None
    nominal_fps: float | None = None
    stream: str | None = Field(default=None, description="Which of the camera's streams the worker analyses: main | sub")
    outbox_depth: int | None = Field(default=None, description="This camera's rule events waiting in the worker's outbox")
    outbox_dropped: int | None = Field(default=None, description="This camera's rule events a full outbox dropped ('updated' first)")
    outbox_state: str | None = Field(default=None, description="The worker's outbox: ok | retrying | full | overflow")


@router.get(
    "/cameras/{camera_id}/health",
    response_model=CameraHealthOut,
    responses={404: {"model": ErrorOut}},
    openapi_extra=x_access("camera"),
)
def camera_health(cam: VisibleCamera, state: StateDep) -> CameraHealthOut:
    """Stream health: state (with the reason of a failure), input and analysed fps, last frame age,
    reconnects, decode errors and bytes, as posted by the worker that reads the camera."""
    camera_id = cam.id
    posted = None
    if state.health_board is not None:
        try:
            posted = state.health_board.get(str(camera_id))
        except BusError:
            posted = None
    if not posted:
        return CameraHealthOut(camera_id=camera_id, state="unknown", reason="no worker has posted this camera's health")
    return CameraHealthOut.model_validate({**posted, "camera_id": camera_id})


class CameraOutageOut(BaseModel):
    """One outage of a camera (models/grid/outages.py): ongoing, or one its grid was told about."""

    id: int
    started_at: datetime = Field(description="When the ticketers first saw the camera offline")
    state: str = Field(description="The worker's ingest state then; unknown when no worker reported the camera")
    reason: str
    offline_notice_at: datetime | None = Field(description="When the 摄像头离线 notice was raised (null: not yet)")
    ended_at: datetime | None = Field(description="When it streamed again (or was disabled); null while ongoing")
    online_notice_at: datetime | None = Field(description="When the 摄像头恢复在线 notice was raised")
    duration_s: float | None = Field(description="ended_at − started_at; null while ongoing")


@router.get(
    "/cameras/{camera_id}/outages",
    response_model=list[CameraOutageOut],
    responses={404: {"model": ErrorOut}},
    openapi_extra=x_access("camera"),
)
def camera_outages(
    cam: VisibleCamera, session: SessionDep, limit: int = Query(default=50, ge=1, le=500)
) -> list[CameraOutageOut]:
    """The camera's outages, newest first: the ongoing one, and every earlier one that lasted past
    GRIDPATROL_CAMERA_OFFLINE_NOTICE_S (shorter ones are not kept)."""
    rows = session.scalars(
        select(CameraOutage).where(CameraOutage.camera_id == cam.id).order_by(CameraOutage.id.desc()).limit(limit)
    )
    return [
        CameraOutageOut(
            id=o.id, started_at=o.started_at, state=o.state, reason=o.reason, offline_notice_at=o.offline_notice_at,
            ended_at=o.ended_at, online_notice_at=o.online_notice_at,
            duration_s=(o.ended_at - o.started_at).total_seconds() if o.ended_at else None,
        )  # fmt: skip
        for o in rows
    ]
