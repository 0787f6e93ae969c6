"""Point-in-polygon placement of cameras (and reported cases) into the grid tree, with a spatial index."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.db.tables import GRID_KIND_LEVEL, GridKind, GridNode


@dataclass(frozen=True)
class _Indexed:
    node_id: int
    code: str
    level: int


class GridLocator:
    """Finds the deepest grid node whose polygon contains a point (lon, lat).

    Built once from the tree (an STRtree over every polygon), then answers any number of points in
    one vectorised query: 10k cameras into 5k grids take well under a second.
    """

    def __init__(self, nodes: Iterable[tuple[int, str, str, dict[str, Any] | None]]) -> None:
        geoms: list[BaseGeometry] = []
        self._meta: list[_Indexed] = []
        for node_id, code, kind, geometry in nodes:
            if not geometry:
                continue
            geoms.append(shape(geometry))
            self._meta.append(_Indexed(node_id, code, GRID_KIND_LEVEL[GridKind(kind)]))
        self._geoms = np.array(geoms, dtype=object)
        self._tree = shapely.STRtree(self._geoms) if geoms else None

    @classmethod
    def from_session(cls, session: Session) -> GridLocator:
        rows = session.execute(select(GridNode.id, GridNode.code, GridNode.kind, GridNode.geometry)).all()
        return cls((r.id, r.code, r.kind, r.geometry) for r in rows)

    def locate_many(self, points: list[tuple[float, float]]) -> list[tuple[int, str] | None]:
        """For each (lon, lat): (node id, code) of the deepest containing node, or None."""
        result: list[tuple[int, str] | None] = [None] * len(points)
        if self._tree is None or not points:
            return result
        pts = shapely.points(np.asarray(points, dtype=float))
        # "intersects" keeps points on a shared border inside both neighbours; the deepest level wins,
        # then the lowest id, so the answer is deterministic.
        point_idx, geom_idx = self._tree.query(pts, predicate="intersects")
        best: dict[int, _Indexed] = {}
        for p, g in zip(point_idx.tolist(), geom_idx.tolist(), strict=True):
            meta = self._meta[g]
            cur = best.get(p)
            if cur is None or (meta.level, -meta.node_id) > (cur.level, -cur.node_id):
                best[p] = meta
        for p, meta in best.items():
            result[p] = (meta.node_id, meta.code)
        return result

    def locate(self, lon: float, lat: float) -> tuple[int, str] | None:
        return self.locate_many([(lon, lat)])[0]
