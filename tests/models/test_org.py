"""Departments on SQLite and PostgreSQL: import from YAML and CSV (all or nothing), jurisdiction, the
nearest covering department of a place, department users; and the ``gridpatrol departments`` commands."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from models.db.engine import transaction
from models.db.tables import Department, GridNode, Role
from models.errors import InvalidInput
from models.identity.access import load_scope
from models.org.departments import (
    add_department_user,
    covering,
    get_department,
    import_departments,
    jurisdiction,
    parse_org_file,
)
from tests.support import sample

YAML = """
departments:
  - {code: LAW-D1, name: 江北综合执法大队, kind: law_enforcement, grids: [D1]}
  - {code: LAW-S1, name: 泰山执法中队, kind: law_enforcement, grids: [S1], accept_within_s: 600}
  - {code: PS-S2, name: 顶山派出所, kind: police, grids: [S2]}
"""
CSV = "code,name,kind,grids,resolve_within_s\nFIRE-S1,泰山消防救援站,fire_rescue,S1;C1,1800\nMKT-D1,市场监管局,market,D1,\n"


@pytest.mark.parametrize(
    ("text", "name", "error"),
    [
        ("departments: [{code: X, name: x, kind: bakery}]", "d.yaml", "unknown department kind 'bakery'"),
        ("departments: [{code: X, name: x, kind: police, colour: red}]", "d.yaml", "Extra inputs"),
        ("code,name,kind,grids\nbad code,x,police,D1\n", "d.csv", "String should match pattern"),
        ("departments: {", "d.yaml", "is not valid YAML"),
        ("- 1\n- 2\n", "d.yaml", "item 1"),
    ],
)
def test_a_bad_file_is_refused_with_the_item_named(text: str, name: str, error: str) -> None:
    with pytest.raises(InvalidInput, match=error):
        parse_org_file(text, name=name)


def test_import_yaml_and_csv_then_the_nearest_department_covers_a_place(
    seeded: sessionmaker[Session],
) -> None:
    with transaction(seeded) as s:
        first = import_departments(
            s, parse_org_file(YAML, name="org.yaml") + parse_org_file(CSV, name="org.csv")
        )
    assert (first.created, first.updated) == (5, 0)
    with transaction(seeded) as s:  # importing again updates, never duplicates
        again = import_departments(s, parse_org_file(CSV, name="org.csv"))
    assert (again.created, again.updated) == (0, 2)
    with seeded() as s:
        fire = get_department(s, "FIRE-S1")
        assert [g.code for g in jurisdiction(s, fire.id)] == ["C1", "S1"] and fire.resolve_within_s == 1800
        assert get_department(s, "MKT-D1").resolve_within_s == 4 * 3600  # an empty CSV cell keeps the default
        g1 = s.scalars(select(GridNode).where(GridNode.code == "G1")).one()
        g3 = s.scalars(select(GridNode).where(GridNode.code == "G3")).one()
        assert [d.code for d in covering(s, grid_path=g1.path, kind="law_enforcement")] == [
            "LAW-S1",
            "LAW-D1",
        ]
        assert [d.code for d in covering(s, grid_path=g3.path, kind="law_enforcement")] == ["LAW-D1"]
        assert [d.code for d in covering(s, grid_path=g1.path, kind="police")] == []
        assert s.scalar(select(Department.accept_within_s).where(Department.code == "LAW-S1")) == 600
    with transaction(seeded) as s, pytest.raises(InvalidInput, match="no grid node has code 'G9'"):
        import_departments(
            s, parse_org_file("departments: [{code: X, name: x, kind: police, grids: [G9]}]", name="x.yaml")
        )


def test_a_department_user_has_no_grid_and_sees_nothing_without_a_part(seeded: sessionmaker[Session]) -> None:
    with transaction(seeded) as s:
        import_departments(s, parse_org_file(YAML, name="org.yaml"))
        user = add_department_user(
            s, dept=get_department(s, "PS-S2"), username="police-s2", password=sample.PASSWORD, is_head=True
        )
        assert user.role == Role.department.value and not user.assignments
    with seeded() as s:
        from models.db.tables import Camera, Ticket, User

        u = s.scalars(select(User).where(User.username == "police-s2")).one()
        scope = load_scope(s, u)
        assert s.scalars(select(Camera.id).where(scope.camera_filter())).all() == []
        assert s.scalars(select(Ticket.id).where(scope.ticket_filter())).all() == []


def test_the_departments_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gridpatrol.cli import app

    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("GRIDPATROL_DATABASE_URL", raising=False)
    grids, _ = sample.write_files(tmp_path)
    (tmp_path / "org.yaml").write_text(YAML, encoding="utf-8")
    runner = CliRunner()
    assert runner.invoke(app, ["grids", "import", str(grids)]).exit_code == 0
    result = runner.invoke(app, ["departments", "import", str(tmp_path / "org.yaml")])
    assert result.exit_code == 0, result.output
    assert "3 created, 0 updated" in result.output
    result = runner.invoke(
        app, ["departments", "add-user", "PS-S2", "police-s2", "--password", sample.PASSWORD, "--head"]
    )
    assert result.exit_code == 0, result.output
    listed = runner.invoke(app, ["departments", "list"])
    assert "PS-S2\t顶山派出所\t派出所\tS2" in listed.output
    bad = runner.invoke(app, ["departments", "import", str(grids)])
    assert bad.exit_code != 0 and "nothing was imported" in bad.output
