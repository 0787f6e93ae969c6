"""The zone editor, the dashboard with the grid map and the administration pages in Debian's Chromium
(Playwright, ``executable_path=/usr/bin/chromium``) against the app served by uvicorn:

- an operator draws a fire lane on the camera picture, previews it on a recorded clip (the workers'
  pipeline) and sees the rule fire with its boxes, saves it, and finds it after a reload;
- the dashboard (ECharts trend, ranking with its formula) and the map (Leaflet, grid polygons) render;
- with the browser's network restricted to the app's origin every page loads completely and nothing
  else was even attempted; the vendored axe-core finds no unlabelled form control or button.

Screenshots at 1366×768 go to ``$GRIDPATROL_TEST_OUTPUT/screenshots`` (default /tmp/gridpatrol-test-output).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from api.app import create_app
from api.settings import ApiSettings
from detectors.backends import ClassicConfig
from gridpatrol.democlip import FIRE_LANE, LeftObject, write_clip
from gridpatrol.zone_preview import ZonePreviewService
from models.bus.memory import MemoryBus
from models.db.engine import make_engine, make_session_factory
from models.db.tables import Camera
from models.evidence.store import FileEvidenceStore
from models.grid.credentials import CredentialKey, CredentialKeyring
from models.tickets.categories import TicketSettings
from models.tickets.desk import TicketDesk
from tests.api.test_dashboard_api import seed_tickets
from tests.conftest import TEST_SECRET, seed
from tests.support.browser import LoggedInPage, serving_app
from tests.support.databases import sqlite_copy
from tests.support.require import require, require_module

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
VIEWPORT = {"width": 1366, "height": 768}
OUT = Path(os.environ.get("GRIDPATROL_TEST_OUTPUT", "/tmp/gridpatrol-test-output")) / "screenshots"
#: what the accessibility pass checks: every form control and button has a name screen readers read
AXE_RULES = [
    "label",
    "button-name",
    "select-name",
    "input-button-name",
    "link-name",
    "image-alt",
    "aria-input-field-name",
    "aria-toggle-field-name",
]
#: every page of the UI (both parts), as an admin sees them; {cam}: a camera id
PAGES = [
    "#/wall", "#/tickets", "#/tickets/new", "#/live/{cam}", "#/zones/{cam}", "#/dashboard", "#/map",
    "#/admin/users", "#/admin/cameras", "#/admin/grants", "#/admin/tokens", "#/admin/audit", "#/password",
]  # fmt: skip


@dataclass
class Served:
    base: str
    camera_id: int


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, _sqlite_template: Path) -> Iterator[Served]:
    require(CHROMIUM.exists(), "Debian chromium (/usr/bin/chromium)")
    require_module("playwright.sync_api", "playwright (the dev extra)")
    folder = tmp_path_factory.mktemp("ui-b")
    factory = make_session_factory(make_engine(sqlite_copy(_sqlite_template, folder)))
    seed(factory, folder)
    seed_tickets(factory)
    with factory() as s:
        camera_id = s.scalars(select(Camera.id).where(Camera.name == "cam-g1-a")).one()
    clips = folder / "clips"
    write_clip(clips / "cart-in-lane.mp4", seconds=26, fps=5, left=LeftObject(6.0, 20.0))
    previewer = ZonePreviewService(
        clips_dir=clips, backend=ClassicConfig(), session_factory=factory, tz=ZoneInfo("Asia/Shanghai")
    )
    keyring = CredentialKeyring(CredentialKey.generate())
    desk = TicketDesk(TicketSettings(), evidence=FileEvidenceStore(folder / "evidence"))
    app = create_app(
        ApiSettings(secret_key=TEST_SECRET),
        session_factory=factory,
        desk=desk,
        bus=MemoryBus(),
        zone_previewer=previewer,
        camera_keyring=lambda: keyring,
    )
    with serving_app(app, name="ui-b") as port:
        yield Served(f"http://127.0.0.1:{port}", camera_id)


@pytest.fixture(scope="module")
def browser(served: Served) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield b
        finally:
            b.close()


class Session(LoggedInPage):
    """One logged-in page of this module's app at 1366×768, console errors counted as errors."""

    def __init__(self, browser: Any, served: Served, username: str) -> None:
        super().__init__(browser, served.base, username, out=OUT, console_errors=True, viewport=VIEWPORT)


