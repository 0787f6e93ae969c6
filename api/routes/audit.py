"""The access log for admins: who looked at or changed what, when, from where, through which path."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import AwareDatetime

from api.deps import AdminUser, SessionDep, remote_addr, x_access
from api.schemas import AuditEntryOut, AuditPage, ErrorOut
from models.db.tables import AccessLog
from models.identity.audit import AuditFilter, query_log, record_event

router = APIRouter(prefix="/api", tags=["audit"])

CSV_MAX_ROWS = 100_000
CSV_COLUMNS = ("id", "at", "user_id", "username", "action", "channel", "object_type", "object_id", "remote_addr", "detail")

_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorOut, "description": "Not authenticated"},
    403: {"model": ErrorOut, "description": "Admins only"},
    422: {"model": ErrorOut, "description": "Invalid filter"},
}


def audit_filter(
    user: str | None = Query(default=None, max_length=64, description="Username"),
    action: str | None = Query(default=None, max_length=24, description="view | deny | change | login | login_failed"),
    channel: str | None = Query(default=None, max_length=24, description="api | snapshot | wall | evidence | gateway"),
    object_type: str | None = Query(default=None, max_length=24, description="camera | ticket | user | grant | ..."),
    object_id: str | None = Query(default=None, max_length=64),
    since: AwareDatetime | None = Query(default=None, description="From this time (inclusive, ISO 8601 with a zone)"),
    until: AwareDatetime | None = Query(default=None, description="Until this time (exclusive, ISO 8601 with a zone)"),
) -> AuditFilter:
    return AuditFilter(
        username=user,
        action=action,
        channel=channel,
        object_type=object_type,
        object_id=object_id,
        since=since,
        until=until,
    )


FilterDep = Annotated[AuditFilter, Depends(audit_filter)]


def entry_out(row: AccessLog) -> AuditEntryOut:
    return AuditEntryOut(
        id=row.id,
        at=row.at,
        user_id=row.user_id,
        username=row.username,
        action=row.action,
        channel=row.channel,
        object_type=row.object_type,
        object_id=row.object_id,
        remote_addr=row.remote_addr,
        detail=row.detail or {},
    )


def _log_view(session: SessionDep, request: Request, admin: AdminUser, what: str) -> None:
    record_event(
        session, user_id=admin.id, username=admin.username, action="view", channel="api",
        object_type="audit", object_id=what, remote_addr=remote_addr(request),
    )  # fmt: skip
    session.commit()


@router.get("/audit", response_model=AuditPage, openapi_extra=x_access("admin"), responses=_ERRORS)
def audit_log(
    request: Request,
    session: SessionDep,
    admin: AdminUser,
    audit_filter: FilterDep,
    limit: int = Query(default=100, ge=1, le=1000),
    offset: int = Query(default=0, ge=0, le=10_000_000),
) -> AuditPage:
    """Access-log entries matching every filter given, newest first, paginated."""
    rows, total = query_log(session, audit_filter, limit=limit, offset=offset)
    page = AuditPage(items=[entry_out(r) for r in rows], total=total, limit=limit, offset=offset)
    _log_view(session, request, admin, "list")
    return page


@router.get(
    "/audit.csv",
    openapi_extra=x_access("admin"),
    response_class=Response,
    responses={**_ERRORS, 200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "CSV"}},
)
def audit_csv(request: Request, session: SessionDep, admin: AdminUser, audit_filter: FilterDep) -> Response:
    """The same entries as CSV (UTF-8 with BOM for spreadsheets), at most 100,000 rows, newest first."""
    rows, _total = query_log(session, audit_filter, limit=CSV_MAX_ROWS)
    body = "\ufeff" + to_csv(rows)
    _log_view(session, request, admin, "csv")
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="gridpatrol-audit.csv"'},
    )


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    # a cell starting like a formula would run in a spreadsheet (CSV injection): quote it as text
    return "'" + text if text[:1] in {"=", "+", "-", "@", "\t", "\r"} else text


def to_csv(rows: Sequence[AccessLog]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow(
            _cell(v)
            for v in (
                r.id, r.at.isoformat(), r.user_id, r.username, r.action, r.channel, r.object_type, r.object_id,
                r.remote_addr, json.dumps(r.detail or {}, ensure_ascii=False, sort_keys=True),
            )
        )  # fmt: skip
    return out.getvalue()
