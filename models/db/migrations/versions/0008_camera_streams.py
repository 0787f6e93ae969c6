"""Sub-streams: which of a camera's streams the worker analyses.

``analysis_stream`` is ``'sub'``, ``'main'`` or NULL (auto: the sub-stream when the camera has one,
else the main stream). The sub-stream URL itself is ``sub_url`` (0005).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ADD COLUMN (no batch mode): see 0005
    op.add_column("cameras", sa.Column("analysis_stream", sa.String(length=8), nullable=True))


def downgrade() -> None:
    op.drop_column("cameras", "analysis_stream")
