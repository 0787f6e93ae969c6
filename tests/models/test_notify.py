"""Notifications: who is told what, the adapters' exact requests (local HTTP servers standing in for the
WeCom and DingTalk robots and an SMS gateway, a real SMTP server on loopback), retries, quiet hours,
the daily summary, and two deliverers racing over one outbox on PostgreSQL."""

from __future__ import annotations

import base64
import email
import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from email.message import Message as MimeMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gridpatrol.notify import Notifier, senders_for
from models.db.engine import transaction
from models.db.tables import NotifyDelivery, NotifyPreference, Ticket, User
from models.grid.credentials import CredentialKey, CredentialKeyring
from models.identity.access import load_scope
from models.notify.outbox import queue_summaries
from models.notify.preferences import ChannelSpec, quiet_until, save_preferences
from models.notify.settings import NotifySettings
from models.tickets.desk import TicketDesk
from tests.support import sample
from tests.support.require import require_module

SHANGHAI = ZoneInfo("Asia/Shanghai")
#: the adapters' request formats do not depend on the database: SQLite only (each PostgreSQL set-up costs ~2 s)
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


# --- a robot endpoint on loopback ----------------------------------------------------------------------
@dataclass
class Seen:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Endpoint:
    """Records every POST and answers from ``answers`` (status, JSON), the last one repeated."""

    answers: list[tuple[int, dict[str, Any]]] = field(
        default_factory=lambda: [(200, {"errcode": 0, "errmsg": "ok"})]
    )
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def next_answer(self) -> tuple[int, dict[str, Any]]:
        with self.lock:
            return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    ep = Endpoint()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            parts = urlsplit(self.path)
            with ep.lock:
                ep.seen.append(
                    Seen(
                        parts.path,
                        parse_qs(parts.query),
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                    )
                )
            status, answer = ep.next_answer()
            raw = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    ep.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield ep
    server.shutdown()
    server.server_close()


@pytest.fixture
def keyring() -> CredentialKeyring:
    return CredentialKeyring(CredentialKey.generate())


def _settings(ep: Endpoint, **extra: Any) -> NotifySettings:
    return NotifySettings(
        notify_base_url="https://grid.example.gov.cn",
        notify_wecom_url=f"{ep.url}/cgi-bin/webhook/send",
        notify_dingtalk_url=f"{ep.url}/robot/send",
        sms_url=f"{ep.url}/sms",
        notify_max_attempts=3,
        **extra,
    )


@pytest.fixture
def notifier(
    seeded: sessionmaker[Session], endpoint: Endpoint, keyring: CredentialKeyring
) -> Iterator[Notifier]:
    with httpx.Client(timeout=5.0) as client:
        settings = _settings(endpoint, sms_token="gateway-token")
        yield Notifier(seeded, settings, senders_for(settings, client), keyring=lambda: keyring)


def _user(factory: sessionmaker[Session], name: str) -> User:
    with factory() as s:
        user = s.scalars(select(User).where(User.username == name)).one()
        s.expunge(user)
        return user


def _configure(
    factory: sessionmaker[Session],
    keyring: CredentialKeyring,
    name: str,
    *channels: ChannelSpec,
    **prefs: Any,
) -> None:
    with transaction(factory) as s:
        user = s.scalars(select(User).where(User.username == name)).one()
        version = (s.get(NotifyPreference, user.id).version if s.get(NotifyPreference, user.id) else 0)  # fmt: skip
        save_preferences(
            s, user, version=version, kinds=prefs.get("kinds", ["assigned", "escalated", "overdue", "reopened", "linkage"]),
            quiet_start=prefs.get("quiet_start"), quiet_end=prefs.get("quiet_end"), timezone="Asia/Shanghai",
            urgent_in_quiet=prefs.get("urgent_in_quiet", True), channels=list(channels), keyring=lambda: keyring,
        )  # fmt: skip


