"""The guard every long-lived channel shares (models/identity/stream_guard.py): its verdicts, with an
injected clock, on SQLite and PostgreSQL. The SSE feed's behaviour is in tests/security/test_live_feed_scope.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.db.engine import transaction
from models.db.tables import Camera, GridNode, User, utcnow
from models.identity.access import AccessScope, load_scope, visible_camera
from models.identity.stream_guard import StreamGuard
from models.identity.users import Credential, set_assignments, set_enabled

T0 = utcnow()


def _leader(s: Session) -> User:
    return s.scalars(select(User).where(User.username == "leader-g1")).one()


def _covers_g1_camera(s: Session, scope: AccessScope) -> bool:
    cam = s.scalars(select(Camera.id).where(Camera.name == "cam-g1-a")).one()
    return visible_camera(s, scope, cam) is not None


def _move_to_g3(s: Session) -> None:
    set_assignments(s, user=_leader(s), grid_codes=["G3"])


def _disable(s: Session) -> None:
    set_enabled(s, user=_leader(s), enabled=False)


def _nothing(s: Session) -> None:
    return None


@dataclass(frozen=True)
class Case:
    change: Callable[[Session], None]
    #: the guard's clock, relative to the credential's issue time
    after: timedelta
    covers: Callable[[Session, AccessScope], bool] | None
    end: str | None
    grids_after: tuple[str, ...] | None = None


CASES = {
    "unchanged": Case(_nothing, timedelta(seconds=1), None, None, ("G1",)),
    "reassigned: the feed goes on with the new scope": Case(_move_to_g3, timedelta(seconds=1), None, None, ("G3",)),
    "reassigned: a view of a G1 camera ends": Case(_move_to_g3, timedelta(seconds=1), _covers_g1_camera, "access_changed"),
    "disabled": Case(_disable, timedelta(seconds=1), None, "revoked"),
    "past the expiry": Case(_nothing, timedelta(minutes=16), None, "expired"),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_guard_verdicts(seeded: sessionmaker[Session], case: Case) -> None:
    with seeded() as s:
        user = _leader(s)
        credential = Credential(user_id=user.id, token_version=user.token_version, expires_at=T0 + timedelta(minutes=15))
        scope = load_scope(s, user)
    now: list[datetime] = [T0]
    guard = StreamGuard(
        seeded, credential, scope=scope, channel="sse", object_type="test", covers=case.covers, clock=lambda: now[0]
    )
    assert guard.check().end is None
    with transaction(seeded) as s:
        case.change(s)
    now[0] = T0 + case.after
    verdict = guard.check()
    assert verdict.end == case.end
    if case.grids_after is not None:
        with seeded() as s:
            paths = {g.path: g.code for g in s.scalars(select(GridNode))}
        assert tuple(sorted(paths[p] for p in verdict.scope.grid_paths)) == case.grids_after
    assert guard.seconds_left() == pytest.approx((T0 + timedelta(minutes=15) - now[0]).total_seconds())
