"""The ``gridpatrol`` command line: database, imports, users and the processes."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from sqlalchemy import select
from sqlalchemy.orm import Session

from gridpatrol.cli_bus import register_bus_commands
from gridpatrol.cli_common import (
    database_label,
    fail,
    load_settings,
    open_db,
    open_db_for_reading,
    read_json,
    read_text,
)
from gridpatrol.cli_gateway import register_gateway_commands
from gridpatrol.cli_gb28181 import register_gb28181_commands
from gridpatrol.cli_lists import register_list_commands
from gridpatrol.cli_media import register_media_commands
from gridpatrol.cli_org import register_org_commands
from gridpatrol.cli_secrets import camera_keyring, register_secrets_commands
from gridpatrol.cli_status import register_status_command
from gridpatrol.settings import Settings
from models.bus.messages import CONFIG_CHANGES, ConfigChange
from models.db.engine import transaction
from models.db.tables import Camera
from models.errors import GridPatrolError
from models.grid.cameras import YAML_SUFFIXES, parse_camera_text, register_cameras
from models.grid.zones import current_zones, save_zones
from models.identity.users import add_user, parse_role
from models.secrets import ensure_private_dir

if TYPE_CHECKING:
    from rtsp_gateway.settings import GatewaySettings

app = typer.Typer(help="GridPatrol 网格视频巡查: video-surveillance grid patrol.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
grids_app = typer.Typer(help="The grid tree (district > street > community > grid).", no_args_is_help=True)
cameras_app = typer.Typer(help="Cameras.", no_args_is_help=True)
users_app = typer.Typer(help="Users and their grids.", no_args_is_help=True)
zones_app = typer.Typer(help="Detection zones of a camera.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(grids_app, name="grids")
app.add_typer(cameras_app, name="cameras")
app.add_typer(users_app, name="users")
app.add_typer(zones_app, name="zones")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema to the newest version."""
    settings = load_settings()
    try:
        ensure_private_dir(settings.storage.data_dir)  # the first command of a new installation: 0700
        open_db(settings)
    except GridPatrolError as err:
        fail(str(err))
    print("database is up to date")


@grids_app.command("import")
def grids_import(
    file: Annotated[Path, typer.Argument(help="GeoJSON FeatureCollection")],
    strict: Annotated[bool, typer.Option(help="Refuse overlapping grids and grids outside their parent")] = False,
) -> None:
    """Import or update the grid tree; all or nothing. Cameras are re-placed into the new polygons."""
    from models.grid.tree import import_grids  # shapely and numpy: only this command needs them

    settings = load_settings()
    doc = read_json(file)
    try:
        with transaction(open_db(settings)) as session:
            report = import_grids(session, doc, strict=strict)
    except GridPatrolError as err:
        fail(f"{file}: {err} (nothing was imported)")
    for warning in report.geometry_warnings[:50]:  # a whole city's file may hold hundreds: the first ones show the pattern
        print(f"warning: {warning}")
    if report.geometry_warnings:
        print(f"warning: {len(report.geometry_warnings)} overlap(s)/spill(s) imported anyway (--strict refuses them)")
    print(f"grids: {report.created} created, {report.updated} updated; cameras placed: {report.cameras_placed}")
    _report_outside(report.cameras_outside)


def _report_outside(names: list[str]) -> None:
    if names:
        shown = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
        print(f"warning: {len(names)} camera(s) lie outside every grid (visible to admins/operators only): {shown}")


@cameras_app.command("import")
def cameras_import(file: Annotated[Path, typer.Argument(help="CSV (name,url,lon,lat[,sub_url][,analysis_stream][,onvif][,grid]) or YAML")]) -> None:
    """Register or update cameras; each is placed in the grid its location falls in."""
    settings = load_settings()
    text = read_text(file)
    try:
        specs = parse_camera_text(text, yaml_format=file.suffix.lower() in YAML_SUFFIXES)
    except GridPatrolError as err:
        fail(f"{file}: {err} (nothing was imported)")
    try:
        factory = open_db(settings)
        keyring = camera_keyring(settings, factory)  # URLs are stored encrypted (README: Security)
        with transaction(factory) as session:
            report = register_cameras(session, specs, credentials=keyring)
    except GridPatrolError as err:
        fail(f"{file}: {err} (nothing was imported)")
    print(f"cameras: {report.created} created, {report.updated} updated")
    _report_outside(report.outside)


