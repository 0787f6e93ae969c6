"""Camera outages: a camera offline past the notice threshold, its "offline" and "back online" notices.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import models.db.tables

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


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


def downgrade() -> None:
    op.drop_index("ix_camera_outages_camera_id", table_name="camera_outages")
    op.drop_table("camera_outages")
