"""Departments for the linkage tests: fire and rescue, law enforcement, two police stations, market."""

from __future__ import annotations

from functools import cache

from sqlalchemy.orm import Session, sessionmaker

from models.db.engine import transaction
from models.db.tables import Role, User
from models.identity.passwords import hash_password
from models.org.departments import DepartmentSpec, add_member, create_department
from tests.support import sample


@cache
def _password_hash() -> str:
    return hash_password(sample.PASSWORD)  # hashed once: argon2 is slow on purpose


#: code → (kind, name, grid codes covered, its users: username → is_head)
DEPARTMENTS: dict[str, tuple[str, str, list[str], dict[str, bool]]] = {
    "FIRE-S1": ("fire_rescue", "泰山消防救援站", ["S1"], {"fire-s1": False, "fire-head": True}),
    "LAW-D1": ("law_enforcement", "江北综合执法大队", ["D1"], {"law-d1": False}),
    "PS-S1": ("police", "泰山派出所", ["S1"], {"police-s1": False}),
    "PS-S2": ("police", "顶山派出所", ["S2"], {"police-s2": False}),
    "MKT-D1": ("market", "江北市场监管局", ["D1"], {"market-d1": False}),
}


def seed_org(factory: sessionmaker[Session]) -> None:
    """The departments above with their jurisdiction and users (password ``sample.PASSWORD``)."""
    with transaction(factory) as s:
        for code, (kind, name, grids, users) in DEPARTMENTS.items():
            dept = create_department(
                s,
                DepartmentSpec(
                    code=code, name=name, kind=kind, grids=grids, accept_within_s=600, resolve_within_s=3600
                ),
            )
            for username, head in users.items():
                s.add(User(username=username, role=Role.department.value, password_hash=_password_hash()))
                s.flush()
                add_member(s, dept=dept, username=username, is_head=head)
