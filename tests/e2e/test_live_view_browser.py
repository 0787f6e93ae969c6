"""Debian's Chromium plays the live view: the API on uvicorn, the media hub on an event loop of its own
thread as ``gridpatrol serve`` runs it (``gridpatrol.live_view.ThreadedLiveVideo``), GStreamer's
rtsp-server as the H.264 and H.265 cameras. A minimal player page (the protocol of the README) feeds
Media Source Extensions; Chromium here has no HEVC, so the H.265 camera arrives as JPEG frames."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import select

from api.app import create_app
from api.settings import ApiSettings
from api.tokens import issue_access_token
from gridpatrol.live_view import ThreadedLiveVideo, live_view_server
from models.bus.memory import MemoryBus
from models.db.engine import make_engine, make_session_factory
from models.db.tables import Camera, User
from rtsp_gateway.hub import HubSettings, MediaHub
from rtsp_gateway.media import NoSuchStream, StreamKind
from tests.conftest import TEST_SECRET, seed
from tests.rtsp_gateway import mse_fixtures
from tests.rtsp_gateway.mse_fixtures import LaunchServer
from tests.support.databases import sqlite_copy
from tests.support.require import require
from tests.support.rtsp_server import free_port

CHROMIUM = Path("/usr/bin/chromium")
live_cameras = mse_fixtures.live_cameras

#: a minimal player: what a page does with the protocol (offer the codecs MSE plays, append fragments)
PLAYER = """
async ({url, token, seconds}) => {
  const candidates = ['avc1.640029', 'avc1.4D401F', 'avc1.42E01E', 'hvc1.1.6.L93.B0', 'hev1.1.6.L93.B0'];
  const offered = candidates.filter(c => MediaSource.isTypeSupported(`video/mp4; codecs="${c}"`));
  const video = document.createElement('video');
  video.muted = true;
  document.body.appendChild(video);
  const source = new MediaSource();
  video.src = URL.createObjectURL(source);
  await new Promise(r => source.addEventListener('sourceopen', r, {once: true}));
  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  const state = {mode: null, mime: null, jpegs: 0, fragments: 0, errors: []};
  let buffer = null;
  const queue = [];
  const pump = () => {
    if (!buffer || buffer.updating || !queue.length) return;
    buffer.appendBuffer(queue.shift());
  };
  ws.onopen = () => {
    ws.send(JSON.stringify({type: 'auth', token}));
    ws.send(JSON.stringify({type: 'mse', value: offered.join(',')}));
  };
  ws.onmessage = (event) => {
    if (typeof event.data === 'string') {
      const message = JSON.parse(event.data);
      if (message.type === 'mse') {
        state.mode = 'mse';
        state.mime = message.value;
        buffer = source.addSourceBuffer(message.value);
        buffer.addEventListener('updateend', () => {
          // start at the live edge: the stream's times begin where the camera's muxer started
          if (video.buffered.length && video.currentTime < video.buffered.start(0)) {
            video.currentTime = video.buffered.start(0);
          }
          pump();
        });
        buffer.addEventListener('error', () => state.errors.push('sourcebuffer error'));
        video.play().catch(e => state.errors.push(String(e)));
      } else if (message.type === 'mjpeg') {
        state.mode = 'mjpeg';
      } else {
        state.errors.push(event.data);
      }
      return;
    }
    if (state.mode === 'mjpeg') {
      const head = new Uint8Array(event.data, 0, 2);
      if (head[0] === 0xff && head[1] === 0xd8) state.jpegs += 1;
      return;
    }
    state.fragments += 1;
    queue.push(event.data);
    pump();
  };
  // watch the clock of the video element: the stream's time advancing means it plays
  let first = null;
  for (let i = 0; i < seconds * 10; i++) {
    await new Promise(r => setTimeout(r, 100));
    if (state.mode === 'mse' && video.currentTime > 0 && first === null) first = video.currentTime;
    if (first !== null && video.currentTime - first >= 1.5) break;
    if (state.mode === 'mjpeg' && state.jpegs >= 5) break;
  }
  ws.close();
  return {...state, offered, advanced: first === null ? 0 : video.currentTime - first,
          error: video.error ? video.error.message : null};
}
"""


@dataclass
class Served:
    base: str
    cameras: dict[str, int]
    token: str


@pytest.fixture(scope="module")
def served(
    live_cameras: LaunchServer, tmp_path_factory: pytest.TempPathFactory, _sqlite_template: Path
) -> Iterator[Served]:
    require(CHROMIUM.exists(), "Debian chromium at /usr/bin/chromium")
    tmp = tmp_path_factory.mktemp("live-browser")
    factory = make_session_factory(make_engine(sqlite_copy(_sqlite_template, tmp)))
    seed(factory, tmp)
    with factory() as session:
        cameras = {c.name: c.id for c in session.scalars(select(Camera))}
        leader = session.scalars(select(User).where(User.username == "leader-g1")).one()
        token = issue_access_token(leader, secret=TEST_SECRET, ttl_s=600)
    paths = {cameras["cam-g1-a"]: "/h264", cameras["cam-g1-b"]: "/h265"}

    async def resolve(camera_id: int, stream: StreamKind) -> str:
        if camera_id not in paths or stream != "main":
            raise NoSuchStream(f"camera {camera_id} has no {stream} stream")
        return live_cameras.url(paths[camera_id])

    hub_loop = asyncio.new_event_loop()  # the gateway's loop, as in `gridpatrol serve`
    hub_thread = threading.Thread(target=hub_loop.run_forever, name="test-hub", daemon=True)
    hub_thread.start()
    hub = MediaHub(resolve, settings=HubSettings(linger_s=1.0))
    live = ThreadedLiveVideo(live_view_server(hub), hub_loop)
    app = create_app(
        ApiSettings(secret_key=TEST_SECRET), session_factory=factory, bus=MemoryBus(), live_video=live
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="live-uvicorn", daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            thread.join(0.05)
        assert server.started, "uvicorn did not start"
        yield Served(f"127.0.0.1:{port}", cameras, token)
    finally:
        server.should_exit = True
        thread.join(10)
        asyncio.run_coroutine_threadsafe(_shut(hub), hub_loop).result(10)
        hub_loop.call_soon_threadsafe(hub_loop.stop)
        hub_thread.join(10)


async def _shut(hub: MediaHub) -> None:
    """Close the hub and let every task on its loop finish before the loop stops."""
    await hub.close()
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def play(served: Served, camera: str) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=["--autoplay-policy=no-user-gesture-required"]
        )
        try:
            page = browser.new_page()
            url = f"ws://{served.base}/api/cameras/{served.cameras[camera]}/live"
            result: dict[str, Any] = page.evaluate(PLAYER, {"url": url, "token": served.token, "seconds": 20})
            return result
        finally:
            browser.close()


def test_chromium_plays_the_h264_live_view(served: Served) -> None:
    result = play(served, "cam-g1-a")
    assert result["mode"] == "mse", result
    assert result["mime"].startswith('video/mp4; codecs="avc1.'), result
    assert result["errors"] == [] and result["error"] is None, result
    assert result["advanced"] >= 1.5, result  # stream time (the video element's clock), not wall time


def test_h265_camera_in_a_browser_without_hevc_gets_jpeg_frames(served: Served) -> None:
    result = play(served, "cam-g1-b")
    assert not any(c.startswith(("hvc1", "hev1")) for c in result["offered"]), (
        "this Chromium plays HEVC after all"
    )
    assert result["mode"] == "mjpeg", result
    assert result["jpegs"] >= 5, result
