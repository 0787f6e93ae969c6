"""Periodic ranking reports (考核排名通报): weekly, monthly and on demand, ranking grids, streets and people,
kept as an XLSX spreadsheet and a printable Chinese HTML page, announced through the webhook outbox.

A scheduled report has a ``schedule_key`` ("weekly:2026-11-23"), unique: the scheduler may run in several
processes, or twice, and the period still gets one report.
"""

from __future__ import annotations

import html
import io
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.styles import Font
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.db.tables import EvaluationReport, User, WebhookDelivery
from models.identity.audit import record_change
from models.patrol.evaluation import COMPONENT_ZH, Evaluation, Period, Score
from models.patrol.settings import COMPONENTS, PatrolSettings

PERIOD_ZH = {"weekly": "周报", "monthly": "月报", "custom": "专项"}
SECTIONS = (("grid", "网格排名"), ("street", "街道排名"), ("person", "人员排名"), ("department", "职能部门排名"))


def week_of(day: date) -> tuple[date, date]:
    monday = day - timedelta(days=day.weekday())
    return monday, monday + timedelta(days=7)


def month_of(day: date) -> tuple[date, date]:
    first = day.replace(day=1)
    nxt = (first + timedelta(days=32)).replace(day=1)
    return first, nxt


def last_complete(period: str, now: datetime, tz: ZoneInfo) -> tuple[date, date]:
    """The last whole week (Monday to Monday) or month before ``now``'s local day."""
    today = now.astimezone(tz).date()
    if period == "weekly":
        start, _ = week_of(today)
        return start - timedelta(days=7), start
    start, _ = month_of(today)
    return month_of(start - timedelta(days=1))


@dataclass(frozen=True)
class Rankings:
    period: Period
    sections: dict[str, list[Score]]


def compute(session: Session, *, period: Period, settings: PatrolSettings, now: datetime) -> Rankings:
    ev = Evaluation(session, period=period, settings=settings, now=now)
    return Rankings(
        period,
        {
            "grid": ev.rank_nodes("grid"),
            "street": ev.rank_nodes("street"),
            "person": ev.rank_people(),
            "department": ev.rank_departments(),  # 协办: on-time rates of their parts
        },
    )


def _header() -> list[str]:
    return ["名次", "编码", "名称", "总分"] + [COMPONENT_ZH[c] for c in COMPONENTS]


def _row(s: Score) -> list[Any]:
    cells: list[Any] = [s.rank, s.code, s.name, s.total_points]
    for c in COMPONENTS:
        share = s.components[c].share
        cells.append(None if share is None else round(float(share) * 100, 2))
    return cells


def to_xlsx(title: str, rankings: Rankings, *, settings: PatrolSettings) -> bytes:
    """One sheet per ranking (shares as percentages, blank where the subject had no records) and the formula."""
    wb = Workbook()
    first = True
    for key, label in SECTIONS:
        ws = wb.active if first else wb.create_sheet()
        assert ws is not None
        first = False
        ws.title = label
        ws.append([title])
        ws["A1"].font = Font(bold=True, size=14)
        ws.append(_header())
        for cell in ws[2]:
            cell.font = Font(bold=True)
        for score in rankings.sections[key]:
            ws.append(_row(score))
    ws = wb.create_sheet("计分规则")
    ws.append(["指标", "权重（分）"])
    for c in COMPONENTS:
        ws.append([COMPONENT_ZH[c], getattr(settings.scoring_weights, c)])
    ws.append([])
    ws.append(["总分 = 100 × Σ(权重 × 指标得分率) / Σ(有数据指标的权重)；无数据的指标不计入"])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def to_html(title: str, rankings: Rankings, *, settings: PatrolSettings) -> str:
    """A printable page (A4, no script, no external asset)."""
    e = html.escape
    parts = [
        "<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'>",
        f"<title>{e(title)}</title><style>body{{font-family:'Noto Sans CJK SC',sans-serif;margin:2em}}"
        "table{border-collapse:collapse;width:100%;margin-bottom:2em}th,td{border:1px solid #999;padding:4px 6px;"
        "font-size:12px;text-align:right}th{background:#eee}td.t{text-align:left}@page{size:A4 landscape}</style>",
        f"</head><body><h1>{e(title)}</h1>",
    ]
    header = "".join(f"<th>{e(h)}</th>" for h in _header())
    for key, label in SECTIONS:
        parts.append(f"<h2>{e(label)}</h2><table><thead><tr>{header}</tr></thead><tbody>")
        for score in rankings.sections[key]:
            cells = _row(score)
            tds = "".join(
                f"<td class='t'>{e(str(v))}</td>"
                if i in (1, 2)
                else f"<td>{'—' if v is None else e(str(v))}</td>"
                for i, v in enumerate(cells)
            )
            parts.append(f"<tr>{tds}</tr>")
        parts.append("</tbody></table>")
    weights = "；".join(f"{COMPONENT_ZH[c]} {getattr(settings.scoring_weights, c):g} 分" for c in COMPONENTS)
    parts.append(
        f"<p>计分规则：{e(weights)}。总分 = 100 × Σ(权重 × 得分率) / Σ(有数据指标的权重)。</p></body></html>"
    )
    return "".join(parts)


