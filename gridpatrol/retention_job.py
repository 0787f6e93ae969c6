"""The ticketer's retention thread: deletes what the retention settings say, counts it for the metrics.

A thread of its own (like the patrol jobs), so that a large first pass never holds up rule events.
Several ticketers may run it at once: ``models.tickets.retention`` shares the rows between them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from models.db.tables import utcnow
from models.evidence.store import EvidenceStore
from models.tickets.retention import KINDS, RetentionSettings, run_retention

logger = logging.getLogger(__name__)


class RetentionJob:
    def __init__(
        self,
        factory: sessionmaker[Session],
        settings: RetentionSettings,
        *,
        evidence: EvidenceStore,
        counts: dict[str, int] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.factory, self.settings, self.evidence, self.clock = factory, settings, evidence, clock
        #: rows (and files) deleted per kind since start: ``gridpatrol_retention_deleted_total``
        self.counts = counts if counts is not None else {}
        for kind in KINDS:
            self.counts.setdefault(kind, 0)

    def _delete_file(self, key: str) -> None:
        try:
            self.evidence.delete(key)
        except Exception as err:  # a missing or unreadable file must not stop the pass; its row is gone
            logger.warning("retention: evidence %s not deleted: %s", key, err)

    def step(self) -> dict[str, int]:
        result = run_retention(self.factory, self.settings, now=self.clock(), delete_file=self._delete_file)
        for kind, n in result.deleted.items():
            self.counts[kind] = self.counts.get(kind, 0) + n
        if any(result.deleted.values()):
            logger.info("retention: deleted %s", {k: n for k, n in result.deleted.items() if n})
        return result.deleted

    def run(self, stop: threading.Event) -> None:
        """:meth:`step` every ``retention_every_s`` until ``stop``; a failed pass is logged and retried."""
        while not stop.is_set():
            try:
                self.step()
            except Exception:  # the loop must survive a database outage
                logger.exception("retention pass failed")
            stop.wait(self.settings.retention_every_s)