def _report(factory: sessionmaker[Session], desk: TicketDesk, grid: str = "G1") -> int:
    """A case reported by the centre in ``grid``: auto-dispatched to the grid's leader (one 'dispatch' notice)."""
    lon, lat = sample.point_in(grid)
    with transaction(factory) as s:
        admin = s.scalars(select(User).where(User.username == "admin1")).one()
        ticket, _ = desk.report(s, reporter=admin, scope=load_scope(s, admin), category="fire_lane_blockage",
                                lon=lon, lat=lat, description="消防通道被占")  # fmt: skip
        return ticket.id


def _rows(factory: sessionmaker[Session]) -> list[NotifyDelivery]:
    with factory() as s:
        rows = list(s.scalars(select(NotifyDelivery).order_by(NotifyDelivery.id)))
        s.expunge_all()
        return rows


WECOM = ChannelSpec(
    kind="wecom",
    label="网格群",
    key="https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa",
)
DING = ChannelSpec(
    kind="dingtalk",
    label="钉钉群",
    access_token="8a1b2c3d4e5f6a7b8c9d",
    sign_secret="SECabcdef0123456789abcdef",
)


# --- adapters -----------------------------------------------------------------------------------------------
@SQLITE_ONLY
def test_wecom_robot_gets_a_documented_markdown_message_about_the_ticket(
    seeded: sessionmaker[Session],
    desk: TicketDesk,
    notifier: Notifier,
    endpoint: Endpoint,
    keyring: CredentialKeyring,
) -> None:
    _configure(seeded, keyring, "leader-g1", WECOM)
    ticket_id = _report(seeded, desk)
    rows = _rows(seeded)
    assert [(r.kind, r.ticket_id, r.state) for r in rows] == [("assigned", ticket_id, "pending")]
    assert notifier.deliver_due() == 1
    assert len(endpoint.seen) == 1
    req = endpoint.seen[0]
    assert req.path == "/cgi-bin/webhook/send"
    assert req.query == {"key": ["693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"]}  # extracted from the pasted address
    body = req.json()
    assert set(body) == {"msgtype", "markdown"} and body["msgtype"] == "markdown"
    content = body["markdown"]["content"]
    assert set(body["markdown"]) == {"content"}
    assert "新工单派给您" in content and "消防通道堵塞" in content
    assert "地点：" in content and "桥北第一网格" in content
    assert "受理时限：" in content
    assert f"https://grid.example.gov.cn/#/tickets/{ticket_id}" in content
    assert "rtsp://" not in content and "jpg" not in content
    assert _rows(seeded)[0].state == "sent"


@SQLITE_ONLY
def test_dingtalk_robot_request_is_signed_as_documented(
    seeded: sessionmaker[Session],
    desk: TicketDesk,
    notifier: Notifier,
    endpoint: Endpoint,
    keyring: CredentialKeyring,
) -> None:
    _configure(seeded, keyring, "leader-g1", DING)
    ticket_id = _report(seeded, desk)
    assert notifier.deliver_due() == 1
    req = endpoint.seen[0]
    assert req.path == "/robot/send"
    assert set(req.query) == {"access_token", "timestamp", "sign"}
    assert req.query["access_token"] == ["8a1b2c3d4e5f6a7b8c9d"]
    ts = req.query["timestamp"][0]
    assert abs(int(ts) - datetime.now(UTC).timestamp() * 1000) < 60_000  # milliseconds
    secret = "SECabcdef0123456789abcdef"
    want = base64.b64encode(
        hmac.new(secret.encode(), f"{ts}\n{secret}".encode(), hashlib.sha256).digest()
    ).decode()
    assert req.query["sign"] == [want]  # parse_qs undid the URL encoding
    body = req.json()
    assert body["msgtype"] == "markdown"
    assert set(body["markdown"]) == {"title", "text"}
    assert "消防通道堵塞" in body["markdown"]["title"]
    assert f"/#/tickets/{ticket_id}" in body["markdown"]["text"]


