"""A camera's zones: the current version as rows, every saved version as a revision with author."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from models.db.tables import User, Zone, ZoneRevision
from models.grid.zonespec import ZonesFile, parse_zones
from models.identity.audit import record_change


@dataclass(frozen=True)
class ZonesVersion:
    camera_id: int
    version: int
    document: dict[str, Any]
    author: str | None
    saved_at: datetime | None


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
    """Validate (errors name the zone and field), store as the next version, log the change."""
    parsed: ZonesFile = parse_zones(document)
    doc = parsed.model_dump(mode="json", exclude_none=True)
    version = (session.scalar(select(func.max(ZoneRevision.version)).where(ZoneRevision.camera_id == camera_id)) or 0) + 1
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
