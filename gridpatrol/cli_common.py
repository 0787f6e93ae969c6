"""Helpers every CLI command uses: fail with a message, load settings, open the database."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import typer
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from gridpatrol.settings import Settings
from models.db.engine import MIGRATIONS_DIR, make_engine, make_session_factory, upgrade
from models.errors import GridPatrolError, InvalidInput
from models.grid.textfile import read_text_file
from models.secrets import redact_url


def fail(message: str, code: int = 1) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def load_settings() -> Settings:
    try:
        return Settings.from_env()
    except (PydanticValidationError, GridPatrolError) as err:
        fail(f"settings: {err}")


def open_db(settings: Settings, *, migrate: bool = True) -> sessionmaker[Session]:
    """The database for a command that writes: created and migrated when needed (``db upgrade``, imports)."""
    engine = make_engine(settings.storage.resolved_database_url())
    if migrate:
        upgrade(engine)
    return make_session_factory(engine)


#: the line every "wrong database?" message ends with (issue 11: a read ran against a fresh empty file)
WHERE_HINT = "set GRIDPATROL_DATA_DIR to the installation's data directory or GRIDPATROL_DATABASE_URL to its database"


def database_label(settings: Settings) -> str:
    """The database as a person may see it: the SQLite file's path, or the URL with its password hidden."""
    path = sqlite_path(settings)
    return str(path) if path is not None else redact_url(settings.storage.resolved_database_url())


def sqlite_path(settings: Settings) -> Path | None:
    """The SQLite file the settings point at, absolute; None for another database or an in-memory one."""
    url = settings.storage.resolved_database_url()
    try:
        parsed = make_url(url)
    except Exception:  # a bad URL is reported by whoever opens it (normalise_url keeps secrets out)
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database).resolve()


def code_head() -> str | None:
    """The newest schema revision this version of the code knows (its migrations' head)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(cfg).get_current_head()


def schema_revisions(engine: Engine) -> tuple[str | None, str | None]:
    """(the database's schema revision, the code's head revision); the first is None on a database
    without GridPatrol's schema."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision(), code_head()


def open_db_for_reading(settings: Settings) -> sessionmaker[Session]:
    """The database for a command that only reads: never created, never migrated. A missing SQLite file,
    an unreachable database or a schema other than the code's ends the command with one line naming it."""
    label = database_label(settings)
    path = sqlite_path(settings)
    if path is not None and not path.is_file():
        fail(f"no database at {path}: {WHERE_HINT} (a new installation starts with `gridpatrol db upgrade`)")
    try:
        engine = make_engine(settings.storage.resolved_database_url())
        current, head = schema_revisions(engine)
    except GridPatrolError as err:
        fail(f"database {label}: {err}")
    except SQLAlchemyError as err:
        fail(f"database {label} cannot be read: {first_line(err)}")
    if current is None:
        fail(f"database {label} holds no GridPatrol schema: {WHERE_HINT}, or run `gridpatrol db upgrade` to create it")
    if current != head:
        fail(f"database {label} has schema {current}, this version needs {head}: run `gridpatrol db upgrade`")
    return make_session_factory(engine)


def first_line(err: SQLAlchemyError) -> str:
    """The driver's own message, first line (SQLAlchemy appends the statement and a link)."""
    text = str(getattr(err, "orig", None) or err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def read_text(file: Path) -> str:
    """An import file's text in whichever encoding Excel saved it (UTF-8, UTF-16 with BOM, GB18030/GBK),
    saying which; a missing or binary file ends the command with the file's name."""
    try:
        decoded = read_text_file(file)
    except OSError as err:
        fail(f"{file}: {err.strerror}")
    except InvalidInput as err:
        fail(f"{err} (nothing was imported)")
    print(f"read {file.name} as {decoded.encoding}")
    return decoded.text


def read_json(file: Path) -> Any:
    """A JSON file's content; a missing file or bad JSON ends the command with the line and column."""
    text = read_text(file)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        fail(f"{file}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})")
