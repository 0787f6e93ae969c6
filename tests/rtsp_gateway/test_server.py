"""The RTSP server with real clients (ffprobe, PyAV, GStreamer's rtspsrc) and a raw client for protocol
details, over a clip hub at the server's seam that plays real H.264/H.265 as RTP packets."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta

import av
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.db.engine import transaction
from models.db.tables import AccessLog, Role, utcnow
from models.identity.tokens import create_api_token
from models.identity.users import add_user, find_user, set_enabled
from tests.rtsp_gateway import gateway_fixtures
from tests.rtsp_gateway.gateway_fixtures import (
    AccessUnit,
    ClipHub,
    GatewayThread,
    RawClient,
    camera_ids,
    running_gateway,
)
from tests.support import sample
from tests.support.require import require

pytestmark = pytest.mark.timeout(120)
gateway_db = gateway_fixtures.gateway_db
elementary_streams = gateway_fixtures.elementary_streams


@pytest.fixture(scope="module")
def cams(gateway_db: sessionmaker[Session]) -> dict[str, int]:
    ids = camera_ids(gateway_db)
    assert len(ids) == 4
    return ids


@pytest.fixture(scope="module")
def gw(
    gateway_db: sessionmaker[Session], elementary_streams: dict[str, list[AccessUnit]], cams: dict[str, int]
) -> Iterator[GatewayThread]:
    with running_gateway(
        gateway_db, lambda: ClipHub("h264", elementary_streams["h264"], set(cams.values())), recheck_s=1.0
    ) as g:
        yield g


def ffprobe(url: str, *, seconds: int = 2) -> subprocess.CompletedProcess[str]:
    require(shutil.which("ffprobe") is not None, "ffprobe (Debian package ffmpeg)")
    cmd = [
        "timeout", "-k", "3", "30", "ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-count_frames",
        "-read_intervals", f"%+{seconds}", "-select_streams", "v:0",
        "-show_entries", "stream=codec_name,width,height,nb_read_frames", "-of", "default=nw=1", url,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=40, check=False)


def fields(out: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def audit(factory: sessionmaker[Session], *, action: str, username: str) -> list[AccessLog]:
    with factory() as session:
        return list(
            session.scalars(
                select(AccessLog).where(
                    AccessLog.action == action, AccessLog.username == username, AccessLog.channel == "rtsp"
                )
            )
        )


# --- real clients ------------------------------------------------------------------------------------
def test_leader_decodes_h264_with_ffprobe(gw: GatewayThread, cams: dict[str, int]) -> None:
    done = ffprobe(gw.url(f"/cameras/{cams['cam-g1-a']}", user="leader-g1", password=sample.PASSWORD))
    info = fields(done.stdout)
    assert done.returncode == 0, done.stderr
    assert info["codec_name"] == "h264"
    assert (info["width"], info["height"]) == ("320", "180")
    assert int(info["nb_read_frames"]) >= 10


def test_h265_decodes_with_pyav(
    gateway_db: sessionmaker[Session], elementary_streams: dict[str, list[AccessUnit]], cams: dict[str, int]
) -> None:
    with running_gateway(
        gateway_db, lambda: ClipHub("h265", elementary_streams["h265"], set(cams.values()))
    ) as g:
        url = g.url(f"/cameras/{cams['cam-g1-b']}", user="leader-g1", password=sample.PASSWORD)
        frames = 0
        with av.open(
            url, options={"rtsp_transport": "tcp", "timeout": "5000000"}, timeout=(10.0, 10.0)
        ) as box:
            stream = box.streams.video[0]
            assert stream.codec_context.name == "hevc"
            for frame in box.decode(stream):
                assert (frame.width, frame.height) == (320, 180)
                frames += 1
                if frames == 20:
                    break
        assert frames == 20


def test_gstreamer_rtspsrc_decodes(gw: GatewayThread, cams: dict[str, int]) -> None:
    require(shutil.which("gst-launch-1.0") is not None, "GStreamer tools (gstreamer1.0-tools)")
    url = gw.url(f"/cameras/{cams['cam-g1-a']}")
    cmd = [
        "timeout", "-k", "3", "30", "gst-launch-1.0", "-q", "rtspsrc", f"location={url}", "user-id=leader-g1",
        f"user-pw={sample.PASSWORD}", "protocols=tcp", "latency=0", "!", "rtph264depay", "!", "h264parse", "!",
        "avdec_h264", "!", "identity", "eos-after=25", "!", "fakesink",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=40, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_wrong_password_gets_401(gw: GatewayThread, cams: dict[str, int]) -> None:
    done = ffprobe(gw.url(f"/cameras/{cams['cam-g1-a']}", user="leader-g1", password="wrong-password-1"))
    assert done.returncode != 0
    assert "401" in done.stderr


def test_other_grid_is_404_like_a_missing_camera(gw: GatewayThread, cams: dict[str, int]) -> None:
    answers = []
    for path in (f"/cameras/{cams['cam-g3-a']}", "/cameras/999999", "/cameras/12/nothing"):
        with RawClient(gw.port) as c:
            c.auth = ("leader-g1", sample.PASSWORD)
            resp = c.request("DESCRIBE", gw.url(path), {"Accept": "application/sdp"})
            answers.append((resp.status, resp.body, sorted(k for k in resp.headers if k != "cseq")))
    assert answers[0][0] == 404
    assert answers[0] == answers[1] == answers[2]
    # the leader of that grid sees it
    with RawClient(gw.port) as c:
        c.auth = ("leader-g3", sample.PASSWORD)
        resp = c.request("DESCRIBE", gw.url(f"/cameras/{cams['cam-g3-a']}"), {"Accept": "application/sdp"})
        assert resp.status == 200


def test_unauthenticated_describe_is_challenged_before_anything_is_said(gw: GatewayThread) -> None:
    with RawClient(gw.port) as c:
        resp = c.request("DESCRIBE", gw.url("/cameras/999999"))
    assert resp.status == 401
    assert resp.challenges[0].startswith('Digest realm="GridPatrol", nonce="')
    assert 'qop="auth"' in resp.challenges[0]
    assert not any(ch.startswith("Basic") for ch in resp.challenges)  # Basic only where configured


def test_sdp_names_no_upstream(gw: GatewayThread, cams: dict[str, int]) -> None:
    with RawClient(gw.port) as c:
        c.auth = ("admin1", sample.PASSWORD)
        url = gw.url(f"/cameras/{cams['cam-g1-a']}")
        resp = c.request("DESCRIBE", url, {"Accept": "application/sdp"})
    sdp = resp.body.decode()
    assert resp.status == 200
    assert resp.headers["content-type"] == "application/sdp"
    assert resp.headers["content-base"] == url + "/"
    assert "a=rtpmap:96 H264/90000" in sdp and "a=control:trackID=0" in sdp and "a=range:npt=now-" in sdp
    assert "sprop-parameter-sets=" in sdp
    assert sample.CAMERA_SECRET not in sdp and "admin:" not in sdp and "8554" not in sdp


def test_api_tokens_need_the_rtsp_scope(
    gateway_db: sessionmaker[Session], gw: GatewayThread, cams: dict[str, int]
) -> None:
    with transaction(gateway_db) as session:
        user = find_user(session, "leader-g1")
        assert user is not None
        _, read_only = create_api_token(session, user=user, name="reader", scopes=["api:read"])
        _, viewer = create_api_token(session, user=user, name="wall", scopes=["rtsp"])
    url = f"/cameras/{cams['cam-g1-a']}"
    refused = ffprobe(gw.url(url, user="leader-g1", password=read_only))
    assert refused.returncode != 0 and "401" in refused.stderr
    allowed = ffprobe(gw.url(url, user="leader-g1", password=viewer))
    assert allowed.returncode == 0, allowed.stderr
    assert int(fields(allowed.stdout)["nb_read_frames"]) >= 10


# --- protocol --------------------------------------------------------------------------------------
def test_options_pipelining_and_cseq(gw: GatewayThread) -> None:
    with RawClient(gw.port) as c:
        c.send_raw(
            b"OPTIONS * RTSP/1.0\r\nCSeq: 7\r\n\r\nOPTIONS * RTSP/1.0\r\nCSeq: 8\r\n\r\nGET_PARAMETER * RTSP/1.0\r\nCSeq: 9\r\n\r\n"
        )
        answers = [c.read_response() for _ in range(3)]
        assert [(a.status, a.headers["cseq"]) for a in answers] == [(200, "7"), (200, "8"), (200, "9")]
        assert "DESCRIBE" in answers[0].headers["public"] and "GET_PARAMETER" in answers[0].headers["public"]
        c.send_raw(b"OPTIONS * RTSP/1.0\r\n\r\n")
        assert c.read_response().status == 400  # no CSeq
        c.send_raw(b"FLY * RTSP/1.0\r\nCSeq: 10\r\n\r\n")
        assert c.read_response().status == 501
        c.send_raw(b"OPTIONS * RTSP/2.0\r\nCSeq: 11\r\n\r\n")
        assert c.read_response().status == 505


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nX-Pad: " + b"a" * 20_000 + b"\r\n\r\n", 413),
        (b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 999999\r\n\r\n", 413),
        (b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nContent-Length: x\r\n\r\n", 400),
        (b"garbage\r\n\r\n", 400),
    ],
)
def test_bad_requests_are_refused_and_closed(gw: GatewayThread, request_bytes: bytes, status: int) -> None:
    with RawClient(gw.port) as c:
        c.send_raw(request_bytes)
        assert c.read_response().status == status
        assert c.sock.recv(10) == b""


def test_session_state_errors(gw: GatewayThread, cams: dict[str, int]) -> None:
    url = gw.url(f"/cameras/{cams['cam-g1-a']}")
    with RawClient(gw.port) as c:
        c.auth = ("leader-g1", sample.PASSWORD)
        assert c.request("PLAY", url, {"Session": "nope"}).status == 454
        assert c.request("PLAY", url).status == 454
        assert c.request("DESCRIBE", url).status == 200
        udp = c.request("SETUP", f"{url}/trackID=0", {"Transport": "RTP/AVP;unicast;client_port=5000-5001"})
        assert udp.status == 461
        assert (
            c.request("SETUP", f"{url}/trackID=1", {"Transport": "RTP/AVP/TCP;interleaved=0-1"}).status == 404
        )
        ok = c.request("SETUP", f"{url}/trackID=0", {"Transport": "RTP/AVP/TCP;unicast;interleaved=2-3"})
        assert ok.status == 200
        assert ok.headers["transport"].startswith("RTP/AVP/TCP;unicast;interleaved=2-3")
        session, timeout = ok.headers["session"].split(";")
        assert timeout == "timeout=60"
        other = gw.url(f"/cameras/{cams['cam-g1-b']}")
        assert c.request("PLAY", other, {"Session": session}).status == 459
        play = c.request("PLAY", url, {"Session": session})
        assert play.status == 200
        assert play.headers["rtp-info"].startswith(f"url={url}/trackID=0;seq=")
        seq = int(play.headers["rtp-info"].split("seq=")[1].split(";")[0])
        channel, first = c.read_frame() or (None, b"")
        assert channel == 2 and int.from_bytes(first[2:4], "big") == seq
        assert first[1] & 0x7F == 96
        again_setup = c.request(
            "SETUP",
            f"{url}/trackID=0",
            {"Transport": "RTP/AVP/TCP;unicast;interleaved=2-3", "Session": session},
        )
        assert again_setup.status == 455  # not while playing
        keep = c.request("GET_PARAMETER", url, {"Session": session})
        assert keep.status == 200 and keep.headers["session"].startswith(session)
        assert c.request("PAUSE", url, {"Session": session}).status == 200
        again = c.request("PLAY", url, {"Session": session})
        assert again.status == 200 and "seq=" in again.headers["rtp-info"]
        assert c.request("TEARDOWN", url, {"Session": session}).status == 200
        assert c.request("GET_PARAMETER", url, {"Session": session}).status == 454


def test_a_viewer_that_stops_reading_does_not_hold_back_the_others(
    gw: GatewayThread, cams: dict[str, int]
) -> None:
    url = gw.url(f"/cameras/{cams['cam-g1-a']}")
    stuck = RawClient(gw.port)
    try:
        stuck.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.auth = ("leader-g1", sample.PASSWORD)
        assert stuck.play(url).status == 200
        # ...and never reads again, while another viewer watches for 3 s of stream
        done = ffprobe(
            gw.url(f"/cameras/{cams['cam-g1-a']}", user="admin1", password=sample.PASSWORD), seconds=3
        )
        assert done.returncode == 0, done.stderr
        assert int(fields(done.stdout)["nb_read_frames"]) >= 50
    finally:
        stuck.close()


def test_disabling_the_user_ends_the_session_and_both_ends_are_audited(
    gateway_db: sessionmaker[Session], elementary_streams: dict[str, list[AccessUnit]], cams: dict[str, int]
) -> None:
    with transaction(gateway_db) as session:
        add_user(
            session, username="leader-tmp", role=Role.grid_leader, password=sample.PASSWORD, grid_codes=["G1"]
        )
    with running_gateway(
        gateway_db, lambda: ClipHub("h264", elementary_streams["h264"], set(cams.values())), recheck_s=1.0
    ) as g:
        with RawClient(g.port) as c:
            c.auth = ("leader-tmp", sample.PASSWORD)
            assert c.play(g.url(f"/cameras/{cams['cam-g1-a']}")).status == 200
            assert c.read_frame() is not None
            with transaction(gateway_db) as session:
                user = find_user(session, "leader-tmp")
                assert user is not None
                set_enabled(session, user=user, enabled=False)
            frames = 0
            while (
                c.read_frame() is not None
            ):  # the server ends the connection (the socket timeout would fail)
                frames += 1
        deadline = time.monotonic() + 10
        while (
            not audit(gateway_db, action="stream_end", username="leader-tmp") and time.monotonic() < deadline
        ):
            time.sleep(0.1)
    starts = audit(gateway_db, action="stream_start", username="leader-tmp")
    ends = audit(gateway_db, action="stream_end", username="leader-tmp")
    assert len(starts) == 1 and len(ends) == 1
    assert starts[0].object_type == "camera" and starts[0].object_id == str(cams["cam-g1-a"])
    assert starts[0].remote_addr == "127.0.0.1"
    assert ends[0].detail["reason"] == "revoked"
    assert ends[0].detail["delivered"] > 0  # bytes sent


def test_expired_token_ends_its_stream(
    gateway_db: sessionmaker[Session], gw: GatewayThread, cams: dict[str, int]
) -> None:
    with transaction(gateway_db) as session:
        user = find_user(session, "leader-g1")
        assert user is not None
        _, token = create_api_token(
            session, user=user, name="short", scopes=["rtsp"], expires_at=utcnow() + timedelta(seconds=3)
        )
    with RawClient(gw.port) as c:
        c.auth = ("leader-g1", token)
        assert c.play(gw.url(f"/cameras/{cams['cam-g1-a']}")).status == 200
        while c.read_frame() is not None:  # the server ends the stream when the token expires
            pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ends = [
            e
            for e in audit(gateway_db, action="stream_end", username="leader-g1")
            if e.detail["reason"] == "expired"
        ]
        if ends:
            break
        time.sleep(0.1)
    assert len(ends) == 1


def test_password_guessing_from_one_address_is_cut_off(
    gateway_db: sessionmaker[Session], elementary_streams: dict[str, list[AccessUnit]], cams: dict[str, int]
) -> None:
    hub = lambda: ClipHub("h264", elementary_streams["h264"], set(cams.values()))  # noqa: E731
    with running_gateway(gateway_db, hub, failed_logins_per_address=3) as g:
        url = g.url(f"/cameras/{cams['cam-g1-a']}")
        for guess in ("guess-one-1", "guess-two-2", "guess-three-3"):
            with RawClient(g.port) as c:
                c.auth = ("leader-g1", guess)
                assert c.request("DESCRIBE", url).status == 401
        with RawClient(g.port) as c:
            c.auth = ("leader-g1", sample.PASSWORD)
            assert c.request("DESCRIBE", url).status == 401  # even the right password, for a while
