"""The bus: at-least-once delivery of small messages between processes.

Two implementations of one protocol:
- :class:`RedisBus`: Redis Streams with consumer groups (explicit ack, re-claiming entries a dead
  consumer left pending, approximate length bound); survives a Redis restart by re-creating its group.
- :class:`MemoryBus`: the same semantics inside one process, for the embedded default and unit tests.

Consumers must be idempotent: an entry is redelivered when its consumer dies before acking it.
An entry a group cannot handle is given up on: ``dead_letter`` moves it, with the error, to the topic's
dead letters (``<namespace>dead:<topic>`` on Redis) and acks it; an entry that cannot even be decoded
goes there at once. Admins list and requeue them (``gridpatrol bus dead-letters``).
Besides groups (work sharing), ``read_broadcast`` lets every reader see every entry (the API's live
stream fans ticket notices out to its browsers this way).
"""


from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from models.bus.messages import AccessChange, ConfigChange, EventClip, RuleEvent, TicketNotice

AnyMessage = RuleEvent | EventClip | ConfigChange | TicketNotice | AccessChange
DEFAULT_MAXLEN = 1_000_000
DEAD_MAXLEN = 100_000
#: longest error text kept with a dead letter
ERROR_CHARS = 2000


@dataclass(frozen=True)
class Delivery:
    id: str
    message: AnyMessage
    #: how many times this entry has been delivered (1 = first time)
    deliveries: int = 1


@dataclass(frozen=True)
class DeadLetter:
    """An entry a group gave up on: the original payload, why, after how many deliveries and when."""

    #: its id among the topic's dead letters (what a requeue of one entry names)
    id: str
    topic: str
    #: its id on the topic when it was given up on
    entry_id: str
    group: str
    payload: bytes
    error: str
    deliveries: int
    at: datetime


class Bus(Protocol):
    def publish(self, topic: str, messages: Sequence[AnyMessage]) -> list[str]: ...

    def consume(
        self, topic: str, *, group: str, consumer: str, count: int = 100, block_ms: int = 1000
    ) -> list[Delivery]: ...

    def ack(self, topic: str, *, group: str, ids: Sequence[str]) -> None: ...

    def claim_stale(
        self, topic: str, *, group: str, consumer: str, min_idle_ms: int, count: int = 100
    ) -> list[Delivery]:
        """Take over entries pending longer than ``min_idle_ms``; successive calls walk on through the
        pending entries (a cursor) instead of offering the same first ones again."""

    def read_broadcast(
        self, topic: str, *, after: str | None, count: int = 100, block_ms: int = 1000
    ) -> tuple[str, list[Delivery]]: ...

    def dead_letter(self, topic: str, *, group: str, delivery: Delivery, error: str) -> bool:
        """Give up on a pending entry: keep it among the topic's dead letters with ``error`` and ack it.
        False when it was no longer pending (another consumer acked or buried it first)."""

    def dead_letters(self, topic: str, *, count: int = 1000) -> list[DeadLetter]:
        """The topic's dead letters, oldest first."""

    def dead_letter_count(self, topic: str) -> int: ...

    def requeue_dead(self, topic: str, *, ids: Sequence[str] | None = None) -> list[str]:
        """Put dead letters (all, or those ``ids``) back on their topic as fresh entries and remove them
        from the dead letters; returns the new entry ids."""

    def dead_lettered(self) -> dict[str, int]:
        """Entries this bus object gave up on since it was made, by topic (for a metric)."""

    def close(self) -> None: ...


def clip_error(error: str) -> str:
    return error if len(error) <= ERROR_CHARS else error[: ERROR_CHARS - 3] + "..."


def make_bus(redis_url: str | None, *, namespace: str = "") -> Bus:
    """Redis Streams when a URL is configured, else the in-process bus (embedded mode)."""
    from models.bus.memory import MemoryBus
    from models.bus.redis_streams import RedisBus

    return RedisBus(redis_url, namespace=namespace) if redis_url else MemoryBus()
