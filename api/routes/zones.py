"""Detection zones of a camera: read by whoever may see the camera, written by operators and admins.
Each save is a new version (kept with who and when) and is announced on the bus so running workers
apply it without a restart."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from pydantic import WithJsonSchema

from api.deps import BusDep, ConfigurableCamera, CurrentUser, SessionDep, VisibleCamera, x_access
from models.bus.messages import CONFIG_CHANGES, ConfigChange
from models.errors import BusError
from models.grid.zones import current_zones, save_zones
from models.grid.zonespec import ZonesDocument

router = APIRouter(prefix="/api", tags=["zones"])

EXAMPLE = {
    "zones": [
        {"name": "east lane", "kind": "fire_lane", "polygon": [[0.1, 0.5], [0.4, 0.5], [0.4, 0.9], [0.1, 0.9]], "dwell_s": 10}
    ]
}


#: PUT's body is the document GET answers. It is validated by ``save_zones`` (errors name the zone and the
#: field) rather than by FastAPI, and declared as that schema so /docs shows every field with its unit.
ZonesBody = Annotated[
    dict[str, Any],
    WithJsonSchema({"$ref": "#/components/schemas/ZonesDocument"}),
    Body(openapi_examples={"fire lane": {"summary": "one fire lane", "value": EXAMPLE}}),
]


@router.get("/cameras/{camera_id}/zones", response_model=ZonesDocument, openapi_extra=x_access("camera"))
def get_zones(cam: VisibleCamera, session: SessionDep) -> ZonesDocument:
    """The camera's current zones with their version: PUT this document back, edited, to save a new version."""
    return current_zones(session, cam.id).as_document()


@router.put("/cameras/{camera_id}/zones", response_model=ZonesDocument, openapi_extra=x_access("configure"))
def put_zones(
    camera_id: int,
    camera: ConfigurableCamera,
    user: CurrentUser,
    session: SessionDep,
    bus: BusDep,
    document: ZonesBody,
) -> ZonesDocument:
    """Replace the camera's zones (422 names the zone and field of the first error). With ``version`` (as
    GET gave it), a save on top of someone else's newer save is refused with 409 instead of overwriting it."""
    z = save_zones(session, camera.id, document, author=user, channel="api")
    session.commit()
    if bus is not None:
        try:
            bus.publish(CONFIG_CHANGES, [ConfigChange(kind="zones", camera_id=camera.id, version=z.version)])
        except BusError:
            pass  # workers also poll zone versions; they pick it up within seconds
    return z.as_document()
