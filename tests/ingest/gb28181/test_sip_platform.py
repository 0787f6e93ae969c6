"""The platform against a SIP peer we did not write: SIPp plays a GB/T 28181 device over UDP and TCP.

It registers with Digest (the wrong password gets 403 and registers nothing), sends keepalives, goes
offline when they stop, unregisters with ``Expires: 0``; the platform collects its catalog (UTF-8 and
GB2312 bodies) into cameras placed in the grid tree, plays a channel (INVITE, 200 echoing the SSRC,
ACK) and ends it with BYE. The registry is the real database.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ingest.gb28181 import manscdp
from ingest.gb28181.platform import DeviceUnavailable, GbPlatform
from ingest.gb28181.settings import Gb28181Settings
from ingest.gb28181.sip import SipMessage, parse
from ingest.gb28181.store import DbDeviceStore
from models.db.engine import make_engine, make_session_factory, transaction
from models.db.tables import Camera, GridNode
from models.grid import gb28181 as registry
from models.grid.credentials import CredentialKey, CredentialKeyring, camera_secret
from models.grid.tree import import_grids
from tests.ingest.gb28181.sipp import CHANNEL_1, CHANNEL_2, DEVICE_ID, SippDevice, require_sipp
from tests.support import sample
from tests.support.databases import sqlite_copy

PASSWORD = "gb-sip-Secret-1"
INTERVAL_S = 0.3
OFFER = (
    "v=0\r\no=34020000002000000001 0 0 IN IP4 127.0.0.1\r\ns=Play\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=video 30000 RTP/AVP 96\r\na=recvonly\r\na=rtpmap:96 PS/90000\r\ny=0340200017\r\n"
)


@pytest.fixture
def factory(tmp_path: Path, _sqlite_template: Path) -> sessionmaker[Session]:
    engine = make_engine(sqlite_copy(_sqlite_template, tmp_path))
    factory = make_session_factory(engine)
    import json

    with transaction(factory) as session:
        import_grids(session, json.loads(json.dumps(sample.grid_geojson())))
    return factory


def settings(**overrides: object) -> Gb28181Settings:
    values: dict[str, object] = {
        "sip_host": "127.0.0.1",
        "sip_port": 0,
        "password": PASSWORD,
        "keepalive_interval_s": INTERVAL_S,
        "catalog_on_register": False,
        "request_timeout_s": 5.0,
    }
    values.update(overrides)
    return Gb28181Settings(**values)  # type: ignore[arg-type]


async def until(check: Callable[[], object], what: str, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def device_row(factory: sessionmaker[Session]) -> registry.DeviceRow | None:
    with factory() as session:
        rows = [r for r in registry.list_devices(session) if r.device_id == DEVICE_ID]
    return rows[0] if rows else None


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_device_registers_keeps_alive_then_goes_offline(
    transport: str, tmp_path: Path, factory: sessionmaker[Session]
) -> None:
    require_sipp()

    async def scenario() -> None:
        platform = await GbPlatform(settings(), store=DbDeviceStore(factory, keyring=None)).start()
        lost: list[str] = []
        platform.on_device_lost.append(lost.append)
        device = SippDevice(
            platform_port=platform.port,
            password=PASSWORD,
            workdir=tmp_path,
            transport=transport,
            keepalives=4,
            keepalive_ms=int(INTERVAL_S * 1000),
        )
        try:
            await device.run()
            assert await device.wait() == 0, device.log()  # registered (200) and 4 keepalives answered 200
            row = device_row(factory)
            assert row is not None and row.status == "online", row
            assert (row.transport, row.address.split(":")[0]) == (transport, "127.0.0.1")
            assert row.last_keepalive_at is not None
            assert platform.online(DEVICE_ID)
            # the device has stopped its keepalives: offline within 3 intervals
            await until(lambda: lost == [DEVICE_ID], "the device to be declared lost")
            await until(
                lambda: (r := device_row(factory)) is not None and r.status == "offline", "offline row"
            )
            with pytest.raises(DeviceUnavailable, match="offline"):
                await platform.invite(DEVICE_ID, CHANNEL_1, OFFER)
        finally:
            await device.stop()
            await platform.stop()

    asyncio.run(scenario())


def test_wrong_password_gets_403_and_registers_nothing(
    tmp_path: Path, factory: sessionmaker[Session]
) -> None:
    require_sipp()

    async def scenario() -> None:
        platform = await GbPlatform(settings(), store=DbDeviceStore(factory, keyring=None)).start()
        device = SippDevice(
            platform_port=platform.port,
            password="not-the-password",
            workdir=tmp_path,
            scenario="register_forbidden.xml",
            ooc=None,
        )
        try:
            await device.run()
            assert await device.wait() == 0, device.log()  # the scenario expects 401, then 403
            assert platform.registry.devices == {}
            assert device_row(factory) is None
        finally:
            await device.stop()
            await platform.stop()

    asyncio.run(scenario())


def test_expires_zero_unregisters(tmp_path: Path, factory: sessionmaker[Session]) -> None:
    require_sipp()

    async def scenario() -> None:
        platform = await GbPlatform(settings(), store=DbDeviceStore(factory, keyring=None)).start()
        lost: list[str] = []
        platform.on_device_lost.append(lost.append)
        device = SippDevice(
            platform_port=platform.port,
            password=PASSWORD,
            workdir=tmp_path,
            scenario="unregister.xml",
            ooc=None,
        )
        try:
            await device.run()
            assert await device.wait() == 0, device.log()
            assert platform.registry.devices == {}
            assert lost == [DEVICE_ID]
            # the 200 goes out first, the database follows
            await until(
                lambda: (r := device_row(factory)) is not None and r.status == "unregistered", "the row"
            )
        finally:
            await device.stop()
            await platform.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize(("transport", "ooc"), [("udp", "device_ooc_gb2312.xml"), ("tcp", "device_ooc.xml")])
def test_catalog_becomes_cameras_and_a_channel_plays(
    transport: str, ooc: str, tmp_path: Path, factory: sessionmaker[Session]
) -> None:
    require_sipp()
    lon, lat = sample.point_in("G2")
    keyring = CredentialKeyring(CredentialKey.generate())
    with transaction(factory) as session:  # the second channel has no place: its civil code names a street
        session.scalars(select(GridNode).where(GridNode.code == "S2")).one().code = "340200"

    async def scenario() -> None:
        platform = await GbPlatform(
            settings(catalog_on_register=True), store=DbDeviceStore(factory, keyring=keyring)
        ).start()
        catalogs: list[object] = []
        platform.on_catalog.append(catalogs.append)
        device = SippDevice(
            platform_port=platform.port,
            password=PASSWORD,
            workdir=tmp_path,
            transport=transport,
            ooc=ooc,
            keys={"lon1": f"{lon:.6f}", "lat1": f"{lat:.6f}"},
        )
        try:
            await device.run()
            await until(lambda: catalogs, "the catalog")
            with factory() as session:
                channels = registry.list_channels(session, DEVICE_ID)
                assert [c.channel_id for c in channels] == [CHANNEL_1, CHANNEL_2]
                assert [c.name for c in channels] == ["东门路口", "西门广场"]  # GB2312 or UTF-8 alike
                cams = {c.channel_id: session.get(Camera, c.camera_id) for c in channels}
                grid_code = {
                    ch: session.get(GridNode, cam.grid_id).code if cam and cam.grid_id else None
                    for ch, cam in cams.items()
                }
                assert grid_code == {CHANNEL_1: "G2", CHANNEL_2: "340200"}
                cam1 = cams[CHANNEL_1]
                assert cam1 is not None and cam1.url.startswith("gpenc:")  # sealed like any camera URL
                assert (
                    camera_secret(cam1.name, "url", cam1.url, keyring) == f"gb28181://{DEVICE_ID}/{CHANNEL_1}"
                )
                assert registry.channel_of_camera(session, cam1.id) == (DEVICE_ID, CHANNEL_1)
                cam1_id = cam1.id
            assert await asyncio.to_thread(platform.channel_of_camera, cam1_id) == (DEVICE_ID, CHANNEL_1)

            dialog = await platform.invite(DEVICE_ID, CHANNEL_1, OFFER)
            assert "y=0340200017" in dialog.answer_sdp  # the device echoed the SSRC
            assert "m=video" in dialog.answer_sdp and dialog.call_id in platform.dialogs
            # media lost: the media side asks for the channel again (BYE, then a new INVITE)
            again = await platform.reinvite(dialog)
            assert dialog.ended.is_set() and dialog.call_id not in platform.dialogs
            assert again.call_id != dialog.call_id and "y=0340200017" in again.answer_sdp
            await platform.bye(again)
            assert list(platform.dialogs) == []
            await asyncio.sleep(0.3)
            assert "BYE" in device.log() and "SIP/2.0 200 OK" in device.log()
        finally:
            await device.stop()
            await platform.stop()

    asyncio.run(scenario())


def test_a_device_that_ends_the_play_ends_the_dialog(tmp_path: Path) -> None:
    require_sipp()

    async def scenario() -> None:
        platform = await GbPlatform(settings()).start()
        ended: list[str] = []
        platform.on_dialog_ended.append(lambda d: ended.append(d.call_id))
        device = SippDevice(
            platform_port=platform.port, password=PASSWORD, workdir=tmp_path, ooc="device_ooc_bye.xml"
        )
        try:
            await device.run()
            await until(lambda: platform.online(DEVICE_ID), "the registration")
            dialog = await platform.invite(DEVICE_ID, CHANNEL_1, OFFER)
            await asyncio.wait_for(dialog.ended.wait(), timeout=10)  # the device's BYE, answered 200
            assert ended == [dialog.call_id] and platform.dialogs == {}
        finally:
            await device.stop()
            await platform.stop()

    asyncio.run(scenario())


def test_a_message_from_another_address_cannot_speak_for_a_device(tmp_path: Path) -> None:
    require_sipp()

    async def scenario() -> None:
        platform = await GbPlatform(settings(keepalive_interval_s=5.0)).start()
        device = SippDevice(
            platform_port=platform.port, password=PASSWORD, workdir=tmp_path, keepalive_ms=1000
        )
        spoof = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        spoof.bind(("127.0.0.2", 0))  # another host on the loopback network
        spoof.settimeout(5)
        try:
            await device.run()
            await until(lambda: platform.online(DEVICE_ID), "the registration")
            registered = platform.registry.devices[DEVICE_ID].peer
            forged = SipMessage(method="MESSAGE", uri=f"sip:{platform.settings.id}@3402000000")
            forged.headers = [
                ("Via", f"SIP/2.0/UDP 127.0.0.2:{spoof.getsockname()[1]};branch=z9hG4bKforged"),
                ("From", f"<sip:{DEVICE_ID}@3402000000>;tag=x"),
                ("To", f"<sip:{platform.settings.id}@3402000000>"),
                ("Call-ID", "forged-1"),
                ("CSeq", "1 MESSAGE"),
                ("Content-Type", manscdp.CONTENT_TYPE),
            ]
            forged.body = manscdp.keepalive(sn=1, device_id=DEVICE_ID)
            spoof.sendto(forged.encode(), ("127.0.0.1", platform.port))
            answer = parse(await asyncio.to_thread(spoof.recv, 65536))
            assert answer.status == 403
            assert platform.registry.devices[DEVICE_ID].peer == registered  # INVITEs still go to the device
        finally:
            spoof.close()
            await device.stop()
            await platform.stop()

    asyncio.run(scenario())


def test_tcp_connections_beyond_the_limit_are_closed() -> None:
    async def scenario() -> None:
        platform = await GbPlatform(settings(max_tcp_connections=1)).start()
        try:
            _, first = await asyncio.open_connection("127.0.0.1", platform.port)
            await asyncio.sleep(0.1)
            reader, second = await asyncio.open_connection("127.0.0.1", platform.port)
            assert await asyncio.wait_for(reader.read(100), timeout=5) == b""  # closed at once
            for writer in (first, second):
                writer.close()
        finally:
            await platform.stop()

    asyncio.run(scenario())
