"""Collecting a device's catalog: one Query, then Response MESSAGEs until ``SumNum`` items arrived.

Devices split a large catalog over many MESSAGEs (NVRs send a handful of items in each), in any order,
sometimes repeating one. Items are kept by channel ID, so a repeated message counts once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from ingest.gb28181.manscdp import CatalogItem, CatalogPart


@dataclass
class PendingCatalog:
    device_id: str
    sn: int
    sum_num: int | None = None
    items: dict[str, CatalogItem] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, part: CatalogPart) -> None:
        self.sum_num = part.sum_num
        for item in part.items:
            self.items[item.channel_id] = item
        if self.sum_num is not None and len(self.items) >= self.sum_num:
            self.done.set()

    @property
    def complete(self) -> bool:
        return self.done.is_set()


@dataclass(frozen=True)
class Catalog:
    device_id: str
    #: items the device says its catalog has (0 when it never answered)
    sum_num: int
    items: list[CatalogItem]
    answered: bool

    @property
    def complete(self) -> bool:
        return self.answered and len(self.items) >= self.sum_num


class CatalogCollector:
    """Pending catalog queries by (device, SN)."""

    def __init__(self) -> None:
        self._pending: dict[tuple[str, int], PendingCatalog] = {}
        self._sn = 0

    def next_sn(self) -> int:
        self._sn = (self._sn % 2_000_000_000) + 1
        return self._sn

    def expect(self, device_id: str, sn: int) -> PendingCatalog:
        pending = PendingCatalog(device_id=device_id, sn=sn)
        self._pending[(device_id, sn)] = pending
        return pending

    def forget(self, pending: PendingCatalog) -> None:
        self._pending.pop((pending.device_id, pending.sn), None)

    def feed(self, part: CatalogPart, *, sender: str) -> bool:
        """A Response MESSAGE arrived; True when a query was waiting for it. Devices that answer with
        another SN (some NVRs number their own) are matched by device when one query is pending."""
        device_id = part.device_id or sender
        pending = self._pending.get((device_id, part.sn)) if part.sn is not None else None
        if pending is None:
            mine = [p for (dev, _), p in self._pending.items() if dev in (device_id, sender)]
            pending = mine[0] if len(mine) == 1 else None
        if pending is None:
            return False
        pending.add(part)
        return True

    async def wait(self, pending: PendingCatalog, *, timeout_s: float) -> Catalog:
        """The items collected when all arrived or when ``timeout_s`` passed (then ``complete`` is false)."""
        try:
            await asyncio.wait_for(pending.done.wait(), timeout=timeout_s)
        except TimeoutError:
            pass
        finally:
            self.forget(pending)
        return Catalog(
            device_id=pending.device_id,
            sum_num=pending.sum_num or 0,
            items=list(pending.items.values()),
            answered=pending.sum_num is not None,
        )
