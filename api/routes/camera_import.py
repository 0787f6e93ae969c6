"""Camera import from the administration page: the CSV or YAML file ``gridpatrol cameras import`` reads,
posted as text. Stream URLs carry credentials: they are stored encrypted under the camera credentials key,
which ``gridpatrol`` passes into ``create_app`` (without it the route answers 503 rather than store them
in plain text)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from api.deps import ConfigureUser, SessionDep, remote_addr, x_access
from models.errors import Unavailable
from models.grid.cameras import parse_camera_text, register_cameras
from models.grid.credentials import CredentialKeyring
from models.identity.audit import record_change

router = APIRouter(prefix="/api", tags=["cameras"])

#: what create_app is given: the keyring that encrypts camera credentials (loaded, or created, on use)
KeyringSource = Callable[[], CredentialKeyring]


class CameraImportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(
        min_length=1,
        max_length=2_000_000,
        description="The file's text: CSV with the header name,url,lon,lat[,sub_url][,analysis_stream][,onvif][,grid], or YAML",
    )
    format: Literal["csv", "yaml"] = Field(default="csv", description="csv | yaml")


class CameraImportOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    created: int
    updated: int
    outside: list[str] = Field(
        description="Cameras whose location lies outside every grid (admins and operators see them)"
    )


def get_keyring_source(request: Request) -> KeyringSource:
    source: KeyringSource | None = getattr(request.app.state, "camera_keyring", None)
    if source is None:
        raise Unavailable(
            "camera import is not served by this process (no camera credentials key): use gridpatrol cameras import"
        )
    return source


KeyringDep = Annotated[KeyringSource, Depends(get_keyring_source)]


@router.post("/cameras/import", response_model=CameraImportOut, openapi_extra=x_access("configure"))
def import_cameras(
    body: CameraImportIn, user: ConfigureUser, session: SessionDep, request: Request, keyring: KeyringDep
) -> CameraImportOut:
    """Register or update cameras (matched by name), each placed in the grid its location falls in; all or
    nothing: the first bad line is a 422 naming it. The change is in the access log (without URLs)."""
    specs = parse_camera_text(body.text, yaml_format=body.format == "yaml")
    report = register_cameras(session, specs, credentials=keyring())
    record_change(
        session, user=user, channel="api", object_type="cameras", object_id="import", remote_addr=remote_addr(request),
        detail={"created": report.created, "updated": report.updated, "names": [s.name for s in specs][:50]},
    )  # fmt: skip
    session.commit()
    return CameraImportOut(created=report.created, updated=report.updated, outside=report.outside)
