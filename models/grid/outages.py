"""Camera outages: a camera offline for longer than a threshold raises ONE "camera offline" notice, and ONE
"camera back online" notice (with the outage's duration) when it recovers; shorter outages raise nothing.

Any number of ticketers observe the cameras at once (gridpatrol/camera_watch.py). The outage rows decide
who raises a notice, in the caller's transaction: an ongoing outage is unique per camera
(``camera_outages.ongoing_camera_id``), ongoing rows are read ``FOR UPDATE`` in id order (SQLite: the
transaction holds the write lock), and a notice is raised by the transaction that sets its timestamp
from NULL. The notice goes to the webhook outbox (events ``camera.offline``, ``camera.online``) and the
notification outbox (the camera's grid leaders) in the same transaction; MQTT is the caller's, after
the commit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.db.tables import Camera, CameraOutage, GridNode, WebhookDelivery
from models.notify.outbox import queue_camera_notice

NoticeEvent = Literal["camera.offline", "camera.online"]


@dataclass(frozen=True)
class CameraState:
    """What a ticketer sees of one camera: ``online`` when its worker reports it streaming."""

    online: bool
    state: str = "unknown"
    reason: str = ""


@dataclass(frozen=True)
class CameraNotice:
    """One raised notice, as webhooks, MQTT and messages carry it (:meth:`payload`)."""

    event: NoticeEvent
    outage_id: int
    camera_id: int
    camera: str
    grid_id: int | None
    grid_path: str
    place: str
    offline_since: datetime
    at: datetime
    state: str
    reason: str

    @property
    def duration_s(self) -> float:
        return round((self.at - self.offline_since).total_seconds(), 1)

    def payload(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "outage_id": self.outage_id,
            "camera_id": self.camera_id,
            "camera": self.camera,
            "grid_id": self.grid_id,
            "grid_path": self.grid_path,
            "place": self.place,
            "offline_since": self.offline_since.isoformat(),
            "at": self.at.isoformat(),
            "duration_s": self.duration_s,
            "state": self.state,
            "reason": self.reason,
        }


@dataclass
class ObserveResult:
    notices: list[CameraNotice] = field(default_factory=list)
    #: outages that ended under the threshold (deleted without a notice)
    flaps: int = 0


def _place(session: Session, grid: GridNode | None) -> tuple[str, str]:
    if grid is None:
        return "", ""
    ids = [int(p) for p in grid.path.strip("/").split("/") if p]
    names = {
        i: name for i, name in session.execute(select(GridNode.id, GridNode.name).where(GridNode.id.in_(ids)))
    }
    return grid.path, "/".join(names[i] for i in ids if i in names)


def _notice(session: Session, event: NoticeEvent, outage: CameraOutage, at: datetime) -> CameraNotice:
    camera = session.get(Camera, outage.camera_id)
    assert camera is not None  # the outage row goes with its camera (ON DELETE CASCADE)
    grid_path, place = _place(session, camera.grid)
    return CameraNotice(
        event=event, outage_id=outage.id, camera_id=camera.id, camera=camera.name, grid_id=camera.grid_id,
        grid_path=grid_path, place=place, offline_since=outage.started_at, at=at, state=outage.state,
        reason=outage.reason,
    )  # fmt: skip


def _queue(session: Session, notice: CameraNotice, webhook_urls: Sequence[str]) -> None:
    payload = notice.payload()
    for url in webhook_urls:
        session.add(
            WebhookDelivery(
                ticket_id=None, event=notice.event, payload={**payload, "url": url}, next_attempt_at=notice.at
            )
        )
    key = f"outage:{notice.outage_id}:{notice.event.removeprefix('camera.')}"
    queue_camera_notice(session, grid_id=notice.grid_id, facts=payload, key=key, at=notice.at)


def ongoing(session: Session, camera_ids: Sequence[int] | None = None) -> dict[int, CameraOutage]:
    """The ongoing outage of each camera (of ``camera_ids``, or all), whether or not it was notified yet."""
    query = select(CameraOutage).where(CameraOutage.ongoing_camera_id.is_not(None))
    if camera_ids is not None:
        query = query.where(CameraOutage.camera_id.in_(camera_ids))
    return {o.camera_id: o for o in session.scalars(query)}


def observe(
    session: Session,
    states: Mapping[int, CameraState],
    *,
    now: datetime,
    notice_after_s: float,
    webhook_urls: Sequence[str] = (),
) -> ObserveResult:
    """Update the outages from one look at the cameras (``states``: enabled cameras; an ongoing outage of a
    camera not in it, disabled or gone, ends without a notice) and raise the notices that are due."""
    result = ObserveResult()
    rows = session.scalars(
        select(CameraOutage)
        .where(CameraOutage.ongoing_camera_id.is_not(None))
        .order_by(CameraOutage.id)
        .with_for_update()
    ).all()
    current = {o.camera_id: o for o in rows}
    for camera_id, seen in sorted(states.items()):
        outage = current.get(camera_id)
        if seen.online or outage is not None:
            continue
        try:
            with session.begin_nested():
                outage = CameraOutage(camera_id=camera_id, ongoing_camera_id=camera_id, started_at=now,
                                      state=seen.state[:24], reason=seen.reason[:200])  # fmt: skip
                session.add(outage)
        except IntegrityError:
            continue  # another ticketer saw it first: its row is the outage (read on the next look)
        current[camera_id] = outage
    for camera_id, outage in sorted(current.items()):
        look = states.get(camera_id)
        if look is None or look.online:
            outage.ended_at, outage.ongoing_camera_id = now, None
            if outage.offline_notice_at is None:
                session.delete(outage)  # shorter than the threshold: nobody was told, nothing to recover
                result.flaps += 1
            elif look is not None:
                outage.online_notice_at = now
                result.notices.append(_notice(session, "camera.online", outage, now))
        elif outage.offline_notice_at is None and (now - outage.started_at).total_seconds() >= notice_after_s:
            outage.offline_notice_at = now
            result.notices.append(_notice(session, "camera.offline", outage, now))
    session.flush()
    for notice in result.notices:
        _queue(session, notice, webhook_urls)
    return result
