"""Departments (职能部门): list and read for everyone logged in; create, change, jurisdiction and delete for
the centre (admins, operators); members for admins only (putting a user in a department gives them work)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.deps import AdminUser, ConfigureUser, CurrentUser, ObjectId, SessionDep, x_access
from api.org_schemas import DepartmentIn, DepartmentOut, JurisdictionIn, MemberIn
from models.db.tables import Department, DepartmentMember, User
from models.errors import InvalidInput, NotFound
from models.identity.audit import record_change
from models.org import departments as model

router = APIRouter(prefix="/api", tags=["org"])


def department_out(session: Session, dept: Department) -> DepartmentOut:
    members = session.scalars(
        select(User.username)
        .join(DepartmentMember, DepartmentMember.user_id == User.id)
        .where(DepartmentMember.department_id == dept.id)
        .order_by(User.username)
    ).all()
    return DepartmentOut(
        id=dept.id, code=dept.code, name=dept.name, kind=dept.kind, kind_zh=model.DEPARTMENT_KINDS.get(dept.kind, dept.kind),
        grids=[g.code for g in model.jurisdiction(session, dept.id)], members=list(members),
        accept_within_s=dept.accept_within_s, resolve_within_s=dept.resolve_within_s,
    )  # fmt: skip


def _get(session: Session, department_id: int) -> Department:
    dept = session.get(Department, department_id)
    if dept is None:
        raise NotFound("no such department")
    return dept


@router.get("/departments", response_model=list[DepartmentOut], openapi_extra=x_access("authenticated"))
def list_departments(session: SessionDep, user: CurrentUser) -> list[DepartmentOut]:
    """Every department with its jurisdiction (the triage desk offers them; names are not secret)."""
    return [department_out(session, d) for d in session.scalars(select(Department).order_by(Department.code))]


@router.post(
    "/departments", response_model=DepartmentOut, status_code=201, openapi_extra=x_access("configure")
)
def create_department(body: DepartmentIn, session: SessionDep, user: ConfigureUser) -> DepartmentOut:
    dept = model.create_department(session, model.DepartmentSpec(**body.model_dump()))
    record_change(
        session,
        user=user,
        channel="api",
        object_type="department",
        object_id=dept.id,
        detail={"code": dept.code},
    )
    return department_out(session, dept)


@router.get(
    "/departments/{department_id}", response_model=DepartmentOut, openapi_extra=x_access("authenticated")
)
def get_department(department_id: ObjectId, session: SessionDep, user: CurrentUser) -> DepartmentOut:
    return department_out(session, _get(session, department_id))


@router.put("/departments/{department_id}", response_model=DepartmentOut, openapi_extra=x_access("configure"))
def update_department(
    department_id: ObjectId, body: DepartmentIn, session: SessionDep, user: ConfigureUser
) -> DepartmentOut:
    dept = _get(session, department_id)
    if body.code != dept.code:
        raise InvalidInput("a department's code does not change (create a new department)", field="code")
    dept, _ = model.upsert_department(session, model.DepartmentSpec(**body.model_dump()))
    record_change(
        session,
        user=user,
        channel="api",
        object_type="department",
        object_id=dept.id,
        detail={"code": dept.code},
    )
    return department_out(session, dept)


@router.put(
    "/departments/{department_id}/jurisdiction",
    response_model=DepartmentOut,
    openapi_extra=x_access("configure"),
)
def set_jurisdiction(
    department_id: ObjectId, body: JurisdictionIn, session: SessionDep, user: ConfigureUser
) -> DepartmentOut:
    dept = _get(session, department_id)
    codes = model.set_jurisdiction(session, dept, body.grids)
    record_change(
        session,
        user=user,
        channel="api",
        object_type="department",
        object_id=dept.id,
        detail={"grids": codes},
    )
    return department_out(session, dept)


@router.delete("/departments/{department_id}", status_code=204, openapi_extra=x_access("configure"))
def delete_department(department_id: ObjectId, session: SessionDep, user: ConfigureUser) -> Response:
    dept = _get(session, department_id)
    record_change(
        session,
        user=user,
        channel="api",
        object_type="department",
        object_id=dept.id,
        detail={"deleted": dept.code},
    )
    session.delete(dept)
    return Response(status_code=204)


@router.post(
    "/departments/{department_id}/members", response_model=DepartmentOut, openapi_extra=x_access("admin")
)
def add_member(
    department_id: ObjectId, body: MemberIn, session: SessionDep, user: AdminUser
) -> DepartmentOut:
    dept = _get(session, department_id)
    model.add_member(session, dept=dept, username=body.username, is_head=body.is_head)
    record_change(session, user=user, channel="api", object_type="department", object_id=dept.id,
                  detail={"member": body.username, "head": body.is_head})  # fmt: skip
    return department_out(session, dept)
