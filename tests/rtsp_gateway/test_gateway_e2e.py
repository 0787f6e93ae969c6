"""The whole gateway as ``gridpatrol gateway`` builds it (media hub, RTSP server, access watch, encrypted
camera URLs) with GStreamer's rtsp-server as the camera and real clients: ffmpeg, ffprobe, PyAV."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import av
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gridpatrol.gateway import Gateway, GatewayCollector, GatewayThread, bind_gateway
from models.bus.memory import MemoryBus
from models.db.engine import transaction
from models.db.tables import AccessLog, Camera, Role
from models.grid.credentials import CredentialKey, CredentialKeyring, set_camera_secrets
from models.identity.access_changes import publish_access_change
from models.identity.users import add_user, find_user, set_enabled
from rtsp_gateway.settings import GatewaySettings
from tests.rtsp_gateway import gateway_fixtures
from tests.rtsp_gateway.conftest import camera_url
from tests.rtsp_gateway.gateway_fixtures import RawClient, camera_ids
from tests.support import sample
from tests.support.require import require
from tests.support.rtsp_server import RtspServer

pytestmark = pytest.mark.timeout(180)
gateway_db = gateway_fixtures.gateway_db
KEYRING = CredentialKeyring(CredentialKey.generate())


@pytest.fixture(scope="module")
def cams(gateway_db: sessionmaker[Session]) -> dict[str, int]:
    ids = camera_ids(gateway_db)
    assert len(ids) == 4
    return ids


def point_cameras_at(factory: sessionmaker[Session], url: str) -> None:
    """Every sample camera streams from ``url`` (stored encrypted, as workers leave it)."""
    with transaction(factory) as session:
        for cam in session.scalars(select(Camera)):
            set_camera_secrets(cam, KEYRING, url=url)


@contextlib.contextmanager
def gateway(factory: sessionmaker[Session], *, bus: Any = None, **conf: Any) -> Iterator[GatewayThread]:
    settings = GatewaySettings(port=0, **conf)
    built = Gateway.build(
        settings, factory=factory, keyring=KEYRING, nonce_secret="e2e nonce secret", bus=bus
    )
    thread = GatewayThread(built, bind_gateway(settings))
    try:
        yield thread
    finally:
        thread.stop()


def url_of(g: GatewayThread, path: str, *, user: str | None = None, password: str | None = None) -> str:
    auth = f"{user}:{password}@" if user else ""
    return f"rtsp://{auth}127.0.0.1:{g.gateway.server.port}{path}"


def audit(factory: sessionmaker[Session], action: str, username: str) -> list[AccessLog]:
    with factory() as session:
        query = select(AccessLog).where(
            AccessLog.action == action, AccessLog.username == username, AccessLog.channel == "rtsp"
        )
        return list(session.scalars(query))


def wait_for(check: Callable[[], bool], *, within_s: float = 20.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def test_fifty_viewers_share_one_upstream_a_stuck_one_holds_nobody_and_all_are_audited(
    gateway_db: sessionmaker[Session], cams: dict[str, int], h264_camera: RtspServer
) -> None:
    require(shutil.which("ffmpeg") is not None, "ffmpeg (Debian package ffmpeg)")
    with transaction(gateway_db) as session:
        add_user(
            session,
            username="leader-fifty",
            role=Role.grid_leader,
            password=sample.PASSWORD,
            grid_codes=["G1"],
        )
    point_cameras_at(gateway_db, camera_url(h264_camera))
    with gateway(gateway_db, sessions_per_user=100) as g:
        path = f"/cameras/{cams['cam-g1-a']}"
        stuck = RawClient(g.gateway.server.port)
        stuck.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.auth = ("leader-fifty", sample.PASSWORD)
        try:
            assert stuck.play(url_of(g, path)).status == 200  # ...and it never reads again
            url = url_of(g, path, user="leader-fifty", password=sample.PASSWORD)
            cmd = [
                "ffmpeg",
                "-nostdin",
                "-v",
                "error",
                "-rtsp_transport",
                "tcp",
                "-i",
                url,
                "-t",
                "3",
                "-c",
                "copy",
                "-f",
                "null",
                "-",
            ]
            viewers = [
                subprocess.Popen(["timeout", "-k", "3", "60", *cmd], stderr=subprocess.PIPE, text=True)
                for _ in range(49)
            ]
            probe = subprocess.run(
                ["timeout", "-k", "3", "60", "ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-count_frames", "-read_intervals", "%+3",
                 "-select_streams", "v:0", "-show_entries", "stream=codec_name,nb_read_frames", "-of", "default=nw=1", url],
                capture_output=True, text=True, timeout=90, check=False,
            )  # fmt: skip
            errors = [p.communicate(timeout=90)[1] for p in viewers]
        finally:
            stuck.close()
        assert probe.returncode == 0, probe.stderr
        decoded = dict(line.split("=", 1) for line in probe.stdout.splitlines())
        assert decoded["codec_name"] == "h264" and int(decoded["nb_read_frames"]) >= 50
        assert [p.returncode for p in viewers] == [0] * 49, errors
        assert h264_camera.sessions() == 1
        assert wait_for(lambda: len(audit(gateway_db, "stream_end", "leader-fifty")) == 51)
    starts = audit(gateway_db, "stream_start", "leader-fifty")
    ends = audit(gateway_db, "stream_end", "leader-fifty")
    assert len(starts) == len(ends) == 51
    assert {e.object_id for e in starts} == {str(cams["cam-g1-a"])}
    assert sum(1 for e in ends if e.detail["delivered"] > 20_000) >= 50  # bytes sent per session


def test_h265_camera_decodes_through_the_gateway(
    gateway_db: sessionmaker[Session], cams: dict[str, int], h265_camera: RtspServer
) -> None:
    point_cameras_at(gateway_db, camera_url(h265_camera))
    with gateway(gateway_db) as g:
        url = url_of(g, f"/cameras/{cams['cam-g1-b']}", user="leader-g1", password=sample.PASSWORD)
        frames = 0
        with av.open(
            url, options={"rtsp_transport": "tcp", "timeout": "5000000"}, timeout=(15.0, 15.0)
        ) as box:
            stream = box.streams.video[0]
            assert stream.codec_context.name == "hevc"
            for frame in box.decode(stream):
                assert (frame.width, frame.height) == (320, 180)
                frames += 1
                if frames == 25:
                    break
        assert frames == 25


def test_camera_restart_viewers_recover_or_end_cleanly(
    gateway_db: sessionmaker[Session], cams: dict[str, int], h264_camera: RtspServer
) -> None:
    point_cameras_at(gateway_db, camera_url(h264_camera))
    with gateway(gateway_db) as g, RawClient(g.gateway.server.port, timeout=30) as c:
        c.auth = ("leader-g1", sample.PASSWORD)
        assert c.play(url_of(g, f"/cameras/{cams['cam-g1-a']}")).status == 200
        assert c.read_frame() is not None
        h264_camera.restart()
        after = 0
        while after < 100:
            frame = c.read_frame()
            if frame is None:
                break  # ended cleanly: the server closed the connection
            after += 1
        if after == 100:  # recovered: the hub opened a second upstream session at the camera
            assert h264_camera.sessions() == 2
        else:
            assert wait_for(
                lambda: any(
                    e.detail["reason"] == "upstream_gone"
                    for e in audit(gateway_db, "stream_end", "leader-g1")
                )
            )


def test_access_change_notice_ends_the_session(
    gateway_db: sessionmaker[Session], cams: dict[str, int], h264_camera: RtspServer
) -> None:
    with transaction(gateway_db) as session:
        user = add_user(
            session, username="leader-cut", role=Role.grid_leader, password=sample.PASSWORD, grid_codes=["G1"]
        )
        user_id = user.id
    point_cameras_at(gateway_db, camera_url(h264_camera))
    bus = MemoryBus()
    with gateway(gateway_db, bus=bus, recheck_s=5.0) as g, RawClient(g.gateway.server.port, timeout=30) as c:
        c.auth = ("leader-cut", sample.PASSWORD)
        assert c.play(url_of(g, f"/cameras/{cams['cam-g1-a']}")).status == 200
        assert c.read_frame() is not None
        with transaction(gateway_db) as session:
            found = find_user(session, "leader-cut")
            assert found is not None
            set_enabled(session, user=found, enabled=False)
        publish_access_change(bus, user_ids=[user_id], reason="enabled")
        while c.read_frame() is not None:
            pass
        metrics = {m.name: m for m in GatewayCollector(g.gateway).collect()}
        assert metrics["gridpatrol_gateway_sessions_cut"].samples[0].value == 1
    ends = audit(gateway_db, "stream_end", "leader-cut")
    assert [e.detail["reason"] for e in ends] == ["revoked"]


def test_missing_sub_stream_and_other_grid_answer_like_a_missing_camera(
    gateway_db: sessionmaker[Session], cams: dict[str, int]
) -> None:
    point_cameras_at(gateway_db, "rtsp://127.0.0.1:9/none")
    with gateway(gateway_db) as g:
        answers = []
        for path in (
            f"/cameras/{cams['cam-g1-a']}/sub",
            f"/cameras/{cams['cam-g3-a']}",
            "/cameras/424242",
            "/replay/none",
        ):
            with RawClient(g.gateway.server.port) as c:
                c.auth = ("leader-g1", sample.PASSWORD)
                resp = c.request("DESCRIBE", url_of(g, path))
                answers.append((resp.status, resp.body, sorted(k for k in resp.headers if k != "cseq")))
        assert answers[0][0] == 404
        assert answers.count(answers[0]) == 4
