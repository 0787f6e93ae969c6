"""Upgrading: fire lanes that still carry the old default coverage (0.15, written out by every earlier save)
get the new default — any stationary object of at least min_object_m — as a new zones version that workers
pick up; a lane someone tuned to another coverage keeps it."""

from __future__ import annotations

from alembic import command
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.db.engine import alembic_config, transaction, upgrade
from models.db.tables import Camera, Zone
from models.grid.zones import current_zones, save_zones

SQUARE = [[0.1, 0.5], [0.4, 0.5], [0.4, 0.9], [0.1, 0.9]]


def _lane(name: str, **params: object) -> dict[str, object]:
    return {"name": name, "kind": "fire_lane", "polygon": SQUARE, "dwell_s": 10, **params}


def test_old_default_coverage_is_dropped_and_tuned_lanes_keep_theirs(seeded: sessionmaker[Session]) -> None:
    with seeded() as s:
        cams = {c.name: c.id for c in s.scalars(select(Camera))}
    untuned, tuned = cams["cam-g1-a"], cams["cam-g2-a"]
    crowd = {"name": "plaza", "kind": "crowd_area", "polygon": SQUARE, "min_people": 8}
    with transaction(seeded) as s:
        save_zones(s, untuned, {"zones": [_lane("east lane", coverage=0.15), crowd]}, author=None)
        save_zones(s, tuned, {"zones": [_lane("north lane", coverage=0.3)]}, author=None)

    engine = seeded.kw["bind"]
    command.downgrade(alembic_config(engine), "0012")
    upgrade(engine)

    with seeded() as s:
        now = current_zones(s, untuned)
        assert now.version == 2 and now.author is None
        lane, plaza = now.document["zones"]
        assert "coverage" not in lane and lane["min_object_m"] == 0.5
        assert plaza["min_people"] == 8
        rows = {z.name: z for z in s.scalars(select(Zone).where(Zone.camera_id == untuned))}
        assert "coverage" not in rows["east lane"].params and {z.version for z in rows.values()} == {2}

        kept = current_zones(s, tuned)
        assert kept.version == 1 and kept.document["zones"][0]["coverage"] == 0.3