def test_errcode_with_http_200_is_a_failure_retried_then_given_up(
    seeded: sessionmaker[Session],
    desk: TicketDesk,
    notifier: Notifier,
    endpoint: Endpoint,
    keyring: CredentialKeyring,
) -> None:
    endpoint.answers = [
        (200, {"errcode": 45009, "errmsg": "api freq out of limit"}),
        (200, {"errcode": 0, "errmsg": "ok"}),
    ]
    _configure(seeded, keyring, "leader-g1", WECOM)
    _report(seeded, desk)
    now = datetime.now(UTC)
    assert notifier.deliver_due(now=now) == 0
    row = _rows(seeded)[0]
    assert (row.state, row.attempts) == ("pending", 1) and "45009" in row.last_error
    assert row.next_attempt_at > now  # backoff
    assert notifier.deliver_due(now=now) == 0  # not due yet: nothing sent
    assert len(endpoint.seen) == 1
    assert notifier.deliver_due(now=now + timedelta(hours=2)) == 1
    row = _rows(seeded)[0]
    assert (row.state, row.attempts, row.last_error) == ("sent", 2, "")

    endpoint.answers = [(500, {})]
    _report(seeded, desk)
    later = now + timedelta(hours=3)
    for i in range(3):
        notifier.deliver_due(now=later + timedelta(days=i))
    row = _rows(seeded)[-1]
    assert (row.state, row.attempts, row.last_error) == ("failed", 3, "HTTP 500")


@SQLITE_ONLY
def test_a_revoked_robot_key_fails_at_once(
    seeded: sessionmaker[Session],
    desk: TicketDesk,
    notifier: Notifier,
    endpoint: Endpoint,
    keyring: CredentialKeyring,
) -> None:
    endpoint.answers = [(200, {"errcode": 93000, "errmsg": "invalid webhook url"})]
    _configure(seeded, keyring, "leader-g1", WECOM)
    _report(seeded, desk)
    notifier.deliver_due()
    row = _rows(seeded)[0]
    assert (row.state, row.attempts) == ("failed", 1) and "93000" in row.last_error


@SQLITE_ONLY
def test_sms_gateway_gets_its_template_with_the_text(
    seeded: sessionmaker[Session],
    desk: TicketDesk,
    notifier: Notifier,
    endpoint: Endpoint,
    keyring: CredentialKeyring,
) -> None:
    _configure(seeded, keyring, "leader-g1", ChannelSpec(kind="sms", address="138-0013-8000"))
    ticket_id = _report(seeded, desk)
    assert notifier.deliver_due() == 1
    req = endpoint.seen[0]
    assert req.path == "/sms" and req.headers["authorization"] == "Bearer gateway-token"
    body = req.json()
    assert body["phone"] == "13800138000"
    assert body["content"].startswith("【网格巡查】新工单派给您：消防通道堵塞")
    assert f"/#/tickets/{ticket_id}" in body["content"]


@SQLITE_ONLY
def test_email_reaches_a_real_smtp_server_in_chinese(
    seeded: sessionmaker[Session], desk: TicketDesk, keyring: CredentialKeyring, endpoint: Endpoint
) -> None:
    require_module("aiosmtpd", "aiosmtpd (dev dependency): an SMTP server on loopback")
    from aiosmtpd.controller import Controller

    class Inbox:
        def __init__(self) -> None:
            self.mails: list[tuple[str, list[str], bytes]] = []

        async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
            self.mails.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
            return "250 OK"

    inbox = Inbox()
    with socket.socket() as probe:  # a free port (the controller checks its server by connecting to it)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        settings = _settings(
            endpoint, smtp_host="127.0.0.1", smtp_port=port, smtp_from="patrol@grid.example.gov.cn"
        )
        _configure(
            seeded, keyring, "leader-g1", ChannelSpec(kind="email", address="leader@grid.example.gov.cn")
        )
        ticket_id = _report(seeded, desk)
        with httpx.Client() as client:
            assert (
                Notifier(
                    seeded, settings, senders_for(settings, client), keyring=lambda: keyring
                ).deliver_due()
                == 1
            )
    finally:
        controller.stop()
    assert len(inbox.mails) == 1
    mail_from, rcpt, raw = inbox.mails[0]
    assert mail_from == "patrol@grid.example.gov.cn" and rcpt == ["leader@grid.example.gov.cn"]
    mime: MimeMessage = email.message_from_bytes(raw)
    assert str(make_header(decode_header(mime["Subject"]))) == "【网格巡查】新工单派给您：消防通道堵塞"
    body = mime.get_payload(decode=True).decode(mime.get_content_charset() or "utf-8")  # type: ignore[union-attr]
    assert "消防通道堵塞" in body and "受理时限：" in body and f"/#/tickets/{ticket_id}" in body


