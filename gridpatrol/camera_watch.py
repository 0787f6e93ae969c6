"""The ticketer's camera watch: cameras offline past ``GRIDPATROL_CAMERA_OFFLINE_NOTICE_S`` are announced.

A thread of its own (like retention), looking every few seconds at the workers' health board: a camera is
online when its worker reports it ``streaming``; any other state, or no report at all (no worker owns it,
its worker died), is offline. Every ticketer runs one; models/grid/outages.py makes sure each outage is
announced once (webhooks, people's phones), and the process that raised a notice publishes it on MQTT.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.bus.health_board import HealthBoard
from models.db.engine import transaction
from models.db.tables import Camera, utcnow
from models.errors import BusError
from models.grid.outages import CameraNotice, CameraState, ObserveResult, observe, ongoing

logger = logging.getLogger(__name__)

#: the longest pause between two looks (a small threshold looks more often)
EVERY_S = 5.0


class CameraWatch:
    def __init__(
        self,
        factory: sessionmaker[Session],
        health_board: HealthBoard,
        *,
        notice_after_s: float,
        webhook_urls: Sequence[str] = (),
        publish: Sequence[Callable[[dict[str, Any]], None]] = (),
        counts: dict[str, int] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.factory, self.health_board, self.clock = factory, health_board, clock
        self.notice_after_s, self.webhook_urls, self.publish = (
            notice_after_s,
            list(webhook_urls),
            list(publish),
        )
        #: notices raised by this process: ``gridpatrol_camera_outages_total`` counts ``offline``
        self.counts = counts if counts is not None else {}
        for event in ("offline", "online"):
            self.counts.setdefault(event, 0)
        self.every_s = min(EVERY_S, max(0.5, notice_after_s / 4))

    def states(self) -> dict[int, CameraState]:
        """Each enabled camera as the health board shows it now; BusError when the board is unreachable
        (then nothing is judged: a Redis restart is no camera outage)."""
        with self.factory() as session:
            ids = list(session.scalars(select(Camera.id).where(Camera.enabled.is_(True)).order_by(Camera.id)))
        out: dict[int, CameraState] = {}
        snaps = self.health_board.get_many([str(camera_id) for camera_id in ids])
        for camera_id in ids:
            snap = snaps[str(camera_id)]
            if snap is None:
                out[camera_id] = CameraState(online=False, state="unknown", reason="no worker reports it")
                continue
            state = str(snap.get("state") or "unknown")
            out[camera_id] = CameraState(
                online=state == "streaming", state=state, reason=str(snap.get("reason") or "")
            )
        return out

    def step(self) -> list[CameraNotice]:
        """One look: update the outages, raise what is due, publish what this process raised."""
        states = self.states()
        if all(s.online for s in states.values()):
            with self.factory() as session:
                if not ongoing(session):
                    return []  # the usual case: no write transaction (on SQLite, no write lock) every look
        with transaction(self.factory) as session:
            result: ObserveResult = observe(
                session,
                states,
                now=self.clock(),
                notice_after_s=self.notice_after_s,
                webhook_urls=self.webhook_urls,
            )
        for notice in result.notices:
            kind = notice.event.removeprefix("camera.")
            self.counts[kind] = self.counts.get(kind, 0) + 1
            if notice.event == "camera.offline":
                logger.warning(
                    "camera %s: offline since %s (%s%s): notice raised",
                    notice.camera_id,
                    notice.offline_since.isoformat(),
                    notice.state,
                    f", {notice.reason}" if notice.reason else "",
                )
            else:
                logger.info(
                    "camera %s: back online after %.0f s: notice raised", notice.camera_id, notice.duration_s
                )
            for publish in self.publish:
                try:
                    publish(notice.payload())
                except Exception:  # MQTT is a convenience: the notice is committed (webhooks, phones)
                    logger.exception(
                        "camera %s: could not publish the %s notice", notice.camera_id, notice.event
                    )
        return result.notices

    def run(self, stop: threading.Event) -> None:
        """:meth:`step` every ``every_s`` until ``stop``; a failed look is logged and tried again."""
        while not stop.is_set():
            try:
                self.step()
            except BusError as err:
                logger.warning(
                    "camera watch: health board unavailable (%s); cameras not judged this round", err
                )
            except Exception:  # the loop must survive a database outage
                logger.exception("camera watch round failed")
            stop.wait(self.every_s)
