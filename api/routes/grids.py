"""The grid tree, as far as the caller may see it."""

from __future__ import annotations

from fastapi import APIRouter, Query
from sqlalchemy import select

from api.deps import ScopeDep, SessionDep, x_access
from api.schemas import GridNodeOut
from models.db.tables import GridNode

router = APIRouter(prefix="/api", tags=["grids"])


@router.get("/grids", response_model=list[GridNodeOut], openapi_extra=x_access("authenticated"))
def grid_tree(
    session: SessionDep,
    scope: ScopeDep,
    geometry: bool = Query(default=False, description="Include each node's GeoJSON geometry"),
) -> list[GridNodeOut]:
    """The tree of grid nodes. A scoped user sees their subtrees and the chain of ancestors above them."""
    nodes = list(session.scalars(select(GridNode).order_by(GridNode.path)))
    if not scope.sees_everything:
        ids_in_scope = {n.id for n in nodes if scope.allows_grid(n.path)}
        ancestor_ids = {int(part) for n in nodes if n.id in ids_in_scope for part in n.path.strip("/").split("/")}
        nodes = [n for n in nodes if n.id in ids_in_scope or n.id in ancestor_ids]
    code_of = {n.id: n.code for n in nodes}
    out: dict[int, GridNodeOut] = {}
    roots: list[GridNodeOut] = []
    for n in nodes:  # ordered by path: a parent always comes before its children
        item = GridNodeOut(
            id=n.id,
            code=n.code,
            name=n.name,
            kind=n.kind,
            parent_code=code_of.get(n.parent_id) if n.parent_id is not None else None,
            geometry=n.geometry if geometry else None,
        )
        out[n.id] = item
        parent = out.get(n.parent_id) if n.parent_id is not None else None
        (parent.children if parent is not None else roots).append(item)
    return roots
