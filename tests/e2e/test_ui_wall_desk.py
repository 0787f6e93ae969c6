"""The grid leader's screens in Debian's Chromium (Playwright, ``executable_path=/usr/bin/chromium``) against
``gridpatrol serve`` over real cameras (GStreamer's rtsp-server): a clip with a cart left in a fire lane
and live test patterns, one of them in another leader's grid.

- leader A logs in; the wall shows exactly A's cameras with live tiles whose pixels change; the session
  survives a reload; B's camera id typed into the address bar shows nothing about it; a case raised from
  the current frame goes through the ticket intake (source patrol, the frame attached); logout;
- the single view plays (MSE, or JPEG frames);
- the ticket the detection opened is accepted and resolved in the desk while a second browser's list
  follows without a reload; the phone layout keeps the actions at the bottom;
- a throttled login says so.

Screenshots of each page at 1366×768 and the ticket pages at 390×844 go to ``$GRIDPATROL_SCREENSHOTS``
(default: ``$GRIDPATROL_TEST_OUTPUT/screenshots``, else a temporary folder).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from gridpatrol.democlip import LeftObject, write_clip, zones_document
from models.db.engine import make_engine, make_session_factory, transaction
from models.db.tables import Role
from models.identity.users import add_user
from tests.support import sample
from tests.support.procs import free_port, run_cli, serving
from tests.support.require import require
from tests.support.rtsp_server import Clip, RtspServer, Synthetic, gstreamer_available

CHROMIUM = Path("/usr/bin/chromium")
DESKTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}
#: camera name → (rtsp mount, grid)
CAMERAS = {"消防通道-1": ("/fire-lane", "G1"), "桥北路口": ("/ball", "G1"), "南浦广场": ("/other", "G3")}
WAIT_MS = 60_000
#: leader A (G1), leader B (G3), a street manager over A's grid (the second browser), a patroller who guesses
USERS = {
    "leader-g1": ("grid_leader", ["G1"]),
    "leader-g3": ("grid_leader", ["G3"]),
    "manager-s1": ("manager", ["S1"]),
    "guesser": ("patroller", ["G2"]),
}


def shots_dir(tmp: Path) -> Path:
    env = os.environ.get("GRIDPATROL_SCREENSHOTS")
    if env:
        folder = Path(env)
    elif os.environ.get("GRIDPATROL_TEST_OUTPUT"):
        folder = Path(os.environ["GRIDPATROL_TEST_OUTPUT"]) / "screenshots"
    else:
        folder = tmp / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class Site:
    base: str
    cameras: dict[str, int]
    shots: Path
    browser: Any

    def token(self, user: str) -> dict[str, str]:
        r = httpx.post(f"{self.base}/api/auth/token", data={"username": user, "password": sample.PASSWORD})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    def page(self, viewport: dict[str, int] = DESKTOP) -> Any:
        context = self.browser.new_context(viewport=viewport, locale="zh-CN", timezone_id="Asia/Shanghai")
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.errors = errors  # type: ignore[attr-defined]
        return page

    def login(self, page: Any, user: str, *, password: str = sample.PASSWORD) -> None:
        page.goto(f"{self.base}/#/login")
        page.fill("input[name=username]", user)
        page.fill("input[name=password]", password)
        page.click("form.login-card button[type=submit]")

    def shot(self, page: Any, name: str) -> None:
        page.wait_for_timeout(300)  # let the last paint land
        page.screenshot(path=str(self.shots / f"{name}.png"))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    require(gstreamer_available(), "GStreamer rtsp-server for /usr/bin/python3 (gir1.2-gst-rtsp-server-1.0)")
    require(CHROMIUM.exists(), "Debian's chromium at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    folder = tmp_path_factory.mktemp("ui")
    clip = write_clip(folder / "fire-lane.mp4", seconds=60, fps=10, left=LeftObject(6.0, 60.0))
    env = {
        "GRIDPATROL_DATA_DIR": str(folder / "var"),
        "GRIDPATROL_DATABASE_URL": f"sqlite:///{folder / 'ui.db'}",
        "GRIDPATROL_SECRET_KEY": "ui-test-secret-key-with-at-least-32-characters",
        "GRIDPATROL_ANALYSIS_FPS": "4",
        "GRIDPATROL_GATEWAY_PORT": str(free_port()),  # the single view's media hub, on a port of its own
    }
    mounts = {
        "/fire-lane": Clip(str(clip)),
        "/ball": Synthetic(fps=10),
        "/other": Synthetic(fps=10, pattern="smpte"),
    }
    with ExitStack() as stack:
        server = stack.enter_context(RtspServer(mounts))
        grids, _ = sample.write_files(folder)
        rows = ["name,url,lon,lat"]
        for name, (mount, grid) in CAMERAS.items():
            lon, lat = sample.point_in(grid, 0.3 if mount == "/ball" else 0.5)
            rows.append(f"{name},{server.url(mount)},{lon},{lat}")
        (folder / "cams.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        zones = json.dumps(zones_document(dwell_s=4.0), ensure_ascii=False)
        (folder / "zones.json").write_text(zones, encoding="utf-8")
        for args in (
            ["grids", "import", str(grids)],
            ["cameras", "import", str(folder / "cams.csv")],
            ["zones", "set", "消防通道-1", str(folder / "zones.json")],
        ):
            result = run_cli(args, env)
            assert result.returncode == 0, result.stderr
        engine = make_engine(env["GRIDPATROL_DATABASE_URL"])  # users in-process: each CLI start costs seconds
        with transaction(make_session_factory(engine)) as session:
            for username, (role, codes) in USERS.items():
                add_user(
                    session, username=username, role=Role(role), password=sample.PASSWORD, grid_codes=codes
                )
        engine.dispose()
        port = free_port()
        base = stack.enter_context(serving(["serve", "--port", str(port)], env, port=port))
        site = Site(base=base, cameras={}, shots=shots_dir(folder), browser=None)
        for user in ("leader-g1", "leader-g3"):
            listed = httpx.get(f"{base}/api/cameras", headers=site.token(user)).json()["items"]
            site.cameras |= {c["name"]: c["id"] for c in listed}
        assert set(site.cameras) == set(CAMERAS), site.cameras
        playwright = stack.enter_context(sync_playwright())
        site.browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        stack.callback(site.browser.close)
        yield site


TILE_PIXELS = """(id) => {
  const img = document.querySelector(`.tile[data-camera="${id}"] img`);
  if (!img || img.hidden || !img.complete || !img.naturalWidth) return null;
  const c = document.createElement("canvas");
  c.width = 64; c.height = 36;
  const g = c.getContext("2d");
  g.drawImage(img, 0, 0, 64, 36);
  return Array.from(g.getImageData(0, 0, 64, 36).data).join(",");
}"""


def wait_for(page: Any, what: str, check: Callable[[], Any], *, within_s: float = 60) -> Any:
    """Poll ``check`` until truthy; the bound is for a loaded machine, not the assertion."""
    deadline = time.monotonic() + within_s
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {within_s:.0f}s; page errors: {page.errors}")
        page.wait_for_timeout(500)


def test_wall_shows_exactly_the_leaders_live_cameras(site: Site) -> None:
    page = site.page()
    site.login(page, "leader-g1")
    page.wait_for_url("**/#/wall")
    page.wait_for_selector(".tree [data-camera]")
    names = sorted(page.locator(".tree .cam[data-camera]").all_inner_texts())
    assert names == ["桥北路口", "消防通道-1"], names  # A's two cameras, not B's
    ball = site.cameras["桥北路口"]
    assert page.locator(f'.tile[data-camera="{site.cameras["南浦广场"]}"]').count() == 0
    # live tiles: the picture arrives and its pixels change
    first = wait_for(page, "a first tile", lambda: page.evaluate(TILE_PIXELS, ball))
    wait_for(page, "a changed tile", lambda: (p := page.evaluate(TILE_PIXELS, ball)) and p != first)
    page.wait_for_selector(f'.tile[data-camera="{ball}"] .st-online')
    assert page.locator(f'.tile[data-camera="{ball}"] .word').inner_text() == "在线"
    site.shot(page, "wall-1366x768")

    # the session survives a reload
    page.reload()
    page.wait_for_selector(".tree [data-camera]")
    assert "leader-g1" in page.locator(".topbar .who").inner_text()

    # B's camera typed into the address bar: nothing about it
    other = site.cameras["南浦广场"]
    page.goto(f"{site.base}/#/live/{other}")
    page.wait_for_selector(".notice.error")
    body = page.locator("main").inner_text()
    assert "未找到" in body and "南浦广场" not in body and "G3" not in body
    assert page.locator("video, .player img").count() == 0

    # raise a case from the current frame (the tour's 上报案件): the intake, source patrol, frame attached
    page.goto(f"{site.base}/#/wall")
    page.wait_for_selector(f'.tile[data-camera="{ball}"] img:not([hidden])')
    page.click("#tour")
    assert page.locator("#tour").get_attribute("aria-pressed") == "true"
    page.click(f'.tile[data-camera="{ball}"] button.report')
    dialog = page.locator("dialog.report-dialog")
    dialog.locator("select[name=category]").select_option("road_occupation")
    dialog.locator("img.report-frame").wait_for()
    site.shot(page, "wall-report-1366x768")
    dialog.locator("button[type=submit]").click()
    page.wait_for_selector(".toast-ok")
    page.click("#tour")
    headers = site.token("leader-g1")
    mine = httpx.get(
        f"{site.base}/api/tickets", params={"category": "road_occupation"}, headers=headers
    ).json()["items"]
    reported = [t for t in mine if t["source"] == "patrol"]
    assert len(reported) == 1, mine
    detail = httpx.get(f"{site.base}/api/tickets/{reported[0]['id']}", headers=headers).json()
    assert detail["grid_code"] == "G1" and "桥北路口" in detail["description"]
    assert len(detail["photo_urls"]) == 1
    assert (
        httpx.get(f"{site.base}{detail['photo_urls'][0]}", headers=headers).headers["content-type"]
        == "image/jpeg"
    )

    # the tour (轮巡) walks the cameras page by page: one camera per page, every 5 s
    page.click('.wall-bar button[aria-label="画面分割 1"]')
    page.fill(".wall-bar input[type=number]", "5")
    page.dispatch_event(".wall-bar input[type=number]", "change")
    first_shown = page.locator(".tile[data-camera]").get_attribute("data-camera")
    page.click("#tour")
    page.wait_for_function(
        "(id) => { const t = document.querySelector('.tile[data-camera]'); return t && t.dataset.camera !== id; }",
        arg=first_shown,
    )
    assert (
        "第 2/2 页" in page.locator(".wall-bar").inner_text()
        or "第 1/2 页" in page.locator(".wall-bar").inner_text()
    )
    page.click("#tour")

    # English as the second language, Chinese back
    page.select_option(".topbar select.lang", "en")
    page.wait_for_selector(".topbar nav a:text('Tickets')")
    page.select_option(".topbar select.lang", "zh-CN")
    page.wait_for_selector(".topbar nav a:text('工单')")

    # logout: back to the login page, and the wall asks for a login again
    page.click("#logout")
    page.wait_for_selector("form.login-card")
    page.goto(f"{site.base}/#/wall")
    page.wait_for_selector("form.login-card")
    assert not page.errors, page.errors
    page.context.close()


def test_single_view_plays(site: Site) -> None:
    page = site.page()
    site.login(page, "leader-g1")
    page.wait_for_url("**/#/wall")
    cam = site.cameras["桥北路口"]
    page.goto(f"{site.base}/#/live/{cam}")
    page.wait_for_selector(".live aside h1")
    assert page.locator(".live aside h1").inner_text() == "桥北路口"
    # H.264 plays through Media Source Extensions in Chromium: the video's clock advances
    page.wait_for_function(
        "() => { const v = document.querySelector('.player video'); return v && v.currentTime > 0.5; }"
    )
    assert page.locator(".player .mode").inner_text() == "直连视频（MSE）"
    assert page.locator(".live aside").inner_text().count("消防通道堵塞") == 0  # this camera has no ticket
    site.shot(page, "live-1366x768")
    page.context.close()


def _ticket_from_detection(site: Site) -> dict[str, Any]:
    headers = site.token("leader-g1")
    deadline = time.monotonic() + 120  # the cart stands from 6 s; a bound for a loaded machine
    while True:
        items = httpx.get(
            f"{site.base}/api/tickets", params={"category": "fire_lane_blockage"}, headers=headers
        ).json()["items"]
        found = [t for t in items if t["source"] == "camera"]
        if found:
            return found[0]
        assert time.monotonic() < deadline, "the detection opened no ticket"
        time.sleep(1)


def test_desk_accepts_and_resolves_while_another_browser_follows(site: Site) -> None:
    ticket = _ticket_from_detection(site)
    assert ticket["state"] == "dispatched" and ticket["assignee"] == "leader-g1"
    leader = site.page()
    watcher = site.page()
    site.login(watcher, "manager-s1")
    watcher.wait_for_url("**/#/wall")
    watcher.goto(f"{site.base}/#/tickets")
    row = watcher.locator(f'.rows li[data-ticket="{ticket["id"]}"]')
    row.wait_for()
    assert "待受理" in row.inner_text()
    watcher.wait_for_selector(".live-word.ok")

    site.login(leader, "leader-g1")
    leader.wait_for_url("**/#/wall")
    leader.goto(f"{site.base}/#/tickets/{ticket['id']}")
    leader.wait_for_selector(".detail .ticket-head h1")
    evidence = leader.locator(".detail img.main-evidence")
    evidence.wait_for()
    # the evidence image opens in an <img> with the session cookie alone
    leader.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=evidence.element_handle())
    assert leader.locator(".ticket-actions button").all_inner_texts() == ["受理", "退回"]
    site.shot(leader, "ticket-detail-1366x768")
    leader.click('.ticket-actions button[data-action="accept"]')
    leader.wait_for_selector('.ticket-head .badge:text("处置中")')
    # the other browser's list follows without a reload
    watcher.wait_for_function(
        "(id) => (document.querySelector(`.rows li[data-ticket=\"${id}\"]`) || {}).innerText?.includes('处置中')",
        arg=ticket["id"],
    )

    # a refused move shows the server's reason (a grid leader may not verify), through the page's own client
    reason = leader.evaluate(
        """async (id) => { const { Api } = await import('/api.js');
           try { await new Api().post(`/api/tickets/${id}/transitions`, {action: 'verify'}); return null; }
           catch (e) { return e.message_for_user(); } }""",
        ticket["id"],
    )
    assert reason and reason.startswith("无权操作") and "verify" in reason, reason

    # resolve with a note and a photo from the phone (the buttons fixed at the bottom)
    phone = site.page(PHONE)
    site.login(phone, "leader-g1")
    phone.wait_for_url("**/#/wall")
    phone.goto(f"{site.base}/#/tickets")
    phone.locator(f'.rows li[data-ticket="{ticket["id"]}"] a').click()
    phone.wait_for_selector(".ticket-actions")
    assert not phone.locator(".desk .list").is_visible()  # the detail is full-screen
    bar = phone.locator(".ticket-actions").bounding_box()
    assert bar is not None and bar["y"] + bar["height"] >= PHONE["height"] - 2  # fixed at the bottom
    photo = cv2.imencode(".jpg", np.full((120, 160, 3), (40, 160, 40), np.uint8))[1].tobytes()
    phone.fill(".ticket-actions textarea[name=note]", "已清理，通道畅通")
    phone.set_input_files(
        ".ticket-actions input[type=file]",
        files=[{"name": "scene.jpg", "mimeType": "image/jpeg", "buffer": photo}],
    )
    site.shot(phone, "ticket-detail-390x844")
    phone.click('.ticket-actions button[data-action="resolve"]')
    phone.wait_for_selector('.ticket-head .badge:text("待核查")')
    timeline = phone.locator(".timeline").inner_text()
    assert "处置完成" in timeline and "已清理，通道畅通" in timeline and "leader-g1" in timeline
    assert phone.locator(".timeline img").count() >= 1
    watcher.wait_for_function(
        "(id) => (document.querySelector(`.rows li[data-ticket=\"${id}\"]`) || {}).innerText?.includes('待核查')",
        arg=ticket["id"],
    )
    site.shot(watcher, "tickets-1366x768")
    phone.goto(f"{site.base}/#/tickets")
    phone.wait_for_selector(".rows li[data-ticket]")
    site.shot(phone, "tickets-390x844")
    phone.goto(f"{site.base}/#/tickets/new")
    phone.wait_for_selector("form.new-case")
    assert phone.locator("form.new-case input[type=file]").get_attribute("capture") == "environment"
    site.shot(phone, "ticket-new-390x844")
    for p in (leader, watcher, phone):
        assert not p.errors, p.errors
        p.context.close()


def test_throttled_login_says_so(site: Site) -> None:
    page = site.page()
    for _ in range(5):
        site.login(page, "guesser", password="wrong-password")
        page.wait_for_selector("#login-error:text('用户名或密码错误')")
        page.locator("#login-error").evaluate("(el) => (el.textContent = '')")
    site.login(page, "guesser", password="wrong-password")
    message = page.locator("#login-error")
    message.wait_for()
    page.wait_for_function(
        "() => document.querySelector('#login-error').textContent.includes('登录失败次数过多')"
    )
    assert "后再试" in message.inner_text()
    site.shot(page, "login-throttled-1366x768")
    page.context.close()
