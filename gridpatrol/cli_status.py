"""``gridpatrol status``: which database, data directory, bus, time zone and environment this shell's
settings point at, and what the database holds. Reads only: a missing SQLite file stays missing."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from gridpatrol.cli_common import (
    WHERE_HINT,
    code_head,
    first_line,
    load_settings,
    schema_revisions,
    sqlite_path,
)
from gridpatrol.settings import Settings
from models.db.engine import make_engine, make_session_factory
from models.db.tables import Camera, GridNode, Ticket, User
from models.errors import GridPatrolError
from models.secrets import redact_url
from models.tickets.states import LIVE, values


@dataclass
class Status:
    settings: Settings
    database: dict[str, Any] = field(default_factory=dict)
    bus: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] | None = None
    problems: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        data_dir = self.settings.storage.data_dir.resolve()
        return {
            "database": self.database,
            "data_dir": str(data_dir),
            "data_dir_exists": data_dir.is_dir(),
            "bus": self.bus,
            "timezone": self.settings.worker.timezone,
            "environment": self.settings.api.environment,
            "counts": self.counts,
            "problems": self.problems,
        }


def inspect_database(status: Status) -> None:
    """Fill in the database part: where it is, whether it exists, its schema, and the counts."""
    settings = status.settings
    url = settings.storage.resolved_database_url()
    path = sqlite_path(settings)
    db: dict[str, Any] = {
        "url": redact_url(url),
        "backend": "sqlite" if path is not None or url.startswith("sqlite") else "postgresql",
        "path": str(path) if path is not None else None,
        "exists": None,
        "revision": None,
        "head": code_head(),
        "up_to_date": False,
        "error": None,
    }
    status.database = db
    if path is not None:
        db["exists"] = path.is_file()
        if not db["exists"]:
            status.problems.append(f"no database at {path}: {WHERE_HINT}")
            return
    try:
        engine = make_engine(url)
    except GridPatrolError as err:
        db["error"] = str(err)
        status.problems.append(f"database: {err}")
        return
    try:
        db["revision"], db["head"] = schema_revisions(engine)
        db["exists"] = True
        db["up_to_date"] = db["revision"] is not None and db["revision"] == db["head"]
        if db["revision"] is None:
            status.problems.append(f"the database holds no GridPatrol schema: {WHERE_HINT}, or run `gridpatrol db upgrade`")
        elif not db["up_to_date"]:
            status.problems.append(f"schema {db['revision']} is not the code's {db['head']}: run `gridpatrol db upgrade`")
        if db["revision"] is not None:
            with make_session_factory(engine)() as session:
                status.counts = {
                    "grid_nodes": session.scalar(select(func.count()).select_from(GridNode)) or 0,
                    "cameras": session.scalar(select(func.count()).select_from(Camera)) or 0,
                    "users": session.scalar(select(func.count()).select_from(User)) or 0,
                    "live_tickets": session.scalar(
                        select(func.count()).select_from(Ticket).where(Ticket.state.in_(values(LIVE)))
                    ) or 0,
                }  # fmt: skip
    except SQLAlchemyError as err:
        db["error"] = first_line(err)
        status.problems.append(f"database cannot be read: {db['error']}")
    finally:
        engine.dispose()


def inspect_bus(status: Status) -> None:
    """The bus: in-process, or Redis (redacted URL) and whether it answers a PING."""
    url = status.settings.storage.redis_url
    if not url:
        status.bus = {"kind": "in-process", "url": None, "reachable": None, "error": None}
        return
    import redis

    status.bus = {"kind": "redis", "url": redact_url(url), "reachable": False, "error": None}
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
        try:
            client.ping()
        finally:
            client.close()
        status.bus["reachable"] = True
    except (redis.RedisError, ValueError) as err:
        status.bus["error"] = str(err).splitlines()[0] if str(err) else type(err).__name__
        status.problems.append(f"Redis does not answer: {status.bus['error']}")


def render(status: Status) -> list[str]:
    doc = status.as_json()
    db = doc["database"]
    if db["path"] is not None:
        where = f"SQLite {db['path']} ({'exists' if db['exists'] else 'MISSING'})"
    else:
        where = db["url"]
    if db["revision"] is not None:
        schema = f"{db['revision']} ({'up to date' if db['up_to_date'] else 'the code needs ' + str(db['head'])})"
    else:
        schema = f"{'none' if db['exists'] else '-'} (the code's: {db['head']})"
    bus = doc["bus"]
    if bus["kind"] == "redis":
        bus_text = f"Redis {bus['url']} ({'reachable' if bus['reachable'] else 'unreachable'})"
    else:
        bus_text = "in-process (no GRIDPATROL_REDIS_URL: serve runs everything in one process)"
    counts = doc["counts"]
    lines = [
        f"database     {where}",
        f"schema       {schema}",
        f"data dir     {doc['data_dir']}{'' if doc['data_dir_exists'] else ' (missing)'}",
        f"bus          {bus_text}",
        f"time zone    {doc['timezone']}",
        f"environment  {doc['environment']}",
    ]
    if counts is not None:
        lines.append(
            f"counts       grid nodes {counts['grid_nodes']} · cameras {counts['cameras']} · "
            f"users {counts['users']} · live tickets {counts['live_tickets']}"
        )
    lines += [f"problem: {p}" for p in doc["problems"]]
    return lines


def register_status_command(app: typer.Typer) -> None:
    @app.command("status")
    def status_cmd(as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout")] = False) -> None:
        """Which database, data dir, bus, time zone and environment are used; what the database holds.

        Exits 1 when something is wrong (database missing or unreadable, schema out of date, Redis
        unreachable) and lists the problems. Reads only: creates nothing."""
        status = Status(load_settings())
        inspect_database(status)
        inspect_bus(status)
        if as_json:
            print(json.dumps(status.as_json(), ensure_ascii=False))
        else:
            print("\n".join(render(status)))
        if status.problems:
            raise typer.Exit(1)
