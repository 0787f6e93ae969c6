"""GB/T 28181 media without signalling: SDP offer/answer, SSRCs, the PS muxer and demuxer, and the RTP
receiver over UDP, TCP passive and TCP active (RFC 4571) fed by this test's own sender, decoded by
PyAV through the pipe. Loss: 1% and 5% of the packets dropped still decode most frames."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from ingest.gb28181 import decode, ps
from ingest.gb28181.rtp_receiver import RtpReceiver
from ingest.gb28181.sdp import SdpError, build_offer, parse_answer
from ingest.gb28181.ssrc import SsrcPool
from tests.ingest.gb28181 import pcap

SSRC = "0200001234"
CHANNEL = "34020000001320000001"


# -- SDP ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("transport", "proto", "setup"),
    [
        ("udp", "RTP/AVP", None),
        ("tcp-passive", "TCP/RTP/AVP", "passive"),
        ("tcp-active", "TCP/RTP/AVP", "active"),
    ],
)
def test_offer_says_play_ps_and_ssrc(transport: str, proto: str, setup: str | None) -> None:
    offer = build_offer(channel_id=CHANNEL, ip="10.1.2.3", port=30000, transport=transport, ssrc=SSRC)  # type: ignore[arg-type]
    lines = offer.split("\r\n")
    assert "s=Play" in lines
    assert f"m=video 30000 {proto} 96" in lines
    assert "a=rtpmap:96 PS/90000" in lines and "a=recvonly" in lines
    assert "c=IN IP4 10.1.2.3" in lines
    assert lines[-2] == f"y={SSRC}"
    assert (f"a=setup:{setup}" in lines) == (setup is not None)
    assert not any(line.startswith("a=setup") for line in lines) or setup


ANSWER = (
    "v=0\r\no=34020000001320000001 0 0 IN IP4 192.168.1.64\r\ns=Play\r\nc=IN IP4 192.168.1.64\r\nt=0 0\r\n"
    "m=video 15060 TCP/RTP/AVP 96\r\na=sendonly\r\na=rtpmap:96 PS/90000\r\na=setup:active\r\n"
    "y=0200001234\r\nf=v/2/4///a///\r\n"
)


def test_answer_is_parsed_after_the_gb_lines_are_taken_out() -> None:
    answer = parse_answer(ANSWER)
    assert (answer.ip, answer.port, answer.tcp, answer.setup) == ("192.168.1.64", 15060, True, "active")
    assert (answer.encoding, answer.clock_rate, answer.payload_type) == ("PS", 90000, 96)
    assert answer.ssrc == SSRC and answer.ssrc_int == 200001234


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("v=0\r\nc=IN IP4 1.2.3.4\r\n", "no m=video"),
        ("v=0\r\nm=video 9 RTP/AVP 96\r\n", "no c= line"),
        ("v=0\r\nc=IN IP4 1.2.3.4\r\nm=video x RTP/AVP 96\r\n", "bad m= line"),
        ("v=0\r\nc=IN IP4 1.2.3.4\r\nm=video 9 RTP/AVP 96\r\ny=abc\r\n", "bad y= line"),
        ("v=0\r\nc=garbage\r\nm=video 9 RTP/AVP 96\r\n", "bad c= line"),
    ],
)
def test_bad_answers_name_the_field(text: str, error: str) -> None:
    with pytest.raises(SdpError, match=error):
        parse_answer(text)


def test_ssrcs_are_ten_digits_with_the_domain_and_unique() -> None:
    pool = SsrcPool("3402000000")
    got = [pool.allocate() for _ in range(3)]
    assert got == ["0200000001", "0200000002", "0200000003"]
    assert pool.allocate(playback=True) == "1200000001"
    pool.release(got[0])
    assert len(pool) == 3
    assert pool.allocate() == "0200000001"  # the lowest free one again
    with pytest.raises(ValueError, match="10 digits"):
        SsrcPool("34020")


# -- PS -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def h264() -> list[pcap.Frame]:
    return pcap.encode(pcap.footage(2, 25), codec="h264")


@pytest.fixture(scope="module")
def real_footage() -> list[pcap.Frame]:
    """Debian's vtest.avi (a real street camera), 8 s, encoded as a camera would (H.264, GOP 1 s)."""
    return pcap.encode(pcap.vtest_footage(8.0), codec="h264", fps=10, gop=10)


