"""Video patrol records (视频巡查): a viewer's wall tour, the time spent on each camera, the cases raised.

The wall posts a start, a heartbeat per camera while it shows it, and an end. Time is added with a
relative update (``seconds = seconds + n``), so two tabs of one tour never lose each other's seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from models.db.tables import PatrolCase, User, VideoPatrol, VideoPatrolView
from models.errors import Conflict, NotFound
from models.identity.access import AccessScope, visible_camera, visible_ticket
from models.identity.audit import record_change


def start(session: Session, *, user: User, now: datetime) -> VideoPatrol:
    patrol = VideoPatrol(user_id=user.id, started_at=now, last_seen_at=now)
    session.add(patrol)
    session.flush()
    record_change(
        session,
        user=user,
        channel="wall",
        object_type="video_patrol",
        object_id=patrol.id,
        detail={"op": "start"},
    )
    return patrol


def own_patrol(session: Session, *, user: User, patrol_id: int) -> VideoPatrol:
    """The caller's own tour; anyone else's is a NotFound (404), like one that does not exist."""
    patrol = session.get(VideoPatrol, patrol_id)
    if patrol is None or patrol.user_id != user.id:
        raise NotFound("video patrol not found")
    return patrol


def heartbeat(
    session: Session,
    *,
    patrol: VideoPatrol,
    scope: AccessScope,
    camera_id: int,
    seconds: float,
    now: datetime,
    tz: ZoneInfo,
    max_seconds: float,
) -> float:
    """Add up to ``max_seconds`` of viewing to a camera the viewer may see; returns the camera's total."""
    if patrol.ended_at is not None:
        raise Conflict("this video patrol has ended")
    if visible_camera(session, scope, camera_id) is None:
        raise NotFound("camera not found")
    day = now.astimezone(tz).date().isoformat()
    add = max(0.0, min(float(seconds), max_seconds))
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    session.execute(
        insert(VideoPatrolView)
        .values(patrol_id=patrol.id, camera_id=camera_id, day=day, first_at=now, seconds=0.0)
        .on_conflict_do_nothing(index_elements=["patrol_id", "camera_id", "day"])
    )
    session.execute(
        update(VideoPatrolView)
        .where(
            VideoPatrolView.patrol_id == patrol.id,
            VideoPatrolView.camera_id == camera_id,
            VideoPatrolView.day == day,
        )
        .values(seconds=VideoPatrolView.seconds + add)
    )
    patrol.last_seen_at = now
    total = session.scalar(
        select(VideoPatrolView.seconds).where(
            VideoPatrolView.patrol_id == patrol.id,
            VideoPatrolView.camera_id == camera_id,
            VideoPatrolView.day == day,
        )
    )
    return float(total or 0.0)


def end(
    session: Session,
    *,
    patrol: VideoPatrol,
    user: User,
    scope: AccessScope,
    ticket_ids: Sequence[int],
    now: datetime,
) -> list[int]:
    """End the tour and link the cases raised during it (tickets the viewer may see); returns the linked ids."""
    if patrol.ended_at is None:
        patrol.ended_at = now
    linked = []
    for ticket_id in sorted(set(ticket_ids)):
        if visible_ticket(session, scope, ticket_id) is None:
            raise NotFound(f"ticket {ticket_id} not found")
        if session.scalar(select(PatrolCase.id).where(PatrolCase.ticket_id == ticket_id)) is None:
            session.add(PatrolCase(ticket_id=ticket_id, video_patrol_id=patrol.id, at=now))
            linked.append(ticket_id)
    views = session.execute(
        select(VideoPatrolView.camera_id, VideoPatrolView.seconds).where(
            VideoPatrolView.patrol_id == patrol.id
        )
    ).all()
    record_change(
        session,
        user=user,
        channel="wall",
        object_type="video_patrol",
        object_id=patrol.id,
        detail={
            "op": "end",
            "cameras": len(views),
            "seconds": round(sum(s for _, s in views), 1),
            "tickets": linked,
        },
    )
    return linked
