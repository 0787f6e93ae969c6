"""Overlapping sibling grids and children spilling outside their parent, found when a grid file is imported.

Areas are in square metres, computed roughly: lon/lat are projected equirectangularly at the latitude of
the piece being measured (x = R·Δlon·cos φ, y = R·Δlat), which is within a fraction of a percent for
pieces a few kilometres across. Pieces under ``AREA_TOLERANCE_M2`` do not count, so shared borders
(and rounding at them) never warn.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

import shapely
from shapely.geometry.base import BaseGeometry

AREA_TOLERANCE_M2 = 1.0
EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG)
_M_PER_DEGREE = EARTH_RADIUS_M * math.pi / 180


@dataclass(frozen=True)
class Outline:
    """One node of the tree as it will be after the import."""

    code: str
    kind: str
    parent_code: str | None
    geometry: BaseGeometry
    label: str  # how messages name it: "feature 6 (code 'G1')" or "node 'G1' (already in the database)"
    in_file: bool


@dataclass(frozen=True)
class GeometryWarning:
    problem: Literal["overlap", "spill"]
    codes: tuple[str, str]  # overlap: the two siblings; spill: (child, parent)
    labels: tuple[str, str]
    area_m2: float

    def __str__(self) -> str:
        area = f"about {self.area_m2:,.0f} m²"
        if self.problem == "overlap":
            return f"{self.labels[0]} and {self.labels[1]} overlap by {area}"
        return f"{self.labels[0]} spills {area} outside its parent {self.labels[1]}"


def area_m2(geom: BaseGeometry) -> float:
    """Rough area of a lon/lat geometry in m² (equirectangular at its own latitude)."""
    if geom.is_empty:
        return 0.0
    lat = geom.centroid.y
    return float(geom.area) * _M_PER_DEGREE**2 * math.cos(math.radians(lat))


def check_overlaps(outlines: list[Outline]) -> list[GeometryWarning]:
    """Overlaps among siblings (same parent, same kind) and spills of children, where a node in the file takes part."""
    warnings: list[GeometryWarning] = []
    siblings: dict[tuple[str | None, str], list[Outline]] = defaultdict(list)
    for o in outlines:
        siblings[(o.parent_code, o.kind)].append(o)
    for group in siblings.values():
        warnings.extend(_sibling_overlaps(group))
    by_code = {o.code: o for o in outlines}
    for child in outlines:
        parent = by_code.get(child.parent_code) if child.parent_code else None
        if parent is None or not (child.in_file or parent.in_file):
            continue
        outside = area_m2(child.geometry.difference(parent.geometry))
        if outside > AREA_TOLERANCE_M2:
            warnings.append(GeometryWarning("spill", (child.code, parent.code), (child.label, parent.label), outside))
    return warnings


def _sibling_overlaps(group: list[Outline]) -> list[GeometryWarning]:
    if len(group) < 2:
        return []
    geoms = [o.geometry for o in group]
    hits = shapely.STRtree(geoms).query(geoms, predicate="intersects")  # candidate pairs, both orders
    found = []
    for i, j in sorted({(int(a), int(b)) for a, b in zip(*hits, strict=True) if a < b}):
        first, second = group[i], group[j]
        if not (first.in_file or second.in_file):
            continue
        shared = area_m2(first.geometry.intersection(second.geometry))
        if shared > AREA_TOLERANCE_M2:
            found.append(GeometryWarning("overlap", (first.code, second.code), (first.label, second.label), shared))
    return found
