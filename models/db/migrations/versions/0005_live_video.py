"""Live video: a camera's sub-stream URL, and RTSP digest secrets for users and API tokens

``sub_url`` is a secret like ``url`` (encrypted by ``models.grid.credentials``). ``rtsp_ha1`` is
MD5(username:realm:secret) for RTSP Digest (RFC 2617, what VLC, ffmpeg, GStreamer and NVRs speak):
the gateway cannot check a digest against an argon2 hash, so the value is kept when the password is set
(or at the next login) and when an ``rtsp`` token is created. It is a password equivalent for the RTSP
realm only, never returned by the API.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ADD COLUMN (no batch mode): SQLite's batch mode copies the table and would drop the
    # expression index on lower(username) that 0003 made
    op.add_column('cameras', sa.Column('sub_url', sa.Text(), nullable=True))
    op.add_column('users', sa.Column('rtsp_ha1', sa.String(length=64), nullable=True))
    op.add_column('api_tokens', sa.Column('rtsp_ha1', sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column('api_tokens', 'rtsp_ha1')
    op.drop_column('users', 'rtsp_ha1')
    op.drop_column('cameras', 'sub_url')
