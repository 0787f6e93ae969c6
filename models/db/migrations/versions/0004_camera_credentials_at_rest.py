"""Camera credentials at rest: the stream host in clear, ONVIF passwords long enough to hold ciphertext

The secrets themselves are encrypted by ``models.grid.credentials.seal_cameras`` (workers at start,
``gridpatrol secrets encrypt-credentials``): a migration has no access to the key, which is kept apart
from the database. Downgrading keeps the encrypted values; decrypt-free versions cannot read them.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from urllib.parse import urlsplit

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def _host(url: str | None) -> str | None:
    if not url or url.startswith("gpenc:"):
        return None
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host[:255] if host else None


def upgrade() -> None:
    with op.batch_alter_table('cameras', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stream_host', sa.String(length=255), nullable=True))
        batch_op.alter_column('onvif_password', existing_type=sa.String(length=200), type_=sa.Text(), existing_nullable=True)
    cameras = sa.table('cameras', sa.column('id', sa.Integer), sa.column('url', sa.Text), sa.column('stream_host', sa.String))
    conn = op.get_bind()
    for cam_id, url in conn.execute(sa.select(cameras.c.id, cameras.c.url)).all():
        host = _host(url)
        if host:
            conn.execute(cameras.update().where(cameras.c.id == cam_id).values(stream_host=host))


def downgrade() -> None:
    with op.batch_alter_table('cameras', schema=None) as batch_op:
        batch_op.alter_column('onvif_password', existing_type=sa.Text(), type_=sa.String(length=200), existing_nullable=True)
        batch_op.drop_column('stream_host')