def generate(
    session: Session,
    *,
    period_kind: str,
    first: date,
    last_exclusive: date,
    tz: ZoneInfo,
    settings: PatrolSettings,
    now: datetime,
    user: User | None,
    webhook_urls: list[str],
    scheduled: bool = False,
) -> EvaluationReport:
    """Compute, render and keep one report; announce it on the webhook outbox in the same transaction."""
    period = Period.local(first, last_exclusive, tz)
    rankings = compute(session, period=period, settings=settings, now=now)
    last = last_exclusive - timedelta(days=1)
    title = f"网格化管理考核排名通报（{PERIOD_ZH.get(period_kind, '')} {first:%Y-%m-%d} 至 {last:%Y-%m-%d}）"
    top = {key: [s.code for s in scores[:3]] for key, scores in rankings.sections.items()}
    report = EvaluationReport(
        period=period_kind,
        starts_at=period.starts_at,
        ends_at=period.ends_at,
        schedule_key=f"{period_kind}:{first.isoformat()}" if scheduled else None,
        title=title,
        summary={"top": top, "counts": {k: len(v) for k, v in rankings.sections.items()}},
        xlsx=to_xlsx(title, rankings, settings=settings),
        html=to_html(title, rankings, settings=settings),
        generated_by_id=user.id if user else None,
        generated_at=now,
    )
    session.add(report)
    session.flush()
    for url in webhook_urls:
        payload = {
            "event": "report_ready",
            "report_id": report.id,
            "title": title,
            "period": period_kind,
            "starts_at": period.starts_at.isoformat(),
            "ends_at": period.ends_at.isoformat(),
            "xlsx": f"/api/evaluation/reports/{report.id}/xlsx",
            "html": f"/api/evaluation/reports/{report.id}/html",
            "url": url,
        }
        session.add(
            WebhookDelivery(ticket_id=None, event="report_ready", payload=payload, next_attempt_at=now)
        )
    record_change(
        session,
        user=user,
        channel="api" if user else "cli",
        object_type="evaluation_report",
        object_id=report.id,
        detail={
            "op": "generate",
            "period": period_kind,
            "from": first.isoformat(),
            "to": last_exclusive.isoformat(),
        },
    )
    return report


def generate_due(
    session: Session, *, now: datetime, tz: ZoneInfo, settings: PatrolSettings, webhook_urls: list[str]
) -> list[EvaluationReport]:
    """The last complete week's and month's reports, when not made yet (idempotent across processes)."""
    made = []
    for kind in ("weekly", "monthly"):
        first, last_exclusive = last_complete(kind, now, tz)
        key = f"{kind}:{first.isoformat()}"
        if (
            session.scalar(select(EvaluationReport.id).where(EvaluationReport.schedule_key == key))
            is not None
        ):
            continue
        try:
            with session.begin_nested():
                made.append(
                    generate(
                        session,
                        period_kind=kind,
                        first=first,
                        last_exclusive=last_exclusive,
                        tz=tz,
                        settings=settings,
                        now=now,
                        user=None,
                        webhook_urls=webhook_urls,
                        scheduled=True,
                    )
                )
        except IntegrityError:
            continue  # another process made it just now
    return made
