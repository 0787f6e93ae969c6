"""Camera outages: a camera offline past the notice threshold, its "offline" and "back online" notices.

The notification kind ``camera_offline`` comes with them. Users without saved preferences get every kind;
preferences saved before were chosen among the kinds that existed then, so the new kind is added to them
(nobody has turned it off yet): a grid leader who once changed quiet hours is still told that a camera is down.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

import models.db.tables

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

NEW_KIND = "camera_offline"
preferences = sa.table(
    "notify_preferences",
    sa.column("user_id", sa.Integer),
    sa.column("kinds", sa.JSON),
    sa.column("version", sa.Integer),
)


def upgrade() -> None:
    when = models.db.tables.UTCDateTime(timezone=True)
    op.create_table(
        "camera_outages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("camera_id", sa.Integer(), nullable=False),
        sa.Column("ongoing_camera_id", sa.Integer(), nullable=True),
        sa.Column("started_at", when, nullable=False),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("offline_notice_at", when, nullable=True),
        sa.Column("ended_at", when, nullable=True),
        sa.Column("online_notice_at", when, nullable=True),
        sa.ForeignKeyConstraint(["camera_id"], ["cameras.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ongoing_camera_id"),
    )
    op.create_index("ix_camera_outages_camera_id", "camera_outages", ["camera_id"], unique=False)

    conn = op.get_bind()
    for user_id, kinds in conn.execute(sa.select(preferences.c.user_id, preferences.c.kinds)).all():
        chosen = json.loads(kinds) if isinstance(kinds, str) else list(kinds or [])
        if NEW_KIND not in chosen:
            conn.execute(
                preferences.update()
                .where(preferences.c.user_id == user_id)
                .values(kinds=[*chosen, NEW_KIND], version=preferences.c.version + 1)
            )


def downgrade() -> None:
    conn = op.get_bind()
    for user_id, kinds in conn.execute(sa.select(preferences.c.user_id, preferences.c.kinds)).all():
        chosen = json.loads(kinds) if isinstance(kinds, str) else list(kinds or [])
        if NEW_KIND in chosen:
            conn.execute(
                preferences.update()
                .where(preferences.c.user_id == user_id)
                .values(kinds=[k for k in chosen if k != NEW_KIND])
            )
    op.drop_index("ix_camera_outages_camera_id", table_name="camera_outages")
    op.drop_table("camera_outages")
