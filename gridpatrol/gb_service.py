"""The GB/T 28181 platform inside a GridPatrol process: SIP signalling on a thread of its own, the
device registry in the database, and the channels' shared live feeds for the gateway and the worker.

``gridpatrol serve --gb28181`` and ``gridpatrol gb28181 serve`` start it; the gateway's hub resolves a
``gb28181://`` camera to a feed (``Gateway.build(gb_feeds=...)``) and the worker's readers open one
through :meth:`GbService.openers`. Workers in other processes read GB cameras through the gateway's RTSP.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import tzinfo
from typing import TYPE_CHECKING, Any

from ingest.gb28181.platform import GbPlatform, PlatformThread
from ingest.gb28181.settings import Gb28181Settings
from ingest.gb28181.store import DbDeviceStore
from models.grid.credentials import CredentialKeyring

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from ingest.gb28181.media import ChannelFeeds


@dataclass
class GbService:
    platform: GbPlatform
    thread: PlatformThread
    feeds: ChannelFeeds

    def openers(self) -> dict[str, Any]:
        """URL scheme → opener, for ingest's readers (a worker in this process)."""
        return {"gb28181": self.feeds.open_source}

    def stop(self) -> None:
        """BYE every live session, then stop the platform."""
        if self.thread.running:
            with contextlib.suppress(Exception):
                self.platform.submit(self.feeds.aclose()).result(timeout=5)
        self.thread.stop()


def media_options(conf: Gb28181Settings) -> Any:
    from ingest.gb28181.media import MediaOptions

    return MediaOptions(
        ip=conf.media_ip or conf.advertised_host,
        bind_ip=conf.media_bind_ip,
        ports=conf.media_port_range,
        transport=conf.media_transport,
    )


def start_gb_service(
    conf: Gb28181Settings,
    *,
    factory: sessionmaker[Session],
    keyring: CredentialKeyring | None,
    timezone: tzinfo | None = None,
) -> GbService:
    """Bind the SIP port (UDP and TCP) and start answering devices. OSError when the port is taken;
    ConfigError without a device password."""
    from ingest.gb28181.media import ChannelFeeds
    from ingest.gb28181.ssrc import SsrcPool

    platform = GbPlatform(conf, store=DbDeviceStore(factory, keyring=keyring), timezone=timezone)
    thread = PlatformThread(platform).start()
    assert platform.loop is not None
    feeds = ChannelFeeds(
        platform,
        loop=platform.loop,
        ssrcs=SsrcPool(conf.domain),
        options=media_options(conf),
        platform_id=conf.id,
    )
    pending: set[asyncio.Task[None]] = set()

    def lost(device_id: str) -> None:  # runs on the platform's loop
        task = asyncio.get_running_loop().create_task(feeds.device_lost(device_id))
        pending.add(task)
        task.add_done_callback(pending.discard)

    platform.on_device_lost.append(lost)
    return GbService(platform=platform, thread=thread, feeds=feeds)
