"""Engines, sessions and schema migrations for SQLite (embedded default) and PostgreSQL (production)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Engine, Table, create_engine, event, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from models.errors import ConfigError
from models.secrets import ensure_private_dir, private_file

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def normalise_url(url: str) -> str:
    """Accept the plain URLs operators write and pick our drivers: ``postgresql://`` → psycopg 3."""
    try:
        parsed = make_url(url)
    except Exception as err:  # sqlalchemy raises ArgumentError with the URL in it: keep secrets out
        raise ConfigError("database URL is not a valid SQLAlchemy URL") from err
    backend = parsed.get_backend_name()
    if backend in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend != "sqlite":
        raise ConfigError(f"unsupported database '{backend}': use sqlite:/// or postgresql://")
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL + NORMAL: readers never block the writer and a commit costs no fsync of the main file
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


#: execution option of a write transaction: on SQLite it starts with ``BEGIN IMMEDIATE``
WRITE_TRANSACTION = "gridpatrol_write"


def _sqlite_begin(conn: Connection) -> None:
    """A write transaction takes SQLite's write lock before its first read (``BEGIN IMMEDIATE``).

    pysqlite otherwise begins a transaction only at the first INSERT/UPDATE, so a transaction that
    reads a ticket, checks its state and writes it could act on a state another writer has changed in
    between (both answered 200 where the second must be a 409). Taking the lock first serialises such
    read-check-write transactions the way ``SELECT ... FOR UPDATE`` does on PostgreSQL."""
    if conn.get_execution_options().get(WRITE_TRANSACTION):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        db_path = make_url(url).database
        if db_path and db_path != ":memory:" and not db_path.startswith("file:"):
            # the file holds users' hashes and audit logs: owner-only (SQLite gives -wal/-shm the same mode)
            ensure_private_dir(Path(db_path).parent)
            private_file(Path(db_path))
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(url, **kwargs)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A write transaction: commits on success, rolls back on any error.

    Rows it will change must be read with :func:`for_update` (PostgreSQL locks them); on SQLite the
    whole transaction holds the database's write lock from its first statement."""
    with factory() as session, session.begin():
        session.connection(execution_options={WRITE_TRANSACTION: True})
        yield session


def alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (every table is created through migrations, never create_all)."""
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


M = TypeVar("M", bound=DeclarativeBase)


def lock_rows(session: Session, model: type[M], ids: Iterable[int]) -> dict[int, M]:
    """Read rows for a change, locked until the transaction ends, in id order (no deadlock between
    lockers). ``FOR NO KEY UPDATE`` on PostgreSQL: it does not wait for rows that merely reference these
    (inserts of children). On SQLite a no-op write takes the database's write lock first (pysqlite reads
    outside a transaction until the first write), so the rows read cannot change before the commit.
    Rows are read again even when the session holds them: every check sees the latest state."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    table = cast(Table, model.__table__)
    pk = table.c.id
    if session.get_bind().dialect.name == "sqlite":
        # set the key (and every column with an onupdate default) to itself: nothing changes
        same = {c.name: c for c in table.c if c.primary_key or c.onupdate is not None}
        session.execute(update(table).where(pk.in_(wanted)).values(same))
    rows = session.scalars(
        select(model)
        .where(pk.in_(wanted))
        .order_by(pk)
        .with_for_update(of=model, key_share=True)
        .execution_options(populate_existing=True)
    )
    return {row.id: row for row in rows}  # type: ignore[attr-defined]
