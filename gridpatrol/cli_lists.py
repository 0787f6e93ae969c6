"""The listings an operator expects: cameras, the grid tree, users and tickets; each as a table people read
(Chinese terms of UI-GUIDE.md, columns aligned by display width) or, with ``--json``, one JSON object.
Read only: they never create or migrate the database (``open_db_for_reading``)."""

from __future__ import annotations

import json
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

import typer
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gridpatrol.cli_common import fail, load_settings, open_db_for_reading
from models.db.tables import (
    Assignment,
    Camera,
    CameraOutage,
    GridKind,
    GridNode,
    Role,
    Ticket,
    TicketState,
    User,
    utcnow,
)
from models.errors import GridPatrolError
from models.grid.cameras import analysed_stream
from models.identity.users import parse_role
from models.tickets.states import WAITING_ACCEPT, WAITING_RESOLVE
from models.tickets.stats import is_overdue

# --- words (UI-GUIDE.md) ---------------------------------------------------------------------------------
_STREAM_LABEL = {"main": "主码流", "sub": "子码流"}
STATE_ZH = {
    TicketState.open: "待派遣",
    TicketState.dispatched: "待受理",
    TicketState.accepted: "处置中",
    TicketState.rejected: "已退回",
    TicketState.resolved: "待核查",
    TicketState.verified: "已核查",
    TicketState.closed: "已结案",
    TicketState.reopened: "已重开",
}
ROLE_ZH = {
    Role.admin: "系统管理员",
    Role.operator: "值班员",
    Role.manager: "街道（区）负责人",
    Role.grid_leader: "网格长",
    Role.patroller: "网格员",
}
KIND_ZH = {GridKind.district: "区", GridKind.street: "街道", GridKind.community: "社区", GridKind.grid: "网格"}
CATEGORY_ZH = {"road_occupation": "占道经营", "fire_lane_blockage": "消防通道堵塞", "crowding": "人员聚集", "other": "其他"}
NO_ONE = "⚠ 无负责人"
LOCAL_TIME = "%Y-%m-%d %H:%M:%S"


def _zh(table: dict[Any, str], value: str) -> str:
    return table.get(value, value)


# --- tables ------------------------------------------------------------------------------------------------
def display_width(text: str) -> int:
    """Columns ``text`` takes in a terminal: wide and full-width characters (汉字, ，) take two."""
    return sum(
        0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text
    )


