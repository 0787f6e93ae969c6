"""Access-change notices: "this user's access changed", so that their open channels re-check now.

Whoever changes a user's assignments, role, enabled flag, grants or tokens publishes one after the
commit (:func:`publish_access_change`); every process serving long-lived channels (the API's SSE feed,
wall tiles, the RTSP gateway) reads the topic as a broadcast reader (:class:`AccessChangeWatch`) and
re-checks those users' channels at once instead of at their next periodic check. A lost notice only
delays the cut until that periodic check, which stays the guarantee (a grant that ends by itself
publishes nothing).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from models.bus.listener import BroadcastListener
from models.bus.messages import ACCESS_CHANGES, AccessChange, AccessChangeReason
from models.bus.protocol import AnyMessage, Bus
from models.db.tables import utcnow
from models.errors import BusError

logger = logging.getLogger(__name__)


def publish_access_change(bus: Bus | None, *, user_ids: Iterable[int], reason: AccessChangeReason) -> None:
    """Tell every channel server that these users' access changed (call it after the commit). A bus
    failure is logged, never raised: the change is committed and the periodic checks catch it."""
    ids = sorted({uid for uid in user_ids if uid is not None and uid > 0})
    if bus is None or not ids:
        return
    now = utcnow()
    messages = [AccessChange(user_id=uid, reason=reason, at=now) for uid in ids]
    try:
        bus.publish(ACCESS_CHANGES, messages)
    except BusError as err:
        logger.warning("access change of users %s not published (%s); streams re-check on their period", ids, err)


class AccessChangeWatch(BroadcastListener):
    """One thread per process reading access-change notices and calling ``on_change`` with the user
    ids of each batch (from that thread: hand them to your event loop with ``call_soon_threadsafe``)."""

    def __init__(self, bus: Bus, on_change: Callable[[frozenset[int]], None], *, name: str = "access-watch") -> None:
        def users_of(messages: list[AnyMessage]) -> None:
            users = frozenset(m.user_id for m in messages if isinstance(m, AccessChange))
            if users:
                on_change(users)

        super().__init__(bus, ACCESS_CHANGES, users_of, name=name)
