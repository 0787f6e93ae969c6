"""An RTSP viewer (PyAV through the gateway's RTSP server) and a browser viewer (the live-view WebSocket)
of one camera share one upstream session, as ``gridpatrol serve`` wires them."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import av
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from api.app import create_app
from api.settings import ApiSettings
from gridpatrol.gateway import Gateway, GatewayThread, bind_gateway
from gridpatrol.live_view import threaded_live_video
from models.bus.memory import MemoryBus
from models.db.engine import make_engine, make_session_factory
from models.db.tables import Camera
from rtsp_gateway.settings import GatewaySettings
from tests.conftest import TEST_SECRET, seed
from tests.rtsp_gateway import mse_fixtures
from tests.rtsp_gateway.mse_fixtures import LaunchServer, fmp4_frames
from tests.support import sample
from tests.support.databases import sqlite_copy

live_cameras = mse_fixtures.live_cameras


@pytest.fixture(scope="module")
def gateway(
    live_cameras: LaunchServer, tmp_path_factory: pytest.TempPathFactory, _sqlite_template: Path
) -> Iterator[tuple[GatewayThread, int]]:
    """The gateway as ``serve`` runs it (hub and RTSP server on their own loop), camera cam-g1-a at the
    H.264 test camera."""
    tmp_path = tmp_path_factory.mktemp("gateway")
    factory = make_session_factory(make_engine(sqlite_copy(_sqlite_template, tmp_path)))
    seed(factory, tmp_path)
    with factory() as session:
        camera_id = session.scalar(select(Camera.id).where(Camera.name == "cam-g1-a"))
        session.execute(update(Camera).where(Camera.id == camera_id).values(url=live_cameras.url("/h264")))
        session.commit()
    assert camera_id is not None
    conf = GatewaySettings(host="127.0.0.1", port=0)
    gw = Gateway.build(conf, factory=factory, keyring=None, nonce_secret=TEST_SECRET, bus=None)
    thread = GatewayThread(gw, bind_gateway(conf))
    try:
        yield thread, camera_id
    finally:
        thread.stop()


def test_rtsp_and_browser_viewers_share_one_upstream(gateway: tuple[GatewayThread, int]) -> None:
    thread, camera_id = gateway
    gw = thread.gateway
    url = f"rtsp://leader-g1:{sample.PASSWORD}@127.0.0.1:{gw.server.port}/cameras/{camera_id}"
    rtsp_packets: list[int] = []
    playing = threading.Event()
    done = threading.Event()

    def rtsp_viewer() -> None:
        with av.open(
            url, options={"rtsp_transport": "tcp", "timeout": "5000000"}, timeout=(10.0, 10.0)
        ) as box:
            for packet in box.demux(video=0):
                rtsp_packets.append(packet.size)
                if len(rtsp_packets) == 10:
                    playing.set()
                if done.is_set() or len(rtsp_packets) > 2000:
                    return

    reader = threading.Thread(target=rtsp_viewer, name="rtsp-viewer", daemon=True)
    reader.start()
    assert playing.wait(30), "the RTSP viewer got no video"
    app = create_app(
        ApiSettings(secret_key=TEST_SECRET),
        session_factory=gw.factory,
        bus=MemoryBus(),
        live_video=threaded_live_video(thread),
    )
    try:
        with TestClient(app) as client:
            r = client.post("/api/auth/token", data={"username": "leader-g1", "password": sample.PASSWORD})
            headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
            with client.websocket_connect(f"/api/cameras/{camera_id}/live", headers=headers) as ws:
                ws.send_text(json.dumps({"type": "mse", "value": "avc1.640029"}))
                assert ws.receive_json()["type"] == "mse"
                data = b"".join(ws.receive_bytes() for _ in range(1 + 25))
                stats = gw.hub.stats()
    finally:
        done.set()
        reader.join(15)
    assert stats.upstreams == 1 and len(gw.hub.upstream_keys()) == 1
    assert stats.viewers == {"rtsp": 1, "mse": 1}
    assert fmp4_frames(data)[1] == 25
    assert len(rtsp_packets) >= 10


def test_the_gateway_process_serves_the_live_view_with_the_api_tokens(
    gateway: tuple[GatewayThread, int],
) -> None:
    """Distributed: the gateway's own live app (``build_live_app`` on the hub's loop) checks the API's
    bearer tokens and serves the same stream."""
    import asyncio

    import websockets

    from api.tokens import issue_access_token
    from gridpatrol.live_view import build_live_app, serve_live_app
    from gridpatrol.runtime import bind_listeners
    from models.db.tables import User
    from tests.support.rtsp_server import free_port

    thread, camera_id = gateway
    gw = thread.gateway
    with gw.factory() as session:
        leader = session.scalars(select(User).where(User.username == "leader-g1")).one()
        token = issue_access_token(leader, secret=TEST_SECRET, ttl_s=600)
    port = free_port()
    app = build_live_app(ApiSettings(secret_key=TEST_SECRET), gateway=gw, bus=None)
    sock = bind_listeners("127.0.0.1", port)[0]
    server = asyncio.run_coroutine_threadsafe(serve_live_app(app, sock), thread.loop).result(10)

    async def view(headers: dict[str, str]) -> tuple[str, bytes]:
        url = f"ws://127.0.0.1:{port}/api/cameras/{camera_id}/live"
        for _ in range(100):
            if server.started:
                break
            await asyncio.sleep(0.05)
        async with websockets.connect(url, additional_headers=headers) as ws:
            await ws.send(json.dumps({"type": "mse", "value": "avc1.640029"}))
            hello = str(await ws.recv())
            if not hello.startswith('{"type": "mse"'):
                return hello, b""
            return hello, b"".join([bytes(await ws.recv()) for _ in range(1 + 10)])

    try:
        hello, data = asyncio.run(view({"Authorization": f"Bearer {token}"}))
        assert json.loads(hello)["value"].startswith('video/mp4; codecs="avc1.')
        assert fmp4_frames(data)[1] == 10
        refused, _ = asyncio.run(view({"Authorization": "Bearer not-a-token"}))
        assert json.loads(refused) == {"type": "error", "value": "invalid token"}
    finally:
        server.should_exit = True
        sock.close()
