"""The patroller's phone page in Debian's Chromium (Playwright, ``executable_path=/usr/bin/chromium``) at
390×844 with an emulated position: today's task with its distance, a check-in with a photo from the
"camera" (a file input), the accuracy recorded; the operator's patrol points and the evaluation page
render at 1366×768. Every request stays on the app's origin. Screenshots go to
``$GRIDPATROL_TEST_OUTPUT/screenshots`` (default /tmp/gridpatrol-test-output)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.settings import ApiSettings
from models.bus.memory import MemoryBus
from models.db.engine import make_engine, make_session_factory
from models.db.tables import CheckIn
from models.evidence.store import FileEvidenceStore
from models.patrol.settings import PatrolSettings
from models.tickets.categories import TicketSettings
from models.tickets.desk import TicketDesk
from tests.conftest import TEST_SECRET, seed
from tests.support.browser import LoggedInPage, serving_app
from tests.support.databases import sqlite_copy
from tests.support.patrol import jpeg, make_point, point
from tests.support.require import require, require_module

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1366, "height": 768}
OUT = Path(os.environ.get("GRIDPATROL_TEST_OUTPUT", "/tmp/gridpatrol-test-output")) / "screenshots"


@dataclass
class Served:
    base: str
    factory: sessionmaker[Session]
    point_id: int


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, _sqlite_template: Path) -> Iterator[Served]:
    require(CHROMIUM.exists(), "Debian chromium (/usr/bin/chromium)")
    require_module("playwright.sync_api", "playwright (the dev extra)")
    require((Path(__file__).parents[2] / "api/web/app.js").exists(), "the web UI shell (api/web/app.js)")
    folder = tmp_path_factory.mktemp("patrol-ui")
    factory = make_session_factory(make_engine(sqlite_copy(_sqlite_template, folder)))
    seed(factory, folder)
    point_id = make_point(
        factory,
        "G2",
        name="桥北菜场东门",
        radius_m=80,
        window_start="00:00",
        window_end="23:59",
        checklist="占道经营",
    )
    desk = TicketDesk(TicketSettings(), evidence=FileEvidenceStore(folder / "evidence"))
    app = create_app(
        ApiSettings(secret_key=TEST_SECRET),
        session_factory=factory,
        desk=desk,
        bus=MemoryBus(),
        patrol_settings=PatrolSettings(),
    )
    with serving_app(app, name="patrol-ui") as port:
        yield Served(f"http://127.0.0.1:{port}", factory, point_id)


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


class Ui(LoggedInPage):
    """One logged-in page of this module's app (full-page screenshots)."""

    def __init__(self, browser: Any, served: Served, username: str, **context: Any) -> None:
        super().__init__(browser, served.base, username, out=OUT, full_page=True, **context)


def test_a_patroller_checks_in_with_a_photo_on_the_phone(browser: Any, served: Served) -> None:
    p = point(served.factory, served.point_id)
    here = {"longitude": p.lon, "latitude": p.lat + 0.0003, "accuracy": 9}  # 33 m north of the point
    ui = Ui(
        browser,
        served,
        "patroller-g2",
        viewport=PHONE,
        geolocation=here,
        permissions=["geolocation"],
        has_touch=True,
    )
    try:
        page = ui.page
        ui.open("#/patrol", "li.patrol-task")
        assert "桥北菜场东门" in page.locator("li.patrol-task").first.inner_text()
        page.get_by_role("button", name="获取当前位置").click()
        page.wait_for_selector("text=精度 9 米", timeout=15_000)
        page.wait_for_selector("li.patrol-task >> text=距离 33 米", timeout=15_000)
        ui.shot("patrol-phone-tasks")
        page.get_by_role("button", name="查看 桥北菜场东门").click()
        page.wait_for_selector("form.checkin-form")
        page.set_input_files(
            "#checkin-photo", files=[{"name": "scene.jpg", "mimeType": "image/jpeg", "buffer": jpeg(3)}]
        )
        page.get_by_role("button", name="签到", exact=True).click()
        page.wait_for_selector("#checkin-done", timeout=15_000)
        assert "距离 33 米" in page.inner_text("#checkin-done") and "定位精度 9 米" in page.inner_text(
            "#checkin-done"
        )
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"the phone page scrolls sideways ({width}px)"
        ui.shot("patrol-phone-checked-in")
        assert not ui.outside and not ui.errors, (ui.outside, ui.errors)
    finally:
        ui.context.close()
    with served.factory() as s:
        rows = s.scalars(select(CheckIn)).all()
        assert (
            len(rows) == 1
            and rows[0].accuracy_m == 9
            and round(rows[0].distance_m) == 33
            and rows[0].photo_key
        )


def test_points_and_evaluation_render_for_an_operator(browser: Any, served: Served) -> None:
    ui = Ui(browser, served, "operator1", viewport=DESKTOP)
    try:
        ui.open("#/patrol/points", f"tr[data-point-id='{served.point_id}']")
        ui.page.wait_for_selector("#points-map .leaflet-interactive")
        ui.shot("patrol-points")
        ui.open("#/evaluation", "#eval-table table")
        ui.page.wait_for_selector("tr[data-code='G2']")
        ui.page.get_by_role("button", name="生成通报", exact=True).click()
        ui.page.wait_for_selector("#report-list li", timeout=20_000)
        ui.shot("evaluation")
        assert not ui.outside and not ui.errors, (ui.outside, ui.errors)
    finally:
        ui.context.close()


#: what the accessibility pass checks (as tests/e2e/test_ui_b.py): every control has a name screen readers read
AXE_RULES = [
    "label",
    "button-name",
    "select-name",
    "input-button-name",
    "link-name",
    "image-alt",
    "aria-input-field-name",
]


def unlabelled(page: Any) -> list[str]:
    if page.evaluate("typeof window.axe") == "undefined":
        page.add_script_tag(url="/vendor/axe-core/axe.min.js")  # this origin's copy (CSP: no inline)
    result = page.evaluate(
        "rules => axe.run(document, {runOnly: {type: 'rule', values: rules}}).then(r => ({"
        "violations: r.violations.map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(' | ')),"
        "checked: r.passes.reduce((n, p) => n + p.nodes.length, 0)}))",
        AXE_RULES,
    )
    assert result["checked"] > 3, result  # the rules did look at the page's controls
    return list(result["violations"])


def test_the_patrol_pages_label_every_control(browser: Any, served: Served) -> None:
    found: dict[str, list[str]] = {}
    ui = Ui(browser, served, "operator1", viewport=DESKTOP)
    try:
        for hash_, ready in [("#/patrol/points", "#point-new"), ("#/evaluation", "#eval-table table")]:
            ui.open(hash_, ready)
            if hash_ == "#/patrol/points":
                ui.page.click("#point-new")
                ui.page.wait_for_selector("#point-form-h")
            found[hash_] = unlabelled(ui.page)
    finally:
        ui.context.close()
    phone = Ui(browser, served, "patroller-g2", viewport=PHONE)
    try:
        phone.open("#/patrol", "li.patrol-task")
        phone.page.get_by_role("button", name="查看 桥北菜场东门").click()
        phone.page.wait_for_selector(".patrol-detail")
        found["#/patrol"] = unlabelled(phone.page)
    finally:
        phone.context.close()
    assert not any(found.values()), found
