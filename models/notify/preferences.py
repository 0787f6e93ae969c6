"""A user's notification preferences and channels: validation, secrets at rest, quiet hours.

Channel secrets (a WeCom robot's key, a DingTalk robot's access token and signing secret) are encrypted
with the credentials keyring (``models/grid/credentials.py``, column ``notify_channels.secret``) and
never leave the process that sends: the API answers only whether one is set and its last four characters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.db.tables import NotifyChannel, NotifyPreference, User
from models.errors import Conflict, InvalidInput, Unavailable
from models.grid.credentials import CredentialKeyring, CredentialsError
from models.notify.kinds import CHANNEL_KINDS, KINDS
from models.settings import DEFAULT_TIMEZONE

SECRET_COLUMN = "notify_channels.secret"
MAX_CHANNELS = 10
#: the secret fields each channel kind keeps (encrypted together as one JSON object)
SECRET_FIELDS: dict[str, tuple[str, ...]] = {
    "wecom": ("key",),
    "dingtalk": ("access_token", "sign_secret"),
    "email": (),
    "sms": (),
}
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[0-9]{6,15}$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_TOKEN = re.compile(r"^[A-Za-z0-9_\-]{8,200}$")


@dataclass(frozen=True)
class ChannelSpec:
    """One channel as a user submits it; a secret field left None keeps the stored value."""

    id: int | None = None
    kind: str = ""
    label: str = ""
    address: str = ""
    enabled: bool = True
    key: str | None = None
    access_token: str | None = None
    sign_secret: str | None = None


def preference_of(session: Session, user_id: int) -> NotifyPreference:
    """The user's stored preferences, or the defaults (every kind, no quiet hours; not added to the session)."""
    pref = session.get(NotifyPreference, user_id)
    if pref is None:
        pref = NotifyPreference(
            user_id=user_id, kinds=list(KINDS), quiet_start=None, quiet_end=None, timezone=DEFAULT_TIMEZONE,
            urgent_in_quiet=True, version=0,
        )  # fmt: skip
    return pref


def channels_of(session: Session, user_id: int) -> list[NotifyChannel]:
    return list(
        session.scalars(
            select(NotifyChannel).where(NotifyChannel.user_id == user_id).order_by(NotifyChannel.id)
        )
    )


# --- quiet hours -------------------------------------------------------------------------------------
def _clock(value: str) -> time:
    m = _HHMM.match(value)
    if m is None:
        raise ValueError(value)
    return time(int(m.group(1)), int(m.group(2)))


def quiet_until(pref: NotifyPreference, at: datetime) -> datetime | None:
    """When the quiet hours around ``at`` end (an aware instant), or None when ``at`` is outside them.
    Local wall-clock times in the user's zone: 22:00-07:00 crosses midnight; equal ends mean none."""
    if not pref.quiet_start or not pref.quiet_end or pref.quiet_start == pref.quiet_end:
        return None
    tz = ZoneInfo(pref.timezone or DEFAULT_TIMEZONE)
    local = at.astimezone(tz)
    start, end = _clock(pref.quiet_start), _clock(pref.quiet_end)
    now = local.time().replace(second=0, microsecond=0, tzinfo=None)
    if start < end:
        inside = start <= now < end
        end_day = local.date()
    else:  # over midnight: 22:00..24:00 today or 00:00..07:00 today
        inside = now >= start or now < end
        end_day = local.date() + timedelta(days=1) if now >= start else local.date()
    if not inside:
        return None
    return datetime.combine(end_day, end, tzinfo=tz)


# --- secrets -----------------------------------------------------------------------------------------
def seal_secret(keyring: CredentialKeyring, values: dict[str, str]) -> str:
    return keyring.encrypt(json.dumps(values, sort_keys=True), column=SECRET_COLUMN)


def open_secret(keyring: CredentialKeyring | None, stored: str | None) -> dict[str, str]:
    """The decrypted secret fields; CredentialsError when the key is missing or the value damaged."""
    if not stored:
        return {}
    if keyring is None:
        raise CredentialsError(
            "notification channel secret: no credentials key is configured in this process"
        )
    return dict(json.loads(keyring.decrypt(stored, column=SECRET_COLUMN)))


def secret_hint(value: str) -> str:
    return "****" + value[-4:] if len(value) > 8 else "****"


def _from_url(value: str, param: str) -> str:
    """A robot's key or token, also when the whole webhook address was pasted."""
    value = value.strip()
    if "://" in value:
        found = parse_qs(urlsplit(value).query).get(param)
        return found[0].strip() if found else ""
    return value


# --- saving ------------------------------------------------------------------------------------------
def _check_kinds(kinds: Sequence[str]) -> list[str]:
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise InvalidInput(f"unknown kind {unknown[0]!r} (use {', '.join(KINDS)})", field="kinds")
    return [k for k in KINDS if k in set(kinds)]


def _check_quiet(start: str | None, end: str | None) -> tuple[str | None, str | None]:
    start, end = (start or None), (end or None)
    for name, value in (("quiet_start", start), ("quiet_end", end)):
        if value is not None and not _HHMM.match(value):
            raise InvalidInput(f"{value!r} is not a time of day HH:MM (00:00-23:59)", field=name)
    if (start is None) != (end is None):
        raise InvalidInput(
            "quiet hours need both a start and an end (or neither)",
            field="quiet_end" if end is None else "quiet_start",
        )
    return start, end


