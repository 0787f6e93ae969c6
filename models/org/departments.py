"""Functional departments (职能部门) beside the grid tree: kinds, jurisdiction (grid nodes covered),
members (handlers and a head) and deadlines; created one by one or imported from a YAML/CSV file."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.db.tables import Department, DepartmentArea, DepartmentMember, GridNode, Role, User
from models.errors import Conflict, InvalidInput, NotFound
from models.identity.users import add_user, find_user

#: the kinds of department and their names in the UI
DEPARTMENT_KINDS: dict[str, str] = {
    "law_enforcement": "综合执法（城管）",
    "market": "市场监管",
    "fire_rescue": "消防救援",
    "police": "派出所",
    "transport": "交通运输",
    "environment": "生态环境",
    "other": "其他部门",
}


class DepartmentSpec(BaseModel):
    """One department as the API and import files describe it."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$", description="Unique code")
    name: str = Field(min_length=1, max_length=200, description="Name shown to people")
    kind: str = Field(
        description="law_enforcement | market | fire_rescue | police | transport | environment | other"
    )
    grids: list[str] = Field(
        default_factory=list, max_length=1000, description="Codes of the grid nodes covered"
    )
    accept_within_s: int = Field(default=1800, gt=0, le=30 * 86400, description="Time to accept a part")
    resolve_within_s: int = Field(default=4 * 3600, gt=0, le=90 * 86400, description="Time to resolve a part")


def _check_kind(kind: str) -> None:
    if kind not in DEPARTMENT_KINDS:
        raise InvalidInput(
            f"unknown department kind {kind!r} (use {', '.join(DEPARTMENT_KINDS)})", field="kind"
        )


def _grid_nodes(session: Session, codes: Iterable[str]) -> list[GridNode]:
    wanted = list(dict.fromkeys(codes))
    nodes = {n.code: n for n in session.scalars(select(GridNode).where(GridNode.code.in_(wanted)))}
    missing = [c for c in wanted if c not in nodes]
    if missing:
        raise InvalidInput(f"no grid node has code {missing[0]!r}", field="grids")
    return [nodes[c] for c in wanted]


def get_department(session: Session, code: str) -> Department:
    dept = session.scalar(select(Department).where(Department.code == code))
    if dept is None:
        raise NotFound(f"no department has code {code!r}")
    return dept


def jurisdiction(session: Session, department_id: int) -> list[GridNode]:
    """The grid nodes a department covers (each with its subtree), by code."""
    return list(
        session.scalars(
            select(GridNode)
            .join(DepartmentArea, DepartmentArea.grid_id == GridNode.id)
            .where(DepartmentArea.department_id == department_id)
            .order_by(GridNode.code)
        )
    )


def set_jurisdiction(session: Session, dept: Department, codes: Iterable[str]) -> list[str]:
    """Replace the grid nodes a department covers; returns the codes now covered."""
    nodes = _grid_nodes(session, codes)
    wanted = {n.id for n in nodes}
    for area in session.scalars(select(DepartmentArea).where(DepartmentArea.department_id == dept.id)):
        if area.grid_id not in wanted:
            session.delete(area)
        else:
            wanted.discard(area.grid_id)
    session.add_all(DepartmentArea(department_id=dept.id, grid_id=g) for g in sorted(wanted))
    session.flush()
    return [n.code for n in nodes]


def upsert_department(session: Session, spec: DepartmentSpec) -> tuple[Department, bool]:
    """Create the department or update the one with this code; (department, created)."""
    _check_kind(spec.kind)
    dept = session.scalar(select(Department).where(Department.code == spec.code))
    created = dept is None
    if dept is None:
        dept = Department(code=spec.code)
        session.add(dept)
    dept.name, dept.kind = spec.name, spec.kind
    dept.accept_within_s, dept.resolve_within_s = spec.accept_within_s, spec.resolve_within_s
    session.flush()
    set_jurisdiction(session, dept, spec.grids)
    return dept, created


def create_department(session: Session, spec: DepartmentSpec) -> Department:
    if session.scalar(select(Department.id).where(Department.code == spec.code)) is not None:
        raise Conflict(f"department {spec.code!r} already exists")
    return upsert_department(session, spec)[0]


