"""Import of the grid tree from a GeoJSON FeatureCollection: validate everything, then write all or nothing.

Each feature carries ``code``, ``name``, ``kind`` (district|street|community|grid) and ``parent_code``
(empty for a district) and a Polygon/MultiPolygon geometry in lon/lat. A code already in the database is
updated in place (re-importing a corrected file is the normal way to fix a boundary).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import shapely
from shapely.geometry import shape
from shapely.validation import explain_validity
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.db.tables import GRID_KIND_LEVEL, Camera, GridKind, GridNode
from models.errors import InvalidInput
from models.grid.geo import GridLocator
from models.grid.overlaps import GeometryWarning, Outline, check_overlaps

MAX_CODE_LENGTH = 64
MAX_VERTICES = 100_000


@dataclass
class GridImportReport:
    created: int = 0
    updated: int = 0
    cameras_placed: int = 0
    cameras_outside: list[str] = field(default_factory=list)
    #: siblings that overlap and children that spill outside their parent (imported anyway unless strict)
    geometry_warnings: list[GeometryWarning] = field(default_factory=list)


@dataclass(frozen=True)
class _Feature:
    index: int
    code: str
    name: str
    kind: GridKind
    parent_code: str | None
    geometry: dict[str, Any] | None

    @property
    def where(self) -> str:
        return f"feature {self.index} (code {self.code!r})" if self.code else f"feature {self.index}"


def _text(props: dict[str, Any], key: str, where: str, *, required: bool) -> str | None:
    value = props.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise InvalidInput("is missing", where=where, field=key)
        return None
    if not isinstance(value, str | int):
        raise InvalidInput(f"must be a string, got {type(value).__name__}", where=where, field=key)
    return str(value).strip()


def _check_geometry(geometry: Any, where: str) -> dict[str, Any] | None:
    if geometry is None:
        return None
    if not isinstance(geometry, dict) or geometry.get("type") not in {"Polygon", "MultiPolygon"}:
        got = geometry.get("type") if isinstance(geometry, dict) else type(geometry).__name__
        raise InvalidInput(f"must be a Polygon or MultiPolygon, got {got!r}", where=where, field="geometry")
    _check_rings(geometry, where)
    try:
        geom = shape(geometry)
    except Exception as err:  # shapely raises several types for malformed coordinates
        raise InvalidInput(f"malformed coordinates ({err})", where=where, field="geometry") from err
    if geom.is_empty:
        raise InvalidInput("is empty", where=where, field="geometry")
    if shapely.get_num_coordinates(geom) > MAX_VERTICES:
        raise InvalidInput(f"has more than {MAX_VERTICES} vertices", where=where, field="geometry")
    minx, miny, maxx, maxy = geom.bounds
    if minx < -180 or maxx > 180 or miny < -90 or maxy > 90:
        raise InvalidInput("coordinates must be lon -180..180, lat -90..90", where=where, field="geometry")
    if not geom.is_valid:
        raise InvalidInput(f"invalid polygon: {explain_validity(geom)}", where=where, field="geometry")
    return dict(geometry)


def _check_rings(geometry: dict[str, Any], where: str) -> None:
    """GeoJSON rings are closed (first position == last) with at least 4 positions; shapely would close them silently."""
    coords = geometry.get("coordinates")
    polygons = [coords] if geometry.get("type") == "Polygon" else coords
    if not isinstance(polygons, list) or not polygons:
        raise InvalidInput("has no coordinates", where=where, field="geometry")
    for poly in polygons:
        if not isinstance(poly, list) or not poly:
            raise InvalidInput("a polygon needs at least one ring", where=where, field="geometry")
        for ring in poly:
            if not isinstance(ring, list) or len(ring) < 4:
                raise InvalidInput("a ring needs at least 4 positions", where=where, field="geometry")
            if ring[0] != ring[-1]:
                raise InvalidInput("a ring must be closed (first position == last)", where=where, field="geometry")


def parse_features(doc: Any) -> list[_Feature]:
    """Validate a parsed GeoJSON document; the first error names the feature and the field."""
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise InvalidInput("the file must be a GeoJSON FeatureCollection", field="type")
    raw = doc.get("features")
    if not isinstance(raw, list):
        raise InvalidInput("must be a list", field="features")
    features: list[_Feature] = []
    seen: dict[str, int] = {}
    for i, feat in enumerate(raw, start=1):  # "feature 1" is the first, as people count
        where = f"feature {i}"
        if not isinstance(feat, dict) or feat.get("type") != "Feature":
            raise InvalidInput("is not a GeoJSON Feature", where=where, field="type")
        props = feat.get("properties")
        if not isinstance(props, dict):
            raise InvalidInput("must be an object", where=where, field="properties")
        code = _text(props, "code", where, required=True)
        assert code is not None
        where = f"feature {i} (code {code!r})"
        if len(code) > MAX_CODE_LENGTH:
            raise InvalidInput(f"is longer than {MAX_CODE_LENGTH} characters", where=where, field="code")
        if code in seen:
            raise InvalidInput(f"duplicate code, also used by feature {seen[code]}", where=where, field="code")
        seen[code] = i
        name = _text(props, "name", where, required=True)
        kind_text = _text(props, "kind", where, required=True)
        try:
            kind = GridKind(kind_text or "")
        except ValueError as err:
            allowed = ", ".join(k.value for k in GridKind)
            raise InvalidInput(f"unknown kind {kind_text!r} (use {allowed})", where=where, field="kind") from err
        parent_code = _text(props, "parent_code", where, required=False)
        if parent_code == code:
            raise InvalidInput("a node cannot be its own parent", where=where, field="parent_code")
        geometry = _check_geometry(feat.get("geometry"), where)
        assert name is not None
        features.append(_Feature(i, code, name, kind, parent_code, geometry))
    return features


def import_grids(session: Session, doc: Any, *, strict: bool = False) -> GridImportReport:
    """Validate and write the tree inside the caller's transaction; any error leaves nothing written.

    Overlapping siblings and children spilling outside their parent are reported in
    ``geometry_warnings``; with ``strict`` they are an error instead (raised before anything is written)."""
    features = parse_features(doc)
    existing = {n.code: n for n in session.scalars(select(GridNode))}
    by_code = {f.code: f for f in features}

    def kind_of(code: str) -> GridKind:
        return by_code[code].kind if code in by_code else GridKind(existing[code].kind)

    for f in features:
        if f.kind == GridKind.district:
            if f.parent_code is not None:
                raise InvalidInput("a district has no parent", where=f.where, field="parent_code")
            continue
        if f.parent_code is None:
            raise InvalidInput(f"is missing (a {f.kind.value} needs a parent)", where=f.where, field="parent_code")
        if f.parent_code not in by_code and f.parent_code not in existing:
            raise InvalidInput(
                f"parent {f.parent_code!r} is neither in the file nor in the database", where=f.where, field="parent_code"
            )
        parent_kind = kind_of(f.parent_code)
        if GRID_KIND_LEVEL[parent_kind] != GRID_KIND_LEVEL[f.kind] - 1:
            raise InvalidInput(
                f"a {f.kind.value} must sit under a {_kind_above(f.kind)}, parent {f.parent_code!r} is a {parent_kind.value}",
                where=f.where,
                field="parent_code",
            )

    warnings = check_overlaps(_outlines(features, existing))
    if strict and warnings:
        listed = "; ".join(str(w) for w in warnings[:10]) + (f"; and {len(warnings) - 10} more" if len(warnings) > 10 else "")
        raise InvalidInput(f"{len(warnings)} overlap(s)/spill(s) refused by the strict import: {listed}", field="geometry")
    report = GridImportReport(geometry_warnings=warnings)
    # Parents before children: sort by level (levels are strict, so this is a topological order).
    for f in sorted(features, key=lambda f: (GRID_KIND_LEVEL[f.kind], f.index)):
        node = existing.get(f.code)
        if node is None:
            node = GridNode(code=f.code, name=f.name, kind=f.kind.value, path="")
            session.add(node)
            existing[f.code] = node
            report.created += 1
        else:
            report.updated += 1
        node.name = f.name
        node.kind = f.kind.value
        node.geometry = f.geometry
        node.parent = existing[f.parent_code] if f.parent_code else None
        session.flush()
        node.path = (node.parent.path if node.parent else "/") + f"{node.id}/"
    session.flush()
    _refresh_descendant_paths(session)
    placed, outside = place_cameras(session)
    report.cameras_placed, report.cameras_outside = placed, outside
    return report


def _outlines(features: list[_Feature], existing: dict[str, GridNode]) -> list[Outline]:
    """The tree as it will be after the import: the file's features over the database's nodes."""
    code_of = {n.id: code for code, n in existing.items()}
    outlines = [
        Outline(f.code, f.kind.value, f.parent_code, shape(f.geometry), f.where, in_file=True)
        for f in features
        if f.geometry is not None
    ]
    in_file = {f.code for f in features}
    for code, node in existing.items():
        if code in in_file or not node.geometry:
            continue
        geom = shape(node.geometry)
        if geom.is_valid and not geom.is_empty:
            label = f"node {code!r} (already in the database)"
            parent = code_of.get(node.parent_id) if node.parent_id is not None else None
            outlines.append(Outline(code, node.kind, parent, geom, label, in_file=False))
    return outlines


def _kind_above(kind: GridKind) -> str:
    level = GRID_KIND_LEVEL[kind] - 1
    return next(k.value for k, lvl in GRID_KIND_LEVEL.items() if lvl == level)


def _refresh_descendant_paths(session: Session) -> None:
    """Recompute every path top-down (a re-import may have moved a subtree to another parent)."""
    nodes = list(session.scalars(select(GridNode)))
    children: dict[int | None, list[GridNode]] = {}
    for n in nodes:
        children.setdefault(n.parent_id, []).append(n)
    by_id = {n.id: n for n in nodes}
    for n in nodes:
        parent = by_id.get(n.parent_id) if n.parent_id is not None else None
        want = GRID_KIND_LEVEL[GridKind(n.kind)] - 1
        if (parent is None and want != -1) or (parent is not None and GRID_KIND_LEVEL[GridKind(parent.kind)] != want):
            raise InvalidInput(
                "the tree would break: this node's parent is not one level above it", where=f"node {n.code!r}", field="kind"
            )
    stack: list[tuple[GridNode, str]] = [(n, "/") for n in children.get(None, [])]
    while stack:
        node, prefix = stack.pop()
        node.path = f"{prefix}{node.id}/"
        stack.extend((c, node.path) for c in children.get(node.id, []))
    session.flush()


def place_cameras(session: Session) -> tuple[int, list[str]]:
    """Re-place every camera without a manual grid override; returns (placed, names outside every grid)."""
    cams = [c for c in session.scalars(select(Camera).where(Camera.grid_override.is_(False)))]
    with_loc = [c for c in cams if c.lon is not None and c.lat is not None]
    locator = GridLocator.from_session(session)
    found = locator.locate_many([(c.lon, c.lat) for c in with_loc])  # type: ignore[misc]
    outside: list[str] = []
    placed = 0
    for cam, hit in zip(with_loc, found, strict=True):
        cam.grid_id = hit[0] if hit else None
        if hit:
            placed += 1
        else:
            outside.append(cam.name)
    session.flush()
    return placed, outside
