"""The linkage pages in Debian's Chromium (Playwright, ``executable_path=/usr/bin/chromium``): an operator
triages a 12345 case to a grid and a department on the triage desk (1366×768); the department's handler
accepts and resolves their part with a note and a photo on the phone layout (390×844). Every request
stays on the app's origin. Screenshots go to ``$GRIDPATROL_TEST_OUTPUT/screenshots``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from api.app import create_app
from api.settings import ApiSettings
from models.bus.memory import MemoryBus
from models.db.engine import make_engine, make_session_factory, transaction
from models.db.tables import Ticket, TicketPart
from models.evidence.store import FileEvidenceStore
from models.identity.access import load_scope
from models.patrol.settings import PatrolSettings
from models.tickets.categories import TicketSettings
from models.tickets.desk import TicketDesk
from tests.conftest import TEST_SECRET, seed
from tests.e2e.test_patrol_browser import CHROMIUM, DESKTOP, PHONE, Served, Ui, browser
from tests.support import sample
from tests.support.browser import serving_app
from tests.support.org import seed_org
from tests.support.patrol import jpeg, user
from tests.support.require import require, require_module

__all__ = ["browser"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, _sqlite_template: Path) -> Iterator[Served]:
    require(CHROMIUM.exists(), "Debian chromium (/usr/bin/chromium)")
    require_module("playwright.sync_api", "playwright (the dev extra)")
    from tests.support.databases import sqlite_copy

    folder = tmp_path_factory.mktemp("triage-ui")
    factory = make_session_factory(make_engine(sqlite_copy(_sqlite_template, folder)))
    seed(factory, folder)
    seed_org(factory)
    desk = TicketDesk(TicketSettings(), evidence=FileEvidenceStore(folder / "evidence"))
    lon, lat = sample.point_in("G1", 0.4, 0.6)
    with transaction(factory) as s:  # a citizen's call to the 12345 hotline, filed by the centre
        op = user(s, "operator1")
        t, _ = desk.report(s, reporter=op, scope=load_scope(s, op), category="road_occupation", lon=lon, lat=lat,
                           description="12345：商户占道摆摊", source="hotline_12345", may_set_source=True)  # fmt: skip
        ticket_id = t.id
    app = create_app(
        ApiSettings(secret_key=TEST_SECRET),
        session_factory=factory,
        desk=desk,
        bus=MemoryBus(),
        patrol_settings=PatrolSettings(),
    )
    with serving_app(app, name="triage-ui") as port:
        yield Served(f"http://127.0.0.1:{port}", factory, ticket_id)


def test_an_operator_triages_and_the_department_resolves_on_the_phone(browser: Any, served: Served) -> None:
    ticket_id = served.point_id  # the 12345 case
    ui = Ui(browser, served, "operator1", viewport=DESKTOP)
    try:
        page = ui.page
        ui.open("#/triage", f"article[data-ticket='{ticket_id}']")
        card = page.locator(f"article[data-ticket='{ticket_id}']")
        assert "12345" in card.inner_text()
        card.locator("select[name=grid]").select_option("G1")
        card.get_by_label("江北综合执法大队（综合执法（城管））").check()
        card.locator("input[name=note]").fill("请网格长牵头，执法协办")
        ui.shot("triage-desk")
        card.get_by_role("button", name="分流交办").click()
        page.wait_for_selector(f"article[data-ticket='{ticket_id}']", state="detached", timeout=15_000)
        # the ticket's detail shows the joint handling: the lead and the department's part with its state
        ui.open(f"#/tickets/{ticket_id}", "section.linkage ul.parts li")
        linkage = page.locator("section.linkage").inner_text()
        assert "牵头：leader-g1" in linkage and "江北综合执法大队 · 待受理" in linkage, linkage
        assert not ui.outside and not ui.errors, (ui.outside, ui.errors)
    finally:
        ui.context.close()
    with served.factory() as s:
        t = s.get(Ticket, ticket_id)
        assert t is not None and t.state == "dispatched"
        assert [
            p.department.code for p in s.scalars(select(TicketPart).where(TicketPart.ticket_id == ticket_id))
        ] == ["LAW-D1"]

    phone = Ui(browser, served, "law-d1", viewport=PHONE, has_touch=True)
    try:
        page = phone.page
        phone.open("#/department", "article.part-card")
        assert "12345：商户占道摆摊" in page.locator("article.part-card").first.inner_text()
        page.get_by_role("button", name="受理").click()
        page.wait_for_selector("form.part-form")
        page.get_by_label("处置说明").fill("已依法责令撤摊")
        page.set_input_files(
            "input[name=photo]", files=[{"name": "scene.jpg", "mimeType": "image/jpeg", "buffer": jpeg(5)}]
        )
        page.get_by_role("button", name="处置完成").click()
        page.wait_for_selector("article.part-card >> text=已办结", timeout=15_000)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"the phone page scrolls sideways ({width}px)"
        phone.shot("department-phone-resolved")
        assert not phone.outside and not phone.errors, (phone.outside, phone.errors)
    finally:
        phone.context.close()
    with served.factory() as s:
        part = s.scalars(select(TicketPart).where(TicketPart.ticket_id == ticket_id)).one()
        assert part.state == "resolved" and part.note == "已依法责令撤摊" and len(part.photos) == 1