def test_operator_draws_previews_saves_and_finds_the_zone(browser: Any, served: Served) -> None:
    ui = Session(browser, served, "operator1")
    try:
        page = ui.page
        ui.open(f"#/zones/{served.camera_id}", "canvas.ze-canvas")
        page.get_by_role("button", name="新建区域", exact=True).click()
        box = page.locator("canvas.ze-canvas").bounding_box()
        assert box is not None and box["width"] > 300
        for x, y in FIRE_LANE:  # draw the lane with the mouse, then close it
            page.mouse.click(box["x"] + x * box["width"], box["y"] + y * box["height"])
        page.get_by_role("button", name="闭合", exact=True).click()
        page.fill("#zone-name", "消防通道")
        for field, value in (("#p-dwell_s", "5"), ("#p-coverage", "0.05"), ("#p-clear_s", "3")):
            page.fill(field, value)
            page.dispatch_event(field, "change")
        assert page.locator("#preview-source option").first.inner_text().endswith("cart-in-lane.mp4")
        page.click("#zones-preview")
        page.wait_for_selector(".ze-events li", timeout=90_000)
        events = page.locator(".ze-events li").all_inner_texts()
        assert len(events) == 2 and "开始 · 消防通道堵塞 · 消防通道" in events[0] and "结束" in events[1], (
            events
        )
        assert page.locator(".ze-preview-out figure img").count() == 1  # the annotated frame of the firing
        ui.shot("b-zone-editor-preview")
        page.click("#zones-save")
        page.wait_for_selector("text=当前版本 1", timeout=10_000)
        page.reload()
        page.wait_for_selector("text=当前版本 1 · operator1", timeout=20_000)
        assert page.locator(".ze-zone").all_inner_texts() == ["消防通道 · 消防通道"]
        vertices = page.input_value("#zone-vertices").splitlines()
        got = [tuple(float(v) for v in line.split(",")) for line in vertices]
        assert len(got) == 4 and all(
            abs(a - b) < 0.02 for p, q in zip(got, FIRE_LANE, strict=True) for a, b in zip(p, q, strict=True)
        )
        assert page.input_value("#p-dwell_s") == "5"
        assert ui.outside == [], ui.outside
    finally:
        ui.close()


def test_dashboard_and_map_render(browser: Any, served: Served) -> None:
    ui = Session(browser, served, "admin1")
    try:
        page = ui.page
        ui.open("#/dashboard", "#trend-chart canvas")
        page.wait_for_selector("#grid-map path.leaflet-interactive")
        assert page.locator("#grid-map path.leaflet-interactive").count() >= 3  # the three grids
        assert page.locator("#grid-map .leaflet-tile").count() == 0  # no base map unless configured
        assert "Σ(权重 × 得分率)" in page.inner_text("#ranking-formula")  # the evaluation's formula, as in the reports
        assert page.locator(".big-numbers li").first.inner_text().startswith("4")  # today's new tickets
        ui.shot("b-dashboard")
        ui.open("#/map", "#grid-map path.leaflet-interactive")
        page.wait_for_selector("#grid-map path.leaflet-interactive >> nth=2")
        assert "桥北第一网格（G1）" in page.inner_text(".map-side")
        ui.shot("b-map")
        ui.open("#/admin/users", ".admin-body table")
        ui.shot("b-admin-users")
        ui.open("#/admin/cameras", ".admin-body table")
        page.fill("#ci-text", "name,url,lon,lat\ncam-imported,rtsp://u:p@10.0.0.7/s,118.705,32.105\n")
        page.get_by_role("button", name="导入", exact=True).click()
        page.wait_for_selector("text=导入完成：新建 1 个，更新 0 个")
        page.wait_for_selector("td:text-is('cam-imported')")
        ui.shot("b-admin-cameras")
        ui.open("#/admin/audit", ".admin-body table")
        assert page.get_attribute("text=导出 CSV", "href").startswith("/api/audit.csv")
        ui.shot("b-admin-audit")
        assert ui.outside == [], ui.outside
    finally:
        ui.close()


def test_every_page_loads_offline_with_labels(browser: Any, served: Served) -> None:
    ui = Session(browser, served, "admin1")
    unlabelled: dict[str, list[str]] = {}
    try:
        page = ui.page
        for hash_ in PAGES:
            url = hash_.format(cam=served.camera_id)
            page.goto(f"{ui.base}/{url}")
            page.wait_for_load_state("load")  # not networkidle: the ticket desk's SSE stays open
            page.wait_for_selector("#page .page > *", timeout=20_000)
            assert page.locator("#page [role=alert].notice.error").count() == 0, (
                url,
                page.inner_text("#page"),
            )
            if page.evaluate("typeof window.axe") == "undefined":
                page.add_script_tag(url="/vendor/axe-core/axe.min.js")  # this origin's copy (CSP: no inline)
            result = page.evaluate(
                "rules => axe.run(document, {runOnly: {type: 'rule', values: rules}}).then(r => ({"
                "violations: r.violations.map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(' | ')),"
                "checked: r.passes.reduce((n, p) => n + p.nodes.length, 0)}))",
                AXE_RULES,
            )
            assert result["checked"] > 3, (url, result)  # the rules did look at this page's controls
            result = result["violations"]
            if result:
                unlabelled[url] = result
            name = url.strip("#/").replace("/", "-").replace(str(served.camera_id), "cam")
            ui.shot(f"page-{name}")
        assert ui.outside == [], f"requests to other origins: {ui.outside}"
        assert not unlabelled, json.dumps(unlabelled, ensure_ascii=False, indent=1)
    finally:
        ui.close()


def test_vendored_libraries_are_served_as_pinned(served: Served) -> None:
    """The UI loads Leaflet, ECharts and axe-core from this origin, byte for byte as the manifest pins them."""
    import hashlib

    import httpx

    vendor = Path(__file__).resolve().parents[2] / "api" / "web" / "vendor"
    ui = json.loads((vendor / "manifest.json").read_text(encoding="utf-8"))["ui"]
    assert sorted(ui) == ["axe-core", "echarts", "leaflet"]
    for package, entry in ui.items():
        assert any(name.startswith("LICENSE") for name in entry["files"]), package
        for name, digest in entry["files"].items():
            r = httpx.get(f"{served.base}/vendor/{package}/{name}")
            assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == digest, (package, name)
