"""``gridpatrol gb28181``: the GB/T 28181 platform cameras and NVRs register to (``serve``), and its
device registry (``devices``)."""

from __future__ import annotations

import json
import signal
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gridpatrol.cli_common import fail, load_settings, open_db_for_reading
from models.errors import GridPatrolError

if TYPE_CHECKING:
    from gridpatrol.gb_service import GbService
    from gridpatrol.runtime import Runtime
    from gridpatrol.settings import Settings
    from ingest.gb28181.settings import Gb28181Settings

STATUS_ZH = {"online": "在线", "offline": "离线", "unregistered": "已注销"}
LOCAL_TIME = "%Y-%m-%d %H:%M:%S"


def gb28181_settings(**overrides: Any) -> Gb28181Settings:
    """``GRIDPATROL_GB28181_*`` with the command line's overrides (None: not given); a bad value ends
    the command naming the setting."""
    from pydantic import ValidationError

    from ingest.gb28181.settings import Gb28181Settings

    try:
        # the environment first, then what the command line gives
        return Gb28181Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as err:
        fail(f"gb28181 settings: {err.errors()[0]['msg']} ({'.'.join(map(str, err.errors()[0]['loc']))})")


def start_gb28181(runtime: Runtime, settings: Settings, conf: Gb28181Settings) -> GbService:
    """Bind the SIP port (UDP and TCP) and start the platform on a thread of its own (``serve``)."""
    from gridpatrol.cli_secrets import camera_keyring
    from gridpatrol.gb_service import start_gb_service
    from gridpatrol.runtime import listen_error

    keyring = camera_keyring(settings, runtime.factory)
    try:
        return start_gb_service(conf, factory=runtime.factory, keyring=keyring, timezone=settings.worker.tz)
    except OSError as err:
        fail(
            "gb28181: "
            + listen_error(conf.sip_host, conf.sip_port, err).replace(
                "--port", "--sip-port (GRIDPATROL_GB28181_SIP_PORT)"
            )
        )
    except GridPatrolError as err:
        fail(f"gb28181: {err}")


def _serve_health(
    runtime: Runtime, service: GbService, gateway: Any, worker: Any, *, port: int, host: str
) -> None:
    """Metrics of what runs in this process; ready while the SIP platform's thread runs."""
    from prometheus_client import CollectorRegistry

    from gridpatrol.health_http import common_checks, start_health_server

    registry = CollectorRegistry()
    if gateway is not None:
        from gridpatrol.gateway import GatewayCollector

        GatewayCollector(gateway.gateway).register(registry)
    if worker is not None:
        from ingest.health import HealthCollector

        HealthCollector(worker.supervisor.health).register(registry)
    checks = [
        *common_checks(runtime.factory, runtime.bus),
        ("sip", lambda: None if service.thread.running else "GB/T 28181 platform stopped"),
    ]
    start_health_server(port, host=host, registry=registry, checks=checks, process="gb28181")


def _listening(service: GbService) -> str:
    conf = service.platform.settings
    kinds = "/".join(t for t, on in (("udp", conf.udp), ("tcp", conf.tcp)) if on)
    return (
        f"gb28181 platform {conf.id} (domain {conf.domain}) on sip:{conf.advertised_host}:{service.platform.port} "
        f"({kinds})"
    )


def _local(value: datetime | None) -> str:
    return value.astimezone().strftime(LOCAL_TIME) if value is not None else "-"


