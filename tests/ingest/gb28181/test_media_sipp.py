"""Live play end to end with a SIP peer we did not write: SIPp plays a GB/T 28181 device that registers
with Digest, answers the platform's INVITE with an SDP echoing the SSRC, and after the ACK replays a
pcap of camera-style PS over RTP (H.264 and H.265, program stream map 0x1B / 0x24) with
``play_pcap_video``. The worker's own reader (ingest's StreamReader, the ``gb28181`` opener) decodes
the frames; a second consumer shares the same INVITE; the platform sends BYE when both have left; a
silent session is invited again; TCP media in both roles follows a real INVITE.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from ingest.gb28181 import decode
from ingest.gb28181.media import ChannelFeeds, MediaOptions, channel_url
from ingest.gb28181.platform import GbPlatform
from ingest.gb28181.sdp import parse_answer
from ingest.gb28181.settings import Gb28181Settings
from ingest.gb28181.ssrc import SsrcPool
from ingest.reader import StreamOptions, StreamReader
from ingest.sampling import SamplingOptions
from tests.ingest.gb28181 import pcap
from tests.ingest.gb28181.sipp import CHANNEL_1, DEVICE_ID, SippDevice, free_port, require_sipp

PASSWORD = "gb-media-secret"
DOMAIN = "3402000000"
FIRST_SSRC = 200000001  # what SsrcPool(DOMAIN) hands out first: SIPp replays the pcap's SSRC as built


async def until(check: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_sipp_device_streams_a_channel_to_the_worker_reader(tmp_path: Path, codec: str) -> None:
    require_sipp()
    frames = pcap.encode(pcap.footage(3, 25), codec=codec)  # type: ignore[arg-type]
    packets = pcap.rtp_packets(pcap.ps_stream(frames, codec), ssrc=FIRST_SSRC)  # type: ignore[arg-type]
    pcap.write_pcap(tmp_path / "media.pcap", packets)
    asyncio.run(play(tmp_path, len(frames), codec))


async def play(workdir: Path, sent: int, codec: str) -> None:
    settings = Gb28181Settings(
        sip_host="127.0.0.1",
        sip_port=free_port(),
        password=PASSWORD,
        domain=DOMAIN,
        catalog_on_register=False,
    )
    platform = await GbPlatform(settings).start()
    device = SippDevice(
        platform_port=platform.port, password=PASSWORD, workdir=workdir, ooc="device_ooc_media.xml"
    )
    feeds = ChannelFeeds(
        platform,
        loop=asyncio.get_running_loop(),
        ssrcs=SsrcPool(DOMAIN),
        options=MediaOptions(ip="127.0.0.1", bind_ip="127.0.0.1", linger_s=0.2, media_timeout_s=30.0),
        platform_id=settings.id,
    )
    reader: StreamReader | None = None
    try:
        await device.run()
        await until(lambda: platform.online(DEVICE_ID), 15, "the device to register\n" + device.log())
        reader = StreamReader(
            "gb-cam",
            channel_url(DEVICE_ID, CHANNEL_1),
            stream=StreamOptions(read_timeout_s=20.0, open_timeout_s=10.0),
            sampling=SamplingOptions(analysis_fps=0, analysis_width=320),
            openers={"gb28181": feeds.open_source},
        ).start()
        await until(lambda: feeds.feed(DEVICE_ID, CHANNEL_1) is not None, 10, "the feed")
        feed = feeds.feed(DEVICE_ID, CHANNEL_1)
        assert feed is not None
        second: list[bytes] = []
        handle = await feeds.subscribe_async(DEVICE_ID, CHANNEL_1, lambda p, _t, _m, _g: second.append(p))
        await until(
            lambda: reader.health.input.count >= sent - 2, 30, f"{sent} decoded frames\n" + device.log()
        )
        await asyncio.sleep(0.3)
        decoded = reader.health.input.count
        stats = feed.stats()
        print(f"{codec} over SIPp: {sent} frames sent, {decoded} decoded; {stats}")
        assert reader.health.codec == ("h264" if codec == "h264" else "hevc")
        assert (feed.invites, feed.subscribers, stats["lost"], stats["wrong_ssrc"]) == (1, 2, 0, 0)
        assert second and sum(map(len, second)) > 0
        reader.stop(timeout=5)
        handle.close()
        await until(lambda: feeds.feed(DEVICE_ID, CHANNEL_1) is None, 10, "BYE after the last consumer left")
        assert (feed.invites, feed.byes) == (1, 1)
        assert not platform.dialogs
    finally:
        if reader is not None:
            reader.stop(timeout=5)
        await feeds.aclose()
        await device.stop()
        await platform.stop()


def test_a_silent_session_is_invited_again(tmp_path: Path) -> None:
    """The device's media stops (its pcap ends): after media_timeout_s the feed sends BYE and a new
    INVITE, and the media flows again, to the same subscriber."""
    require_sipp()
    frames = pcap.encode(pcap.footage(1, 25), codec="h264")
    pcap.write_pcap(
        tmp_path / "media.pcap", pcap.rtp_packets(pcap.ps_stream(frames, "h264"), ssrc=FIRST_SSRC)
    )
    asyncio.run(silence(tmp_path))


async def silence(workdir: Path) -> None:
    settings = Gb28181Settings(
        sip_host="127.0.0.1",
        sip_port=free_port(),
        password=PASSWORD,
        domain=DOMAIN,
        catalog_on_register=False,
    )
    platform = await GbPlatform(settings).start()
    device = SippDevice(
        platform_port=platform.port, password=PASSWORD, workdir=workdir, ooc="device_ooc_media.xml"
    )
    feeds = ChannelFeeds(
        platform,
        loop=asyncio.get_running_loop(),
        ssrcs=SsrcPool(DOMAIN),
        options=MediaOptions(ip="127.0.0.1", bind_ip="127.0.0.1", media_timeout_s=1.0),
        platform_id=settings.id,
    )
    try:
        await device.run()
        await until(lambda: platform.online(DEVICE_ID), 15, "the device to register")
        got: list[tuple[int, bytes]] = []
        handle = await feeds.subscribe_async(
            DEVICE_ID,
            CHANNEL_1,
            lambda p, _t, _m, _g: got.append((feeds.feed(DEVICE_ID, CHANNEL_1).invites, p)),  # type: ignore[union-attr]
        )
        feed = feeds.feed(DEVICE_ID, CHANNEL_1)
        assert feed is not None
        await until(lambda: any(n == 2 for n, _ in got), 15, "media after the second INVITE\n" + device.log())
        first = sum(1 for n, _ in got if n == 1)
        print(f"re-INVITE: {first} packets in the first session, then silence, BYE, INVITE, media again")
        assert (feed.invites, feed.byes, len(platform.dialogs)) == (2, 1, 1)
        assert first > 0
        handle.close()
    finally:
        await feeds.aclose()
        await device.stop()
        await platform.stop()


@pytest.mark.parametrize("transport", ["tcp-passive", "tcp-active"])
def test_tcp_media_after_a_sipp_invite(tmp_path: Path, transport: str) -> None:
    """TCP media (RFC 4571) in both roles after a real INVITE: SIPp answers the signalling, and since its
    pcap replay is UDP only, this test's own sender plays the device's media side: it connects to the
    port of our offer (tcp-passive), or listens on the port of the device's answer (tcp-active)."""
    require_sipp()
    frames = pcap.encode(pcap.footage(2, 25), codec="h264")
    packets = [p for _, p in pcap.rtp_packets(pcap.ps_stream(frames, "h264"), ssrc=FIRST_SSRC)]
    decoded = asyncio.run(tcp_play(tmp_path, transport, packets))
    print(f"{transport} after INVITE: {len(frames)} frames sent, {decoded} decoded")
    assert decoded == len(frames)


