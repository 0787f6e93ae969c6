"""Evidence in the database: small images and clips as rows, for deployments without a shared filesystem;
and ``users.demo``, the mark of the demo's users (published passwords), refused outside the demo.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import models.db.tables

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evidence_blobs",
        sa.Column("key", sa.String(length=255), primary_key=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", models.db.tables.UTCDateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_evidence_blobs_created_at", "evidence_blobs", ["created_at"])
    if op.get_bind().dialect.name == "postgresql":
        # JPEG and H.264 do not compress: stored out of line uncompressed, a ranged read (substr) of a
        # clip fetches only the chunks it needs instead of the whole value
        op.execute("ALTER TABLE evidence_blobs ALTER COLUMN data SET STORAGE EXTERNAL")
    # plain ADD COLUMN (no batch mode): see 0005
    op.add_column("users", sa.Column("demo", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    op.drop_column("users", "demo")
    op.drop_index("ix_evidence_blobs_created_at", table_name="evidence_blobs")
    op.drop_table("evidence_blobs")