@users_app.command("add")
def users_add(
    username: str,
    role: Annotated[str, typer.Option(help="admin | operator | manager | grid_leader | patroller")],
    password: Annotated[
        str, typer.Option(help="At least 8 characters, not common or trivial, not the username (checked with zxcvbn)")
    ],
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
    worker: Annotated[bool, typer.Option(help="Run a camera worker in this process")] = True,
    ticketer: Annotated[bool, typer.Option(help="Run the ticketer in this process")] = True,
    access_log: Annotated[
        bool, typer.Option("--access-log", help="Log every request on stdout as one JSON object (off by default)")
    ] = False,
    gateway: Annotated[
        bool, typer.Option(help="Run the RTSP gateway in this process (GRIDPATROL_GATEWAY_HOST/PORT, default 8554)")
    ] = True,
    gb28181: Annotated[
        bool | None,
        typer.Option(
            "--gb28181/--no-gb28181",
            help="Run the GB/T 28181 platform in this process (default GRIDPATROL_GB28181_ENABLED; see gb28181 serve)",
        ),
    ] = None,
) -> None:
    """Run GridPatrol in one process: API, ticketer, a camera worker and the RTSP gateway (SQLite and an
    in-process bus by default; PostgreSQL/Redis when configured)."""
    run_everything(
        load_settings(),
        host=host,
        port=port,
        with_worker=worker,
        with_ticketer=ticketer,
        access_log=access_log,
        with_gateway=gateway,
        with_gb28181=gb28181,
    )


def run_everything(
    settings: Settings,
    *,
    host: str,
    port: int,
    with_worker: bool,
    with_ticketer: bool,
    access_log: bool = False,
    with_gateway: bool = False,
    with_gb28181: bool | None = False,
    gateway_conf: GatewaySettings | None = None,
) -> None:
    from prometheus_client import CollectorRegistry

    from gridpatrol.runtime import Runtime, bind_listeners, listen_error, serve_http
    from gridpatrol.signing_key import settings_with_signing_key
    from ingest.health import HealthCollector

    try:  # the port first: a busy one ends here, before any camera is read (issue 11)
        listeners = bind_listeners(host, port)
    except OSError as err:
        fail(listen_error(host, port, err))
    try:
        settings = settings_with_signing_key(settings)  # before anything starts: a missing key stops here
        runtime = Runtime.build(settings)
    except GridPatrolError as err:
        fail(str(err))
    cam_worker = None
    ticketer = None
    gateway = None
    gb = None
    try:
        if with_gb28181 is not False:  # asked for, or GRIDPATROL_GB28181_ENABLED decides
            from gridpatrol.cli_gb28181 import gb28181_settings, start_gb28181

            gb_conf = gb28181_settings()
            if with_gb28181 or gb_conf.enabled:  # before the gateway and the worker, which read its feeds
                gb = start_gb28181(runtime, settings, gb_conf)
        if with_gateway:
            from gridpatrol.cli_gateway import gateway_settings, start_gateway_thread

            gateway = start_gateway_thread(
                runtime, settings, gateway_conf or gateway_settings(), gb_feeds=gb.feeds if gb is not None else None
            )
        if with_ticketer:
            ticketer = runtime.start_ticketer()
        if with_worker:
            try:
                cam_worker = runtime.start_worker(openers=gb.openers() if gb is not None else None)
            except GridPatrolError as err:
                fail(f"worker: {err}")
        metrics = CollectorRegistry()
        if ticketer is not None:
            from gridpatrol.ticketer import TicketerCollector

            TicketerCollector(ticketer).register(metrics)
            for collector in runtime.ticketer_collectors():  # tickets, webhooks, bus groups, MQTT
                metrics.register(collector)
        if cam_worker is not None:
            HealthCollector(cam_worker.supervisor.health).register(metrics)
        if gateway is not None:
            from gridpatrol.gateway import GatewayCollector

            GatewayCollector(gateway.gateway).register(metrics)
        try:
            live = None
            if gateway is not None:  # the browser live view shares the gateway's media hub
                from gridpatrol.live_view import threaded_live_video

                live = threaded_live_video(gateway)
            api = runtime.build_api(metrics=metrics, live_video=live)
        except GridPatrolError as err:
            fail(str(err))
        serve_http(api, listeners, settings=settings, access_log=access_log)
    finally:
        for sock in listeners:
            sock.close()
        if cam_worker is not None:
            cam_worker.stop()
        if gateway is not None:
            gateway.stop()
        if gb is not None:
            gb.stop()
        runtime.close()


