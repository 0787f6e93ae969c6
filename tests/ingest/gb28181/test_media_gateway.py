"""A GB/T 28181 channel served by the RTSP gateway: a camera whose URL is ``gb28181://device/channel``
is played by the media hub through the platform's shared feed (gridpatrol/gb_source.py). SIPp plays the
device (register, INVITE answered, H.264 or H.265 in PS over RTP from a pcap); ffprobe, a real RTSP client, reads the
camera from the gateway with a grid leader's credentials while the worker's reader of the same process
reads it too, on the same INVITE; the last consumer leaving ends it with BYE."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from gridpatrol.gateway import Gateway, GatewayThread, bind_gateway
from ingest.gb28181 import ps
from ingest.gb28181.media import ChannelFeeds, MediaOptions, channel_url
from ingest.gb28181.platform import GbPlatform, PlatformThread
from ingest.gb28181.settings import Gb28181Settings
from ingest.gb28181.ssrc import SsrcPool
from ingest.reader import StreamOptions, StreamReader
from ingest.sampling import SamplingOptions
from models.db.engine import transaction
from models.db.tables import Camera
from models.grid.credentials import CredentialKey, CredentialKeyring, set_camera_secrets
from rtsp_gateway.settings import GatewaySettings
from tests.ingest.gb28181 import pcap
from tests.ingest.gb28181.sipp import CHANNEL_1, DEVICE_ID, SippDevice, free_port, require_sipp
from tests.rtsp_gateway import gateway_fixtures
from tests.support import sample
from tests.support.require import require

pytestmark = pytest.mark.timeout(120)
gateway_db = gateway_fixtures.gateway_db
KEYRING = CredentialKeyring(CredentialKey.generate())
PASSWORD = "gb-gateway-secret"
DOMAIN = "3402000000"
FIRST_SSRC = 200000001


def wait_for(check: Callable[[], bool], what: str, within_s: float = 20.0) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.parametrize(("codec", "ffmpeg_name"), [("h264", "h264"), ("h265", "hevc")])
def test_gateway_serves_a_gb_channel_to_ffprobe(
    gateway_db: sessionmaker[Session], tmp_path: Path, codec: ps.Codec, ffmpeg_name: str
) -> None:
    require_sipp()
    require(shutil.which("ffprobe") is not None, "ffprobe (Debian package ffmpeg)")
    frames = pcap.encode(pcap.footage(6, 25), codec=codec)
    pcap.write_pcap(tmp_path / "media.pcap", pcap.rtp_packets(pcap.ps_stream(frames, codec), ssrc=FIRST_SSRC))
    ids = gateway_fixtures.camera_ids(gateway_db)
    camera_id = ids["cam-g1-a"]
    with transaction(gateway_db) as session:
        cam = session.get(Camera, camera_id)
        assert cam is not None
        set_camera_secrets(cam, KEYRING, url=channel_url(DEVICE_ID, CHANNEL_1))

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
        options=MediaOptions(ip="127.0.0.1", bind_ip="127.0.0.1", linger_s=0.2, media_timeout_s=30.0),
        platform_id=settings.id,
    )
    device = SippDevice(
        platform_port=platform.port, password=PASSWORD, workdir=tmp_path, ooc="device_ooc_media.xml"
    )
    conf = GatewaySettings(port=0, linger_s=0.5)
    gateway = GatewayThread(
        Gateway.build(
            conf, factory=gateway_db, keyring=KEYRING, nonce_secret="gb nonce secret", gb_feeds=feeds
        ),
        bind_gateway(conf),
    )
    reader: StreamReader | None = None
    try:
        platform.submit(device.run()).result(10)
        wait_for(lambda: platform.online(DEVICE_ID), "the device to register")
        # the worker of this process reads the channel too: one INVITE for it and the gateway's viewers
        reader = StreamReader(
            "gb-worker",
            channel_url(DEVICE_ID, CHANNEL_1),
            stream=StreamOptions(read_timeout_s=20.0),
            sampling=SamplingOptions(analysis_fps=0, analysis_width=320),
            openers={"gb28181": feeds.open_source},
        ).start()
        wait_for(lambda: reader.health.input.count > 0, "the worker's reader to decode")
        url = (
            f"rtsp://leader-g1:{sample.PASSWORD}@127.0.0.1:{gateway.gateway.server.port}/cameras/{camera_id}"
        )
        probe = subprocess.run(
            ["timeout", "-k", "3", "60", "ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-count_frames",
             "-read_intervals", "%+2", "-select_streams", "v:0",
             "-show_entries", "stream=codec_name,width,height,nb_read_frames", "-of", "default=nw=1", url],
            capture_output=True, text=True, timeout=90, check=False,
        )  # fmt: skip
        assert probe.returncode == 0, probe.stderr + device.log()
        seen = dict(line.split("=", 1) for line in probe.stdout.splitlines())
        print(f"ffprobe via the gateway: {seen} ({len(frames)} frames in the pcap)")
        assert (seen["codec_name"], seen["width"], seen["height"]) == (ffmpeg_name, "640", "360")
        assert int(seen["nb_read_frames"]) >= 25
        feed = feeds.feed(DEVICE_ID, CHANNEL_1)
        assert feed is not None and feed.invites == 1
        assert reader.health.input.count > int(seen["nb_read_frames"])
        reader.stop(timeout=5)
        wait_for(lambda: feeds.feed(DEVICE_ID, CHANNEL_1) is None, "BYE after the last consumer left")
        assert (feed.invites, feed.byes) == (1, 1)
    finally:
        if reader is not None:
            reader.stop(timeout=5)
        gateway.stop()
        platform.submit(feeds.aclose()).result(10)
        platform.submit(device.stop()).result(10)
        runner.stop()
