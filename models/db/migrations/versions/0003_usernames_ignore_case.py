"""Usernames unique without regard to case: a unique index on lower(username)

Revision ID: 0003
Revises: 0002

A database holding two names that differ only in case (``Admin1`` and ``admin1``) cannot take the
index: the upgrade stops and names them, and an admin renames or removes one before upgrading again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

INDEX = "uq_users_username_lower"


def upgrade() -> None:
    clashes = op.get_bind().execute(
        sa.text(
            "SELECT lower(username), count(*) FROM users GROUP BY lower(username) "
            "HAVING count(*) > 1 ORDER BY lower(username)"
        )
    ).all()
    if clashes:
        names = ", ".join(f"{name!r} ({count} users)" for name, count in clashes)
        raise RuntimeError(
            "migration 0003 makes usernames unique without regard to case, but these names are taken "
            f"more than once in different cases: {names}. Rename or delete the extra users "
            "(gridpatrol users ...) and run the upgrade again."
        )
    op.create_index(INDEX, "users", [sa.text("lower(username)")], unique=True)


def downgrade() -> None:
    op.drop_index(INDEX, table_name="users")