@app.command("worker")
def worker_cmd(
    capacity: Annotated[int | None, typer.Option(help="Most cameras this worker reads (default from settings)")] = None,
    metrics_port: Annotated[int | None, typer.Option(help="Serve Prometheus metrics on this port")] = None,
    metrics_host: Annotated[str, typer.Option(help="Address of the metrics endpoint")] = "127.0.0.1",
    processes: Annotated[
        int,
        typer.Option(
            help="Worker processes to run (decoding many cameras is GIL-bound: one per core for onnx, "
            "two per core for the classic detector)"
        ),
    ] = 1,
) -> None:
    """Read cameras (claimed through leases), run the detectors and publish rule events."""
    from gridpatrol.runtime import Runtime, run_process_group, stop_on_signals

    settings = load_settings()
    if processes < 1:
        fail("--processes must be at least 1")
    if processes > 1:
        if not settings.storage.redis_url:
            fail("--processes > 1 needs GRIDPATROL_REDIS_URL: the processes share cameras through Redis leases")
        child = ["worker"] + (["--capacity", str(capacity)] if capacity is not None else [])
        commands = [
            child + (["--metrics-port", str(metrics_port + i), "--metrics-host", metrics_host] if metrics_port else [])
            for i in range(processes)
        ]
        raise typer.Exit(run_process_group(commands))
    try:
        runtime = Runtime.build(settings)
        w = runtime.start_worker(capacity=capacity)
    except GridPatrolError as err:
        fail(str(err))
    if metrics_port:  # /metrics, /healthz, /readyz (gridpatrol/health_http.py)
        from prometheus_client import CollectorRegistry

        from gridpatrol.health_http import common_checks, start_health_server, threads_check
        from ingest.health import HealthCollector

        registry = CollectorRegistry()
        HealthCollector(w.supervisor.health).register(registry)
        loops = [f"worker-control-{w.worker_id}", f"ingest-supervisor-{w.worker_id}"]
        checks = [*common_checks(runtime.factory, runtime.bus), threads_check("worker", loops)]
        start_health_server(metrics_port, host=metrics_host, registry=registry, checks=checks, process=w.worker_id)
    with stop_on_signals(runtime.stop):
        runtime.stop.wait()
    w.stop()
    runtime.close()


@app.command("ticketer")
def ticketer_cmd(
    metrics_port: Annotated[int | None, typer.Option(help="Serve Prometheus metrics on this port")] = None,
    metrics_host: Annotated[str, typer.Option(help="Address of the metrics endpoint")] = "127.0.0.1",
) -> None:
    """Turn rule events into tickets; escalate and verify on time. Run one or more."""
    from gridpatrol.runtime import Runtime, stop_on_signals

    settings = load_settings()
    try:
        runtime = Runtime.build(settings)
    except GridPatrolError as err:
        fail(str(err))
    with stop_on_signals(runtime.stop):
        ticketer = runtime.start_ticketer()
        if metrics_port:  # /metrics, /healthz, /readyz (gridpatrol/health_http.py)
            from prometheus_client import CollectorRegistry

            from gridpatrol.health_http import common_checks, start_health_server, threads_check
            from gridpatrol.ticketer import TicketerCollector

            registry = CollectorRegistry()
            TicketerCollector(ticketer).register(registry)
            for collector in runtime.ticketer_collectors():  # tickets, webhooks, bus groups, MQTT
                registry.register(collector)
            checks = [*common_checks(runtime.factory, runtime.bus), threads_check("ticketer", ["ticketer"])]
            start_health_server(
                metrics_port, host=metrics_host, registry=registry, checks=checks, process=ticketer.consumer
            )
        runtime.stop.wait()
    runtime.close()


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    accept_within: Annotated[
        int, typer.Option(min=1, help="Seconds to accept a ticket before it escalates to the street manager")
    ] = 120,
    resolve_within: Annotated[
        int, typer.Option(min=1, help="Seconds (from opening) to resolve a ticket before it escalates to the district")
    ] = 240,
) -> None:
    """Run everything on a demo district with simulated cameras and users (data under <data dir>/demo)."""
    from gridpatrol.cli_gateway import gateway_settings
    from gridpatrol.demo import demo_banner, demo_replays, demo_ticket_settings, free_tcp_port, prepare_demo

    # the only environment with a fixed (published) signing key and unsigned webhooks: the demo says so
    os.environ["GRIDPATROL_ENVIRONMENT"] = "demo"
    settings = load_settings()
    demo_dir = settings.storage.data_dir / "demo"
    database_url = f"sqlite:///{(demo_dir / 'gridpatrol.db').resolve()}"
    storage = settings.storage.model_copy(update={"data_dir": demo_dir, "database_url": database_url, "redis_url": None})
    # short deadlines, and the verification time the clips are timed for (README: the demo)
    tickets = demo_ticket_settings(settings.tickets, accept_within_s=accept_within, resolve_within_s=resolve_within)
    settings = dataclasses.replace(settings, storage=storage, tickets=tickets)
    # the cameras are the gateway's replays of the demo clips, read over RTSP like real cameras
    gconf = gateway_settings()
    if gconf.port == 0:  # the cameras' URLs name the port: choose it now
        gconf = gconf.model_copy(update={"port": free_tcp_port(gconf.host)})
    gconf = gconf.model_copy(update={"replays": {**gconf.replays, **demo_replays(demo_dir)}})
    gateway_host = "127.0.0.1" if gconf.host in ("0.0.0.0", "::", "") else gconf.host
    try:
        ensure_private_dir(demo_dir)
        with transaction(open_db(settings)) as session:
            # real footage for some cameras, where scripts/setup.sh put its test assets
            assets = Path(os.environ.get("GRIDPATROL_ASSETS") or Path.home() / ".cache" / "gridpatrol")
            prepare_demo(session, demo_dir, gateway=f"{gateway_host}:{gconf.port}", footage_dir=assets)
    except GridPatrolError as err:
        fail(str(err))

    local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    gridpatrol = Path(sys.executable).parent / "gridpatrol"
    banner = demo_banner(
        base_url=f"http://{f'[{local}]' if ':' in local else local}:{port}",
        rtsp_url=f"rtsp://{gconf.host}:{gconf.port}",
        demo_dir=demo_dir,
        database_url=database_url,
        gridpatrol=str(gridpatrol) if gridpatrol.is_file() else "gridpatrol",
        accept_within_s=accept_within,
        resolve_within_s=resolve_within,
    )
    print(banner, flush=True)
    # every request on stdout would bury the banner: the access log stays off (serve --access-log has it)
    run_everything(
        settings,
        host=host,
        port=port,
        with_worker=True,
        with_ticketer=True,
        access_log=False,
        with_gateway=True,
        gateway_conf=gconf,
    )


