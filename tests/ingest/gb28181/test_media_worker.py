"""A GB/T 28181 channel through the worker's whole frame path to a ticket: SIPp plays the device and
replays a pcap of street footage (PS over RTP) in which a cart is left in the fire lane; the worker
(in the platform's process, the ``gb28181`` opener) decodes and samples the channel like an RTSP
camera, the classic detector and the fire-lane rule fire, and the ticketer opens the grid's ticket."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from detectors.backends import ClassicConfig
from gridpatrol.democlip import LeftObject, zones_document
from gridpatrol.ticketer import Ticketer
from gridpatrol.worker import Worker
from ingest.gb28181.media import ChannelFeeds, MediaOptions, channel_url
from ingest.gb28181.platform import GbPlatform, PlatformThread
from ingest.gb28181.settings import Gb28181Settings
from ingest.gb28181.ssrc import SsrcPool
from ingest.leases import MemoryLeaseStore
from ingest.settings import IngestSettings
from models.bus.memory import MemoryBus
from models.db.engine import make_engine, make_session_factory, transaction
from models.db.tables import Camera, Ticket
from models.evidence.store import FileEvidenceStore
from models.grid.credentials import CredentialKey, CredentialKeyring, set_camera_secrets
from models.grid.zones import save_zones
from models.tickets.categories import TicketSettings
from models.tickets.desk import TicketDesk
from tests.conftest import seed
from tests.ingest.gb28181 import pcap
from tests.ingest.gb28181.sipp import CHANNEL_1, DEVICE_ID, SippDevice, free_port, require_sipp
from tests.support.databases import sqlite_copy

pytestmark = pytest.mark.timeout(120)
PASSWORD = "gb-worker-secret"
DOMAIN = "3402000000"
FIRST_SSRC = 200000001
KEYRING = CredentialKeyring(CredentialKey.generate())


def wait_for(check: Callable[[], bool], what: str | Callable[[], str], within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, (
            f"timed out waiting for {what if isinstance(what, str) else what()}"
        )
        time.sleep(0.1)


def test_a_cart_left_on_a_gb_channel_opens_a_fire_lane_ticket(_sqlite_template: Path, tmp_path: Path) -> None:
    require_sipp()
    images = pcap.footage(12, 10, left=LeftObject(4.0, 60.0))  # the cart arrives 4 s in
    frames = pcap.encode(images, codec="h264", fps=10, gop=10)
    packets = pcap.rtp_packets(pcap.ps_stream(frames, "h264"), ssrc=FIRST_SSRC, fps=10)
    pcap.write_pcap(tmp_path / "media.pcap", packets)

    engine = make_engine(sqlite_copy(_sqlite_template, tmp_path))
    factory = make_session_factory(engine)
    seed(factory, tmp_path)
    with transaction(factory) as session:
        cam = session.scalars(select(Camera).where(Camera.name == "cam-g1-a")).one()
        set_camera_secrets(cam, KEYRING, url=channel_url(DEVICE_ID, CHANNEL_1))
        camera_id = cam.id
        save_zones(session, camera_id, zones_document(dwell_s=1.0), author=None)
        for other in session.scalars(select(Camera).where(Camera.id != camera_id)):
            other.enabled = False  # the sample's other cameras have no stream here

    settings = Gb28181Settings(
        sip_host="127.0.0.1",
        sip_port=free_port(),
        password=PASSWORD,
        domain=DOMAIN,
        catalog_on_register=False,
    )
    platform = GbPlatform(settings)
    runner = PlatformThread(platform).start()
    assert platform.loop is not None
    feeds = ChannelFeeds(
        platform,
        loop=platform.loop,
        ssrcs=SsrcPool(DOMAIN),
        options=MediaOptions(ip="127.0.0.1", bind_ip="127.0.0.1", media_timeout_s=30.0),
        platform_id=settings.id,
    )
    device = SippDevice(
        platform_port=platform.port, password=PASSWORD, workdir=tmp_path, ooc="device_ooc_media.xml"
    )
    bus = MemoryBus()
    evidence = FileEvidenceStore(tmp_path / "evidence")
    worker = Worker(
        worker_id="gb-worker",
        session_factory=factory,
        bus=bus,
        leases=MemoryLeaseStore(),
        evidence=evidence,
        backend=ClassicConfig(),
        ingest=IngestSettings(analysis_fps=4.0),
        credentials=KEYRING,
        openers={"gb28181": feeds.open_source},
    )
    ticketer = Ticketer(
        bus=bus,
        session_factory=factory,
        desk=TicketDesk(TicketSettings(), evidence=evidence),
        evidence=evidence,
        consumer="gb-ticketer",
    )
    try:
        platform.submit(device.run()).result(10)
        wait_for(lambda: platform.online(DEVICE_ID), "the device to register")
        worker.start()

        def ticket() -> Ticket | None:
            ticketer.step()
            with factory() as session:
                return session.scalars(select(Ticket).where(Ticket.camera_id == camera_id)).first()

        wait_for(
            lambda: ticket() is not None,
            lambda: f"a ticket ({worker.frames_analysed} frames analysed, {worker.events_published} events)",
        )
        found = ticket()
        assert found is not None
        health = worker.health().get(str(camera_id), {})
        print(
            f"ticket {found.id} ({found.category}) from a GB channel; worker analysed {worker.frames_analysed} frames"
        )
        assert found.category == "fire_lane_blockage"
        assert worker.frames_analysed > 0 and health.get("codec") == "h264"
        feed = feeds.feed(DEVICE_ID, CHANNEL_1)
        assert feed is not None and feed.invites == 1
    finally:
        worker.stop()
        platform.submit(feeds.aclose()).result(10)
        platform.submit(device.stop()).result(10)
        runner.stop()
        engine.dispose()
