"""The media hub against GStreamer's rtsp-server as the camera: one upstream session shared by many
subscribers, linger, slow subscribers, camera restarts, limits, and decodable H.264/H.265 packets.

Assertions are on sessions counted at the camera, packet counts and stream time (RTP timestamps),
never on wall-clock durations; the deadlines only stop a broken test from hanging.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import pytest

from rtsp_gateway import rtp
from rtsp_gateway.hub import HubSettings, MediaHub
from rtsp_gateway.media import HubLimit, NoSuchStream, RtpPacket, SlowConsumer, StreamKind, UpstreamGone
from rtsp_gateway.upstream import UpstreamTimeouts
from tests.rtsp_gateway.conftest import (
    CAMERA_FPS,
    CAMERA_PASSWORD,
    camera_url,
    decoded_frames,
    rtp_timestamps,
)
from tests.support.rtsp_server import RtspServer, Synthetic, free_port

T = TypeVar("T")
FRAME_TICKS = 90_000 // CAMERA_FPS
FAST = HubSettings(
    linger_s=0.3,
    retry_initial_s=0.2,
    retry_max_s=1.0,
    open_timeout_s=20.0,
    upstream_timeouts=UpstreamTimeouts(connect_s=3.0, response_s=5.0, idle_s=5.0),
)


def run(coro: Coroutine[Any, Any, T], *, timeout_s: float = 60.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout_s)

    return asyncio.run(bounded())


def resolver_for(url: str) -> Callable[[int, StreamKind], Awaitable[str]]:
    async def resolve(camera_id: int, stream: StreamKind) -> str:
        if camera_id >= 1000:
            raise NoSuchStream(f"camera {camera_id} does not exist")
        return url

    return resolve


async def frames_of(sub: Any, count: int) -> list[RtpPacket]:
    """Packets until ``count`` frames (distinct RTP timestamps) have arrived (stream time, not wall time)."""
    packets: list[RtpPacket] = []
    timestamps: set[int] = set()
    async for batch in sub.batches():
        for packet in batch:
            packets.append(packet)
            if not packet.rtcp:
                header = rtp.parse_header(packet.data)
                assert header is not None
                timestamps.add(header.timestamp)
        if len(timestamps) > count:
            break
    return packets


def seq_of(packet: RtpPacket) -> int:
    header = rtp.parse_header(packet.data)
    assert header is not None
    return header.seq


def rtp_only(packets: list[RtpPacket]) -> list[RtpPacket]:
    return [p for p in packets if not p.rtcp]


async def wait_until(check: Callable[[], bool], *, deadline_s: float = 15.0) -> None:
    end = time.monotonic() + deadline_s
    while not check():
        assert time.monotonic() < end, "condition not reached"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("camera", ["h264_camera", "h265_camera"])
def test_many_subscribers_share_one_upstream_and_decode(camera: str, request: pytest.FixtureRequest) -> None:
    server: RtspServer = request.getfixturevalue(camera)
    codec = "h264" if camera == "h264_camera" else "h265"

    async def scenario() -> list[list[RtpPacket]]:
        hub = MediaHub(resolver_for(camera_url(server)), settings=FAST)
        subs = [await hub.subscribe(7, user_id=i, consumer="rtsp") for i in range(50)]
        info = subs[0].info
        assert info.codec == codec
        assert info.ssrc == subs[-1].info.ssrc
        # nothing about the camera in what viewers are given (SDP fmtp, repr)
        assert CAMERA_PASSWORD not in repr(info) and "127.0.0.1" not in repr(info)
        assert "sprop-" in info.fmtp and str(server.port) not in info.fmtp
        got = await asyncio.gather(*(frames_of(sub, 2 * CAMERA_FPS) for sub in subs))
        stats = hub.stats()
        assert stats.upstreams == 1 and stats.viewers == {"rtsp": 50}
        assert stats.bytes_out >= 50 * sum(len(p.data) for p in got[0]) // 2
        for sub in subs:
            sub.close()
        await hub.close()
        return got

    got = run(scenario())
    assert server.sessions() == 1
    for packets in got:
        video = rtp_only(packets)
        assert video[0].keyframe  # every subscriber starts at a keyframe
        assert not any(p.discontinuity for p in video)
        seqs = [seq_of(p) for p in video]
        assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(len(seqs))]
    video = rtp_only(got[0])
    assert decoded_frames(codec, video) >= 2 * CAMERA_FPS


def test_upstream_lingers_then_closes(h264_camera: RtspServer) -> None:
    async def scenario() -> None:
        hub = MediaHub(resolver_for(camera_url(h264_camera)), settings=FAST)
        first = await hub.subscribe(1, user_id=1, consumer="rtsp")
        await frames_of(first, 3)
        first.close()
        assert len(hub.upstream_keys()) == 1  # lingering
        second = await hub.subscribe(1, user_id=1, consumer="mse")  # comes back within the linger
        packets = await frames_of(second, 3)
        assert packets[0].keyframe  # at once from the GOP cache
        second.close()
        await wait_until(lambda: not hub.upstream_keys())
        await wait_until(lambda: h264_camera.open_connections() == 0)
        assert hub.stats().upstreams == 0
        await hub.close()

    run(scenario())
    assert h264_camera.sessions() == 1


def test_new_subscriber_starts_at_once_from_the_cached_gop(h264_camera: RtspServer) -> None:
    async def scenario() -> None:
        hub = MediaHub(resolver_for(camera_url(h264_camera)), settings=FAST)
        first = await hub.subscribe(1, user_id=1, consumer="rtsp")
        seen = await frames_of(first, CAMERA_FPS // 2 + 3)  # past the first keyframe, mid-GOP
        last_key = max(i for i, p in enumerate(seen) if p.keyframe)
        assert len(rtp_timestamps(seen[last_key:])) >= 3
        second = await hub.subscribe(1, user_id=2, consumer="rtsp")
        joined = await frames_of(second, 1)
        # it starts with the keyframe the first one already had: stream time from the past, no waiting
        assert joined[0].keyframe and joined[0].data == seen[last_key].data
        first.close()
        second.close()
        await hub.close()

    run(scenario())


def test_a_subscriber_that_stops_reading_does_not_hold_back_the_others(h264_camera: RtspServer) -> None:
    settings = HubSettings(
        linger_s=0.3, queue_bytes=20_000, max_skips=1, upstream_timeouts=FAST.upstream_timeouts
    )

    async def scenario() -> tuple[list[RtpPacket], Any]:
        hub = MediaHub(resolver_for(camera_url(h264_camera)), settings=settings)
        stuck = await hub.subscribe(1, user_id=1, consumer="rtsp")
        reader = await hub.subscribe(1, user_id=2, consumer="rtsp")
        packets: list[RtpPacket] = []
        while hub.stats().slow_consumers_ended == 0:
            packets += await frames_of(reader, CAMERA_FPS)
            assert len(rtp_timestamps(packets)) < 30 * CAMERA_FPS, "the stuck subscriber was never ended"
        stats = hub.stats()
        with pytest.raises(SlowConsumer):
            async for _ in stuck.packets():
                pass
        reader.close()
        await hub.close()
        return packets, stats

    packets, stats = run(scenario(), timeout_s=90)
    video = rtp_only(packets)
    assert len(rtp_timestamps(video)) >= 2 * CAMERA_FPS
    seqs = [seq_of(p) for p in video]
    assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(len(seqs))]  # the reader lost nothing
    assert not any(p.discontinuity for p in video)
    assert stats.slow_consumers_ended == 1 and stats.dropped_packets > 0
    assert stats.viewers == {"rtsp": 1}


def test_camera_restart_resumes_at_a_keyframe_with_continuous_numbering(h264_camera: RtspServer) -> None:
    async def scenario() -> tuple[list[RtpPacket], list[RtpPacket], int]:
        hub = MediaHub(resolver_for(camera_url(h264_camera)), settings=FAST)
        sub = await hub.subscribe(1, user_id=1, consumer="rtsp")
        ssrc = sub.info.ssrc
        before = await frames_of(sub, 5)
        await asyncio.to_thread(h264_camera.restart)
        after: list[RtpPacket] = []
        resumed_at: int | None = None
        async for packet in sub.packets():
            after.append(packet)
            if resumed_at is None and packet.discontinuity:
                resumed_at = len(after) - 1
            if resumed_at is not None and len(rtp_timestamps(after[resumed_at:])) > 5:
                break
        assert sub.info.ssrc == ssrc
        reconnects = hub.stats().upstream_reconnects
        sub.close()
        await hub.close()
        return before, after, reconnects

    before, after, reconnects = run(scenario())
    assert h264_camera.sessions() == 2 and reconnects >= 1
    video = rtp_only(before + after)
    resumed = next(i for i, p in enumerate(video) if p.discontinuity)
    assert video[resumed].keyframe
    # one stream for the viewer: same SSRC, sequence numbers and timestamps go on from before the loss
    headers = [rtp.parse_header(p.data) for p in video]
    assert all(h is not None and h.ssrc == headers[0].ssrc for h in headers)  # type: ignore[union-attr]
    prev, nxt = headers[resumed - 1], headers[resumed]
    assert prev is not None and nxt is not None
    assert nxt.seq == (prev.seq + 1) & 0xFFFF
    assert 0 < (nxt.timestamp - prev.timestamp) & 0xFFFFFFFF < 2**31
    assert decoded_frames("h264", video[resumed:]) >= 5


def test_limits_per_camera_and_per_user(h264_camera: RtspServer) -> None:
    settings = HubSettings(max_viewers_per_camera=2, max_sessions_per_user=3, linger_s=0.3)

    async def scenario() -> None:
        hub = MediaHub(resolver_for(camera_url(h264_camera)), settings=settings)
        subs = [
            await hub.subscribe(1, user_id=1, consumer="rtsp"),
            await hub.subscribe(1, user_id=2, consumer="mse"),
        ]
        with pytest.raises(HubLimit) as full:
            await hub.subscribe(1, user_id=3, consumer="rtsp")
        assert full.value.limit == "viewers_per_camera" and "上限" in str(full.value)
        subs.append(await hub.subscribe(1, user_id=None, consumer="internal"))  # the worker is no viewer
        subs.append(await hub.subscribe(1, stream="sub", user_id=1, consumer="internal"))
        subs.append(await hub.subscribe(2, user_id=1, consumer="rtsp"))
        with pytest.raises(HubLimit) as busy:
            await hub.subscribe(3, user_id=1, consumer="rtsp")
        assert busy.value.limit == "sessions_per_user"
        subs.pop(0).close()
        subs.append(await hub.subscribe(1, user_id=3, consumer="rtsp"))  # a place became free
        for sub in subs:
            sub.close()
        await hub.close()

    run(scenario())


def test_unreachable_unknown_and_refused_cameras(h264_camera: RtspServer) -> None:
    settings = HubSettings(first_open_attempts=1, open_timeout_s=10, upstream_timeouts=FAST.upstream_timeouts)

    async def scenario() -> None:
        closed = MediaHub(resolver_for(f"rtsp://127.0.0.1:{free_port()}/cam"), settings=settings)
        with pytest.raises(UpstreamGone):
            await closed.subscribe(1, user_id=1, consumer="rtsp")
        assert closed.upstream_keys() == []
        with pytest.raises(NoSuchStream):
            await closed.subscribe(1000, user_id=1, consumer="rtsp")
        refused = MediaHub(resolver_for(camera_url(h264_camera, password="wrong")), settings=settings)
        with pytest.raises(UpstreamGone) as gone:
            await refused.subscribe(1, user_id=1, consumer="rtsp")
        assert "wrong" not in str(gone.value)
        await closed.close()
        await refused.close()

    run(scenario())


def test_keepalives_and_rtcp_sender_reports_reach_through(rtsp_server: Callable[..., RtspServer]) -> None:
    camera = rtsp_server(
        {"/cam": Synthetic(width=320, height=180, fps=CAMERA_FPS, gop=CAMERA_FPS, bitrate_kbps=200)},
        session_timeout_s=5,
    )

    async def scenario() -> tuple[list[RtpPacket], int]:
        hub = MediaHub(resolver_for(camera.url("/cam")), settings=FAST)
        sub = await hub.subscribe(1, user_id=1, consumer="rtsp")
        ssrc = sub.info.ssrc
        packets: list[RtpPacket] = []
        async for batch in sub.batches():
            packets += batch
            if camera.keepalives() >= 1 and any(p.rtcp for p in packets):
                break
            assert len(rtp_timestamps(packets)) < 30 * CAMERA_FPS, "no keep-alive or sender report"
        sub.close()
        await hub.close()
        return packets, ssrc

    packets, ssrc = run(scenario())
    # the session timeout is 5 s: the hub kept it alive before it ran out, in stream time
    assert len(rtp_timestamps(packets)) < 5 * CAMERA_FPS
    reports = [p.data for p in packets if p.rtcp]
    assert reports and reports[0][1] == 200  # a sender report...
    assert int.from_bytes(reports[0][4:8], "big") == ssrc  # ...under the hub's SSRC


def test_a_camera_that_never_answers_is_reported_gone(silent_port: int) -> None:
    settings = HubSettings(
        first_open_attempts=1, upstream_timeouts=UpstreamTimeouts(connect_s=1.0, response_s=1.0, idle_s=1.0)
    )

    async def scenario() -> None:
        hub = MediaHub(resolver_for(f"rtsp://127.0.0.1:{silent_port}/cam"), settings=settings)
        with pytest.raises(UpstreamGone):
            await hub.subscribe(1, user_id=1, consumer="rtsp")
        assert hub.upstream_keys() == []
        await hub.close()

    run(scenario())


SDP_H264 = (
    "v=0\r\no=- 1 1 IN IP4 10.0.0.9\r\ns=cam\r\nc=IN IP4 10.0.0.9\r\nt=0 0\r\na=control:*\r\n"
    "m=audio 0 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=control:trackID=2\r\n"
    "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    "a=fmtp:96 packetization-mode=1;profile-level-id=42001F;sprop-parameter-sets=Z0IAHw==,aM4=\r\n"
    "a=control:trackID=1\r\n"
)
SDP_H265 = (
    "v=0\r\ns=cam\r\nt=0 0\r\nm=video 0 RTP/AVP 98\r\na=rtpmap:98 H265/90000\r\n"
    "a=fmtp:98 sprop-vps=QAE=; sprop-sps=QgE=; sprop-pps=RAE=\r\n"
    "a=control:rtsp://10.0.0.9:554/Streaming/Channels/101/trackID=1\r\n"
)


@pytest.mark.parametrize(
    ("sdp", "codec", "payload_type", "control", "sets", "error"),
    [
        (SDP_H264, "h264", 96, "trackID=1", [b"\x67\x42\x00\x1f", b"\x68\xce"], None),
        (
            SDP_H265,
            "h265",
            98,
            "rtsp://10.0.0.9:554/Streaming/Channels/101/trackID=1",
            [b"@\x01", b"B\x01", b"D\x01"],
            None,
        ),
        ("v=0\r\nm=audio 0 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n", None, 0, "", [], "no H.264 or H.265"),
        ("v=0\r\nm=video 0 RTP/AVP 26\r\na=rtpmap:26 JPEG/90000\r\n", None, 0, "", [], "no H.264 or H.265"),
    ],
    ids=["h264-with-audio", "h265-absolute-control", "audio-only", "mjpeg"],
)
def test_camera_sdp_parsing(
    sdp: str, codec: str | None, payload_type: int, control: str, sets: list[bytes], error: str | None
) -> None:
    from models.errors import StreamError
    from rtsp_gateway.upstream import _control_url, parse_sdp

    if error is not None:
        with pytest.raises(StreamError, match=error):
            parse_sdp(sdp)
        return
    video = parse_sdp(sdp)
    assert (video.codec, video.payload_type, video.clock_rate, video.control) == (
        codec,
        payload_type,
        90_000,
        control,
    )
    assert list(video.parameter_sets) == sets
    base = "rtsp://10.0.0.9:554/Streaming/Channels/101/"
    expected = control if control.startswith("rtsp://") else base + control
    assert _control_url(base, video.control) == expected


def test_sink_delivery_and_a_sink_that_cannot_take_more(h264_camera: RtspServer) -> None:
    """``deliver_to``: batches handed over in the fan-out itself; a sink that refuses is skipped, then ended."""
    settings = HubSettings(linger_s=0.3, max_skips=1, upstream_timeouts=FAST.upstream_timeouts)

    async def scenario() -> tuple[list[RtpPacket], int]:
        hub = MediaHub(resolver_for(camera_url(h264_camera)), settings=settings)
        taken: list[RtpPacket] = []
        refused = 0

        def full(batch: list[RtpPacket]) -> bool:
            nonlocal refused
            refused += 1
            return False

        good = await hub.subscribe(1, user_id=1, consumer="rtsp")
        good.deliver_to(lambda batch: taken.extend(batch) is None)
        stuck = await hub.subscribe(1, user_id=2, consumer="rtsp")
        stuck.deliver_to(full)
        with pytest.raises(SlowConsumer):
            await stuck.ended()
        await wait_until(lambda: len(rtp_timestamps(taken)) > CAMERA_FPS)
        assert hub.stats().slow_consumers_ended == 1 and hub.stats().bytes_out == good.bytes_sent
        good.close()
        await good.ended()  # a plain close ends quietly
        await hub.close()
        return taken, refused

    taken, refused = run(scenario())
    assert refused == 2  # the first refusal skipped it to the next keyframe, the second ended it
    video = rtp_only(taken)
    assert video[0].keyframe
    seqs = [seq_of(p) for p in video]
    assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(len(seqs))]
    assert decoded_frames("h264", video) >= CAMERA_FPS


def test_digest_answer_matches_rfc_2617(monkeypatch: pytest.MonkeyPatch) -> None:
    """The camera-side Digest answer (qop=auth) against the worked example of RFC 2617 section 3.5."""
    from rtsp_gateway import upstream

    monkeypatch.setattr(upstream.os, "urandom", lambda n: bytes.fromhex("0a4f113b"))
    auth = upstream._Authenticator("Mufasa", "Circle Of Life")
    challenge = (
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    assert auth.challenge(['Basic realm="x"', challenge])
    header = auth.header("GET", "/dir/index.html")
    assert header is not None and header.startswith("Digest ")
    assert 'response="6629fae49393a05397450978507c4ef1"' in header
    assert "nc=00000001" in header and 'cnonce="0a4f113b"' in header
    assert 'opaque="5ccc069c403ebaf9f0171e9517f40e41"' in header
