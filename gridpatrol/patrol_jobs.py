"""The patrol scheduler: today's (and tomorrow's) patrol tasks, missed tasks, the weekly and monthly reports.

Every step is idempotent (unique tasks, unique report keys), so any number of processes may run it.
Started by ``serve`` and ``ticketer`` next to the ticketer loop: ``Runtime.spawn("patrol", run_patrol_jobs, ...)``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from models.db.engine import transaction
from models.db.tables import utcnow
from models.patrol.reports import generate_due
from models.patrol.settings import PatrolSettings
from models.patrol.tasks import generate_tasks, local_day, mark_missed

logger = logging.getLogger(__name__)


@dataclass
class PatrolJobs:
    factory: sessionmaker[Session]
    settings: PatrolSettings
    #: where report announcements go: the ticket webhooks (GRIDPATROL_WEBHOOK_URLS), same signing and delivery
    webhook_urls: list[str]
    clock: Callable[[], datetime] = utcnow

    def step(self) -> dict[str, int]:
        """One round; returns what it did (tasks created, tasks marked missed, reports generated)."""
        now = self.clock()
        tz = self.settings.tz
        today = local_day(now, tz)
        with transaction(self.factory) as session:
            created = generate_tasks(session, day=today, tz=tz) + generate_tasks(
                session, day=today + timedelta(days=1), tz=tz
            )
            missed = mark_missed(session, now=now)
        with transaction(self.factory) as session:
            reports = generate_due(
                session, now=now, tz=tz, settings=self.settings, webhook_urls=self.webhook_urls
            )
        if created or missed or reports:
            logger.info(
                "patrol: %d tasks created, %d missed, reports %s", created, missed, [r.title for r in reports]
            )
        return {"created": created, "missed": missed, "reports": len(reports)}


def run_patrol_jobs(jobs: PatrolJobs, stop: threading.Event, *, every_s: float = 60.0) -> None:
    """Run :meth:`PatrolJobs.step` until ``stop``; a failed round is logged and retried next time."""
    while not stop.is_set():
        try:
            jobs.step()
        except Exception:  # the loop must survive a database outage
            logger.exception("patrol jobs round failed")
        stop.wait(every_s)
