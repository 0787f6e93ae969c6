"""Satisfaction callbacks (回访) on closed tickets from citizens; a dissatisfied one may reopen the ticket.

One callback per closing (unique ``ticket_id, closed_at``): two entered at once for one closing give one
row and a Conflict for the other, never two results counted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.bus.messages import TicketNotice
from models.db.tables import Callback, Ticket, TicketState, User
from models.errors import Conflict, InvalidInput
from models.identity.access import AccessScope
from models.identity.audit import record_change
from models.tickets.desk import TicketDesk, lock_tickets

Result = Literal["satisfied", "basically_satisfied", "dissatisfied"]
RESULTS: tuple[str, ...] = ("satisfied", "basically_satisfied", "dissatisfied")
RESULT_ZH = {"satisfied": "满意", "basically_satisfied": "基本满意", "dissatisfied": "不满意"}


def record_callback(
    session: Session,
    *,
    desk: TicketDesk,
    ticket: Ticket,
    user: User,
    scope: AccessScope,
    result: str,
    note: str,
    channel: str,
    reopen: bool,
    now: datetime,
) -> tuple[Callback, list[TicketNotice]]:
    """Record the callback on the ticket's latest closing; ``reopen`` (dissatisfied only) sends it back
    through the desk's ``reopen`` transition with the callback's note."""
    if result not in RESULTS:
        raise InvalidInput(f"unknown result {result!r} (use {', '.join(RESULTS)})", field="result")
    if reopen and result != "dissatisfied":
        raise InvalidInput("only a dissatisfied callback reopens the ticket", field="reopen")
    lock_tickets(session, [ticket.id])
    if ticket.state != TicketState.closed.value or ticket.closed_at is None:
        raise Conflict(f"回访只针对已结案的工单 (the ticket is {ticket.state}, not closed)")
    existing = session.scalar(
        select(Callback.id).where(Callback.ticket_id == ticket.id, Callback.closed_at == ticket.closed_at)
    )
    if existing is not None:
        raise Conflict("该工单本次结案已回访 (this closing already has a callback)")
    row = Callback(
        ticket_id=ticket.id,
        closed_at=ticket.closed_at,
        result=result,
        note=note,
        channel=channel,
        by_id=user.id,
        reopened=reopen,
        at=now,
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError as err:
        raise Conflict("该工单本次结案已回访 (this closing already has a callback)") from err
    notices: list[TicketNotice] = []
    if reopen:
        text = f"回访不满意，重新打开：{note}" if note.strip() else "回访不满意，重新打开"
        notices = desk.transition(session, ticket, actor=user, scope=scope, action="reopen", note=text)
    record_change(
        session,
        user=user,
        channel="api",
        object_type="ticket",
        object_id=ticket.id,
        detail={"op": "callback", "result": result, "channel": channel, "reopened": reopen},
    )
    return row, notices
