"""A recorded clip replayed as a camera: mp4/mkv/ts, H.264/H.265, looped at its real rate with
continuous timestamps, decodable, and reachable through the hub by name or as a camera's replay:// URL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rtsp_gateway import rtp
from rtsp_gateway.hub import HubSettings, MediaHub
from rtsp_gateway.media import Codec, NoSuchStream, RtpPacket, StreamKind
from rtsp_gateway.replay import ReplaySource
from tests.rtsp_gateway.conftest import decoded_frames, rtp_timestamps

CLIP_FRAMES = 50  # 2 s at 25 fps
FRAME_TICKS = 90_000 // 25


async def _read_frames(source: ReplaySource, frames: int) -> list[RtpPacket]:
    packets: list[RtpPacket] = []
    while len(rtp_timestamps(packets)) < frames:
        chunk = await source.read()
        packets += [RtpPacket(data, chunk.received_at) for data, _ in chunk.packets]
    return packets


@pytest.mark.parametrize(
    ("codec", "container"), [("h264", "mp4"), ("h265", "mkv"), ("h264", "ts"), ("h265", "mp4")]
)
def test_replay_loops_at_real_rate_and_decodes(
    codec: Codec, container: str, replay_clips: Callable[[str, str], Path]
) -> None:
    source = ReplaySource(replay_clips(codec, container))

    async def scenario() -> tuple[list[RtpPacket], float]:
        info = await source.open()
        assert info.codec == codec and (info.width, info.height) == (320, 180)
        assert {rtp.parameter_set_kind(codec, n) for n in info.parameter_sets} == (
            {"sps", "pps"} if codec == "h264" else {"vps", "sps", "pps"}
        )
        started = time.monotonic()
        packets = await _read_frames(source, CLIP_FRAMES + 10)  # past the end of the clip: it loops
        await source.close()
        return packets, started

    packets, started = asyncio.run(scenario())
    assert source.loops == 1
    timestamps = rtp_timestamps(packets)
    # stream time runs on across the loop, one frame at a time
    steps = {(b - a) & 0xFFFFFFFF for a, b in zip(timestamps, timestamps[1:], strict=False)}
    assert steps == {FRAME_TICKS}
    # paced at the clip's rate: no frame leaves before its stream time (a busy machine only delays)
    first_ts = timestamps[0]
    for packet in packets:
        header = rtp.parse_header(packet.data)
        assert header is not None
        stream_s = ((header.timestamp - first_ts) & 0xFFFFFFFF) / 90_000
        assert packet.received_at - started >= stream_s - 0.05
    assert decoded_frames(codec, packets) >= CLIP_FRAMES + 9


def test_replay_through_the_hub_by_name_and_by_camera_url(replay_clips: Callable[[str, str], Path]) -> None:
    clip = replay_clips("h264", "mp4")

    async def resolve(camera_id: int, stream: StreamKind) -> str:
        if camera_id == 5:
            return "replay://demo"
        if camera_id == 6:
            return "replay://missing"
        raise NoSuchStream(f"camera {camera_id} does not exist")

    async def scenario() -> None:
        hub = MediaHub(resolve, settings=HubSettings(linger_s=0.2), replays={"demo": clip})
        assert hub.replay_names() == ["demo"]
        by_name = await hub.subscribe_replay("demo", user_id=1, consumer="rtsp")
        by_camera = await hub.subscribe(5, user_id=1, consumer="internal")
        assert by_name.info.codec == "h264" and "sprop-parameter-sets=" in by_name.info.fmtp
        for sub in (by_name, by_camera):
            packets: list[RtpPacket] = []
            async for batch in sub.batches():
                packets += batch
                if len(rtp_timestamps(packets)) > 10:
                    break
            assert packets[0].keyframe
            assert decoded_frames("h264", packets) >= 10
        with pytest.raises(NoSuchStream):
            await hub.subscribe_replay("nope", user_id=1, consumer="rtsp")
        with pytest.raises(NoSuchStream):
            await hub.subscribe(6, user_id=1, consumer="rtsp")
        by_name.close()
        by_camera.close()
        await hub.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))


@pytest.mark.parametrize(("codec", "container"), [("h264", "mp4"), ("h265", "mkv")])
def test_replay_without_bitstream_filters_parses_length_prefixes(
    codec: Codec, container: str, replay_clips: Callable[[str, str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """PyAV builds without ``BitStreamFilterContext``: the avcC/hvcC samples are split by the source."""
    import av.bitstream

    monkeypatch.setattr(av.bitstream, "BitStreamFilterContext", None)
    source = ReplaySource(replay_clips(codec, container))

    async def scenario() -> list[RtpPacket]:
        await source.open()
        packets = await _read_frames(source, 10)
        await source.close()
        return packets

    packets = asyncio.run(scenario())
    assert decoded_frames(codec, packets) >= 9
