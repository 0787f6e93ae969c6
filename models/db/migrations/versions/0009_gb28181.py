"""GB/T 28181: devices that register to the platform, their channels.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import models.db.tables

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    utc = models.db.tables.UTCDateTime(timezone=True)
    op.create_table(
        "gb_devices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=20), nullable=False),
        sa.Column("domain", sa.String(length=64), nullable=False),
        sa.Column("transport", sa.String(length=8), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column("user_agent", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("registered_at", utc, nullable=True),
        sa.Column("expires_at", utc, nullable=True),
        sa.Column("last_keepalive_at", utc, nullable=True),
        sa.Column("catalog_at", utc, nullable=True),
        sa.Column("created_at", utc, nullable=False),
        sa.Column("updated_at", utc, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("device_id"),
    )
    op.create_index(op.f("ix_gb_devices_status"), "gb_devices", ["status"], unique=False)
    op.create_table(
        "gb_channels",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_pk", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.String(length=20), nullable=False),
        sa.Column("camera_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("civil_code", sa.String(length=32), nullable=False),
        sa.Column("manufacturer", sa.String(length=200), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("address", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("updated_at", utc, nullable=False),
        sa.ForeignKeyConstraint(["camera_id"], ["cameras.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["device_pk"], ["gb_devices.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("camera_id"),
        sa.UniqueConstraint("device_pk", "channel_id"),
    )
    op.create_index(op.f("ix_gb_channels_device_pk"), "gb_channels", ["device_pk"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_gb_channels_device_pk"), table_name="gb_channels")
    op.drop_table("gb_channels")
    op.drop_index(op.f("ix_gb_devices_status"), table_name="gb_devices")
    op.drop_table("gb_devices")