async def tcp_play(workdir: Path, transport: str, packets: list[bytes]) -> int:
    settings = Gb28181Settings(
        sip_host="127.0.0.1",
        sip_port=free_port(),
        password=PASSWORD,
        domain=DOMAIN,
        catalog_on_register=False,
    )
    platform = await GbPlatform(settings).start()
    device = SippDevice(platform_port=platform.port, password=PASSWORD, workdir=workdir, ooc="device_ooc.xml")
    feeds = ChannelFeeds(
        platform,
        loop=asyncio.get_running_loop(),
        ssrcs=SsrcPool(DOMAIN),
        options=MediaOptions(ip="127.0.0.1", bind_ip="127.0.0.1", transport=transport),  # type: ignore[arg-type]
        platform_id=settings.id,
    )
    pipe = decode.PsPipe(read_timeout_s=5.0)
    stream = b"".join(pcap.rfc4571(p) for p in packets)
    try:
        await device.run()
        await until(lambda: platform.online(DEVICE_ID), 15, "the device to register")
        handle = await feeds.subscribe_async(DEVICE_ID, CHANNEL_1, lambda p, _t, _m, _g: pipe.write(p))
        feed = feeds.feed(DEVICE_ID, CHANNEL_1)
        assert feed is not None and feed.session is not None
        assert "TCP/RTP/AVP" in feed.session.dialog.offer_sdp
        if transport == "tcp-passive":  # the device connects to the port of our offer
            _, writer = await asyncio.open_connection("127.0.0.1", feed.session.receiver.port)
        else:  # the device listens on the port of its answer; we connect
            answer = parse_answer(feed.session.dialog.answer_sdp)
            accepted: asyncio.Queue[asyncio.StreamWriter] = asyncio.Queue()
            server = await asyncio.start_server(
                lambda _r, w: accepted.put_nowait(w), "127.0.0.1", answer.port
            )
            writer = await asyncio.wait_for(accepted.get(), 15)
            server.close()
        writer.write(stream)
        await writer.drain()
        await until(lambda: feed.stats()["packets"] == len(packets), 15, "every packet")
        writer.close()
        pipe.close()
        handle.close()

        def count() -> int:
            return sum(1 for _ in decode.decode_frames(decode.open_ps(pipe)))

        return await asyncio.to_thread(count)
    finally:
        await feeds.aclose()
        await device.stop()
        await platform.stop()