def _check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise InvalidInput(
            f"{name!r} is not an IANA time zone (e.g. Asia/Shanghai)", field="timezone"
        ) from err
    return name


def _apply_channel(
    channel: NotifyChannel, spec: ChannelSpec, *, at: str, keyring: Callable[[], CredentialKeyring] | None
) -> None:
    label = spec.label.strip()
    if len(label) > 100:
        raise InvalidInput("at most 100 characters", field=f"{at}.label")
    address = spec.address.strip()
    if spec.kind == "email" and not _EMAIL.match(address):
        raise InvalidInput(f"{address!r} is not an e-mail address", field=f"{at}.address")
    if spec.kind == "sms" and not _PHONE.match(address.replace(" ", "").replace("-", "")):
        raise InvalidInput(f"{address!r} is not a phone number", field=f"{at}.address")
    if spec.kind in {"wecom", "dingtalk"}:
        address = ""
    fields = SECRET_FIELDS[spec.kind]
    given = {
        "key": _from_url(spec.key, "key") if spec.key is not None else None,
        "access_token": _from_url(spec.access_token, "access_token")
        if spec.access_token is not None
        else None,
        "sign_secret": spec.sign_secret.strip() if spec.sign_secret is not None else None,
    }
    for name, value in given.items():
        if value is not None and name not in fields:
            raise InvalidInput(f"a {spec.kind} channel has no {name}", field=f"{at}.{name}")
        if value and not _TOKEN.match(value):
            raise InvalidInput("8-200 letters, digits, '-' or '_'", field=f"{at}.{name}")
    if fields:
        try:
            old = open_secret(keyring() if keyring else None, channel.secret) if channel.secret else {}
        except CredentialsError:
            old = {}  # stored under a key this process lacks (or damaged): the user enters it again
        new = {name: (given[name] if given[name] is not None else old.get(name, "")) for name in fields}
        required = fields[0]
        if not new[required]:
            raise InvalidInput(f"a {spec.kind} robot needs its {required}", field=f"{at}.{required}")
        if new != old:
            if keyring is None:
                raise Unavailable("this process cannot store channel secrets (no credentials key configured)")
            channel.secret = seal_secret(keyring(), {k: v for k, v in new.items() if v})
    channel.label, channel.address, channel.enabled = (
        label,
        address.replace(" ", "").replace("-", "") if spec.kind == "sms" else address,
        spec.enabled,
    )


def save_preferences(
    session: Session,
    user: User,
    *,
    version: int,
    kinds: Sequence[str],
    quiet_start: str | None,
    quiet_end: str | None,
    timezone: str,
    urgent_in_quiet: bool,
    channels: Sequence[ChannelSpec],
    keyring: Callable[[], CredentialKeyring] | None,
) -> NotifyPreference:
    """Replace the user's preferences and channels (channels not listed are removed). ``version`` is the
    one the user read: an older one is a Conflict (two tabs saving at once must not undo each other)."""
    pref = session.get(NotifyPreference, user.id, with_for_update=True)
    current = pref.version if pref is not None else 0
    if version != current:
        raise Conflict(
            f"the notification settings changed meanwhile (version {current}, yours {version}): reload them"
        )
    kinds_ok = _check_kinds(kinds)
    start, end = _check_quiet(quiet_start, quiet_end)
    tz = _check_timezone(timezone)
    if len(channels) > MAX_CHANNELS:
        raise InvalidInput(f"at most {MAX_CHANNELS} channels", field="channels")
    existing = {c.id: c for c in channels_of(session, user.id)}
    kept: set[int] = set()
    for i, spec in enumerate(channels):
        at = f"channels[{i}]"
        if spec.kind not in CHANNEL_KINDS:
            raise InvalidInput(
                f"unknown channel kind {spec.kind!r} (use {', '.join(CHANNEL_KINDS)})", field=f"{at}.kind"
            )
        if spec.id is not None:
            channel = existing.get(spec.id)
            if channel is None or spec.id in kept:
                raise InvalidInput(f"no channel {spec.id} of yours", field=f"{at}.id")
            if channel.kind != spec.kind:
                raise InvalidInput(
                    "a channel's kind cannot change: remove it and add a new one", field=f"{at}.kind"
                )
            kept.add(spec.id)
        else:
            channel = NotifyChannel(user_id=user.id, kind=spec.kind, secret=None)
        _apply_channel(channel, spec, at=at, keyring=keyring)
        if spec.id is None:
            session.add(channel)
    for cid, channel in existing.items():
        if cid not in kept:
            session.delete(channel)
    if pref is None:
        pref = NotifyPreference(user_id=user.id, version=0)
        session.add(pref)
    pref.kinds, pref.quiet_start, pref.quiet_end = kinds_ok, start, end
    pref.timezone, pref.urgent_in_quiet = tz, urgent_in_quiet
    pref.version = current + 1
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as err:  # two first saves at once: the other one created the row
        raise Conflict("the notification settings were saved meanwhile: reload them") from err
    return pref
