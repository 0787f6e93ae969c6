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
import threading
from collections.abc import Callable, Iterable

from models.bus.messages import ACCESS_CHANGES, AccessChange, AccessChangeReason
from models.bus.protocol import Bus
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


class AccessChangeWatch:
    """One thread per process reading access-change notices and calling ``on_change`` with the user
    ids of each batch (from that thread: hand them to your event loop with ``call_soon_threadsafe``)."""

    def __init__(self, bus: Bus, on_change: Callable[[frozenset[int]], None], *, name: str = "access-watch") -> None:
        self._bus = bus
        self._on_change = on_change
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        cursor: str | None = None
        while not self._stop.is_set():
            try:
                cursor, deliveries = self._bus.read_broadcast(ACCESS_CHANGES, after=cursor, block_ms=500)
            except BusError as err:
                logger.warning("access watch: bus read failed (%s); retrying", err)
                self._stop.wait(1.0)
                continue
            users = frozenset(d.message.user_id for d in deliveries if isinstance(d.message, AccessChange))
            if users:
                try:
                    self._on_change(users)
                except Exception:  # the top of a long-running loop: one bad callback never stops the watch
                    logger.exception("access watch: handling a change of users %s failed", sorted(users))
