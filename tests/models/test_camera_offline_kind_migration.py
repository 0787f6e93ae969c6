"""Upgrading: notification preferences saved before the ``camera_offline`` kind existed gain it (nobody could
have turned it off), so a grid leader who once set quiet hours is still told that a camera is down; the
other kinds they chose stay as they were."""

from __future__ import annotations

from alembic import command
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.db.engine import alembic_config, transaction, upgrade
from models.db.tables import NotifyPreference, User


def test_saved_preferences_gain_the_camera_offline_kind(seeded: sessionmaker[Session]) -> None:
    engine = seeded.kw["bind"]
    command.downgrade(alembic_config(engine), "0013")
    try:
        with transaction(seeded) as s:
            users = {u.username: u.id for u in s.scalars(select(User))}
            for name, kinds, version in (("leader-g1", ["assigned", "overdue"], 3), ("leader-g3", [], 0)):
                s.add(NotifyPreference(
                    user_id=users[name], kinds=kinds, quiet_start="22:00", quiet_end="07:00",
                    timezone="Asia/Shanghai", urgent_in_quiet=True, version=version,
                ))
    finally:
        upgrade(engine)

    with seeded() as s:
        prefs = {p.user_id: p for p in s.scalars(select(NotifyPreference))}
        g1, g3 = prefs[users["leader-g1"]], prefs[users["leader-g3"]]
        assert g1.kinds == ["assigned", "overdue", "camera_offline"] and g1.quiet_start == "22:00"
        assert g1.version == 4  # a form open on the old preferences is now a conflict, not a silent overwrite
        assert g3.kinds == ["camera_offline"]