def decode_all(packs: list[bytes]) -> tuple[str, int, dict[str, int]]:
    pipe = decode.PsPipe(read_timeout_s=2.0)
    for data in packs:
        pipe.write(data)
    pipe.close()
    stats: dict[str, int] = {}
    container = decode.open_ps(pipe)
    try:
        name = container.streams.video[0].codec_context.name
        return name, sum(1 for _ in decode.decode_frames(container, stats=stats)), stats
    finally:
        container.close()


@pytest.mark.parametrize(
    ("codec", "stream_type", "ffmpeg_name"), [("h264", 0x1B, "h264"), ("h265", 0x24, "hevc")]
)
def test_ps_carries_the_stream_type_and_round_trips(
    codec: ps.Codec, stream_type: int, ffmpeg_name: str
) -> None:
    frames = pcap.encode(pcap.footage(1, 25), codec=codec)
    packs = pcap.ps_stream(frames, codec)
    psm = ps.program_stream_map(codec)
    assert psm[12:14] == bytes([stream_type, 0xE0])
    assert packs[0][1].startswith(b"\x00\x00\x01\xba") and psm in packs[0][1]
    units = list(ps.iter_units(b"".join(p for _, p in packs)))
    assert [u.data for u in units] == [f.es for f in frames]
    assert [u.pts for u in units] == [f.pts for f in frames]
    assert {u.codec for u in units} == {codec}
    name, decoded, stats = decode_all([p for _, p in packs])
    print(f"{codec}: {len(frames)} frames sent, {decoded} decoded")
    assert (name, decoded, stats["decode_errors"]) == (ffmpeg_name, len(frames), 0)


