"""The 消息通知 settings page in Debian's Chromium on the phone layout (390×844): a grid leader adds a
WeCom group robot, sets quiet hours, saves (the key comes back masked, never in a field), sends a test and
sees it in the delivery log. Every request stays on the app's origin."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from api.app import create_app
from api.settings import ApiSettings
from models.bus.memory import MemoryBus
from models.db.engine import make_engine, make_session_factory
from models.db.tables import NotifyChannel, NotifyPreference
from models.evidence.store import FileEvidenceStore
from models.grid.credentials import CredentialKey, CredentialKeyring
from models.tickets.categories import TicketSettings
from models.tickets.desk import TicketDesk
from tests.conftest import TEST_SECRET, seed
from tests.e2e.test_patrol_browser import CHROMIUM, PHONE, Served, Ui, browser
from tests.support.browser import serving_app
from tests.support.require import require, require_module

__all__ = ["browser"]
KEY = "693a91f6-7aaa-4bc4-97a0-0ec2sifa9c1d"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, _sqlite_template: Path) -> Iterator[Served]:
    require(CHROMIUM.exists(), "Debian chromium (/usr/bin/chromium)")
    require_module("playwright.sync_api", "playwright (the dev extra)")
    from tests.support.databases import sqlite_copy

    folder = tmp_path_factory.mktemp("notify-ui")
    factory = make_session_factory(make_engine(sqlite_copy(_sqlite_template, folder)))
    seed(factory, folder)
    keyring = CredentialKeyring(CredentialKey.generate())
    app = create_app(
        ApiSettings(secret_key=TEST_SECRET),
        session_factory=factory,
        desk=TicketDesk(TicketSettings(), evidence=FileEvidenceStore(folder / "evidence")),
        bus=MemoryBus(),
        camera_keyring=lambda: keyring,
    )
    with serving_app(app, name="notify-ui") as port:
        yield Served(f"http://127.0.0.1:{port}", factory, 0)


def test_a_grid_leader_sets_up_a_wecom_robot_on_the_phone(browser: Any, served: Served) -> None:
    ui = Ui(browser, served, "leader-g1", viewport=PHONE, has_touch=True)
    try:
        page = ui.page
        ui.open("#/tickets", "#logout")
        page.get_by_role("link", name="消息通知").click()  # the user menu keeps its links on the phone
        page.wait_for_selector("form.notify-form", timeout=20_000)
        assert "还没有接收渠道" in page.locator("form.notify-form").inner_text()
        page.get_by_label("添加渠道").select_option("wecom")
        page.get_by_role("button", name="添加渠道").click()
        page.get_by_label("名称").fill("桥北网格群")
        page.get_by_label("机器人 Webhook 地址或 key").fill(
            f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}"
        )
        page.fill("input[name=quiet_start]", "22:00")
        page.fill("input[name=quiet_end]", "07:00")
        page.get_by_label("每日汇总").uncheck()
        page.get_by_role("button", name="保存").click()
        page.wait_for_selector("text=已设置 ****9c1d", timeout=15_000)
        assert page.locator("input[type=password]").input_value() == ""
        assert KEY not in page.content()
        page.get_by_role("button", name="发送测试消息").click()
        page.wait_for_selector("table.notify-recent tr[data-state=pending]", timeout=15_000)
        assert "测试消息" in page.locator("table.notify-recent").inner_text()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"the phone page scrolls sideways ({width}px)"
        ui.shot("notifications-phone")
        assert not ui.outside and not ui.errors, (ui.outside, ui.errors)
    finally:
        ui.context.close()
    with served.factory() as s:
        channel = s.scalars(select(NotifyChannel)).one()
        assert (channel.kind, channel.label) == ("wecom", "桥北网格群")
        pref = s.scalars(select(NotifyPreference)).one()
        assert (pref.quiet_start, pref.quiet_end) == ("22:00", "07:00") and "daily_summary" not in pref.kinds


def test_an_admin_sees_a_failed_delivery_and_sends_it_again(browser: Any, served: Served) -> None:
    from models.db.engine import transaction
    from models.db.tables import NotifyDelivery, User

    with transaction(served.factory) as s:
        leader = s.scalars(select(User).where(User.username == "leader-g3")).one()
        channel = NotifyChannel(
            user_id=leader.id, kind="email", label="", address="g3@example.cn", enabled=True
        )
        s.add(channel)
        s.flush()
        row = NotifyDelivery(user_id=leader.id, channel_id=channel.id, kind="overdue", payload={}, state="failed",
                             attempts=8, last_error="SMTP 451")  # fmt: skip
        s.add(row)
        s.flush()
        delivery_id = row.id
    ui = Ui(browser, served, "admin1", viewport={"width": 1366, "height": 768})
    try:
        page = ui.page
        ui.open("#/settings/notifications", f"tr[data-delivery='{delivery_id}']")
        line = page.locator(f"tr[data-delivery='{delivery_id}']")
        assert (
            "leader-g3" in line.inner_text()
            and "SMTP 451" in line.inner_text()
            and "发送失败" in line.inner_text()
        )
        line.get_by_role("button", name="重新发送").click()
        page.wait_for_selector(f"tr[data-delivery='{delivery_id}']", state="detached", timeout=15_000)
        ui.shot("notifications-admin")
        assert not ui.outside and not ui.errors, (ui.outside, ui.errors)
    finally:
        ui.context.close()
    with served.factory() as s:
        got = s.get(NotifyDelivery, delivery_id)
        assert got is not None and (got.state, got.attempts) == ("pending", 0)
