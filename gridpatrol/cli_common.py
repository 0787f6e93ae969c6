"""Helpers every CLI command uses: fail with a message, load settings, open the database."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import typer
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy.orm import Session, sessionmaker

from gridpatrol.settings import Settings
from models.db.engine import make_engine, make_session_factory, upgrade
from models.errors import GridPatrolError


def fail(message: str, code: int = 1) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def load_settings() -> Settings:
    try:
        return Settings.from_env()
    except (PydanticValidationError, GridPatrolError) as err:
        fail(f"settings: {err}")


def open_db(settings: Settings, *, migrate: bool = True) -> sessionmaker[Session]:
    engine = make_engine(settings.storage.resolved_database_url())
    if migrate:
        upgrade(engine)
    return make_session_factory(engine)




def read_json(file: Path) -> Any:
    """A JSON file's content; a missing file or bad JSON ends the command with the line and column."""
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except OSError as err:
        fail(f"{file}: {err.strerror}")
    except json.JSONDecodeError as err:
        fail(f"{file}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})")
