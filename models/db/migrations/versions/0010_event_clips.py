"""Event clips: video around a detection, linked from its occurrence.

``clip_state`` is pending (recording), ready (``clip_key`` names the MP4 in the evidence store),
unavailable (never made, or its worker died before writing it: ``clip_due_at`` passed) or removed
(over the per-ticket bound, or past retention); NULL when no clip was asked for.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import models.db.tables

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ADD COLUMN (no batch mode): see 0005
    op.add_column("ticket_occurrences", sa.Column("clip_state", sa.String(length=12), nullable=True))
    op.add_column("ticket_occurrences", sa.Column("clip_key", sa.Text(), nullable=True))
    op.add_column(
        "ticket_occurrences",
        sa.Column("clip_due_at", models.db.tables.UTCDateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_ticket_occurrences_clip_state", "ticket_occurrences", ["clip_state"])


def downgrade() -> None:
    op.drop_index("ix_ticket_occurrences_clip_state", table_name="ticket_occurrences")
    op.drop_column("ticket_occurrences", "clip_due_at")
    op.drop_column("ticket_occurrences", "clip_key")
    op.drop_column("ticket_occurrences", "clip_state")
