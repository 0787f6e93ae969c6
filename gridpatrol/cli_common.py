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
from models.errors import GridPatrolError, InvalidInput
from models.grid.textfile import read_text_file


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