# --- quiet hours ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("start", "end", "local", "until"),
    [
        ("22:00", "07:00", "2026-11-30 23:30", "2026-12-01 07:00"),
        ("22:00", "07:00", "2026-12-01 06:59", "2026-12-01 07:00"),
        ("22:00", "07:00", "2026-12-01 07:00", None),
        ("22:00", "07:00", "2026-12-01 12:00", None),
        ("12:00", "13:30", "2026-12-01 12:10", "2026-12-01 13:30"),
        ("12:00", "13:30", "2026-12-01 11:59", None),
        ("08:00", "08:00", "2026-12-01 08:00", None),
        (None, None, "2026-12-01 03:00", None),
    ],
)
def test_quiet_hours_end_in_the_users_local_time(
    start: str | None, end: str | None, local: str, until: str | None
) -> None:
    pref = NotifyPreference(quiet_start=start, quiet_end=end, timezone="Asia/Shanghai")
    at = datetime.fromisoformat(local).replace(tzinfo=SHANGHAI).astimezone(UTC)
    got = quiet_until(pref, at)
    assert (got.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M") if got else None) == until


def test_quiet_hours_hold_a_message_until_they_end_but_let_urgent_ones_through(
    seeded: sessionmaker[Session],
    desk: TicketDesk,
    notifier: Notifier,
    endpoint: Endpoint,
    keyring: CredentialKeyring,
) -> None:
    _configure(seeded, keyring, "leader-g1", WECOM, quiet_start="22:00", quiet_end="07:00")
    _report(seeded, desk)
    local_night = (datetime.now(SHANGHAI) + timedelta(days=1)).replace(
        hour=23, minute=0, second=0, microsecond=0
    )
    night = local_night.astimezone(UTC)
    assert notifier.deliver_due(now=night) == 0
    row = _rows(seeded)[0]
    assert row.state == "held" and row.attempts == 0
    assert row.next_attempt_at == local_night + timedelta(hours=8)  # 07:00 the next morning
    assert (
        notifier.deliver_due(now=night + timedelta(hours=7)) == 0 and not endpoint.seen
    )  # 06:00: still quiet
    # an urgent kind in the same night is sent at once
    with transaction(seeded) as s:
        leader = s.scalars(select(User).where(User.username == "leader-g1")).one()
        ticket = s.scalars(select(Ticket)).one()
        from models.notify.outbox import queue_for_notices
        from models.tickets.desk import notice

        queue_for_notices(s, [notice(ticket, "escalated", night, level=1, to="S1", managers=[leader.id])])
    assert notifier.deliver_due(now=night) == 1
    assert [r.kind for r in _rows(seeded) if r.state == "sent"] == ["escalated"]
    assert "升级" in endpoint.seen[0].json()["markdown"]["content"]
    morning = (local_night + timedelta(hours=8)).astimezone(UTC)
    assert notifier.deliver_due(now=morning) == 1
    assert [r.state for r in _rows(seeded)] == ["sent", "sent"]


# --- who is told ---------------------------------------------------------------------------------------------
def test_only_subscribers_with_channels_are_told_and_never_about_their_own_move(
    seeded: sessionmaker[Session], desk: TicketDesk, keyring: CredentialKeyring
) -> None:
    _configure(seeded, keyring, "leader-g1", WECOM, kinds=["reopened"])  # not "assigned"
    _configure(seeded, keyring, "leader-g3", WECOM)
    _report(seeded, desk)
    assert _rows(seeded) == []  # leader-g1 did not subscribe; leader-g3's grid is another
    _report(seeded, desk, grid="G3")
    assert [(r.kind, r.user_id) for r in _rows(seeded)] == [("assigned", _user(seeded, "leader-g3").id)]


def test_daily_summary_is_queued_once_per_local_day(
    seeded: sessionmaker[Session],
    desk: TicketDesk,
    keyring: CredentialKeyring,
    notifier: Notifier,
    endpoint: Endpoint,
) -> None:
    _configure(seeded, keyring, "leader-g1", WECOM, kinds=["daily_summary"])
    _report(seeded, desk)
    tomorrow = (datetime.now(SHANGHAI) + timedelta(days=1)).replace(second=0, microsecond=0)
    early = tomorrow.replace(hour=7, minute=59).astimezone(UTC)
    at8 = tomorrow.replace(hour=8, minute=0).astimezone(UTC)
    with transaction(seeded) as s:
        assert queue_summaries(s, now=early, summary_at="08:00") == 0
        assert queue_summaries(s, now=at8, summary_at="08:00") == 1
        assert queue_summaries(s, now=at8 + timedelta(hours=3), summary_at="08:00") == 0
    rows = _rows(seeded)
    assert [(r.kind, r.dedupe_key) for r in rows] == [
        ("daily_summary", f"summary:{tomorrow.date().isoformat()}")
    ]
    assert (
        rows[0].payload["open"] == 1 and rows[0].payload["overdue"] == 1
    )  # the case's deadlines passed by then
    assert notifier.deliver_due(now=at8) == 1
    assert "待办工单：1 件" in endpoint.seen[0].json()["markdown"]["content"]


# --- two deliverers, one outbox --------------------------------------------------------------------------------
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # row locks with SKIP LOCKED
def test_two_deliverers_send_each_message_once(
    seeded: sessionmaker[Session],
    desk: TicketDesk,
    endpoint: Endpoint,
    keyring: CredentialKeyring,
    db_url: str,
) -> None:
    _configure(seeded, keyring, "leader-g1", WECOM, DING)
    for _ in range(15):
        _report(seeded, desk)
    assert len(_rows(seeded)) == 30
    settings = _settings(endpoint)
    barrier = threading.Barrier(2)
    delivered: list[int] = []

    def run() -> None:
        with httpx.Client(timeout=5.0) as client:
            n = Notifier(seeded, settings, senders_for(settings, client), keyring=lambda: keyring)
            barrier.wait()
            got = 0
            for _ in range(5):
                got += n.deliver_due()
            delivered.append(got)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sum(delivered) == 30
    assert len(endpoint.seen) == 30
    assert all(r.state == "sent" and r.attempts == 1 for r in _rows(seeded))


@SQLITE_ONLY
def test_a_detection_ticket_tells_its_grid_leader_with_the_camera_name(
    seeded: sessionmaker[Session], desk: TicketDesk, keyring: CredentialKeyring
) -> None:
    from models.db.tables import Camera
    from models.tickets.ingest import ingest_events
    from tests.support.events import Episode

    _configure(seeded, keyring, "leader-g1", WECOM)
    with seeded() as s:
        camera_id = s.scalars(select(Camera.id).where(Camera.name == "cam-g1-a")).one()
    with transaction(seeded) as s:
        ingest_events(s, desk, [Episode(camera_id, start=datetime.now(UTC)).event("started")])
    (row,) = _rows(seeded)
    assert (row.kind, row.user_id) == ("assigned", _user(seeded, "leader-g1").id)
    assert row.payload["camera"] == "cam-g1-a" and row.payload["deadline_label"] == "受理时限"
    assert "rtsp" not in json.dumps(row.payload)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("existing", [False, True], ids=["first-save", "later-save"])
def test_two_saves_of_the_same_version_one_wins_the_other_is_a_conflict(
    seeded: sessionmaker[Session], keyring: CredentialKeyring, existing: bool
) -> None:
    from models.errors import Conflict

    if existing:
        _configure(seeded, keyring, "leader-g1", WECOM)
    version = 1 if existing else 0
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def save(label: str) -> None:
        try:
            with transaction(seeded) as s:
                user = s.scalars(select(User).where(User.username == "leader-g1")).one()
                barrier.wait()
                save_preferences(s, user, version=version, kinds=["assigned"], quiet_start=None, quiet_end=None,
                                 timezone="Asia/Shanghai", urgent_in_quiet=True,
                                 channels=[ChannelSpec(kind="email", label=label, address="a@b.cn")], keyring=lambda: keyring)  # fmt: skip
            outcomes.append("saved")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=save, args=(f"tab-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(outcomes) == ["conflict", "saved"]
    with seeded() as s:
        pref = s.scalars(select(NotifyPreference)).one()
        assert pref.version == version + 1
        from models.db.tables import NotifyChannel

        assert len(s.scalars(select(NotifyChannel)).all()) == 1  # the winner's one channel, not both


@SQLITE_ONLY
def test_a_linkage_request_tells_the_centre_and_the_department_once(
    seeded: sessionmaker[Session], desk: TicketDesk, keyring: CredentialKeyring
) -> None:
    from models.org.parts import request_linkage
    from tests.support.org import seed_org

    seed_org(seeded)
    for name in ("operator1", "law-d1", "leader-g1"):
        _configure(seeded, keyring, name, ChannelSpec(kind="email", address=f"{name}@example.cn"))
    lon, lat = sample.point_in("G1")
    with transaction(seeded) as s:
        admin = s.scalars(select(User).where(User.username == "admin1")).one()
        ticket, _ = desk.report(s, reporter=admin, scope=load_scope(s, admin), category="road_occupation",
                                lon=lon, lat=lat, description="占道摆摊")  # fmt: skip
        ticket_id = ticket.id
    with transaction(seeded) as s:
        leader = s.scalars(select(User).where(User.username == "leader-g1")).one()
        ticket = s.get(Ticket, ticket_id)
        assert ticket is not None
        # road occupation + law enforcement: a rule answers at once with the department covering the place
        request_linkage(
            desk, s, ticket, actor=leader, kind="law_enforcement", reason="需要执法", grid_in_scope=True
        )
    told = sorted((r.kind, _name(seeded, r.user_id)) for r in _rows(seeded))
    assert told == [("assigned", "leader-g1"), ("linkage", "law-d1"), ("linkage", "operator1")]


def _name(factory: sessionmaker[Session], user_id: int) -> str:
    with factory() as s:
        user = s.get(User, user_id)
        assert user is not None
        return user.username


@SQLITE_ONLY
def test_an_overdue_ticket_is_escalated_to_the_street_manager_and_the_leader_is_told_it_is_late(
    seeded: sessionmaker[Session], desk: TicketDesk, keyring: CredentialKeyring
) -> None:
    from models.tickets.sweeps import escalate_overdue

    for name in ("manager-s1", "leader-g1"):
        _configure(
            seeded,
            keyring,
            name,
            ChannelSpec(kind="email", address=f"{name}@example.cn"),
            kinds=["escalated", "overdue"],
        )
    ticket_id = _report(seeded, desk)  # 'assigned' is not among the leader's kinds: nothing yet
    assert _rows(seeded) == []
    with transaction(seeded) as s:
        notices = escalate_overdue(
            s, desk, now=datetime.now(UTC) + timedelta(minutes=15)
        )  # not accepted in 10 min
    assert [n.event for n in notices] == ["escalated"]
    rows = _rows(seeded)
    assert sorted((r.kind, _name(seeded, r.user_id)) for r in rows) == [
        ("escalated", "manager-s1"),
        ("overdue", "leader-g1"),
    ]
    assert all(r.ticket_id == ticket_id and r.payload["note"].startswith("已升级至第1级") for r in rows)
