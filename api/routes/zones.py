"""Detection zones of a camera: read by whoever may see the camera, written by operators and admins.
Each save is a new version (kept with who and when) and is announced on the bus so running workers
apply it without a restart."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field

from api.deps import BusDep, ConfigurableCamera, CurrentUser, SessionDep, VisibleCamera, x_access
from models.bus.messages import CONFIG_CHANGES, ConfigChange
from models.errors import BusError
from models.grid.zones import current_zones, save_zones

router = APIRouter(prefix="/api", tags=["zones"])

EXAMPLE = {
    "zones": [
        {"name": "east lane", "kind": "fire_lane", "polygon": [[0.1, 0.5], [0.4, 0.5], [0.4, 0.9], [0.1, 0.9]], "dwell_s": 10}
    ]
}


class ZonesOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    camera_id: int
    version: int = Field(description="0 when no zones were ever saved")
    zones: list[dict[str, Any]]
    author: str | None
    saved_at: datetime | None


@router.get("/cameras/{camera_id}/zones", response_model=ZonesOut, openapi_extra=x_access("camera"))
def get_zones(cam: VisibleCamera, session: SessionDep) -> ZonesOut:
    camera_id = cam.id
    z = current_zones(session, camera_id)
    return ZonesOut(camera_id=camera_id, version=z.version, zones=z.document.get("zones", []), author=z.author, saved_at=z.saved_at)


@router.put("/cameras/{camera_id}/zones", response_model=ZonesOut, openapi_extra=x_access("configure"))
def put_zones(
    camera_id: int,
    camera: ConfigurableCamera,
    user: CurrentUser,
    session: SessionDep,
    bus: BusDep,
    document: dict[str, Any] = Body(examples=[EXAMPLE]),
) -> ZonesOut:
    """Replace the camera's zones (422 names the zone and field of the first error)."""
    z = save_zones(session, camera.id, document, author=user, channel="api")
    session.commit()
    if bus is not None:
        try:
            bus.publish(CONFIG_CHANGES, [ConfigChange(kind="zones", camera_id=camera.id, version=z.version)])
        except BusError:
            pass  # workers also poll zone versions; they pick it up within seconds
    return ZonesOut(camera_id=camera_id, version=z.version, zones=z.document.get("zones", []), author=z.author, saved_at=z.saved_at)
