"""The notification outbox: who is told what (from ticket notices), queued in the change's own
transaction; leasing and marking deliveries for the senders (``gridpatrol/notify.py``).

Delivery mirrors the webhook outbox (``models/tickets/outbox.py``, whose backoff and lease margin it
uses): a row is leased alone, just before its send, in a short transaction (``FOR UPDATE SKIP LOCKED``
on PostgreSQL), sent outside any transaction, then marked; two ticketers never send the same row while
its lease lasts. Quiet hours are decided when a row is reached, with the user's preferences of that
moment: a row due inside them is ``held`` until they end (urgent kinds pass when the user allows it).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from models.bus.messages import TicketNotice
from models.db.engine import transaction
from models.db.tables import (
    Assignment,
    Camera,
    Department,
    DepartmentMember,
    GridNode,
    NotifyChannel,
    NotifyDelivery,
    NotifyPreference,
    Role,
    Ticket,
    User,
    utcnow,
)
from models.identity.access import load_scope
from models.notify.kinds import KINDS, URGENT_KINDS
from models.notify.preferences import preference_of, quiet_until
from models.settings import DEFAULT_TIMEZONE
from models.tickets.outbox import backoff_s
from models.tickets.states import LIVE, WAITING_ACCEPT, WAITING_RESOLVE, values

logger = logging.getLogger(__name__)

#: notice events → the kind of message they make (events not listed tell nobody)
EVENT_KINDS = {
    "dispatch": "assigned",
    "escalated": "escalated",
    "unattended": "overdue",
    "reopen": "reopened",
    "linkage_requested": "linkage",
    "part_dispatched": "linkage",
}
_SEEN = "gridpatrol.notify.seen"


# --- who is told -----------------------------------------------------------------------------------
def _grid_leaders(session: Session, grid_id: int | None) -> list[int]:
    if grid_id is None:
        return []
    return list(
        session.scalars(
            select(User.id).join(Assignment, Assignment.user_id == User.id)
            .where(Assignment.grid_id == grid_id, User.role == Role.grid_leader.value)
        )
    )  # fmt: skip


def _role_ids(session: Session, role: Role) -> list[int]:
    return list(session.scalars(select(User.id).where(User.role == role.value)))


def _department_members(session: Session, code: str) -> list[int]:
    return list(
        session.scalars(
            select(DepartmentMember.user_id).join(Department, Department.id == DepartmentMember.department_id)
            .where(Department.code == code)
        )
    )  # fmt: skip


def _recipients(session: Session, n: TicketNotice, ticket: Ticket) -> list[tuple[int, str]]:
    """(user id, kind) pairs one notice makes, before preferences."""
    d = n.detail
    out: list[tuple[int, str]] = []
    if n.event == "dispatch":
        ids = [int(u) for u in d.get("leaders", [])] or ([ticket.assignee_id] if ticket.assignee_id else [])
        out += [(u, "assigned") for u in ids]
    elif n.event == "escalated":
        out += [(int(u), "escalated") for u in d.get("managers", [])]
        out += [(u, "overdue") for u in _grid_leaders(session, ticket.grid_id)]
    elif n.event == "unattended":
        out += [
            (u, "overdue") for u in _grid_leaders(session, ticket.grid_id) + _role_ids(session, Role.operator)
        ]
    elif n.event == "reopen":
        ids = ([ticket.assignee_id] if ticket.assignee_id else []) + _grid_leaders(session, ticket.grid_id)
        out += [(u, "reopened") for u in ids]
    elif n.event == "linkage_requested":
        out += [(u, "linkage") for u in _role_ids(session, Role.operator)]
    elif n.event == "part_dispatched" and d.get("department"):
        out += [(u, "linkage") for u in _department_members(session, str(d["department"]))]
    return out


def _place(session: Session, ticket: Ticket) -> str:
    """The grid path in words: 区/街道/社区/网格 names."""
    if ticket.grid is None:
        return ""
    ids = [int(p) for p in ticket.grid.path.strip("/").split("/") if p]
    names = {
        i: name for i, name in session.execute(select(GridNode.id, GridNode.name).where(GridNode.id.in_(ids)))
    }
    return "/".join(names[i] for i in ids if i in names)


@dataclass
class _Lookups:
    """Names read once per call (the session's identity map holds objects weakly: a batch of hundreds of
    tickets would otherwise load the same camera and grid rows again and again)."""

    session: Session
    places: dict[int | None, str] = field(default_factory=dict)
    cameras: dict[int | None, str] = field(default_factory=dict)

    def place(self, ticket: Ticket) -> str:
        if ticket.grid_id not in self.places:
            self.places[ticket.grid_id] = _place(self.session, ticket)
        return self.places[ticket.grid_id]

    def camera(self, camera_id: int | None) -> str:
        if camera_id not in self.cameras:
            name = (
                self.session.scalar(select(Camera.name).where(Camera.id == camera_id))
                if camera_id is not None
                else None
            )
            self.cameras[camera_id] = name or ""
        return self.cameras[camera_id]


def _facts(lookups: _Lookups, n: TicketNotice, ticket: Ticket) -> dict[str, Any]:
    """What a message says about the ticket, fixed when the event happens (rendered when sent)."""
    waiting_accept = ticket.state in values(WAITING_ACCEPT)
    deadline = ticket.accept_by if waiting_accept else ticket.resolve_by
    note = ""
    if n.event == "escalated":
        note = f"已升级至第{n.detail.get('level', '')}级" + (
            f"（{n.detail['to']}）" if n.detail.get("to") else ""
        )
    elif n.event == "unattended":
        note = "上级无负责人，请指挥中心派遣"
    elif n.event == "linkage_requested":
        note = f"网格长请求联动：{n.detail.get('kind', '')}"
    elif n.event == "part_dispatched":
        note = "请协办部门受理"
    return {
        "event": n.event,
        "ticket_id": ticket.id,
        "category": ticket.category,
        "case_code": ticket.case_code,
        "state": ticket.state,
        "place": lookups.place(ticket),
        "camera": lookups.camera(ticket.camera_id),
        "deadline": deadline.isoformat() if deadline is not None else None,
        "deadline_label": "受理时限" if waiting_accept else "处置时限",
        "note": note,
    }


def _channels_by_user(session: Session, user_ids: Iterable[int]) -> dict[int, list[NotifyChannel]]:
    wanted = sorted(set(user_ids))
    out: dict[int, list[NotifyChannel]] = defaultdict(list)
    if not wanted:
        return out
    rows = session.scalars(
        select(NotifyChannel).join(User, User.id == NotifyChannel.user_id)
        .where(NotifyChannel.user_id.in_(wanted), NotifyChannel.enabled.is_(True), User.enabled.is_(True))
        .order_by(NotifyChannel.id)
    )  # fmt: skip
    for c in rows:
        out[c.user_id].append(c)
    return out


def queue_for_notices(session: Session, notices: Sequence[TicketNotice]) -> int:
    """Queue the messages ``notices`` make for each recipient's enabled channels, in the caller's
    transaction; returns the rows added. A notice queued twice in one session (a caller passing on a
    callee's notices) is queued once, and one person gets one message per ticket per call."""
    seen: set[tuple[Any, ...]] = session.info.setdefault(_SEEN, set())
    wanted: list[tuple[TicketNotice, Ticket, int, str]] = []
    for n in notices:
        if n.event not in EVENT_KINDS:
            continue
        key = (n.ticket_id, n.event, n.at.isoformat(), repr(sorted(n.detail.items())))
        if key in seen:
            continue
        seen.add(key)
        ticket = session.get(Ticket, n.ticket_id)
        if ticket is None:
            continue
        for user_id, kind in _recipients(session, n, ticket):
            wanted.append((n, ticket, user_id, kind))
    if not wanted:
        return 0
    channels = _channels_by_user(session, (u for _, _, u, _ in wanted))
    ids = sorted(channels)
    if not ids:
        return 0
    names = {
        uid: name for uid, name in session.execute(select(User.id, User.username).where(User.id.in_(ids)))
    }
    stored = {
        p.user_id: p
        for p in session.scalars(select(NotifyPreference).where(NotifyPreference.user_id.in_(ids)))
    }
    lookups = _Lookups(session)
    rows: list[NotifyDelivery] = []
    told: set[tuple[int, int]] = set()
    with session.no_autoflush:
        for n, ticket, user_id, kind in wanted:
            if not channels.get(user_id) or (ticket.id, user_id) in told:
                continue
            if n.detail.get("actor") and names.get(user_id) == n.detail.get("actor"):
                continue  # nobody is told about their own move
            pref = stored.get(user_id)
            if kind not in (pref.kinds if pref is not None else KINDS):
                continue
            told.add((ticket.id, user_id))
            facts = _facts(lookups, n, ticket)
            rows += [
                NotifyDelivery(user_id=user_id, channel_id=c.id, kind=kind, ticket_id=ticket.id, payload=facts,
                               state="pending", next_attempt_at=n.at)
                for c in channels[user_id]
            ]  # fmt: skip
    session.add_all(rows)
    return len(rows)


def queue_camera_notice(session: Session, *, grid_id: int | None, facts: dict[str, Any], key: str, at: datetime) -> int:
    """Tell the leaders of the camera's grid that it went offline or came back (``facts``: the message's
    payload, ``key``: unique per outage and event, so a notice queued twice is sent once per channel)."""
    leaders = _grid_leaders(session, grid_id)
    channels = _channels_by_user(session, leaders)
    added = 0
    for user_id, chans in channels.items():
        if "camera_offline" not in (preference_of(session, user_id).kinds or []):
            continue
        added += sum(_queue_once(session, user_id, c.id, "camera_offline", key, facts, at) for c in chans)
    return added


def queue_test(session: Session, user: User, *, channel_id: int | None, at: datetime) -> list[int]:
    """A test message to each of the user's enabled channels (or to one); sent at once, quiet hours or not."""
    query = select(NotifyChannel).where(NotifyChannel.user_id == user.id, NotifyChannel.enabled.is_(True))
    if channel_id is not None:
        query = query.where(NotifyChannel.id == channel_id)
    rows = [
        NotifyDelivery(
            user_id=user.id, channel_id=c.id, kind="test", payload={}, state="pending", next_attempt_at=at
        )
        for c in session.scalars(query.order_by(NotifyChannel.id))
    ]
    session.add_all(rows)
    session.flush()
    return [r.id for r in rows]


# --- the daily summary -------------------------------------------------------------------------------
def _summary_payload(session: Session, user: User, *, now: datetime, tz: ZoneInfo) -> dict[str, Any]:
    scope = load_scope(session, user, at=now)
    today = now.astimezone(tz).date()
    start = datetime.combine(today, datetime.min.time(), tzinfo=tz)
    yesterday = start - timedelta(days=1)
    seen = scope.ticket_filter()
    live = Ticket.state.in_(values(LIVE))
    overdue = or_(
        and_(Ticket.state.in_(values(WAITING_ACCEPT)), Ticket.accept_by <= now),
        and_(Ticket.state.in_(values(WAITING_RESOLVE)), Ticket.resolve_by <= now),
    )

    def count(*where: Any) -> int:
        return int(session.scalar(select(func.count()).select_from(Ticket).where(seen, *where)) or 0)

    return {
        "day": today.isoformat(),
        "open": count(live),
        "overdue": count(live, overdue),
        "new": count(Ticket.opened_at >= yesterday, Ticket.opened_at < start),
        "closed": count(Ticket.closed_at >= yesterday, Ticket.closed_at < start),
    }


def queue_summaries(session: Session, *, now: datetime, summary_at: str) -> int:
    """Each subscriber's daily summary, once per local day, from ``summary_at`` (HH:MM, their time zone)
    on. Idempotent: the (channel, "summary:<day>") key is unique, so any number of ticketers may run it."""
    hour, minute = (int(p) for p in summary_at.split(":"))
    channels = _channels_by_user(session, session.scalars(select(NotifyChannel.user_id).distinct()))
    added = 0
    for user_id, chans in channels.items():
        pref = preference_of(session, user_id)
        if "daily_summary" not in (pref.kinds or []):
            continue
        tz = ZoneInfo(pref.timezone or DEFAULT_TIMEZONE)
        local = now.astimezone(tz)
        if (local.hour, local.minute) < (hour, minute):
            continue
        key = f"summary:{local.date().isoformat()}"
        done = set(
            session.scalars(
                select(NotifyDelivery.channel_id).where(
                    NotifyDelivery.user_id == user_id, NotifyDelivery.dedupe_key == key
                )
            )
        )
        todo = [c for c in chans if c.id not in done]
        if not todo:
            continue
        user = session.get(User, user_id)
        assert user is not None
        payload = _summary_payload(session, user, now=now, tz=tz)
        added += sum(_queue_once(session, user_id, c.id, "daily_summary", key, payload, now) for c in todo)
    return added


def _queue_once(
    session: Session, user_id: int, channel_id: int, kind: str, key: str, payload: dict[str, Any], at: datetime
) -> bool:
    """One pending delivery, unless one with this dedupe key is queued already (``uq_notify_dedupe``: another
    ticketer queued it first); True when this call added it."""
    try:
        with session.begin_nested():
            session.add(NotifyDelivery(user_id=user_id, channel_id=channel_id, kind=kind, dedupe_key=key,
                                       payload=payload, state="pending", next_attempt_at=at))  # fmt: skip
    except IntegrityError:
        return False
    return True


# --- delivery ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Leased:
    row_id: int
    kind: str
    payload: dict[str, Any]
    channel_kind: str
    address: str
    secret: str | None
    until: datetime


def lease_next(
    factory: sessionmaker[Session], *, at: datetime, after_id: int, lease_for_s: float
) -> Leased | int | None:
    """Lease the next due row after ``after_id``: a :class:`Leased`, or the id of a row that was held
    for quiet hours or failed without a send (the caller moves past it), or None when none is due."""
    with transaction(factory) as s:
        row = s.scalars(
            select(NotifyDelivery)
            .where(
                NotifyDelivery.state.in_(("pending", "held")),
                NotifyDelivery.next_attempt_at <= at,
                NotifyDelivery.id > after_id,
            )
            .order_by(NotifyDelivery.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if row is None:
            return None
        channel = s.get(NotifyChannel, row.channel_id)
        user = s.get(User, row.user_id)
        if channel is None or user is None or not channel.enabled or not user.enabled:
            row.state, row.last_error = "failed", "channel or user disabled"
            return row.id
        if row.kind != "test" and not (
            row.kind in URGENT_KINDS and preference_of(s, row.user_id).urgent_in_quiet
        ):
            until = quiet_until(preference_of(s, row.user_id), at)
            if until is not None:
                row.state, row.next_attempt_at = "held", until
                return row.id
        until = at + timedelta(seconds=lease_for_s)
        row.state, row.next_attempt_at = "pending", until
        return Leased(
            row.id, row.kind, dict(row.payload), channel.kind, channel.address, channel.secret, until
        )


def mark(
    factory: sessionmaker[Session],
    leased: Leased,
    *,
    error: str,
    permanent: bool,
    at: datetime,
    max_attempts: int,
) -> bool:
    """Record one attempt; True when it delivered the row. A ``permanent`` error (a revoked robot key, a
    refused address) fails the row at once: retrying cannot help."""
    with transaction(factory) as s:
        row = s.get(NotifyDelivery, leased.row_id, with_for_update=True)
        if row is None or row.state == "sent":
            return False
        if row.next_attempt_at != leased.until:
            logger.warning(
                "notification %s: lease lost while sending (send longer than the lease)", leased.row_id
            )
        row.attempts = row.attempts + 1
        if not error:
            row.state, row.delivered_at, row.last_error = "sent", utcnow(), ""
            return True
        row.last_error = error[:500]
        if permanent or row.attempts >= max_attempts:
            row.state = "failed"
            logger.error(
                "notification %s (%s) failed after %d attempts: %s",
                leased.row_id,
                leased.channel_kind,
                row.attempts,
                error,
            )
        else:
            row.next_attempt_at = at + timedelta(seconds=backoff_s(row.attempts))
            logger.warning(
                "notification %s (%s) failed (%s); attempt %d",
                leased.row_id,
                leased.channel_kind,
                error,
                row.attempts,
            )
        return False


def retry(session: Session, delivery_id: int, *, at: datetime) -> NotifyDelivery | None:
    """Send a failed delivery again (its attempts start over)."""
    row = session.get(NotifyDelivery, delivery_id, with_for_update=True)
    if row is None:
        return None
    if row.state == "failed":
        row.state, row.attempts, row.next_attempt_at = "pending", 0, at
    return row