# --- zones ---------------------------------------------------------------------------------------------
def find_camera(session: Session, ref: str, *, database: str | None = None) -> Camera:
    """A camera by id or by name; the error names the database when given (a wrong one is the usual cause)."""
    cam = session.scalar(select(Camera).where(Camera.name == ref))
    if cam is None and ref.isdigit():
        cam = session.get(Camera, int(ref))
    if cam is None:
        where = f" in {database} (`gridpatrol cameras list` shows its cameras)" if database else ""
        fail(f"no camera named or numbered {ref!r}{where}")
    return cam


@zones_app.command("set")
def zones_set(
    camera: Annotated[str, typer.Argument(help="Camera name or id")],
    file: Annotated[Path, typer.Argument(help='Zones JSON: {"zones": [{"name", "kind", "polygon", "dwell_s", ...}]}')],
) -> None:
    """Replace a camera's detection zones (a new version; running workers apply it within seconds)."""
    settings = load_settings()
    doc = read_json(file)
    try:
        with transaction(open_db(settings)) as session:
            cam = find_camera(session, camera)
            saved = save_zones(session, cam.id, doc, author=None, channel="cli")
            cam_id, name = cam.id, cam.name
    except GridPatrolError as err:
        fail(f"{file}: {err}")
    announce(settings, ConfigChange(kind="zones", camera_id=cam_id, version=saved.version))
    print(f"camera {name}: zones version {saved.version} ({len(saved.document['zones'])} zones)")


@zones_app.command("get")
def zones_get(camera: Annotated[str, typer.Argument(help="Camera name or id")]) -> None:
    """Print a camera's current zones as JSON (the format ``zones set`` reads)."""
    settings = load_settings()
    with open_db_for_reading(settings)() as session:
        cam = find_camera(session, camera, database=database_label(settings))
        current = current_zones(session, cam.id)
    print(json.dumps(current.as_document().model_dump(mode="json"), ensure_ascii=False, indent=2))


def announce(settings: Settings, change: ConfigChange) -> None:
    """Tell running workers at once when they share a Redis bus (otherwise they poll)."""
    if not settings.storage.redis_url:
        return
    from models.bus.redis_streams import RedisBus

    bus = RedisBus(settings.storage.redis_url, namespace=settings.storage.bus_namespace)
    try:
        bus.publish(CONFIG_CHANGES, [change])
    except GridPatrolError as err:
        print(f"warning: workers were not notified ({err}); they pick the change up within seconds", file=sys.stderr)
    finally:
        bus.close()


register_media_commands(app, cameras_app)
register_list_commands(app, cameras_app=cameras_app, grids_app=grids_app, users_app=users_app)
register_status_command(app)
register_secrets_commands(app)
register_bus_commands(app)
register_org_commands(app)
register_gateway_commands(app)
register_gb28181_commands(app)


def main() -> None:
    from gridpatrol.logging_json import configure_logging

    try:  # GRIDPATROL_LOG_FORMAT=json: one JSON object per line, with camera and ticket ids
        configure_logging(os.environ.get("GRIDPATROL_LOG_FORMAT", "text").strip().lower() or "text")
    except ValueError as err:
        sys.exit(f"error: {err}")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    app()
