"""The scoring model on a hand-computed small world (each component and the total), the drill-down ids,
the rankings of grids, streets and people, and the report they make (XLSX opened with openpyxl, the
printable page, the webhook), on SQLite and PostgreSQL.

The world, one week from Monday 2026-11-23 (Asia/Shanghai), default weights (20/15/15/10/10/10/10/10),
difficulty road 1.0, fire lane 1.5, crowding 1.2, a workload target of 1 weighted ticket a day (7):

G1 (leader-g1, patroller-g1; cameras cam-g1-a, cam-g1-b), tickets assigned to leader-g1:
  T1 road, accepted and resolved on time            T2 fire lane, accepted late, resolved on time
  T3 crowding, never accepted, escalated once       T4 other, dismissed as a false alarm (left out)
  T5 road, accept deadline before the week, resolved late in it, reopened once in it
  workload 3.5/7 = 1/2 · accept 1/3 (T1 of T1-T3) · resolve 2/4 (T1, T2 of T1, T2, T3, T5)
  escalations 1 - 1/3 = 2/3 · reopens 1 - 1/3 = 2/3 · check-ins 3/4 · video 7 camera-days of 14 = 1/2
  satisfaction 2/3 (满意 T1, 基本满意 T2, 不满意 T5)
  total = 20·1/2 + 15·1/3 + 15·1/2 + 10·2/3 + 10·2/3 + 10·3/4 + 10·1/2 + 10·2/3 = 55
G3 (leader-g3; camera cam-g3-a): T6 road, on time → workload 1/7, accept 1, resolve 1, escalations 1,
  reopens 1, video 0/7, no tasks, no callbacks → total = 100·(20/7 + 50)/80 = 925/14 ≈ 66.07
G2 (camera cam-g2-a, nothing else): video 0/7 → total 0
S1 = G1 + G2: as G1 but video 7/21 = 1/3 → total 160/3 ≈ 53.33;  S2 = G3
leader-g1: G1's tickets, no tasks, video 1/2 → 100·(27.5 + 20)/90 = 475/9 ≈ 52.78
patroller-g1: check-ins only, 3/4 → 75;  leader-g3 as G3;  patroller-g2: no records (last, no total)
"""

from __future__ import annotations

import io
from datetime import date, datetime, timedelta
from fractions import Fraction

import openpyxl
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.db.engine import transaction
from models.db.tables import (
    Callback,
    Camera,
    EvaluationReport,
    GridNode,
    PatrolPoint,
    PatrolTask,
    Ticket,
    TicketTransition,
    VideoPatrol,
    VideoPatrolView,
    WebhookDelivery,
)
from models.patrol.evaluation import Evaluation, Period
from models.patrol.reports import generate, generate_due
from models.patrol.settings import PatrolSettings
from tests.support.patrol import MONDAY, TZ, add_patroller, local, module_db_url, user, world

__all__ = ["module_db_url", "world"]

SETTINGS = PatrolSettings()
PERIOD = Period.local(MONDAY, MONDAY + timedelta(days=7), TZ)
NOW = local(MONDAY + timedelta(days=14), 12)


def day(n: int, hh: int = 9, mm: int = 0) -> datetime:
    return local(MONDAY + timedelta(days=n), hh, mm)