def pad(text: str, width: int) -> str:
    return text + " " * max(0, width - display_width(text))


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """Rows under their headers, each column as wide as its widest cell."""
    widths = [max(display_width(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    return ["  ".join(pad(str(cell), w) for cell, w in zip(cells, widths, strict=True)).rstrip() for cells in [headers, *rows]]


def emit(as_json: bool, doc: dict[str, Any], lines: list[str], footer: str) -> None:
    if as_json:
        print(json.dumps(doc, ensure_ascii=False))
    else:
        print("\n".join([*lines, footer]))


# --- queries -----------------------------------------------------------------------------------------------
def grid_by_code(session: Session, code: str) -> GridNode:
    node = session.scalar(select(GridNode).where(GridNode.code == code))
    if node is None:
        fail(f"no grid node with code {code!r} (`gridpatrol grids list` shows the codes)")
    return node


def responsible_people(session: Session) -> dict[int, list[str]]:
    """Grid node id → the enabled users who answer for it directly: grid leaders for a grid, managers for
    a street, district or community (a manager of the district does not make a street covered)."""
    nodes = dict(session.execute(select(GridNode.id, GridNode.kind)).all())
    people: dict[int, list[str]] = defaultdict(list)
    rows = session.execute(
        select(Assignment.grid_id, User.username, User.role)
        .join(User, User.id == Assignment.user_id)
        .where(User.enabled.is_(True))
        .order_by(User.username)
    ).all()
    for grid_id, username, role in rows:
        wanted = Role.grid_leader if nodes.get(grid_id) == GridKind.grid else Role.manager
        if role == wanted:
            people[grid_id].append(username)
    return people


def format_duration(seconds: float) -> str:
    """2分15秒 / 1小时5分 / 2天3小时 (UI-GUIDE.md)."""
    s = int(seconds)
    if s < 60:
        return f"{s}秒"
    if s < 3600:
        return f"{s // 60}分{s % 60}秒"
    if s < 86400:
        return f"{s // 3600}小时{s % 3600 // 60}分"
    return f"{s // 86400}天{s % 86400 // 3600}小时"


def overdue_seconds(t: Ticket, now: datetime) -> int | None:
    """How long past the deadline it waits on (acceptance first), or None when it is not overdue."""
    if not is_overdue(t, now):
        return None
    if t.state in WAITING_ACCEPT and t.accept_by is not None and now > t.accept_by:
        return int((now - t.accept_by).total_seconds())
    if t.state in WAITING_RESOLVE and t.resolve_by is not None:
        return int((now - t.resolve_by).total_seconds())
    return None


# --- commands ----------------------------------------------------------------------------------------------
def reader() -> sessionmaker[Session]:
    settings = load_settings()
    return open_db_for_reading(settings)


def register_list_commands(
    app: typer.Typer, *, cameras_app: typer.Typer, grids_app: typer.Typer, users_app: typer.Typer
) -> None:
    tickets_app = typer.Typer(help="Tickets (工单).", no_args_is_help=True)
    app.add_typer(tickets_app, name="tickets")

    @cameras_app.command("list")
    def cameras_list(
        grid: Annotated[str | None, typer.Option(help="Only cameras in this grid node or below it (code)")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout")] = False,
    ) -> None:
        """List cameras: name, id, grid, stream host (never credentials), the stream analysed (主码流/子码流), enabled."""
        with reader()() as session:
            query = select(Camera, GridNode).outerjoin(GridNode, GridNode.id == Camera.grid_id).order_by(Camera.name)
            if grid is not None:
                node = grid_by_code(session, grid)
                query = query.where(GridNode.path.startswith(node.path))
            found = session.execute(query).all()
        items: list[dict[str, Any]] = [
            {
                "id": cam.id,
                "name": cam.name,
                "grid": node.code if node else None,
                "grid_name": node.name if node else None,
                "host": cam.stream_host,
                "has_sub_stream": bool(cam.sub_url),
                "analysis_stream": cam.analysis_stream or "auto",
                "analysed_stream": analysed_stream(cam.analysis_stream, has_sub=bool(cam.sub_url)),
                "enabled": cam.enabled,
            }
            for cam, node in found
        ]
        rows = [
            [c["name"], str(c["id"]), f"{c['grid']} {c['grid_name']}" if c["grid"] else "（无网格）", c["host"] or "-",
             _STREAM_LABEL[c["analysed_stream"]] + ("" if c["analysis_stream"] == "auto" else "（指定）"),
             "yes" if c["enabled"] else "no"]
            for c in items
        ]  # fmt: skip
        emit(as_json, {"cameras": items}, table(["NAME", "ID", "GRID", "HOST", "ANALYSED", "ENABLED"], rows), f"{len(items)} camera(s)")

    @cameras_app.command("outages")
    def cameras_outages(
        camera: Annotated[int | None, typer.Option(help="Only this camera (id)")] = None,
        grid: Annotated[str | None, typer.Option(help="Only cameras in this grid node or below it (code)")] = None,
        ongoing_only: Annotated[bool, typer.Option("--ongoing", help="Only cameras offline now")] = False,
        limit: Annotated[int, typer.Option(min=1, help="Most outages listed, newest first")] = 50,
        as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout")] = False,
    ) -> None:
        """List camera outages (摄像头离线), newest first: camera, grid, offline since and until (in
        GRIDPATROL_TIMEZONE), how long, and whether the grid was told. An outage shorter than
        GRIDPATROL_CAMERA_OFFLINE_NOTICE_S is not kept once it ends."""
        settings = load_settings()
        tz = settings.worker.tz
        with open_db_for_reading(settings)() as session:
            query = (
                select(CameraOutage, Camera, GridNode)
                .join(Camera, Camera.id == CameraOutage.camera_id)
                .outerjoin(GridNode, GridNode.id == Camera.grid_id)
                .order_by(CameraOutage.started_at.desc(), CameraOutage.id.desc())
                .limit(limit)
            )
            if camera is not None:
                query = query.where(CameraOutage.camera_id == camera)
            if grid is not None:
                node = grid_by_code(session, grid)
                query = query.where(GridNode.path.startswith(node.path))
            if ongoing_only:
                query = query.where(CameraOutage.ended_at.is_(None))
            found = session.execute(query).all()
        now = utcnow()
        local = lambda at: at.astimezone(tz).strftime(LOCAL_TIME) if at else None  # noqa: E731
        items: list[dict[str, Any]] = [
            {
                "id": o.id, "camera_id": cam.id, "camera": cam.name, "grid": node.code if node else None,
                "started_at": o.started_at.isoformat(), "started_at_local": local(o.started_at),
                "ended_at": o.ended_at.isoformat() if o.ended_at else None, "ended_at_local": local(o.ended_at),
                "ongoing": o.ended_at is None,
                "duration_s": round(((o.ended_at or now) - o.started_at).total_seconds(), 1),
                "state": o.state, "reason": o.reason,
                "offline_notice_at": o.offline_notice_at.isoformat() if o.offline_notice_at else None,
                "online_notice_at": o.online_notice_at.isoformat() if o.online_notice_at else None,
            }
            for o, cam, node in found
        ]  # fmt: skip
        rows = [
            [i["camera"], str(i["camera_id"]), i["grid"] or "-", i["started_at_local"],
             i["ended_at_local"] or "离线中", format_duration(i["duration_s"]),
             "已通知" if i["offline_notice_at"] else "未到通知时限", i["reason"] or i["state"]]
            for i in items
        ]  # fmt: skip
        emit(
            as_json,
            {"outages": items, "timezone": settings.worker.timezone},
            table(["CAMERA", "ID", "GRID", f"OFFLINE SINCE ({settings.worker.timezone})", "UNTIL", "FOR", "NOTICE",
                   "REASON"], rows),  # fmt: skip
            f"{len(items)} outage(s)" + (f" (the newest {limit}: --limit shows more)" if len(items) == limit else ""),
        )

    @grids_app.command("list")
    def grids_list(
        tree: Annotated[bool, typer.Option("--tree", help="An indented tree; nodes nobody answers for are marked")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout")] = False,
    ) -> None:
        """List the grid tree (组织树): code, name, kind, parent and who answers for each node (网格长 for
        a grid, 负责人 for a community, street or district); nodes without one are marked "⚠ 无负责人"."""
        with reader()() as session:
            nodes = list(session.scalars(select(GridNode).order_by(GridNode.code)))
            people = responsible_people(session)
        by_id = {n.id: n for n in nodes}
        children: dict[int | None, list[GridNode]] = defaultdict(list)
        for n in nodes:
            children[n.parent_id if n.parent_id in by_id else None].append(n)

        def doc(n: GridNode) -> dict[str, Any]:
            parent = by_id.get(n.parent_id) if n.parent_id is not None else None
            return {
                "id": n.id,
                "code": n.code,
                "name": n.name,
                "kind": n.kind,
                "parent": parent.code if parent else None,
                "responsible": people.get(n.id, []),
            }

        ordered: list[tuple[GridNode, str]] = []  # depth first, with the tree's drawing prefix

        def walk(parent: int | None, prefix: str) -> None:
            kids = children.get(parent, [])
            for i, n in enumerate(kids):
                last = i == len(kids) - 1
                ordered.append((n, prefix + ("" if parent is None else "└─ " if last else "├─ ")))
                walk(n.id, prefix + ("" if parent is None else "   " if last else "│  "))

        walk(None, "")

        def who(n: GridNode) -> str:
            names = people.get(n.id)
            if not names:
                return NO_ONE
            return ("网格长 " if n.kind == GridKind.grid else "负责人 ") + ", ".join(names)

        if tree:
            def nested(n: GridNode) -> dict[str, Any]:
                return {**doc(n), "children": [nested(c) for c in children.get(n.id, [])]}

            heads = [f"{prefix}{n.code} {n.name}（{_zh(KIND_ZH, n.kind)}）" for n, prefix in ordered]
            width = max((display_width(h) for h in heads), default=0)
            lines = [f"{pad(h, width)}  {who(n)}" for h, (n, _) in zip(heads, ordered, strict=True)]
            emit(as_json, {"grids": [nested(n) for n in children.get(None, [])]}, lines, f"{len(nodes)} grid node(s)")
            return
        rows = [
            [n.code, n.name, f"{_zh(KIND_ZH, n.kind)} {n.kind}", doc(n)["parent"] or "-", who(n)] for n, _ in ordered
        ]
        emit(as_json, {"grids": [doc(n) for n, _ in ordered]}, table(["CODE", "NAME", "KIND", "PARENT", "RESPONSIBLE"], rows),
             f"{len(nodes)} grid node(s)")  # fmt: skip

    @users_app.command("list")
    def users_list(
        role: Annotated[str | None, typer.Option(help="Only this role: admin | operator | manager | grid_leader | patroller")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout")] = False,
    ) -> None:
        """List users: username, role, the grid nodes they answer for, enabled."""
        try:
            wanted = parse_role(role) if role is not None else None
        except GridPatrolError as err:
            fail(str(err))
        with reader()() as session:
            query = select(User).order_by(User.username)
            if wanted is not None:
                query = query.where(User.role == wanted.value)
            items: list[dict[str, Any]] = [
                {
                    "id": u.id,
                    "username": u.username,
                    "display_name": u.display_name,
                    "role": u.role,
                    "grids": sorted(a.grid.code for a in u.assignments),
                    "enabled": u.enabled,
                }
                for u in session.scalars(query)
            ]
        rows = [
            [u["username"], u["display_name"] or "-", f"{_zh(ROLE_ZH, u['role'])} {u['role']}", ", ".join(u["grids"]) or "-",
             "yes" if u["enabled"] else "no"]
            for u in items
        ]  # fmt: skip
        emit(as_json, {"users": items}, table(["USERNAME", "NAME", "ROLE", "GRIDS", "ENABLED"], rows), f"{len(items)} user(s)")

    @tickets_app.command("list")
    def tickets_list(
        state: Annotated[
            list[str] | None, typer.Option(help="Only this state (repeatable): " + " | ".join(s.value for s in TicketState))
        ] = None,
        grid: Annotated[str | None, typer.Option(help="Only tickets of this grid node or below it (code)")] = None,
        limit: Annotated[int, typer.Option(min=1, help="Most tickets listed, newest first")] = 50,
        as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout")] = False,
    ) -> None:
        """List tickets (工单), newest first: id, state, category, grid, camera, assignee, opened at (in
        GRIDPATROL_TIMEZONE) and whether it is overdue (超时)."""
        allowed = {s.value for s in TicketState}
        for s in state or []:
            if s not in allowed:
                fail(f"unknown state {s!r} (use {', '.join(x.value for x in TicketState)})")
        settings = load_settings()
        tz = settings.worker.tz
        with open_db_for_reading(settings)() as session:
            query = select(Ticket).order_by(Ticket.opened_at.desc(), Ticket.id.desc()).limit(limit)
            if state:
                query = query.where(Ticket.state.in_(state))
            if grid is not None:
                node = grid_by_code(session, grid)
                query = query.join(GridNode, GridNode.id == Ticket.grid_id).where(GridNode.path.startswith(node.path))
            tickets = list(session.scalars(query).unique())
            cams = {i: n for i, n in session.execute(select(Camera.id, Camera.name).where(
                Camera.id.in_({t.camera_id for t in tickets if t.camera_id is not None})))}  # fmt: skip
            users = {i: n for i, n in session.execute(select(User.id, User.username).where(
                User.id.in_({t.assignee_id for t in tickets if t.assignee_id is not None})))}  # fmt: skip
        now = utcnow()
        items: list[dict[str, Any]] = []
        for t in tickets:
            late = overdue_seconds(t, now)
            items.append(
                {
                    "id": t.id,
                    "state": t.state,
                    "state_zh": _zh(STATE_ZH, t.state),
                    "category": t.category,
                    "category_zh": _zh(CATEGORY_ZH, t.category),
                    "source": t.source,
                    "grid": t.grid.code if t.grid else None,
                    "camera": cams.get(t.camera_id) if t.camera_id is not None else None,
                    "assignee": users.get(t.assignee_id) if t.assignee_id is not None else None,
                    "opened_at": t.opened_at.isoformat(),
                    "opened_at_local": t.opened_at.astimezone(tz).strftime(LOCAL_TIME),
                    "overdue": late is not None,
                    "overdue_s": late,
                }
            )
        rows = [
            [str(i["id"]), f"{i['state_zh']} {i['state']}", i["category_zh"], i["grid"] or "-", i["camera"] or "-",
             i["assignee"] or "-", i["opened_at_local"], f"超时 {format_duration(i['overdue_s'])}" if i["overdue"] else ""]
            for i in items
        ]  # fmt: skip
        emit(
            as_json,
            {"tickets": items, "timezone": settings.worker.timezone},
            table(["ID", "STATE", "CATEGORY", "GRID", "CAMERA", "ASSIGNEE", f"OPENED ({settings.worker.timezone})", "OVERDUE"], rows),
            f"{len(items)} ticket(s)" + (f" (the newest {limit}: --limit shows more)" if len(items) == limit else ""),
        )
