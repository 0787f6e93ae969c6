"""The demo's data: every street and the district have a manager (escalation always reaches someone),
the zones fit what each clip shows, and a demo folder of an older version is refused with a hint."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

import gridpatrol.demo as demo
from models.db.engine import make_engine, make_session_factory, transaction, upgrade
from models.db.tables import Assignment, Camera, GridKind, GridNode, Role, User
from models.errors import GridPatrolError
from models.grid.zones import current_zones
from tests.support.procs import free_port, run_cli

GATEWAY = "127.0.0.1:8554"


def no_clip(path: Path, **_: object) -> Path:  # the clips are not what these tests check
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return path


def test_demo_data_gives_every_street_a_manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "write_clip", no_clip)
    engine = make_engine(f"sqlite:///{tmp_path / 'demo.db'}")
    upgrade(engine)
    factory = make_session_factory(engine)
    with transaction(factory) as session:
        assert demo.prepare_demo(session, tmp_path, gateway=GATEWAY) is True
    with factory() as session:
        managed = set(
            session.scalars(
                select(GridNode.code)
                .join(Assignment, Assignment.grid_id == GridNode.id)
                .join(User, User.id == Assignment.user_id)
                .where(User.role == Role.manager.value)
            )
        )
        upper = set(session.scalars(select(GridNode.code).where(GridNode.kind.in_([GridKind.street.value, GridKind.district.value]))))
        assert len(upper) == 3 and upper <= managed, (upper, managed)
        cams = session.scalars(select(Camera).order_by(Camera.id)).all()
        assert [c.name for c in cams] == [s.name for s in demo.DEMO_SPOTS]
        kinds = {c.name: sorted(z.kind for z in current_zones(session, c.id).as_document().zones) for c in cams}
        assert kinds["南浦广场"] == ["crowd_area", "fire_lane", "road"]
        assert kinds["桥北农贸市场"] == ["fire_lane", "road"]
    with transaction(factory) as session:
        assert demo.prepare_demo(session, tmp_path, gateway=GATEWAY) is False  # already there: loaded once
    (tmp_path / "demo-version").unlink()  # a folder made before the version marker
    with pytest.raises(GridPatrolError, match="older demo"), transaction(factory) as session:
        demo.prepare_demo(session, tmp_path, gateway=GATEWAY)


def test_demo_ticket_settings_are_short_and_verify_after_the_clip_gap() -> None:
    from models.tickets.categories import TicketSettings

    settings = demo.demo_ticket_settings(TicketSettings(), accept_within_s=120, resolve_within_s=240)
    assert settings.ticket_verify_clear_s == demo.DEMO_VERIFY_CLEAR_S
    for name in ("road_occupation", "fire_lane_blockage", "crowding"):
        policy = settings.category(name)
        assert (policy.accept_within_s, policy.resolve_within_s) == (120, 240)
    # the clips are timed around the verification time: the market's stall is away for less, the cart
    # at 桥北路口-东 for far more (README: the demo, step by step)
    market, corner = demo.DEMO_SPOTS[1], demo.DEMO_SPOTS[0]
    gaps = [b.t0 - a.t1 for a, b in zip(market.left, market.left[1:], strict=False)]
    gaps.append(demo.DEMO_CLIP_S - market.left[-1].t1 + market.left[0].t0)
    assert max(gaps) < demo.DEMO_VERIFY_CLEAR_S / 2
    assert demo.DEMO_CLIP_S - corner.left[0].t1 + corner.left[0].t0 > 2 * demo.DEMO_VERIFY_CLEAR_S


def test_demo_users_are_refused_outside_the_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's users (published passwords) are marked; no process starts on their database outside
    GRIDPATROL_ENVIRONMENT=demo, so none of them can log in, hold a token or watch a stream there."""
    monkeypatch.setattr(demo, "write_clip", no_clip)
    db = tmp_path / "demo.db"
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    factory = make_session_factory(engine)
    with transaction(factory) as session:
        demo.prepare_demo(session, tmp_path, gateway=GATEWAY)
    with factory() as session:
        marked = {u.username: u.demo for u in session.scalars(select(User))}
    assert marked == {**{u.username: True for u in demo.DEMO_USERS}, demo.DEMO_FEED_USER: True}, marked
    engine.dispose()
    env = {
        "GRIDPATROL_DATA_DIR": str(tmp_path / "var"),
        "GRIDPATROL_DATABASE_URL": f"sqlite:///{db}",
        "GRIDPATROL_ENVIRONMENT": "development",
        "GRIDPATROL_SECRET_KEY": "a-development-key-that-is-long-enough-0123456789",
    }
    refused = run_cli(["serve", "--port", str(free_port()), "--no-gateway", "--no-worker"], env, timeout=60)
    assert refused.returncode != 0
    assert "demo's users" in refused.stdout + refused.stderr and "leader-qb1" not in refused.stdout, refused.stderr
