"""The ticket states grouped as every part asks about them: one home for each set."""

from __future__ import annotations

from models.db.tables import TicketState

S = TicketState

#: handled by nobody yet: late after ``accept_by``
WAITING_ACCEPT: frozenset[TicketState] = frozenset({S.open, S.dispatched, S.rejected, S.reopened})
#: not resolved yet: late after ``resolve_by``
WAITING_RESOLVE: frozenset[TicketState] = WAITING_ACCEPT | {S.accepted}
#: someone still has to act (a false alarm may be dismissed from any of these)
LIVE: frozenset[TicketState] = WAITING_RESOLVE
#: still holding its camera zone's live slot (``active_key``): live, or resolved and under video verification
HOLDS_LIVE_SLOT: frozenset[TicketState] = LIVE | {S.resolved}


def values(states: frozenset[TicketState]) -> list[str]:
    """The stored strings of a set of states, in a stable order (for SQL ``IN``)."""
    return sorted(s.value for s in states)