@pytest.fixture(scope="module")
def small_world(world: sessionmaker[Session]) -> dict[str, int]:
    """The world of the module docstring; returns the ids the assertions name."""
    add_patroller(world, "patroller-g1", "G1")
    ids: dict[str, int] = {}
    with transaction(world) as s:
        grid = {g.code: g.id for g in s.scalars(select(GridNode))}
        cam = {c.name: c.id for c in s.scalars(select(Camera))}
        lead1, lead3, pat1 = (user(s, n).id for n in ("leader-g1", "leader-g3", "patroller-g1"))
        m = timedelta(minutes=1)

        def ticket(name: str, category: str, g: str, who: int, **times: object) -> Ticket:
            t = Ticket(
                category=category,
                grid_id=grid[g],
                assignee_id=who,
                state=str(times.pop("state", "resolved")),
                **times,
            )
            s.add(t)
            s.flush()
            ids[name] = t.id
            return t

        ticket("T1", "road_occupation", "G1", lead1, opened_at=day(0), accept_by=day(0, 9, 30), accepted_at=day(0, 9, 10),
               resolve_by=day(0, 13), resolved_at=day(0, 12))  # fmt: skip
        ticket("T2", "fire_lane_blockage", "G1", lead1, opened_at=day(1), accept_by=day(1, 9, 10), accepted_at=day(1, 9, 20),
               resolve_by=day(1, 10), resolved_at=day(1, 9, 50), state="verified")  # fmt: skip
        t3 = ticket("T3", "crowding", "G1", lead1, opened_at=day(2), accept_by=day(2, 9, 5), resolve_by=day(2, 10),
                    state="dispatched", escalation_level=2)  # fmt: skip
        ticket("T4", "other", "G1", lead1, opened_at=day(3), accept_by=day(3, 10), resolve_by=day(4), closed_at=day(3, 9, 30),
               state="closed")  # fmt: skip
        t5 = ticket("T5", "road_occupation", "G1", lead1, opened_at=day(-1, 20), accept_by=day(-1, 20, 30),
                    accepted_at=day(-1, 20, 10), resolve_by=day(4, 0), resolved_at=day(4))  # fmt: skip
        ticket("T6", "road_occupation", "G3", lead3, opened_at=day(0, 10), accept_by=day(0, 10, 30), accepted_at=day(0, 10, 5),
               resolve_by=day(0, 14), resolved_at=day(0, 11))  # fmt: skip
        ticket(
            "T7",
            "road_occupation",
            "G1",
            lead1,
            opened_at=day(8),
            accept_by=day(8, 9, 30),
            accepted_at=day(8, 9, 1),
            resolve_by=day(8, 12),
            resolved_at=day(8, 10),
        )  # fmt: skip  (next week)
        s.add(
            TicketTransition(
                ticket_id=t3.id,
                action="escalate",
                from_state="dispatched",
                to_state="dispatched",
                at=day(2, 9, 6),
            )
        )
        s.add(
            TicketTransition(
                ticket_id=t3.id, action="escalate", from_state="dispatched", to_state="dispatched", at=day(9)
            )
        )
        s.add(
            TicketTransition(
                ticket_id=t5.id, action="reopen", from_state="resolved", to_state="reopened", at=day(3)
            )
        )
        for name, result, at in (("T1", "satisfied", day(1)), ("T2", "basically_satisfied", day(2)), ("T5", "dissatisfied", day(5)),
                                 ("T7", "dissatisfied", day(9))):  # fmt: skip
            s.add(Callback(ticket_id=ids[name], closed_at=at - m, result=result, at=at))
        point = PatrolPoint(grid_id=grid["G1"], name="桥北菜场", lon=118.705, lat=32.105, radius_m=50)
        s.add(point)
        s.flush()
        for n, state in enumerate(["done", "done", "missed", "done", "done"]):  # the fifth is next week's
            d = n if n < 4 else 8
            s.add(PatrolTask(point_id=point.id, grid_id=grid["G1"], patroller_id=pat1, day=(MONDAY + timedelta(days=d)).isoformat(),
                             window_start_at=day(d, 8), window_end_at=day(d, 10), state=state))  # fmt: skip
        tour = VideoPatrol(user_id=lead1, started_at=day(0), last_seen_at=day(6))
        s.add(tour)
        s.flush()
        views = [("cam-g1-a", n, 30.0) for n in (0, 1, 2)] + [("cam-g1-b", n, 12.0) for n in (3, 4, 5, 6)]
        views += [("cam-g1-a", 3, 0.0), ("cam-g1-a", 8, 40.0)]  # nothing shown; next week
        for name, n, secs in views:
            s.add(VideoPatrolView(patrol_id=tour.id, camera_id=cam[name], day=(MONDAY + timedelta(days=n)).isoformat(),
                                  first_at=day(n), seconds=secs))  # fmt: skip
        ids.update(grid)
        ids.update({"leader-g1": lead1, "leader-g3": lead3, "patroller-g1": pat1})
    return ids


def shares(score) -> dict[str, Fraction | None]:  # type: ignore[no-untyped-def]
    return {name: c.share for name, c in score.components.items()}


def evaluation(world: sessionmaker[Session], s: Session) -> Evaluation:
    return Evaluation(s, period=PERIOD, settings=SETTINGS, now=NOW)


