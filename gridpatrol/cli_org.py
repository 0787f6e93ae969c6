"""``gridpatrol departments``: functional departments (职能部门), their jurisdiction and users."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import select

from gridpatrol.cli_common import fail, load_settings, open_db, read_text
from models.db.engine import transaction
from models.db.tables import Department
from models.errors import GridPatrolError
from models.org.departments import (
    DEPARTMENT_KINDS,
    add_department_user,
    get_department,
    import_departments,
    jurisdiction,
    parse_org_file,
)


def register_org_commands(app: typer.Typer) -> None:
    """Add the ``departments`` command group to the main CLI."""
    org_app = typer.Typer(
        help="Functional departments (职能部门) and their jurisdiction.", no_args_is_help=True
    )
    app.add_typer(org_app, name="departments")

    @org_app.command("import")
    def departments_import(
        file: Annotated[Path, typer.Argument(help="YAML (departments: [...]) or CSV (code,name,kind,grids)")],
    ) -> None:
        """Create or update departments and their jurisdiction (grid codes); all or nothing."""
        settings = load_settings()
        text = read_text(file)
        try:
            specs = parse_org_file(text, name=str(file))
            with transaction(open_db(settings)) as session:
                report = import_departments(session, specs)
        except GridPatrolError as err:
            fail(f"{err} (nothing was imported)")
        print(f"departments: {report.created} created, {report.updated} updated")

    @org_app.command("list")
    def departments_list() -> None:
        """Every department with its kind and the grid nodes it covers."""
        settings = load_settings()
        with open_db(settings)() as session:
            for dept in session.scalars(select(Department).order_by(Department.code)):
                grids = " ".join(g.code for g in jurisdiction(session, dept.id)) or "-"
                print(f"{dept.code}\t{dept.name}\t{DEPARTMENT_KINDS.get(dept.kind, dept.kind)}\t{grids}")

    @org_app.command("add-user")
    def departments_add_user(
        department: Annotated[str, typer.Argument(help="Department code")],
        username: Annotated[str, typer.Argument(help="New user (role department)")],
        password: Annotated[str, typer.Option(help="At least 8 characters, not common or trivial")],
        head: Annotated[bool, typer.Option(help="The department head")] = False,
    ) -> None:
        """Create a department user: a handler, or the head (--head); they see only their parts' tickets."""
        settings = load_settings()
        try:
            with transaction(open_db(settings)) as session:
                add_department_user(
                    session,
                    dept=get_department(session, department),
                    username=username,
                    password=password,
                    is_head=head,
                )
        except GridPatrolError as err:
            fail(str(err))
        print(f"user {username} added to {department}")
