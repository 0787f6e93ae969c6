"""Rule events as a worker would send them, for ticket tests."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

from models.bus.messages import RuleEvent

_ids = itertools.count(1)


class Episode:
    """One detection episode on a camera zone: started, some updates, ended."""

    def __init__(self, camera_id: int, *, zone: str = "lane", rule: str = "fire_lane_blockage", start: datetime) -> None:
        self.camera_id, self.zone, self.rule, self.start = camera_id, zone, rule, start
        self.n = 0

    def event(self, kind: str, *, after_s: float = 0.0, evidence_key: str | None = None) -> RuleEvent:
        self.n += 1
        return RuleEvent(
            event_id=f"ev-{self.camera_id}-{self.zone}-{self.start.timestamp():.0f}-{self.n}-{next(_ids)}",
            type=kind,  # type: ignore[arg-type]
            camera_id=self.camera_id,
            zone=self.zone,
            rule=self.rule,  # type: ignore[arg-type]
            episode_start=self.start,
            at=self.start + timedelta(seconds=after_s),
            count=1,
            score=0.5,
            boxes=[[0.1, 0.5, 0.3, 0.9]],
            evidence_key=evidence_key,
        )