def test_demuxer_resynchronises_after_a_gap(h264: list[pcap.Frame]) -> None:
    packs = [p for _, p in pcap.ps_stream(h264, "h264")]
    demux = ps.PsDemuxer()
    units = demux.feed(packs[0][: len(packs[0]) // 2])
    demux.gap()  # the rest of frame 0 and frame 1 are lost
    for data in packs[2:]:
        units += demux.feed(data)
    units += demux.flush()
    intact = [u for u in units if not u.damaged]
    assert [u.pts for u in intact] == [f.pts for f in h264[2:]]


# -- RTP receiver ---------------------------------------------------------------------------------------
class Collector:
    """A sink that writes into the decoder's pipe, as the worker's reader does."""

    def __init__(self) -> None:
        self.pipe = decode.PsPipe(read_timeout_s=2.0)
        self.gaps = 0
        self.demux = ps.PsDemuxer()  # counts the frames that arrived whole
        self.units: list[ps.AccessUnit] = []

    def __call__(self, payload: bytes, _ts: int, _marker: bool, gap: bool) -> None:
        self.gaps += gap
        self.pipe.write(payload)
        if gap:
            self.demux.gap()
        self.units += self.demux.feed(payload)

    def intact(self) -> int:
        return sum(not u.damaged for u in self.units + self.demux.flush())

    def decoded(self) -> tuple[int, dict[str, int]]:
        self.pipe.close()
        stats: dict[str, int] = {}
        container = decode.open_ps(self.pipe)
        try:
            return sum(1 for _ in decode.decode_frames(container, stats=stats)), stats
        finally:
            container.close()


def wait_for(check: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def paced(packets: list[bytes]) -> Iterator[bytes]:
    for i, p in enumerate(packets):
        if i % 20 == 19:
            time.sleep(0.002)  # loopback UDP drops bursts larger than the socket buffer
        yield p


def test_udp_reorders_and_filters_by_ssrc(h264: list[pcap.Frame]) -> None:
    packets = [p for _, p in pcap.rtp_packets(pcap.ps_stream(h264, "h264"), ssrc=int(SSRC), first_seq=65500)]
    shuffled = list(packets)
    for i in range(5, len(shuffled) - 1, 10):  # swap neighbours: arrives out of order
        shuffled[i], shuffled[i + 1] = shuffled[i + 1], shuffled[i]
    foreign = pcap.rtp_packets(pcap.ps_stream(h264[:5], "h264"), ssrc=999)
    for k, (_, p) in enumerate(foreign):
        shuffled.insert(3 + 7 * k, p)
    sink = Collector()
    receiver = RtpReceiver(mode="udp", on_packet=sink, bind_ip="127.0.0.1", ssrc=int(SSRC)).start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for p in paced(shuffled):
                sock.sendto(p, ("127.0.0.1", receiver.port))
        wait_for(lambda: receiver.stats.packets == len(packets))
    finally:
        receiver.stop()
    decoded, stats = sink.decoded()
    s = receiver.stats
    print(f"udp: {len(h264)} frames sent, {decoded} decoded; reordered {s.reordered}, foreign {s.wrong_ssrc}")
    assert (s.lost, s.wrong_ssrc, sink.gaps) == (0, len(foreign), 0)
    assert s.reordered >= 5
    assert (decoded, stats["decode_errors"]) == (len(h264), 0)


def send_tcp(conn: socket.socket, packets: list[bytes]) -> None:
    with conn:
        conn.sendall(b"".join(pcap.rfc4571(p) for p in packets))


def test_tcp_passive_device_connects_to_us(h264: list[pcap.Frame]) -> None:
    packets = [p for _, p in pcap.rtp_packets(pcap.ps_stream(h264, "h264"), ssrc=int(SSRC))]
    sink = Collector()
    receiver = RtpReceiver(mode="tcp-passive", on_packet=sink, bind_ip="127.0.0.1", ssrc=int(SSRC)).start()
    try:
        send_tcp(socket.create_connection(("127.0.0.1", receiver.port)), packets)
        wait_for(lambda: receiver.stats.packets == len(packets))
    finally:
        receiver.stop()
    decoded, _ = sink.decoded()
    print(f"tcp passive: {len(h264)} frames sent, {decoded} decoded")
    assert (decoded, receiver.stats.connections, receiver.stats.lost) == (len(h264), 1, 0)


def test_tcp_active_we_connect_to_the_device(h264: list[pcap.Frame]) -> None:
    packets = [p for _, p in pcap.rtp_packets(pcap.ps_stream(h264, "h264"), ssrc=int(SSRC))]
    listener = socket.create_server(("127.0.0.1", 0))
    device = threading.Thread(target=lambda: send_tcp(listener.accept()[0], packets), daemon=True)
    device.start()
    sink = Collector()
    receiver = RtpReceiver(mode="tcp-active", on_packet=sink, ssrc=int(SSRC)).start()
    try:
        receiver.connect_to("127.0.0.1", listener.getsockname()[1])
        wait_for(lambda: receiver.stats.packets == len(packets))
    finally:
        receiver.stop()
        listener.close()
    decoded, _ = sink.decoded()
    print(f"tcp active: {len(h264)} frames sent, {decoded} decoded")
    assert (decoded, receiver.stats.connections) == (len(h264), 1)


@pytest.mark.parametrize("share", [0.01, 0.05])
def test_loss_costs_frames_not_the_stream(real_footage: list[pcap.Frame], share: float) -> None:
    packets = [p for _, p in pcap.rtp_packets(pcap.ps_stream(real_footage, "h264"), ssrc=int(SSRC), fps=10)]
    kept = [p for _, p in pcap.lose([(0.0, p) for p in packets], share, seed=11)]
    random.Random(3).shuffle(kept[100:110])  # and a little reordering
    sink = Collector()
    receiver = RtpReceiver(mode="udp", on_packet=sink, bind_ip="127.0.0.1", ssrc=int(SSRC)).start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for p in paced(kept):
                sock.sendto(p, ("127.0.0.1", receiver.port))
        wait_for(lambda: receiver.stats.packets == len(kept))
        time.sleep(0.3)  # the reorder buffer gives up on the lost ones
    finally:
        receiver.stop()
    decoded, stats = sink.decoded()
    lost = len(packets) - len(kept)
    print(
        f"loss {share:.0%}: {lost} of {len(packets)} packets dropped; {decoded} of {len(real_footage)} frames "
        f"decoded ({sink.intact()} arrived whole; {stats['decode_errors']} packets rejected by the decoder)"
    )
    assert receiver.stats.lost == lost and sink.gaps > 0
    assert decoded > len(real_footage) * 0.5


def test_a_device_that_ignores_the_offered_ssrc_is_followed(h264: list[pcap.Frame]) -> None:
    """Some NVRs answer y=<ours> but send their own SSRC on every packet: after 100 such packets and
    none of ours, theirs is taken (the frames from then on decode)."""
    packets = [p for _, p in pcap.rtp_packets(pcap.ps_stream(h264, "h264") * 3, ssrc=1234)]
    assert len(packets) > 200
    sink = Collector()
    receiver = RtpReceiver(mode="udp", on_packet=sink, bind_ip="127.0.0.1", ssrc=int(SSRC)).start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for p in paced(packets):
                sock.sendto(p, ("127.0.0.1", receiver.port))
        wait_for(lambda: receiver.stats.packets + receiver.stats.wrong_ssrc >= len(packets))
    finally:
        receiver.stop()
    assert receiver.ssrc == 1234
    assert (receiver.stats.wrong_ssrc, receiver.stats.packets) == (99, len(packets) - 99)
