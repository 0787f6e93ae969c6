"""One installation time zone (GRIDPATROL_TIMEZONE, default Asia/Shanghai) for what people read and
write as a time of day; instants everywhere else stay UTC with their offset."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.settings import ApiSettings
from detectors.backends.base import Detector, FrameInput
from detectors.detections import Detections
from detectors.pipeline import Pipeline
from detectors.rules import banner_time
from gridpatrol.settings import WorkerSettings
from models.bus.health_board import MemoryHealthBoard
from models.bus.protocol import make_bus
from models.grid.zonespec import ZoneSpec
from models.settings import LocaleSettings
from models.tickets.desk import TicketDesk
from tests.conftest import TEST_SECRET
from tests.support import sample

SHANGHAI = ZoneInfo("Asia/Shanghai")


class _ParkedCar(Detector):
    """A car standing in the lower middle of the frame in every frame (the road rule's stationary object)."""

    class_names = ("car",)

    def detect_batch(self, frames: Sequence[FrameInput]) -> list[Detections]:
        out = []
        for f in frames:
            h, w = f.frame_bgr.shape[:2]
            out.append(
                Detections(
                    xyxy=np.array([[w * 0.4, h * 0.55, w * 0.6, h * 0.8]], dtype=np.float32),
                    confidence=np.array([0.9], dtype=np.float32),
                    class_id=np.array([0]),
                    class_names=self.class_names,
                )
            )
        return out


def _road_events(*, start_utc: datetime, tz: ZoneInfo | None) -> list[str]:
    """Run two minutes of a parked car through a road zone scheduled 07:00-09:00, starting at ``start_utc``."""
    zone = ZoneSpec(
        name="早市", kind="road", polygon=[(0.0, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0)], dwell_s=10, schedule=["07:00-09:00"]
    )
    pipeline = Pipeline([zone], _ParkedCar(), gate=False, epoch=start_utc, tz=tz)
    frame = np.zeros((360, 640, 3), np.uint8)
    events: list[str] = []
    for i in range(240):
        events += [e.type for e in pipeline.process(frame, i * 0.5)]
    return events


def test_a_morning_schedule_runs_in_the_morning_of_the_installation() -> None:
    # 07:30 in Shanghai is 23:30 UTC the day before
    morning_local = datetime(2026, 11, 29, 23, 30, tzinfo=UTC)
    afternoon_local = datetime(2026, 11, 30, 7, 30, tzinfo=UTC)  # 07:30 UTC = 15:30 in Shanghai
    assert _road_events(start_utc=morning_local, tz=SHANGHAI)[:1] == ["started"]
    assert _road_events(start_utc=afternoon_local, tz=SHANGHAI) == []
    # without a zone the pipeline reads the epoch's own zone (UTC): the old behaviour, now explicit
    assert _road_events(start_utc=afternoon_local, tz=None)[:1] == ["started"]


def test_evidence_banners_show_local_time_with_its_offset() -> None:
    wall = datetime(2026, 11, 30, 9, 5, 3, tzinfo=UTC).astimezone(SHANGHAI)
    assert banner_time(wall) == "2026-11-30 17:05:03 +08:00"


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("Asia/Shanghai", None),
        ("Asia/Urumqi", None),
        ("UTC", None),
        ("Beijing", "GRIDPATROL_TIMEZONE 'Beijing' is not an IANA time zone"),
        ("+08:00", "is not an IANA time zone"),
    ],
)
def test_timezone_setting(value: str, error: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDPATROL_TIMEZONE", value)
    if error is None:
        assert LocaleSettings().tz == ZoneInfo(value)
        assert WorkerSettings().timezone == value
    else:
        with pytest.raises(ValueError, match=error):
            WorkerSettings()


def test_default_timezone_is_beijing_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRIDPATROL_TIMEZONE", raising=False)
    assert WorkerSettings().tz == SHANGHAI


def test_camera_health_times_are_iso_8601_with_an_offset(seeded: sessionmaker[Session], desk: TicketDesk) -> None:
    board = MemoryHealthBoard()
    app = create_app(ApiSettings(secret_key=TEST_SECRET), session_factory=seeded, desk=desk, bus=make_bus(None), health_board=board)
    since = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    # what a worker posts: epoch seconds (ingest's health snapshot)
    board.publish("w1", {"1": {"camera_id": "1", "state": "backoff", "state_since": since.timestamp(), "next_retry_ts": since.timestamp() + 4}})
    with TestClient(app) as c:
        r = c.post("/api/auth/token", data={"username": "admin1", "password": sample.PASSWORD})
        body = c.get("/api/cameras/1/health", headers={"Authorization": f"Bearer {r.json()['access_token']}"}).json()
    assert datetime.fromisoformat(body["state_since"]) == since
    assert body["state_since"].endswith(("Z", "+00:00"))
    assert datetime.fromisoformat(body["next_retry_at"]) == since.replace(second=4)


def test_tickets_per_day_are_counted_in_local_days(seeded: sessionmaker[Session], desk: TicketDesk) -> None:
    from sqlalchemy import select, true

    from models.db.engine import transaction
    from models.db.tables import Ticket
    from models.tickets.stats import evaluate

    opened_utc = [
        datetime(2026, 11, 29, 17, 30, tzinfo=UTC),  # 2026-11-30 01:30 in Shanghai (still the 29th in UTC)
        datetime(2026, 11, 30, 15, 0, tzinfo=UTC),  # 2026-11-30 23:00
        datetime(2026, 11, 30, 16, 30, tzinfo=UTC),  # 2026-12-01 00:30
    ]
    with transaction(seeded) as s:
        for i, at in enumerate(opened_utc):
            s.add(Ticket(category="other", state="open", opened_at=at, description=f"t{i}"))
    window = {"since": datetime(2026, 11, 1, tzinfo=UTC), "until": datetime(2026, 12, 2, tzinfo=UTC), "now": datetime(2026, 12, 2, tzinfo=UTC)}
    with seeded() as s:
        assert s.scalar(select(Ticket.id).limit(1)) is not None
        local = evaluate(s, scope=true(), tz=SHANGHAI, **window)
        utc = evaluate(s, scope=true(), tz=UTC, **window)
    assert local.by_day == {"2026-11-30": 2, "2026-12-01": 1}
    assert utc.by_day == {"2026-11-29": 1, "2026-11-30": 2}
    app = create_app(ApiSettings(secret_key=TEST_SECRET), session_factory=seeded, desk=desk, bus=make_bus(None))
    with TestClient(app) as c:
        r = c.post("/api/auth/token", data={"username": "admin1", "password": sample.PASSWORD})
        params = {"since": "2026-11-01T00:00:00+08:00", "until": "2026-12-02T00:00:00+08:00"}
        body = c.get("/api/stats", params=params, headers={"Authorization": f"Bearer {r.json()['access_token']}"}).json()
    assert (body["timezone"], body["by_day"]) == ("Asia/Shanghai", {"2026-11-30": 2, "2026-12-01": 1})