def add_member(
    session: Session, *, dept: Department, username: str, is_head: bool = False
) -> DepartmentMember:
    """Put an existing user of role ``department`` into a department (a user works for one department)."""
    user = find_user(session, username)
    if user is None:
        raise InvalidInput(f"no user {username!r}", field="username")
    if user.role != Role.department.value:
        raise InvalidInput(f"{username!r} is a {user.role}, not a department user", field="username")
    member = session.scalar(select(DepartmentMember).where(DepartmentMember.user_id == user.id))
    if member is None:
        member = DepartmentMember(user_id=user.id, department_id=dept.id, is_head=is_head)
        session.add(member)
    else:
        member.department_id, member.is_head = dept.id, is_head
    session.flush()
    return member


def add_department_user(
    session: Session,
    *,
    dept: Department,
    username: str,
    password: str,
    is_head: bool = False,
    display_name: str = "",
) -> User:
    """A new user of role ``department`` working for ``dept`` (no grid nodes: they see only their parts)."""
    user = add_user(
        session,
        username=username,
        role=Role.department,
        password=password,
        grid_codes=[],
        display_name=display_name,
    )
    add_member(session, dept=dept, username=username, is_head=is_head)
    return user


def department_of(session: Session, user_id: int) -> Department | None:
    return session.scalar(
        select(Department)
        .join(DepartmentMember, DepartmentMember.department_id == Department.id)
        .where(DepartmentMember.user_id == user_id)
    )


def covering(session: Session, *, grid_path: str | None, kind: str) -> list[Department]:
    """The departments of ``kind`` whose jurisdiction covers a grid node (nearest first: the one covering
    the smallest node around it comes first)."""
    if grid_path is None:
        return []
    ancestors = [int(p) for p in grid_path.strip("/").split("/") if p]
    rows = session.execute(
        select(Department, GridNode.path)
        .join(DepartmentArea, DepartmentArea.department_id == Department.id)
        .join(GridNode, GridNode.id == DepartmentArea.grid_id)
        .where(GridNode.id.in_(ancestors), Department.kind == kind)
    ).all()
    seen: dict[int, tuple[int, Department]] = {}
    for dept, path in rows:
        depth = path.count("/")
        if dept.id not in seen or depth > seen[dept.id][0]:
            seen[dept.id] = (depth, dept)
    return [d for _, d in sorted(seen.values(), key=lambda x: (-x[0], x[1].code))]


# --- import from a file --------------------------------------------------------------------------


@dataclass(frozen=True)
class OrgImportReport:
    created: int
    updated: int


def parse_org_file(text: str, *, name: str) -> list[DepartmentSpec]:
    """Departments from YAML (``departments: [{code, name, kind, grids: [...]}]``) or CSV with columns
    code,name,kind,grids[,accept_within_s,resolve_within_s] (grids separated by ``;`` or spaces)."""
    rows: list[dict[str, object]]
    if name.lower().endswith(".csv"):
        reader = csv.DictReader(io.StringIO(text))
        rows = []
        for row in reader:
            item: dict[str, object] = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            item["grids"] = [g for g in str(item.get("grids", "")).replace(";", " ").split() if g]
            for key in ("accept_within_s", "resolve_within_s"):
                if item.get(key) == "":
                    item.pop(key)
            rows.append(item)
    else:
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise InvalidInput(f"is not valid YAML ({err})", where=name) from err
        listed = doc.get("departments") if isinstance(doc, dict) else doc
        if not isinstance(listed, list):
            raise InvalidInput("needs a list 'departments'", where=name)
        rows = listed
    specs = []
    for i, row in enumerate(rows, start=1):
        try:
            spec = DepartmentSpec.model_validate(row)
        except ValidationError as err:
            first = err.errors()[0]
            raise InvalidInput(
                first["msg"], where=f"{name} item {i}", field=".".join(str(p) for p in first["loc"])
            ) from err
        _check_kind(spec.kind)
        specs.append(spec)
    return specs


def import_departments(session: Session, specs: list[DepartmentSpec]) -> OrgImportReport:
    created = updated = 0
    for spec in specs:
        _, new = upsert_department(session, spec)
        created, updated = created + new, updated + (not new)
    return OrgImportReport(created=created, updated=updated)
