"""A detection's ticket gets a video clip: a camera served by GStreamer's rtsp-server shows a cart left
in a fire lane; ``gridpatrol serve`` opens the ticket, and the worker's clip of the ``started`` event
(from the packets its reader already reads: no second session at the camera) is linked to the
occurrence, served to the grid's leader with HTTP ranges, and to nobody else.

Short rolls keep it quick: 2 s before the event, 3 s after. The clip's length is asserted in stream
time (pre + post roll, within one GOP of the 1 s GOP of the clip), never in wall-clock time.
"""

from __future__ import annotations

import io
import json
import time
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path

import av
import httpx
import pytest

from gridpatrol.democlip import LeftObject, write_clip, zones_document
from tests.e2e.test_ui_wall_desk import CHROMIUM, shots_dir
from tests.support import sample
from tests.support.browser import LoggedInPage
from tests.support.procs import free_port, run_cli, serving
from tests.support.require import require, require_module
from tests.support.rtsp_server import Clip, RtspServer, gstreamer_available

PRE_S, POST_S, GOP_S = 2.0, 3.0, 1.0
DWELL_S, ARRIVES_S = 5.0, 8.0


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    return write_clip(folder / "fire-lane.mp4", seconds=30, fps=10, left=LeftObject(ARRIVES_S, 30.0))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_ticket_gets_a_playable_clip_of_its_event(db_url: str, clip: Path, tmp_path: Path) -> None:
    require(gstreamer_available(), "GStreamer rtsp-server for /usr/bin/python3 (gir1.2-gst-rtsp-server-1.0)")
    data = tmp_path / "var"
    env = {
        "GRIDPATROL_DATA_DIR": str(data),
        "GRIDPATROL_DATABASE_URL": db_url,
        "GRIDPATROL_SECRET_KEY": "clips-secret-key-with-at-least-32-characters",
        "GRIDPATROL_ANALYSIS_FPS": "4",
        "GRIDPATROL_CLIP_BUFFER_S": "4",
        "GRIDPATROL_CLIP_PRE_S": str(PRE_S),
        "GRIDPATROL_CLIP_POST_S": str(POST_S),
    }
    with ExitStack() as stack:
        server = stack.enter_context(RtspServer({"/fire-lane": Clip(str(clip))}))
        grids, _ = sample.write_files(tmp_path)
        lon, lat = sample.point_in("G1")
        cams = tmp_path / "cams.csv"
        cams.write_text(
            f"name,url,lon,lat\n消防通道-1,{server.url('/fire-lane')},{lon},{lat}\n", encoding="utf-8"
        )
        zones = tmp_path / "zones.json"
        zones.write_text(json.dumps(zones_document(dwell_s=DWELL_S), ensure_ascii=False), encoding="utf-8")
        for args in (
            ["grids", "import", str(grids)],
            ["cameras", "import", str(cams)],
            ["zones", "set", "消防通道-1", str(zones)],
            [
                "users",
                "add",
                "leader-g1",
                "--role",
                "grid_leader",
                "--grid",
                "G1",
                "--password",
                sample.PASSWORD,
            ],
            [
                "users",
                "add",
                "leader-g3",
                "--role",
                "grid_leader",
                "--grid",
                "G3",
                "--password",
                sample.PASSWORD,
            ],
        ):
            result = run_cli(args, env)
            assert result.returncode == 0, result.stderr
        port = free_port()
        base = stack.enter_context(serving(["serve", "--port", str(port)], env, port=port))
        log = data / f"serve-{port}.log"

        def login(user: str) -> dict[str, str]:
            r = httpx.post(f"{base}/api/auth/token", data={"username": user, "password": sample.PASSWORD})
            assert r.status_code == 200, r.text
            return {"Authorization": f"Bearer {r.json()['access_token']}"}

        g1, g3 = login("leader-g1"), login("leader-g3")
        # a safety bound for a loaded machine, not the assertion
        deadline = time.monotonic() + 90
        started: dict | None = None
        states: list[str] = []
        while started is None or started["clip"] == "pending":
            assert time.monotonic() < deadline, (
                f"clip states {states}:\n" + log.read_text(errors="replace")[-3000:]
            )
            time.sleep(0.25)
            items = httpx.get(f"{base}/api/tickets", headers=g1).json()["items"]
            if not items:
                continue
            detail = httpx.get(f"{base}/api/tickets/{items[0]['id']}", headers=g1).json()
            started = next((o for o in detail["occurrences"] if o["kind"] == "started"), None)
            if started is not None and (not states or states[-1] != started["clip"]):
                states.append(started["clip"])
        ticket_id = items[0]["id"]

        assert started["clip"] == "ready", (states, started)
        url = f"{base}{started['clip_url']}"
        whole = httpx.get(url, headers=g1)
        assert whole.status_code == 200, whole.text
        assert whole.headers["content-type"] == "video/mp4"
        assert whole.headers["accept-ranges"] == "bytes"
        with av.open(io.BytesIO(whole.content)) as container:
            stream = container.streams.video[0]
            times = [float(f.time) for f in container.decode(stream)]
        assert len(times) >= 10 * (PRE_S + POST_S) * 0.8  # 10 fps clip
        assert times[0] == 0.0
        assert PRE_S + POST_S - 0.3 <= times[-1] <= PRE_S + POST_S + GOP_S + 0.3
        # the first frame is the pre-roll before the event (at a keyframe at or before it)
        event_at = datetime.fromisoformat(started["at"])
        first_at = datetime.fromisoformat(started["detail"]["clip_started_at"])
        assert PRE_S - 0.3 <= (event_at - first_at).total_seconds() <= PRE_S + GOP_S + 0.3

        # a player seeks with ranges
        part = httpx.get(url, headers={**g1, "Range": "bytes=100-1099"})
        assert part.status_code == 206
        assert part.content == whole.content[100:1100]
        assert part.headers["content-range"] == f"bytes 100-1099/{len(whole.content)}"
        tail = httpx.get(url, headers={**g1, "Range": "bytes=-500"})
        assert tail.status_code == 206 and tail.content == whole.content[-500:]
        for bad in (f"bytes={len(whole.content)}-", "bytes=50-10", "frames=1-2"):
            refused = httpx.get(url, headers={**g1, "Range": bad})
            assert refused.status_code == 416, bad
            assert refused.headers["content-range"] == f"bytes */{len(whole.content)}"

        # another grid's leader: the clip does not exist for them, like the ticket
        assert httpx.get(url, headers=g3).status_code == 404
        assert httpx.get(url, headers={**g3, "Range": "bytes=0-99"}).status_code == 404
        # a key that is not this ticket's clip
        assert (
            httpx.get(f"{base}/api/tickets/{ticket_id}/clips/2026/01/01/x/y.mp4", headers=g1).status_code
            == 404
        )
        metrics = httpx.get(f"{base}/metrics").text
        assert 'gridpatrol_event_clips_total{outcome="linked"} 1.0' in metrics

        # the desk plays it: a <video> in the occurrence's evidence, seekable, in Chromium
        require(CHROMIUM.exists(), "Debian's chromium at /usr/bin/chromium")
        require_module("playwright", "playwright (pip install playwright)")
        from playwright.sync_api import sync_playwright

        playwright = stack.enter_context(sync_playwright())
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        stack.callback(browser.close)
        desk = LoggedInPage(
            browser,
            base,
            "leader-g1",
            out=shots_dir(tmp_path),
            bypass_csp=True,
            viewport={"width": 1280, "height": 1000},
        )
        stack.callback(desk.close)
        desk.open(f"#/tickets/{ticket_id}", "video[data-clip]")
        assert desk.page.inner_text(".evidence.clips").count("事件录像") == 1
        video = desk.page.locator("video[data-clip]")
        video.evaluate("v => { v.muted = true; v.currentTime = 2.5; return v.play(); }")
        desk.page.wait_for_timeout(1500)
        state = video.evaluate(
            "v => ({t: v.currentTime, d: v.duration, ready: v.readyState, error: v.error && v.error.code})"
        )
        assert state["error"] is None, state
        assert state["ready"] >= 2 and state["t"] >= 2.5, state
        assert PRE_S + POST_S - 0.3 <= state["d"] <= PRE_S + POST_S + GOP_S + 0.3, state
        video.evaluate("v => v.pause()")
        video.scroll_into_view_if_needed()
        desk.shot("desk-clip")
        assert desk.errors == [] and desk.outside == []
