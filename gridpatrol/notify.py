"""Sending notifications: WeCom and DingTalk group robots, SMTP e-mail and an SMS HTTP gateway, fed by
the notification outbox (models/notify/outbox.py); and the daily summary, queued on schedule.

Each sender returns a :class:`SendResult`: an empty error is a delivery. The robots answer HTTP 200
with ``{"errcode": ..., "errmsg": ...}``: any ``errcode`` other than 0 is a failure. A few answers
mean retrying cannot help and fail the row at once: WeCom 93000 (the robot's key is invalid or the
robot was removed) and DingTalk 310000 (the robot's security settings refuse us: signature, keyword
or IP list). Everything else (rate limits such as WeCom 45009, timeouts, 5xx) is
retried with the webhook outbox's backoff until ``GRIDPATROL_NOTIFY_MAX_ATTEMPTS``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import smtplib
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Protocol
from urllib.parse import urlsplit

import httpx
from sqlalchemy.orm import Session, sessionmaker

from models.db.engine import transaction
from models.db.tables import utcnow
from models.grid.credentials import CredentialKeyring, CredentialsError
from models.notify.messages import Message, render
from models.notify.outbox import Leased, lease_next, mark, queue_summaries
from models.notify.preferences import open_secret
from models.notify.settings import NotifySettings
from models.tickets.outbox import LEASE_MARGIN_S

logger = logging.getLogger(__name__)

#: WeCom: markdown.content at most 4096 bytes; DingTalk's limit is larger, the same bound is kept
MARKDOWN_MAX_BYTES = 4096
#: robot answers read at most this much (an answer is a small JSON object)
ANSWER_MAX_BYTES = 65536
WECOM_PERMANENT = frozenset({93000})
DINGTALK_PERMANENT = frozenset({310000})
#: SMTP answers about the address itself (no such mailbox, bad address): a server or login problem is retried
SMTP_PERMANENT = frozenset({550, 553})


@dataclass(frozen=True)
class SendResult:
    error: str = ""
    permanent: bool = False


class Sender(Protocol):
    def send(self, message: Message, *, address: str, secret: dict[str, str]) -> SendResult: ...


def clip_utf8(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` of UTF-8 without splitting a character."""
    raw = text.encode()
    if len(raw) <= max_bytes:
        return text
    return raw[: max_bytes - 3].decode(errors="ignore") + "…"


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's robot signature: base64(HMAC-SHA256(secret, "<timestamp>\\n<secret>")), before URL encoding."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def _robot_answer(response: httpx.Response, permanent: frozenset[int]) -> SendResult:
    if not response.is_success:
        return SendResult(f"HTTP {response.status_code}")
    body = b""
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > ANSWER_MAX_BYTES:
            return SendResult("answer too large")
    try:
        answer = json.loads(body)
        code = int(answer.get("errcode", -1))
    except (ValueError, TypeError, AttributeError):
        return SendResult("answer is not the robot's JSON")
    if code == 0:
        return SendResult()
    return SendResult(f"errcode {code}: {str(answer.get('errmsg', ''))[:200]}", permanent=code in permanent)


def _post_robot(
    client: httpx.Client,
    url: str,
    *,
    params: dict[str, str],
    body: dict[str, object],
    permanent: frozenset[int],
) -> SendResult:
    try:
        with client.stream("POST", url, params=params, json=body) as response:
            return _robot_answer(response, permanent)
    except httpx.HTTPError as err:  # the error text may hold the URL with its key: the type only
        return SendResult(type(err).__name__)


@dataclass
class WeComRobot:
    """企业微信群机器人: POST <url>?key=<key> {"msgtype": "markdown", "markdown": {"content": ...}}."""

    client: httpx.Client
    url: str

    def send(self, message: Message, *, address: str, secret: dict[str, str]) -> SendResult:
        body: dict[str, object] = {
            "msgtype": "markdown",
            "markdown": {"content": clip_utf8(message.markdown, MARKDOWN_MAX_BYTES)},
        }
        return _post_robot(
            self.client, self.url, params={"key": secret.get("key", "")}, body=body, permanent=WECOM_PERMANENT
        )


@dataclass
class DingTalkRobot:
    """钉钉群机器人: POST <url>?access_token=..&timestamp=<ms>&sign=.. {"msgtype": "markdown", "markdown": {"title", "text"}}."""

    client: httpx.Client
    url: str
    clock: Callable[[], float] = time.time

    def send(self, message: Message, *, address: str, secret: dict[str, str]) -> SendResult:
        params = {"access_token": secret.get("access_token", "")}
        if secret.get("sign_secret"):
            ts = int(self.clock() * 1000)
            params |= {
                "timestamp": str(ts),
                "sign": dingtalk_sign(secret["sign_secret"], ts),
            }  # httpx URL-encodes it
        body: dict[str, object] = {
            "msgtype": "markdown",
            "markdown": {"title": message.title, "text": clip_utf8(message.markdown, MARKDOWN_MAX_BYTES)},
        }
        return _post_robot(self.client, self.url, params=params, body=body, permanent=DINGTALK_PERMANENT)


@dataclass
class SmsGateway:
    """A generic SMS HTTP gateway: POST a JSON body built from a template with ``{phone}`` and ``{text}``."""

    client: httpx.Client
    url: str
    body_template: str
    token: str = ""

    def send(self, message: Message, *, address: str, secret: dict[str, str]) -> SendResult:
        if not self.url:
            return SendResult("SMS is not configured (GRIDPATROL_SMS_URL)")
        quote = lambda s: json.dumps(s, ensure_ascii=False)[1:-1]  # noqa: E731 - JSON string contents
        body = self.body_template.replace("{phone}", quote(address)).replace("{text}", quote(message.text))
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            with self.client.stream("POST", self.url, content=body.encode(), headers=headers) as response:
                return SendResult() if response.is_success else SendResult(f"HTTP {response.status_code}")
        except httpx.HTTPError as err:
            return SendResult(type(err).__name__)


