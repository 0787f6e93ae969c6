"""The browser live view end to end: GStreamer's rtsp-server as the camera, the real media hub, the API's
WebSocket route; PyAV decodes the fMP4 the client received, as a browser's MSE would play it."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select
from starlette.websockets import WebSocketDisconnect

from models.db.tables import AccessLog, User
from tests.rtsp_gateway import mse_fixtures
from tests.rtsp_gateway.mse_fixtures import LiveStack, fmp4_frames
from tests.support import sample

live_cameras = mse_fixtures.live_cameras
live_stack = mse_fixtures.live_stack

CHROMIUM_CODECS = "avc1.640029,avc1.64002A,avc1.640033,mp4a.40.2"
ALL_CODECS = CHROMIUM_CODECS + ",hvc1.1.6.L153.B0"


def receive_fragments(ws: object, count: int) -> bytes:
    data = b""
    for _ in range(count):
        data += ws.receive_bytes()  # type: ignore[attr-defined]
    return data


@pytest.mark.parametrize(
    ("camera", "codec", "prefix"), [("cam-g1-a", "h264", "avc1."), ("cam-g1-b", "hevc", "hvc1.")]
)
def test_live_view_decodes(live_stack: LiveStack, camera: str, codec: str, prefix: str) -> None:
    url = f"/api/cameras/{live_stack.cameras[camera]}/live"
    with live_stack.client.websocket_connect(url, headers=live_stack.headers("leader-g1")) as ws:
        ws.send_text(json.dumps({"type": "mse", "value": ALL_CODECS}))
        hello = ws.receive_json()
        assert hello["type"] == "mse"
        assert hello["value"].startswith(f'video/mp4; codecs="{prefix}')
        data = receive_fragments(ws, 1 + 50)  # the init segment, then a fragment per frame: 2 s of video
    name, frames, width = fmp4_frames(data)
    assert (name, width) == (codec, 320)
    assert frames >= 45  # every frame sent decodes (the first may precede the keyframe the cache starts at)
    assert live_stack.hub.upstream_keys(), "the live view went through the media hub"


def test_second_viewer_starts_from_cached_gop(live_stack: LiveStack) -> None:
    """Two browsers share one muxer and one upstream; the second starts at once from the cached GOP."""
    url = f"/api/cameras/{live_stack.cameras['cam-g1-a']}/live"
    hello = json.dumps({"type": "mse", "value": CHROMIUM_CODECS})
    with live_stack.client.websocket_connect(url, headers=live_stack.headers("leader-g1")) as first:
        first.send_text(hello)
        first.receive_json()
        receive_fragments(first, 40)
        with live_stack.client.websocket_connect(url, headers=live_stack.headers("admin1")) as second:
            second.send_text(hello)
            second.receive_json()
            data = receive_fragments(second, 1 + 10)
            assert len(live_stack.hub.upstream_keys()) == 1
            muxer = live_stack.live.muxer(live_stack.cameras["cam-g1-a"])
            assert muxer is not None and muxer.viewers == 2
    assert fmp4_frames(data)[1] == 10


def test_h265_without_browser_support_gets_jpeg(live_stack: LiveStack) -> None:
    url = f"/api/cameras/{live_stack.cameras['cam-g1-b']}/live"
    with live_stack.client.websocket_connect(url, headers=live_stack.headers("leader-g1")) as ws:
        ws.send_text(json.dumps({"type": "mse", "value": CHROMIUM_CODECS}))
        assert ws.receive_json() == {"type": "mjpeg"}
        jpegs = [ws.receive_bytes() for _ in range(3)]
    assert all(j[:2] == b"\xff\xd8" and j[-2:] == b"\xff\xd9" for j in jpegs)


def test_camera_out_of_scope_is_4404_and_audited(live_stack: LiveStack) -> None:
    camera_id = live_stack.cameras["cam-g1-a"]
    for target in (camera_id, 999_999):  # another grid's camera answers exactly as a missing one
        with live_stack.client.websocket_connect(
            f"/api/cameras/{target}/live", headers=live_stack.headers("leader-g3")
        ) as ws:
            assert ws.receive_json() == {"type": "error", "value": "camera not found"}
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_text()
            assert closed.value.code == 4404
    with live_stack.factory() as session:
        rows = session.scalars(
            select(AccessLog).where(AccessLog.channel == "live", AccessLog.username == "leader-g3")
        ).all()
    assert [(r.action, r.object_id) for r in rows] == [("deny", str(camera_id)), ("deny", "999999")]


def test_token_in_first_message_and_refused_without(live_stack: LiveStack) -> None:
    url = f"/api/cameras/{live_stack.cameras['cam-g1-a']}/live"
    token = live_stack.token("leader-g1")
    live_stack.client.cookies.clear()  # the login's session cookie would authenticate the socket instead
    with live_stack.client.websocket_connect(url) as ws:
        ws.send_text(json.dumps({"type": "auth", "token": token}))
        ws.send_text(json.dumps({"type": "mse", "value": CHROMIUM_CODECS}))
        hello = ws.receive_json()
        assert hello["type"] == "mse", hello
    with live_stack.client.websocket_connect(url) as ws:
        ws.send_text(json.dumps({"type": "auth", "token": "not-a-token"}))
        assert ws.receive_json()["type"] == "error"
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert closed.value.code == 4401
    live_stack.client.cookies.clear()


def test_disabling_the_user_ends_the_live_view(live_stack: LiveStack) -> None:
    url = f"/api/cameras/{live_stack.cameras['cam-g1-a']}/live"
    with live_stack.factory() as session:
        leader_id = session.scalar(select(User.id).where(User.username == "manager-s1"))
    with live_stack.client.websocket_connect(url, headers=live_stack.headers("manager-s1")) as ws:
        ws.send_text(json.dumps({"type": "mse", "value": CHROMIUM_CODECS}))
        assert ws.receive_json()["type"] == "mse"
        receive_fragments(ws, 5)
        r = live_stack.client.post(
            f"/api/admin/users/{leader_id}/disable", headers=live_stack.headers("admin1")
        )
        assert r.status_code == 200, r.text
        end = None
        for _ in range(1000):  # the stream runs on until the guard ends it: at most a few seconds of frames
            message = ws.receive()
            if message.get("text"):
                end = json.loads(message["text"])
                break
        assert end == {"type": "end", "reason": "revoked"}
    with live_stack.factory() as session:
        actions = session.scalars(
            select(AccessLog.action)
            .where(AccessLog.channel == "live", AccessLog.user_id == leader_id)
            .order_by(AccessLog.id)
        ).all()
    assert actions == ["view", "stream_start", "stream_end"]


def test_session_cookie_only_from_this_sites_pages(live_stack: LiveStack) -> None:
    """The login cookie authenticates the socket when the page is this site's; a page elsewhere cannot
    ride it (cross-site WebSocket hijacking)."""
    url = f"/api/cameras/{live_stack.cameras['cam-g1-a']}/live"
    live_stack.client.cookies.clear()
    r = live_stack.client.post(
        "/api/auth/token",
        data={"username": "leader-g1", "password": sample.PASSWORD},
        headers={"X-GridPatrol-Session": "cookie"},  # the web UI's login: the token in the session cookie
    )
    assert r.status_code == 200 and live_stack.client.cookies.get("gp_session")
    with live_stack.client.websocket_connect(url, headers={"Origin": "http://testserver"}) as ws:
        ws.send_text(json.dumps({"type": "mse", "value": CHROMIUM_CODECS}))
        assert ws.receive_json()["type"] == "mse"
    with live_stack.client.websocket_connect(url, headers={"Origin": "http://evil.example"}) as ws:
        assert ws.receive_json()["type"] == "error"
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert closed.value.code == 4401
    live_stack.client.cookies.clear()


def test_a_viewer_that_falls_behind_resumes_at_a_keyframe() -> None:
    """A browser that stops reading loses what is queued (bounded memory) and starts again at the next
    keyframe, so what it gets next still decodes."""
    from rtsp_gateway.mse import VIEWER_QUEUE_ITEMS, Viewer

    viewer = Viewer("mse")
    viewer.offer_init(b"init")
    viewer.offer(b"K0", keyframe=True)
    for i in range(VIEWER_QUEUE_ITEMS + 10):
        viewer.offer(b"P%d" % i, keyframe=False)
    assert viewer.skipping and not viewer.items and viewer.dropped == VIEWER_QUEUE_ITEMS
    viewer.offer(b"P-late", keyframe=False)
    viewer.offer(b"K1", keyframe=True)
    viewer.offer(b"P-next", keyframe=False)
    assert list(viewer.items) == [b"K1", b"P-next"]


def test_a_missing_sub_stream_is_4404(live_stack: LiveStack) -> None:
    url = f"/api/cameras/{live_stack.cameras['cam-g1-a']}/live?stream=sub"
    with live_stack.client.websocket_connect(url, headers=live_stack.headers("leader-g1")) as ws:
        ws.send_text(json.dumps({"type": "mse", "value": CHROMIUM_CODECS}))
        assert ws.receive_json() == {"type": "error", "value": "camera not found"}
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert closed.value.code == 4404
