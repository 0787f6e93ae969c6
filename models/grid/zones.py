"""A camera's zones: the current version as rows, every saved version as a revision with author."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from models.db.engine import lock_rows
from models.db.tables import Camera, User, Zone, ZoneRevision
from models.errors import Conflict, InvalidInput
from models.grid.zonespec import ZonesDocument, ZonesFile, parse_zones
from models.identity.audit import record_change


@dataclass(frozen=True)
class ZonesVersion:
    camera_id: int
    version: int
    document: dict[str, Any]
    author: str | None
    saved_at: datetime | None

    def as_document(self) -> ZonesDocument:
        """What the API and ``zones get`` print, and ``PUT`` / ``zones set`` read back."""
        return ZonesDocument.model_validate(
            {**self.document, "camera_id": self.camera_id, "version": self.version, "author": self.author, "saved_at": self.saved_at}
        )


def current_zones(session: Session, camera_id: int) -> ZonesVersion:
    """The newest saved zones document of a camera (version 0 and no zones when none was saved)."""
    rev = session.scalar(
        select(ZoneRevision).where(ZoneRevision.camera_id == camera_id).order_by(ZoneRevision.version.desc()).limit(1)
    )
    if rev is None:
        return ZonesVersion(camera_id, 0, {"zones": []}, None, None)
    author = session.get(User, rev.author_id) if rev.author_id else None
    return ZonesVersion(camera_id, rev.version, rev.document, author.username if author else None, rev.created_at)


def save_zones(session: Session, camera_id: int, document: Any, *, author: User | None, channel: str = "api") -> ZonesVersion:
    """Validate (errors name the zone and field), store as the next version, log the change.

    ``document`` may be what :func:`current_zones` printed (a :class:`ZonesDocument`): its ``version`` is
    the one the edit started from, and a save on top of a newer version is a Conflict (two operators
    tuning one camera never silently overwrite each other). The camera row is locked while versioning."""
    parsed = parse_zones(document, ZonesDocument)
    if parsed.camera_id is not None and parsed.camera_id != camera_id:
        raise InvalidInput(f"the document is for camera {parsed.camera_id}, not camera {camera_id}", field="camera_id")
    lock_rows(session, Camera, [camera_id])
    latest = session.scalar(select(func.max(ZoneRevision.version)).where(ZoneRevision.camera_id == camera_id)) or 0
    if parsed.version is not None and parsed.version != latest:
        raise Conflict(
            f"the zones were saved again since version {parsed.version} (now version {latest}): reload them and edit again"
        )
    doc = ZonesFile(zones=parsed.zones).model_dump(mode="json", exclude_none=True)
    version = latest + 1
    session.execute(delete(Zone).where(Zone.camera_id == camera_id))
    for z in parsed.zones:
        params = z.model_dump(mode="json", exclude={"name", "kind", "polygon"}, exclude_none=True)
        session.add(Zone(camera_id=camera_id, name=z.name, kind=z.kind, polygon_norm=[list(p) for p in z.polygon], params=params, version=version))
    rev = ZoneRevision(camera_id=camera_id, version=version, document=doc, author_id=author.id if author else None)
    session.add(rev)
    record_change(session, user=author, channel=channel, object_type="zones", object_id=camera_id, detail={"version": version, "zones": len(parsed.zones)})
    session.flush()
    return ZonesVersion(camera_id, version, doc, author.username if author else None, rev.created_at)


def zone_versions(session: Session) -> dict[int, int]:
    """camera id → newest zones version, for every camera that has zones (workers poll this)."""
    rows = session.execute(select(ZoneRevision.camera_id, func.max(ZoneRevision.version)).group_by(ZoneRevision.camera_id))
    return {row[0]: row[1] for row in rows}
