"""A wall of 16 cameras in Debian's Chromium over one WebSocket, from a real worker over a real camera.

The distributed set-up: GStreamer's rtsp-server loops one clip, registered as 16 cameras of grid G1;
``gridpatrol worker`` reads them and ``gridpatrol serve --no-worker`` serves the API, the two meeting
only through Redis (the tile board: demand keys, tiles on pub/sub) and PostgreSQL. A minimal wall page,
built by the test in a page of the app's origin, logs in with the ``gp_session``
cookie, subscribes to the 16 cameras and paints each tile into an ``<img>``; every tile must show a
decoded picture. The same worker answers a snapshot with its zones drawn; another grid's leader gets
404 for it. What is asserted is what the viewer sees, not how fast.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from sqlalchemy import select

from gridpatrol.democlip import zones_document
from models.db.engine import make_engine, make_session_factory, transaction
from models.db.tables import Camera, Role
from models.grid.cameras import parse_camera_file, register_cameras
from models.grid.tree import import_grids
from models.grid.zones import save_zones
from models.identity.users import add_user
from tests.models.test_bus import REDIS_URL, redis_available
from tests.support import sample
from tests.support.databases import postgres_available, postgres_database
from tests.support.procs import background, free_port, serving
from tests.support.require import require
from tests.support.rtsp_server import Loop, RtspServer, gstreamer_available

CAMERAS = 16
CHROMIUM = "/usr/bin/chromium"
#: the minimal wall, built by the test in a page of the app's own origin (the app's CSP lets a page of
#: this origin open the socket and show blob: images; Chromium refuses a fulfilled page of no address
#: space a loopback socket: net::ERR_BLOCKED_BY_LOCAL_NETWORK_ACCESS_CHECKS)
WALL_SCRIPT = """(ids) => {
  document.title = "视频墙测试";
  document.body.innerHTML = "";
  document.body.style.cssText = "margin:0;display:grid;grid-template-columns:repeat(4,1fr)";
  const tiles = {}, counts = {}, statuses = {};
  window.wall = {counts, statuses, errors: [], closed: null};
  for (const id of ids) {
    const img = document.createElement("img");
    img.alt = "camera " + id;
    img.style.cssText = "width:100%;aspect-ratio:16/9;background:#222";
    document.body.appendChild(img);
    tiles[id] = img;
  }
  const ws = new WebSocket(`ws://${location.host}/api/live/tiles`);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => ws.send(JSON.stringify({type: "subscribe", cameras: ids, width: 320}));
  ws.onclose = (ev) => { window.wall.closed = ev.code; };
  ws.onmessage = (ev) => {
    if (typeof ev.data === "string") {
      const m = JSON.parse(ev.data);
      if (m.type === "status") statuses[m.camera_id] = m; else window.wall.errors.push(m);
      return;
    }
    const view = new DataView(ev.data);
    if (view.getUint8(0) !== 1) return;
    const id = view.getUint32(1);
    const img = tiles[id];
    const old = img.src;
    img.src = URL.createObjectURL(new Blob([ev.data.slice(13)], {type: "image/jpeg"}));
    if (old) URL.revokeObjectURL(old);
    counts[id] = (counts[id] || 0) + 1;
  };
}"""


def chromium_available() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return Path(CHROMIUM).exists()


def _clip(folder: Path) -> Path:
    """A 320×180 10 fps MPEG-TS clip (cheap to decode 16 times) that the server loops."""
    path = folder / "wall.ts"
    cmd = [
        "ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=10",
        "-t", "10", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "10", "-bf", "0", str(path),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, timeout=120)
    return path


def test_chromium_shows_a_wall_of_16_live_tiles_over_one_socket(tmp_path: Path) -> None:
    require(gstreamer_available(), "GStreamer rtsp-server for /usr/bin/python3 (gir1.2-gst-rtsp-server-1.0)")
    require(redis_available(), "Redis on 127.0.0.1:6379")
    require(postgres_available(), "PostgreSQL on 127.0.0.1:5432")
    require(chromium_available(), "Debian chromium (/usr/bin/chromium) and playwright")
    from playwright.sync_api import sync_playwright

    with ExitStack() as stack:
        db_url = stack.enter_context(postgres_database())
        env = {
            "GRIDPATROL_DATA_DIR": str(tmp_path / "var"),
            "GRIDPATROL_DATABASE_URL": db_url.replace("postgresql+psycopg://", "postgresql://"),
            "GRIDPATROL_SECRET_KEY": "tiles-secret-key-with-at-least-32-characters",
            "GRIDPATROL_REDIS_URL": REDIS_URL,
            "GRIDPATROL_BUS_NAMESPACE": f"tiles-{uuid.uuid4().hex[:8]}:",
            "GRIDPATROL_GATEWAY_PORT": str(free_port()),  # serve's RTSP gateway: not on the shared 8554
        }
        server = stack.enter_context(RtspServer({"/wall": Loop(str(_clip(tmp_path)))}))
        grids, _ = sample.write_files(tmp_path)
        cams = tmp_path / "cams.csv"
        rows = [
            f"墙-{i:02d},{server.url('/wall')},{sample.point_in('G1', 0.05 + 0.055 * i)[0]},{sample.point_in('G1')[1]}"
            for i in range(CAMERAS)
        ]
        cams.write_text("name,url,lon,lat\n" + "\n".join(rows) + "\n", encoding="utf-8")
        # seeded in-process (the CLI's own functions): five CLI processes would cost more than the test
        engine = make_engine(db_url)
        factory = make_session_factory(engine)
        with transaction(factory) as s:
            import_grids(s, json.loads(grids.read_text(encoding="utf-8")))
            register_cameras(s, parse_camera_file(cams))
            for user, grid in (("leader-g1", "G1"), ("leader-g3", "G3")):
                add_user(s, username=user, role=Role.grid_leader, password=sample.PASSWORD, grid_codes=[grid])
        with transaction(factory) as s:
            first = s.scalars(select(Camera.id).where(Camera.name == "墙-00")).one()
            save_zones(s, first, zones_document(dwell_s=60), author=None)
        engine.dispose()

        stack.enter_context(background(["worker"], env, tmp_path / "worker.log"))
        port = free_port()
        base = stack.enter_context(
            serving(["serve", "--port", str(port), "--no-worker", "--no-ticketer"], env, port=port)
        )

        def token(user: str) -> str:
            r = httpx.post(f"{base}/api/auth/token", data={"username": user, "password": sample.PASSWORD})
            assert r.status_code == 200, r.text
            return str(r.json()["access_token"])

        g1, g3 = token("leader-g1"), token("leader-g3")
        listed = httpx.get(f"{base}/api/cameras?limit=100", headers={"Authorization": f"Bearer {g1}"}).json()[
            "items"
        ]
        ids = sorted(c["id"] for c in listed)
        assert len(ids) == CAMERAS

        pw = stack.enter_context(sync_playwright())
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        stack.callback(browser.close)
        context = browser.new_context(viewport={"width": 1366, "height": 768})
        context.add_cookies([{"name": "gp_session", "value": g1, "url": base}])
        page = context.new_page()
        sockets: list[str] = []
        page.on("websocket", lambda ws: sockets.append(ws.url))
        page.goto(f"{base}/healthz")  # a page of the app's origin, turned into the wall
        page.evaluate(WALL_SCRIPT, ids)

        # a safety bound for a loaded machine (16 readers connect, then tiles flow): not the assertion
        deadline = time.monotonic() + 120
        painted = 0
        while True:
            state = page.evaluate(
                """() => ({counts: window.wall.counts, errors: window.wall.errors, closed: window.wall.closed,
                          statuses: window.wall.statuses,
                          painted: [...document.images].filter(i => i.complete && i.naturalWidth > 0).length})"""
            )
            painted = state["painted"]
            if painted == CAMERAS and all(state["counts"].get(str(i), 0) >= 2 for i in ids):
                break
            assert state["closed"] is None and not state["errors"], state
            if time.monotonic() > deadline:
                log = (tmp_path / "worker.log").read_text(errors="replace")[-3000:]
                pytest.fail(
                    f"tiles of {len(state['counts'])}/{CAMERAS} cameras, {painted} painted: {state}\n{log}"
                )
            time.sleep(0.5)
        assert len(sockets) == 1  # one connection carries the whole wall
        sizes = page.evaluate("() => [...document.images].map(i => [i.naturalWidth, i.naturalHeight])")
        assert sizes == [[320, 180]] * CAMERAS
        statuses = page.evaluate("() => window.wall.statuses")
        assert {s["state"] for s in statuses.values()} <= {"online", "reconnecting"} and len(statuses) >= 1
        page.screenshot(path=str(tmp_path / "wall.png"))

        # the same worker's newest frame as a snapshot, with the zones drawn; another grid's leader: 404
        cam = next(c["id"] for c in listed if c["name"] == "墙-00")
        r = httpx.get(
            f"{base}/api/cameras/{cam}/snapshot.jpg?overlay=zones,detections",
            headers={"Authorization": f"Bearer {g1}"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/jpeg" and r.headers["cache-control"] == "no-store"
        picture = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
        assert picture is not None and picture.shape[:2] == (180, 320)
        r = httpx.get(f"{base}/api/cameras/{cam}/snapshot.jpg", headers={"Authorization": f"Bearer {g3}"})
        assert r.status_code == 404
