"""/api/me/notifications (own channels, subscriptions, quiet hours, a test send) and the administrators'
view of deliveries: secrets never come back, bad input is a 422 naming the field, a stale save is a 409."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.settings import ApiSettings
from models.bus.memory import MemoryBus
from models.db.engine import transaction
from models.db.tables import NotifyChannel, NotifyDelivery
from models.grid.credentials import CredentialKey, CredentialKeyring
from models.tickets.desk import TicketDesk
from tests.conftest import TEST_SECRET
from tests.support import sample

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
KEY = "693a91f6-7aaa-4bc4-97a0-0ec2sifa5aaa"


@pytest.fixture
def api(seeded: sessionmaker[Session], desk: TicketDesk) -> Iterator[TestClient]:
    keyring = CredentialKeyring(CredentialKey.generate())
    app = create_app(
        ApiSettings(secret_key=TEST_SECRET), session_factory=seeded, desk=desk, bus=MemoryBus(), camera_keyring=lambda: keyring
    )
    with TestClient(app) as c:
        yield c


@pytest.fixture
def login(api: TestClient) -> Callable[[str], dict[str, str]]:
    def headers(username: str) -> dict[str, str]:
        r = api.post("/api/auth/token", data={"username": username, "password": sample.PASSWORD})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    return headers


def _body(version: int = 0, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "version": version,
        "kinds": ["assigned", "escalated", "overdue"],
        "quiet_start": "22:00",
        "quiet_end": "07:00",
        "timezone": "Asia/Shanghai",
        "urgent_in_quiet": True,
        "channels": [
            {"kind": "wecom", "label": "网格群", "key": f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}"},
            {"kind": "email", "address": "leader@grid.example.gov.cn"},
        ],
    }
    body.update(changes)
    return body


@SQLITE_ONLY
def test_own_settings_round_trip_without_returning_secrets(
    api: TestClient, login: Callable[[str], dict[str, str]], seeded: sessionmaker[Session]
) -> None:
    h = login("leader-g1")
    r = api.get("/api/me/notifications", headers=h)
    assert r.status_code == 200
    got = r.json()
    assert got["version"] == 0 and got["channels"] == [] and got["quiet_start"] is None
    assert [k["kind"] for k in got["available_kinds"]] == got["kinds"]  # every kind by default
    assert len(got["kinds"]) == 7 and "camera_offline" in got["kinds"]

    r = api.put("/api/me/notifications", headers=h, json=_body())
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["version"] == 1 and got["quiet_start"] == "22:00"
    wecom, mail = got["channels"]
    assert wecom["secrets"] == {"key": "****5aaa"} and wecom["address"] == ""
    assert mail["address"] == "leader@grid.example.gov.cn" and mail["secrets"] == {}
    assert KEY not in r.text
    with seeded() as s:
        stored = s.scalars(select(NotifyChannel.secret).where(NotifyChannel.kind == "wecom")).one()
    assert stored is not None and stored.startswith("gpenc:") and KEY not in stored

    # the key left out is kept; a channel left out is removed; the old version is refused
    keep = _body(version=1, channels=[{"id": wecom["id"], "kind": "wecom", "label": "新名字"}])
    r = api.put("/api/me/notifications", headers=h, json=keep)
    assert r.status_code == 200, r.text
    assert [(c["label"], c["secrets"]) for c in r.json()["channels"]] == [("新名字", {"key": "****5aaa"})]
    r = api.put("/api/me/notifications", headers=h, json=keep)
    assert r.status_code == 409

    # a test send queues one delivery per enabled channel, seen in 'recent'
    r = api.post("/api/me/notifications/test", headers=h, json={})
    assert r.status_code == 202 and len(r.json()["queued"]) == 1
    recent = api.get("/api/me/notifications", headers=h).json()["recent"]
    assert [(d["kind"], d["state"], d["channel_kind"]) for d in recent] == [("test", "pending", "wecom")]
    # another user neither sees them nor can name the channel
    other = login("leader-g3")
    assert api.get("/api/me/notifications", headers=other).json()["recent"] == []
    r = api.put("/api/me/notifications", headers=other, json=_body(channels=[{"id": wecom["id"], "kind": "wecom"}]))
    assert r.status_code == 422 and r.json()["field"] == "channels[0].id"


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"kinds": ["assigned", "everything"]}, "kinds"),
        ({"quiet_start": "25:00"}, "quiet_start"),
        ({"quiet_end": None}, "quiet_end"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"channels": [{"kind": "fax"}]}, "channels[0].kind"),
        ({"channels": [{"kind": "email", "address": "not-an-address"}]}, "channels[0].address"),
        ({"channels": [{"kind": "sms", "address": "call me"}]}, "channels[0].address"),
        ({"channels": [{"kind": "wecom"}]}, "channels[0].key"),
        ({"channels": [{"kind": "dingtalk", "access_token": "x y"}]}, "channels[0].access_token"),
        ({"channels": [{"kind": "email", "address": "a@b.cn", "key": "abcdefghij"}]}, "channels[0].key"),
    ],
)
def test_bad_settings_are_422_naming_the_field(
    api: TestClient, login: Callable[[str], dict[str, str]], changes: dict[str, Any], field: str
) -> None:
    r = api.put("/api/me/notifications", headers=login("leader-g1"), json=_body(**changes))
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field


@SQLITE_ONLY
def test_deliveries_and_failures_are_the_admins_view(
    api: TestClient, login: Callable[[str], dict[str, str]], seeded: sessionmaker[Session]
) -> None:
    leader = login("leader-g1")
    assert api.put("/api/me/notifications", headers=leader, json=_body()).status_code == 200
    queued = api.post("/api/me/notifications/test", headers=leader, json={}).json()["queued"]
    assert len(queued) == 2
    with transaction(seeded) as s:
        row = s.get(NotifyDelivery, queued[0])
        assert row is not None
        row.state, row.attempts, row.last_error = "failed", 8, "errcode 93000: invalid webhook url"
    assert api.get("/api/notifications/deliveries", headers=leader).status_code == 403
    admin = login("admin1")
    r = api.get("/api/notifications/deliveries?state=failed", headers=admin)
    assert r.status_code == 200
    got = r.json()
    assert got["counts"] == {"pending": 1, "held": 0, "sent": 0, "failed": 1}
    assert [(d["id"], d["username"], d["last_error"]) for d in got["items"]] == [
        (queued[0], "leader-g1", "errcode 93000: invalid webhook url")
    ]
    assert KEY not in r.text
    assert api.get("/api/notifications/deliveries?state=lost", headers=admin).json()["field"] == "state"
    r = api.post(f"/api/notifications/deliveries/{queued[0]}/retry", headers=admin)
    assert r.status_code == 200 and (r.json()["state"], r.json()["attempts"]) == ("pending", 0)
    assert api.post("/api/notifications/deliveries/999999/retry", headers=admin).status_code == 404
