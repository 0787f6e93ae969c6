"""``gridpatrol gateway``: the RTSP gateway as a process of its own (and its start inside ``serve``)."""

from __future__ import annotations

import asyncio
import signal
import threading
from typing import TYPE_CHECKING, Annotated

import typer

from gridpatrol.cli_common import fail, load_settings
from gridpatrol.settings import Settings
from models.errors import GridPatrolError

if TYPE_CHECKING:
    from gridpatrol.gateway import GatewayThread
    from gridpatrol.runtime import Runtime
    from ingest.gb28181.media import ChannelFeeds
    from rtsp_gateway.settings import GatewaySettings


def gateway_settings(
    *, host: str | None = None, port: int | None = None, replays: list[str] | None = None
) -> GatewaySettings:
    """``GRIDPATROL_GATEWAY_*`` with the command line's overrides; a bad value ends the command."""
    from pydantic import ValidationError

    from gridpatrol.gateway import parse_replays
    from rtsp_gateway.settings import GatewaySettings

    try:
        conf = GatewaySettings()
        update: dict[str, object] = {}
        if host is not None:
            update["host"] = host
        if port is not None:
            update["port"] = port
        if replays:
            update["replays"] = {**conf.replays, **parse_replays(replays)}
        return conf.model_copy(update=update)
    except (ValidationError, ValueError) as err:
        fail(str(err))


def start_gateway_thread(
    runtime: Runtime, settings: Settings, conf: GatewaySettings, *, gb_feeds: ChannelFeeds | None = None
) -> GatewayThread:
    """Bind the RTSP port, then run the gateway on an event loop of its own thread (``serve``). The
    ``settings`` must carry the API signing key (it keys the Digest nonces when none is configured)."""
    from gridpatrol.gateway import Gateway, GatewayThread, bind_gateway
    from gridpatrol.runtime import listen_error
    from models.grid.credentials import prepare_credentials

    try:
        sock = bind_gateway(conf)
    except OSError as err:
        fail(
            "rtsp gateway: "
            + listen_error(conf.host, conf.port, err).replace(
                "--port", "GRIDPATROL_GATEWAY_PORT (or run without it: --no-gateway)"
            )
        )
    keyring = prepare_credentials(runtime.factory, settings.credentials, data_dir=settings.storage.data_dir)
    gateway = Gateway.build(
        conf,
        factory=runtime.factory,
        keyring=keyring,
        nonce_secret=settings.api.secret_key,
        bus=runtime.bus,
        gb_feeds=gb_feeds,  # gb28181:// cameras, when the GB/T 28181 platform runs in this process
    )
    return GatewayThread(gateway, sock)


def register_gateway_commands(app: typer.Typer) -> None:
    @app.command("gateway")
    def gateway_cmd(
        host: Annotated[
            str | None,
            typer.Option(help="Address to listen on (default GRIDPATROL_GATEWAY_HOST or 127.0.0.1)"),
        ] = None,
        port: Annotated[
            int | None, typer.Option(help="RTSP port (default GRIDPATROL_GATEWAY_PORT or 8554)")
        ] = None,
        replay: Annotated[
            list[str] | None,
            typer.Option(
                help="Serve a recorded clip in a loop as rtsp://HOST:PORT/replay/NAME (NAME=FILE; repeatable)"
            ),
        ] = None,
        metrics_port: Annotated[
            int | None, typer.Option(help="Serve Prometheus metrics on this port")
        ] = None,
        metrics_host: Annotated[str, typer.Option(help="Address of the metrics endpoint")] = "127.0.0.1",
        live_port: Annotated[
            int | None,
            typer.Option(
                help="Serve the browser live view (WebSocket /api/cameras/ID/live, the API's bearer tokens) on this port"
            ),
        ] = None,
    ) -> None:
        """Serve live video to RTSP players (VLC, ffplay, NVRs): one upstream per camera, every viewer
        authenticated (Digest: password or an API token with the rtsp scope) and authorised."""
        from gridpatrol.gateway import Gateway, GatewayCollector, bind_gateway
        from gridpatrol.live_view import build_live_app, serve_live_app
        from gridpatrol.runtime import Runtime, bind_listeners, listen_error
        from gridpatrol.signing_key import settings_with_signing_key
        from models.grid.credentials import prepare_credentials

        conf = gateway_settings(host=host, port=port, replays=replay)
        try:
            sock = bind_gateway(conf)
        except OSError as err:
            fail(listen_error(conf.host, conf.port, err))
        live_sock = None
        if live_port is not None:
            try:
                live_sock = bind_listeners(conf.host, live_port)[0]
            except OSError as err:
                sock.close()
                fail(listen_error(conf.host, live_port, err))
        try:
            settings = settings_with_signing_key(load_settings())
            runtime = Runtime.build(settings)
            keyring = prepare_credentials(
                runtime.factory, settings.credentials, data_dir=settings.storage.data_dir
            )
        except GridPatrolError as err:
            sock.close()
            fail(str(err))
        gateway = Gateway.build(
            conf,
            factory=runtime.factory,
            keyring=keyring,
            nonce_secret=settings.api.secret_key,
            bus=runtime.bus,
        )
        listening = threading.Event()
        if metrics_port:  # /metrics, /healthz, /readyz (gridpatrol/health_http.py)
            from prometheus_client import CollectorRegistry

            from gridpatrol.health_http import common_checks, start_health_server

            registry = CollectorRegistry()
            GatewayCollector(gateway).register(registry)
            checks = [
                *common_checks(runtime.factory, runtime.bus),
                ("rtsp", lambda: None if listening.is_set() else "RTSP server not listening"),
            ]
            start_health_server(
                metrics_port, host=metrics_host, registry=registry, checks=checks, process="gateway"
            )

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for s in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(s, stop.set)
            await gateway.start(sock=sock)
            listening.set()
            print(f"rtsp gateway on rtsp://{conf.host}:{gateway.server.port}/cameras/ID", flush=True)
            live = None
            # the browser live view on the same hub: one upstream per camera for RTSP and browser viewers
            if live_sock is not None:
                live = await serve_live_app(
                    build_live_app(settings.api, gateway=gateway, bus=runtime.bus), live_sock
                )
                print(f"live view on ws://{conf.host}:{live_port}/api/cameras/ID/live", flush=True)
            await stop.wait()
            listening.clear()
            if live is not None:
                live.should_exit = True
            await gateway.stop()

        try:
            asyncio.run(main())
        finally:
            runtime.close()