@dataclass
class SmtpMailer:
    """E-mail through an SMTP server (stdlib smtplib): plain, STARTTLS or SSL, optional login."""

    settings: NotifySettings

    def send(self, message: Message, *, address: str, secret: dict[str, str]) -> SendResult:
        s = self.settings
        if not s.smtp_host:
            return SendResult("e-mail is not configured (GRIDPATROL_SMTP_HOST)")
        mail = EmailMessage()
        mail["Subject"] = f"【网格巡查】{message.title}"
        mail["From"] = Address("网格巡查", addr_spec=s.smtp_from)
        mail["To"] = address
        mail["Date"] = formatdate(localtime=False)
        mail["Message-ID"] = make_msgid(domain=s.smtp_from.rpartition("@")[2] or "localhost")
        mail.set_content(message.text, charset="utf-8")
        try:
            smtp_class = smtplib.SMTP_SSL if s.smtp_security == "ssl" else smtplib.SMTP
            kwargs = {"context": ssl.create_default_context()} if s.smtp_security == "ssl" else {}
            with smtp_class(s.smtp_host, s.smtp_port, timeout=s.notify_timeout_s, **kwargs) as smtp:
                if s.smtp_security == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
                if s.smtp_username:
                    smtp.login(s.smtp_username, s.smtp_password.get_secret_value())
                refused = smtp.send_message(mail)
        except smtplib.SMTPRecipientsRefused:
            return SendResult("the server refused the address", permanent=True)
        except smtplib.SMTPResponseException as err:
            return SendResult(f"SMTP {err.smtp_code}", permanent=err.smtp_code in SMTP_PERMANENT)
        except (smtplib.SMTPException, OSError) as err:
            return SendResult(type(err).__name__)
        if refused:
            return SendResult("the server refused the address", permanent=True)
        return SendResult()


def senders_for(settings: NotifySettings, client: httpx.Client) -> dict[str, Sender]:
    return {
        "wecom": WeComRobot(client, settings.notify_wecom_url),
        "dingtalk": DingTalkRobot(client, settings.notify_dingtalk_url),
        "email": SmtpMailer(settings),
        "sms": SmsGateway(client, settings.sms_url, settings.sms_body, settings.sms_token.get_secret_value()),
    }


@dataclass
class Notifier:
    """Delivers the notification outbox; any number of ticketers may run one against the same database."""

    factory: sessionmaker[Session]
    settings: NotifySettings
    senders: dict[str, Sender]
    keyring: Callable[[], CredentialKeyring | None] = lambda: None

    def deliver_due(self, *, now: datetime | None = None, batch: int = 50) -> int:
        """Send each due delivery once (at most ``batch``); returns how many were delivered."""
        lease_for_s = self.settings.notify_timeout_s * 3 + LEASE_MARGIN_S  # connect + send + answer
        delivered, after_id = 0, 0
        for _ in range(batch):
            at = now or utcnow()
            leased = lease_next(self.factory, at=at, after_id=after_id, lease_for_s=lease_for_s)
            if leased is None:
                break
            if isinstance(leased, int):  # held for quiet hours, or failed without a send
                after_id = leased
                continue
            after_id = leased.row_id
            result = self._send(leased)
            if mark(self.factory, leased, error=result.error, permanent=result.permanent, at=now or utcnow(),
                    max_attempts=self.settings.notify_max_attempts):  # fmt: skip
                delivered += 1
        return delivered

    def _send(self, leased: Leased) -> SendResult:
        sender = self.senders.get(leased.channel_kind)
        if sender is None:
            return SendResult(f"no sender for {leased.channel_kind}", permanent=True)
        try:
            secret = open_secret(self.keyring(), leased.secret)
        except CredentialsError as err:
            return SendResult(str(err))
        message = render(
            leased.kind, leased.payload, base_url=self.settings.notify_base_url, tz=self.settings.tz
        )
        return sender.send(message, address=leased.address, secret=secret)

    def queue_summaries(self, *, now: datetime | None = None) -> int:
        with transaction(self.factory) as session:
            return queue_summaries(session, now=now or utcnow(), summary_at=self.settings.notify_summary_at)


def run_notifications(
    notifier: Notifier, stop: threading.Event, *, every_s: float = 1.0, summary_every_s: float = 60.0
) -> None:
    """Deliver the outbox every ``every_s`` and queue daily summaries every ``summary_every_s`` until ``stop``."""
    next_summary = 0.0
    while not stop.is_set():
        try:
            if time.monotonic() >= next_summary:
                next_summary = time.monotonic() + summary_every_s
                notifier.queue_summaries()
            notifier.deliver_due()
        except Exception:  # the loop must survive a database outage
            logger.exception("notification delivery round failed")
        stop.wait(every_s)


def start_notifier(
    factory: sessionmaker[Session],
    settings: NotifySettings,
    *,
    keyring: Callable[[], CredentialKeyring | None],
    stop: threading.Event,
) -> None:
    """The ticketer's notification thread body: one HTTP client for the robots and the SMS gateway."""
    host = urlsplit(settings.notify_base_url).hostname or ""
    if host in {"localhost", "127.0.0.1", "::1"}:
        logger.warning(
            "GRIDPATROL_NOTIFY_BASE_URL is %s: links in notifications will not open on people's phones",
            settings.notify_base_url,
        )
    with httpx.Client(timeout=settings.notify_timeout_s) as client:
        notifier = Notifier(factory, settings, senders_for(settings, client), keyring=keyring)
        run_notifications(notifier, stop)
