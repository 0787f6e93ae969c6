"""The ``gridpatrol`` command line: database, imports, users and the processes."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy.orm import Session, sessionmaker

from gridpatrol.settings import Settings
from models.cameraimport import parse_camera_file, register_cameras
from models.db import make_engine, make_session_factory, transaction, upgrade
from models.errors import GridPatrolError
from models.gridimport import import_grids
from models.users import add_user, parse_role

app = typer.Typer(help="GridPatrol 网格视频巡查: video-surveillance grid patrol.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
grids_app = typer.Typer(help="The grid tree (district > street > community > grid).", no_args_is_help=True)
cameras_app = typer.Typer(help="Cameras.", no_args_is_help=True)
users_app = typer.Typer(help="Users and their grids.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(grids_app, name="grids")
app.add_typer(cameras_app, name="cameras")
app.add_typer(users_app, name="users")


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


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema to the newest version."""
    settings = load_settings()
    try:
        open_db(settings)
    except GridPatrolError as err:
        fail(str(err))
    print("database is up to date")


@grids_app.command("import")
def grids_import(file: Annotated[Path, typer.Argument(help="GeoJSON FeatureCollection")]) -> None:
    """Import or update the grid tree; all or nothing. Cameras are re-placed into the new polygons."""
    settings = load_settings()
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except OSError as err:
        fail(f"{file}: {err.strerror}")
    except json.JSONDecodeError as err:
        fail(f"{file}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})")
    try:
        with transaction(open_db(settings)) as session:
            report = import_grids(session, doc)
    except GridPatrolError as err:
        fail(f"{file}: {err} (nothing was imported)")
    print(f"grids: {report.created} created, {report.updated} updated; cameras placed: {report.cameras_placed}")
    _report_outside(report.cameras_outside)


def _report_outside(names: list[str]) -> None:
    if names:
        shown = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
        print(f"warning: {len(names)} camera(s) lie outside every grid (visible to admins/operators only): {shown}")


@cameras_app.command("import")
def cameras_import(file: Annotated[Path, typer.Argument(help="CSV (name,url,lon,lat[,onvif][,grid]) or YAML")]) -> None:
    """Register or update cameras; each is placed in the grid its location falls in."""
    settings = load_settings()
    try:
        specs = parse_camera_file(file)
    except OSError as err:
        fail(f"{file}: {err.strerror}")
    except GridPatrolError as err:
        fail(f"{file}: {err} (nothing was imported)")
    try:
        with transaction(open_db(settings)) as session:
            report = register_cameras(session, specs)
    except GridPatrolError as err:
        fail(f"{file}: {err} (nothing was imported)")
    print(f"cameras: {report.created} created, {report.updated} updated")
    _report_outside(report.outside)


@users_app.command("add")
def users_add(
    username: str,
    role: Annotated[str, typer.Option(help="admin | operator | manager | grid_leader | patroller")],
    password: Annotated[str, typer.Option(help="At least 8 characters")],
    grid: Annotated[list[str] | None, typer.Option(help="Code of a grid node the user answers for (repeatable)")] = None,
    display_name: Annotated[str, typer.Option(help="Name shown in the UI")] = "",
) -> None:
    """Add a user and assign them to grid nodes (a manager to a street or district)."""
    settings = load_settings()
    try:
        role_value = parse_role(role)
        with transaction(open_db(settings)) as session:
            user = add_user(
                session, username=username, role=role_value, password=password, grid_codes=grid, display_name=display_name
            )
            user_id = user.id
    except GridPatrolError as err:
        fail(str(err))
    print(f"user {username} ({role_value.value}) created with id {user_id}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
) -> None:
    """Run GridPatrol in one process (embedded: SQLite by default, in-process bus)."""
    import uvicorn

    from api.app import create_app

    settings = load_settings()
    try:
        factory = open_db(settings)
    except GridPatrolError as err:
        fail(str(err))
    api = create_app(settings.api, session_factory=factory)
    uvicorn.run(api, host=host, port=port, log_level="info")


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
) -> None:
    """Run the embedded service on a demo district with cameras and users (data under <data dir>/demo)."""
    import uvicorn

    from api.app import create_app
    from gridpatrol.demo import DEMO_PASSWORD, DEMO_USERS, seed_demo

    settings = load_settings()
    demo_dir = settings.storage.data_dir / "demo"
    storage = settings.storage.model_copy(
        update={"data_dir": demo_dir, "database_url": f"sqlite:///{(demo_dir / 'gridpatrol.db').resolve()}"}
    )
    settings = Settings(storage=storage, api=settings.api)
    try:
        factory = open_db(settings)
        with transaction(factory) as session:
            seed_demo(session, stream_base="rtsp://127.0.0.1:8554")
    except GridPatrolError as err:
        fail(str(err))
    print(f"GridPatrol demo on http://{host}:{port}/docs  (data: {demo_dir})")
    print(f"users (password '{DEMO_PASSWORD}'): " + ", ".join(f"{u.username} ({u.role.value})" for u in DEMO_USERS))
    api = create_app(settings.api, session_factory=factory)
    uvicorn.run(api, host=host, port=port, log_level="info")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    app()
