"""Fire lanes saved with the old default ``coverage: 0.15`` get the new default (any object ≥ min_object_m).

Zones were stored with every default written out, so a lane nobody tuned carries ``coverage: 0.15``, the old
default that let a 1.5 m crate covering 12% of a lane go unreported. That value is dropped (the stricter
condition becomes off), as a new zones version of each affected camera saved by no one, so the change is in the
camera's zone history and workers pick it up like any save. A lane tuned to any other coverage keeps it.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

OLD_DEFAULT = 0.15

revisions = sa.table(
    "zone_revisions",
    sa.column("id", sa.Integer),
    sa.column("camera_id", sa.Integer),
    sa.column("version", sa.Integer),
    sa.column("document", sa.JSON),
    sa.column("author_id", sa.Integer),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
zones = sa.table(
    "zones",
    sa.column("id", sa.Integer),
    sa.column("camera_id", sa.Integer),
    sa.column("kind", sa.String),
    sa.column("params", sa.JSON),
    sa.column("version", sa.Integer),
)


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return dict(json.loads(value))
    return dict(value or {})


def _old_default_lane(zone: dict[str, Any]) -> bool:
    return zone.get("kind") == "fire_lane" and zone.get("coverage") == OLD_DEFAULT


def upgrade() -> None:
    conn = op.get_bind()
    latest = (
        sa.select(revisions.c.camera_id, sa.func.max(revisions.c.version).label("version"))
        .group_by(revisions.c.camera_id)
        .subquery()
    )
    rows = conn.execute(
        sa.select(revisions.c.camera_id, revisions.c.version, revisions.c.document).join(
            latest, sa.and_(latest.c.camera_id == revisions.c.camera_id, latest.c.version == revisions.c.version)
        )
    ).all()
    now = datetime.now(UTC)
    for camera_id, version, document in rows:
        doc = _as_dict(document)
        lanes = [z for z in doc.get("zones", []) if isinstance(z, dict) and _old_default_lane(z)]
        if not lanes:
            continue
        for zone in lanes:
            del zone["coverage"]
        conn.execute(
            revisions.insert().values(
                camera_id=camera_id, version=version + 1, document=doc, author_id=None, created_at=now
            )
        )
        for zone_id, params in conn.execute(
            sa.select(zones.c.id, zones.c.params).where(zones.c.camera_id == camera_id, zones.c.kind == "fire_lane")
        ).all():
            p = _as_dict(params)
            if p.get("coverage") == OLD_DEFAULT:
                del p["coverage"]
            conn.execute(zones.update().where(zones.c.id == zone_id).values(params=p))
        conn.execute(zones.update().where(zones.c.camera_id == camera_id).values(version=version + 1))


def downgrade() -> None:
    # the old default is not put back: a lane without coverage is what the new code means by default
    pass