def register_gb28181_commands(app: typer.Typer) -> None:
    gb_app = typer.Typer(
        help="GB/T 28181: the SIP platform that cameras and NVRs register to (国标接入).",
        no_args_is_help=True,
    )
    app.add_typer(gb_app, name="gb28181")

    @gb_app.command("serve")
    def serve(
        sip_host: Annotated[
            str | None,
            typer.Option(help="Address to listen on (GRIDPATROL_GB28181_SIP_HOST, default 0.0.0.0)"),
        ] = None,
        sip_port: Annotated[
            int | None, typer.Option(help="SIP port, UDP and TCP (GRIDPATROL_GB28181_SIP_PORT, default 5060)")
        ] = None,
        domain: Annotated[
            str | None,
            typer.Option(help="10-digit SIP domain (GRIDPATROL_GB28181_DOMAIN, default 3402000000)"),
        ] = None,
        platform_id: Annotated[
            str | None,
            typer.Option(
                "--id", help="20-digit SIP server ID (GRIDPATROL_GB28181_ID, default 34020000002000000001)"
            ),
        ] = None,
        public_host: Annotated[
            str | None,
            typer.Option(help="Address devices reach this platform at (GRIDPATROL_GB28181_PUBLIC_HOST)"),
        ] = None,
        gateway: Annotated[
            bool,
            typer.Option(
                help="Also run the RTSP gateway, which serves GB cameras to players and browsers "
                "(GRIDPATROL_GATEWAY_HOST/PORT, default 8554)"
            ),
        ] = True,
        worker: Annotated[
            bool,
            typer.Option(
                help="Also run a camera worker, which reads GB cameras through this platform's feeds"
            ),
        ] = False,
        metrics_port: Annotated[
            int | None, typer.Option(help="Serve /metrics, /healthz and /readyz on this port")
        ] = None,
        metrics_host: Annotated[str, typer.Option(help="Address of the metrics endpoint")] = "127.0.0.1",
    ) -> None:
        """Answer GB/T 28181 devices: registration (Digest with GRIDPATROL_GB28181_PASSWORD), keepalives,
        catalogs (each video channel becomes a camera) and live play."""
        from gridpatrol.runtime import Runtime
        from gridpatrol.signing_key import settings_with_signing_key

        conf = gb28181_settings(
            sip_host=sip_host, sip_port=sip_port, domain=domain, id=platform_id, public_host=public_host
        )
        if conf.password is None:
            fail(
                "gb28181: set GRIDPATROL_GB28181_PASSWORD, the password devices register with (SIP 认证密码)"
            )
        try:
            settings = settings_with_signing_key(load_settings()) if gateway else load_settings()
            runtime = Runtime.build(settings)
        except GridPatrolError as err:
            fail(str(err))
        service = None
        gateway_thread = None
        cam_worker = None
        stop = threading.Event()
        try:
            service = start_gb28181(runtime, settings, conf)
            print(_listening(service), flush=True)
            if gateway:
                from gridpatrol.cli_gateway import gateway_settings, start_gateway_thread

                gconf = gateway_settings()
                gateway_thread = start_gateway_thread(runtime, settings, gconf, gb_feeds=service.feeds)
                print(f"rtsp gateway on rtsp://{gconf.host}:{gconf.port}/cameras/ID", flush=True)
            if worker:
                try:
                    cam_worker = runtime.start_worker(openers=service.openers())
                except GridPatrolError as err:
                    fail(f"worker: {err}")
            if metrics_port:  # /metrics, /healthz, /readyz (gridpatrol/health_http.py)
                _serve_health(
                    runtime, service, gateway_thread, cam_worker, port=metrics_port, host=metrics_host
                )
            for s in (signal.SIGTERM, signal.SIGINT):
                signal.signal(s, lambda *_: stop.set())
            stop.wait()
        finally:
            if cam_worker is not None:
                cam_worker.stop()
            if gateway_thread is not None:
                gateway_thread.stop()
            if service is not None:
                service.stop()
            runtime.close()

    @gb_app.command("devices")
    def devices(
        as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout")] = False,
    ) -> None:
        """Devices that registered: status, transport and address, last keepalive, channels and cameras."""
        from gridpatrol.cli_lists import table
        from models.grid.gb28181 import list_devices

        try:
            with open_db_for_reading(load_settings())() as session:
                rows = list_devices(session)
        except GridPatrolError as err:
            fail(str(err))
        if as_json:
            doc = {
                "devices": [
                    {
                        "device_id": r.device_id,
                        "domain": r.domain,
                        "status": r.status,
                        "transport": r.transport,
                        "address": r.address,
                        "registered_at": r.registered_at.isoformat() if r.registered_at else None,
                        "last_keepalive_at": r.last_keepalive_at.isoformat() if r.last_keepalive_at else None,
                        "channels": r.channels,
                        "cameras": r.cameras,
                        "user_agent": r.user_agent,
                    }
                    for r in rows
                ]
            }
            print(json.dumps(doc, ensure_ascii=False))
            return
        lines = table(
            ["DEVICE", "STATUS", "TRANSPORT", "ADDRESS", "LAST KEEPALIVE", "CHANNELS", "CAMERAS"],
            [
                [
                    r.device_id,
                    STATUS_ZH.get(r.status, r.status),
                    r.transport.upper(),
                    r.address or "-",
                    _local(r.last_keepalive_at),
                    str(r.channels),
                    str(r.cameras),
                ]
                for r in rows
            ],
        )
        online = sum(r.status == "online" for r in rows)
        print("\n".join([*lines, f"{len(rows)} device(s), {online} online"]))

    @gb_app.command("channels")
    def channels(
        device_id: Annotated[str, typer.Argument(help="The device's 20-digit ID")],
        as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout")] = False,
    ) -> None:
        """A device's catalog: channel ID, name, status, civil code, place, and the camera it became."""
        from gridpatrol.cli_lists import table
        from models.grid.gb28181 import list_channels, list_devices

        try:
            with open_db_for_reading(load_settings())() as session:
                if device_id not in {r.device_id for r in list_devices(session)}:
                    fail(
                        f"no GB/T 28181 device {device_id} has registered (gridpatrol gb28181 devices lists them)"
                    )
                items = [
                    {
                        "channel_id": c.channel_id,
                        "name": c.name,
                        "status": c.status,
                        "civil_code": c.civil_code,
                        "lon": c.lon,
                        "lat": c.lat,
                        "camera_id": c.camera_id,
                    }
                    for c in list_channels(session, device_id)
                ]
        except GridPatrolError as err:
            fail(str(err))
        if as_json:
            print(json.dumps({"device_id": device_id, "channels": items}, ensure_ascii=False))
            return
        rows = [
            [
                c["channel_id"],
                c["name"],
                c["status"] or "-",
                c["civil_code"] or "-",
                f"{c['lon']:.6f},{c['lat']:.6f}" if c["lon"] is not None and c["lat"] is not None else "-",
                str(c["camera_id"]) if c["camera_id"] is not None else "-",
            ]
            for c in items
        ]
        lines = table(["CHANNEL", "NAME", "STATUS", "CIVIL CODE", "LON,LAT", "CAMERA"], rows)
        print("\n".join([*lines, f"{len(items)} channel(s)"]))
