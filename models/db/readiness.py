"""Readiness checks every process answers ``/readyz`` with: the database answers and its schema is at
the migrations' head; the bus answers. Each returns ``None`` when fine, else a short reason."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from models.bus.messages import RULE_EVENTS
from models.bus.protocol import Bus
from models.db.engine import MIGRATIONS_DIR
from models.errors import GridPatrolError


@lru_cache(maxsize=1)
def head_revisions() -> frozenset[str]:
    """The heads of the migrations this code ships (read once)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return frozenset(ScriptDirectory.from_config(cfg).get_heads())


def database_problem(factory: sessionmaker[Session]) -> str | None:
    """``None`` when the database answers and its schema is at head; else why not."""
    try:
        with factory() as session:
            session.execute(text("SELECT 1"))
            current = set(session.scalars(text("SELECT version_num FROM alembic_version")))
    except SQLAlchemyError as err:
        return f"database unreachable or not migrated: {type(err).__name__}"
    heads = head_revisions()
    if current != heads:
        return f"schema at {sorted(current) or 'nothing'}, this code needs {sorted(heads)}: run gridpatrol db upgrade"
    return None


def bus_problem(bus: Bus) -> str | None:
    """``None`` when the bus answers a cheap read (Redis reachable); else why not."""
    try:
        bus.dead_letter_count(RULE_EVENTS)
    except GridPatrolError as err:
        return f"bus unreachable: {err}"
    return None