def test_the_scores_of_a_hand_computed_world(
    world: sessionmaker[Session], small_world: dict[str, int]
) -> None:
    F = Fraction
    with world() as s:
        ev = evaluation(world, s)
        g1 = ev.score_node(s.get(GridNode, small_world["G1"]))  # type: ignore[arg-type]
        assert shares(g1) == {
            "workload": F(1, 2), "on_time_accept": F(1, 3), "on_time_resolve": F(1, 2), "escalations": F(2, 3),
            "reopens": F(2, 3), "checkins": F(3, 4), "video_coverage": F(1, 2), "satisfaction": F(2, 3),
        }  # fmt: skip
        assert g1.total == 55
        c = g1.components
        assert (c["workload"].numerator, c["workload"].denominator) == (F(7, 2), 7)
        t = small_world
        # the drill-down: every figure names its rows
        assert c["workload"].rows["tickets"] == sorted([t["T1"], t["T2"], t["T5"]])
        assert c["on_time_accept"].rows == {
            "tickets": sorted([t["T1"], t["T2"], t["T3"]]),
            "on_time": [t["T1"]],
        }
        assert c["on_time_resolve"].rows["on_time"] == sorted([t["T1"], t["T2"]])
        assert c["escalations"].rows["tickets"] == [t["T3"]] and c["reopens"].rows["tickets"] == [t["T5"]]
        assert (len(c["checkins"].rows["done"]), len(c["checkins"].rows["missed"])) == (3, 1)
        assert len(c["video_coverage"].rows["views"]) == 7 and c["video_coverage"].denominator == 14
        assert len(c["satisfaction"].rows["callbacks"]) == 3

        g3 = ev.score_node(s.get(GridNode, small_world["G3"]))  # type: ignore[arg-type]
        assert shares(g3) == {
            "workload": F(1, 7), "on_time_accept": 1, "on_time_resolve": 1, "escalations": 1, "reopens": 1,
            "checkins": None, "video_coverage": 0, "satisfaction": None,
        }  # fmt: skip
        assert g3.total == F(925, 14) and g3.total_points == 66.07
        g2 = ev.score_node(s.get(GridNode, small_world["G2"]))  # type: ignore[arg-type]
        assert g2.total == 0
        s1 = ev.score_node(s.get(GridNode, small_world["S1"]))  # type: ignore[arg-type]
        assert s1.components["video_coverage"].share == F(1, 3) and s1.total == F(160, 3)

        people = {sc.code: sc for sc in ev.rank_people()}
        assert people["leader-g1"].total == F(475, 9)
        assert people["leader-g1"].components["checkins"].share is None
        assert people["patroller-g1"].total == 75
        assert people["leader-g3"].total == F(925, 14)
        assert people["patroller-g2"].total is None


def test_the_rankings(world: sessionmaker[Session], small_world: dict[str, int]) -> None:
    with world() as s:
        ev = evaluation(world, s)
        assert [(x.rank, x.code) for x in ev.rank_nodes("grid")] == [(1, "G3"), (2, "G1"), (3, "G2")]
        assert [x.code for x in ev.rank_nodes("street")] == ["S2", "S1"]
        assert [x.code for x in ev.rank_people()] == [
            "patroller-g1",
            "leader-g3",
            "leader-g1",
            "patroller-g2",
        ]


def test_a_report_lists_the_ranking_and_opens_with_openpyxl(
    world: sessionmaker[Session], small_world: dict[str, int]
) -> None:
    with transaction(world) as s:
        report = generate(
            s, period_kind="weekly", first=MONDAY, last_exclusive=MONDAY + timedelta(days=7), tz=TZ, settings=SETTINGS, now=NOW,
            user=user(s, "operator1"), webhook_urls=["http://127.0.0.1:9/hook"],
        )  # fmt: skip
        report_id = report.id
    with world() as s:
        report = s.get(EvaluationReport, report_id)
        assert report is not None
        book = openpyxl.load_workbook(io.BytesIO(report.xlsx))
        assert book.sheetnames == ["网格排名", "街道排名", "人员排名", "职能部门排名", "计分规则"]
        assert list(book["职能部门排名"].iter_rows(min_row=3, values_only=True)) == []  # no departments here
        grids = [row[:4] for row in book["网格排名"].iter_rows(min_row=3, values_only=True)]
        assert grids == [
            (1, "G3", "南浦第一网格", 66.07),
            (2, "G1", "桥北第一网格", 55.0),
            (3, "G2", "桥北第二网格", 0.0),
        ]
        assert [r[1] for r in book["街道排名"].iter_rows(min_row=3, values_only=True)] == ["S2", "S1"]
        people = [r[1] for r in book["人员排名"].iter_rows(min_row=3, values_only=True)]
        assert people == ["patroller-g1", "leader-g3", "leader-g1", "patroller-g2"]
        assert (
            "2026-11-23 至 2026-11-29" in report.title
            and "考核排名" in report.html
            and "<script" not in report.html
        )
        hook = s.scalars(select(WebhookDelivery).where(WebhookDelivery.event == "report_ready")).one()
        assert hook.payload["report_id"] == report_id and hook.payload["xlsx"].endswith(f"/{report_id}/xlsx")


def test_scheduled_reports_are_made_once_per_period(
    world: sessionmaker[Session], small_world: dict[str, int]
) -> None:
    now = local(date(2026, 12, 1), 0, 30)  # a Tuesday: last week and last month are complete
    with transaction(world) as s:
        made = generate_due(s, now=now, tz=TZ, settings=SETTINGS, webhook_urls=[])
        assert sorted(r.schedule_key or "" for r in made) == ["monthly:2026-11-01", "weekly:2026-11-23"]
    with transaction(world) as s:
        assert generate_due(s, now=now + timedelta(hours=1), tz=TZ, settings=SETTINGS, webhook_urls=[]) == []
