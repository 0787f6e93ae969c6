"""A thread that reads one topic as a broadcast reader and hands every batch to a callback.

Every process that serves long-lived channels listens this way (ticket notices for the live feed,
access-change notices for every stream): each process sees every entry, from the moment it started.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from models.bus.protocol import AnyMessage, Bus
from models.errors import BusError

logger = logging.getLogger(__name__)


class BroadcastListener:
    """Reads ``topic`` until stopped and calls ``on_messages`` with each non-empty batch, from its own
    thread (hand the batch to an event loop with ``call_soon_threadsafe``). A bus outage is retried every
    second; a failing callback is logged and the listener goes on."""

    def __init__(self, bus: Bus, topic: str, on_messages: Callable[[list[AnyMessage]], None], *, name: str) -> None:
        self._bus, self._topic, self._on_messages, self._name = bus, topic, on_messages, name
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
                cursor, deliveries = self._bus.read_broadcast(self._topic, after=cursor, block_ms=500)
            except BusError as err:
                logger.warning("%s: bus read failed (%s); retrying", self._name, err)
                self._stop.wait(1.0)
                continue
            if not deliveries:
                continue
            try:
                self._on_messages([d.message for d in deliveries])
            except Exception:  # the top of a long-running loop: one bad batch never stops the listener
                logger.exception("%s: handling %d messages failed", self._name, len(deliveries))
