"""Importing the grid tree and cameras: all or nothing, and errors that name the feature/row and field."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from models.db.engine import transaction
from models.db.tables import Camera, GridNode
from models.errors import InvalidInput
from models.grid.cameras import parse_camera_file, register_cameras
from models.grid.tree import import_grids
from tests.support import sample


def count(factory: sessionmaker[Session], model: type) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def test_tree_is_built_with_paths(session_factory: sessionmaker[Session]) -> None:
    with transaction(session_factory) as s:
        report = import_grids(s, sample.grid_geojson())
    assert (report.created, report.updated) == (8, 0)
    with session_factory() as s:
        nodes = {n.code: n for n in s.scalars(select(GridNode))}
    assert nodes["G1"].parent_id == nodes["C1"].id
    assert nodes["G1"].path == f"/{nodes['D1'].id}/{nodes['S1'].id}/{nodes['C1'].id}/{nodes['G1'].id}/"
    assert nodes["D1"].parent_id is None


def test_reimport_updates_in_place_and_replaces_cameras(session_factory: sessionmaker[Session], tmp_path) -> None:
    _, cams = sample.write_files(tmp_path)
    with transaction(session_factory) as s:
        import_grids(s, sample.grid_geojson())
        register_cameras(s, parse_camera_file(cams))
    doc = sample.grid_geojson()
    # move grid G2's polygon onto G1's cell, and G1 away: G1's cameras now fall in G2
    feats = {f["properties"]["code"]: f for f in doc["features"]}
    feats["G2"]["geometry"], feats["G1"]["geometry"] = feats["G1"]["geometry"], feats["G2"]["geometry"]
    feats["G1"]["properties"]["name"] = "renamed"
    with transaction(session_factory) as s:
        report = import_grids(s, doc)
    assert (report.created, report.updated) == (0, 8)
    with session_factory() as s:
        where = {c.name: c.grid.code for c in s.scalars(select(Camera))}
        assert s.scalars(select(GridNode.name).where(GridNode.code == "G1")).one() == "renamed"
    assert where["cam-g1-a"] == "G2" and where["cam-g2-a"] == "G1"


def _broken(mutate) -> dict[str, Any]:
    doc = copy.deepcopy(sample.grid_geojson())
    mutate(doc)
    return doc


def _feature(doc: dict[str, Any], code: str) -> dict[str, Any]:
    return next(f for f in doc["features"] if f["properties"]["code"] == code)


BOWTIE = {"type": "Polygon", "coordinates": [[[118.70, 32.10], [118.71, 32.11], [118.71, 32.10], [118.70, 32.11], [118.70, 32.10]]]}

BAD_TREES = [
    ("not a collection", lambda d: d.update(type="Feature"), None, "type"),
    ("self-intersecting", lambda d: _feature(d, "G2").update(geometry=BOWTIE), "feature 7 (code 'G2')", "geometry"),
    (
        "duplicate code",
        lambda d: _feature(d, "G3")["properties"].update(code="G2"),
        "feature 8 (code 'G2')",
        "code",
    ),
    (
        "parent missing",
        lambda d: _feature(d, "G3")["properties"].update(parent_code="C9"),
        "feature 8 (code 'G3')",
        "parent_code",
    ),
    ("unknown kind", lambda d: _feature(d, "C2")["properties"].update(kind="village"), "feature 5 (code 'C2')", "kind"),
    (
        "grid under a street",
        lambda d: _feature(d, "G3")["properties"].update(parent_code="S2"),
        "feature 8 (code 'G3')",
        "parent_code",
    ),
    ("missing name", lambda d: _feature(d, "G1")["properties"].pop("name"), "feature 6 (code 'G1')", "name"),
    (
        "point geometry",
        lambda d: _feature(d, "G1").update(geometry={"type": "Point", "coordinates": [118.7, 32.1]}),
        "feature 6 (code 'G1')",
        "geometry",
    ),
    (
        "latitude out of range",
        lambda d: _feature(d, "G1").update(
            geometry={"type": "Polygon", "coordinates": [[[118.7, 200], [118.71, 200], [118.71, 201], [118.7, 200]]]}
        ),
        "feature 6 (code 'G1')",
        "geometry",
    ),
    (
        "unclosed ring",
        lambda d: _feature(d, "G1").update(
            geometry={"type": "Polygon", "coordinates": [[[118.7, 32.1], [118.71, 32.1], [118.71, 32.11]]]}
        ),
        "feature 6 (code 'G1')",
        "geometry",
    ),
    ("district with parent", lambda d: _feature(d, "D1")["properties"].update(parent_code="G1"), "feature 1 (code 'D1')", "parent_code"),
]


@pytest.mark.parametrize(("case", "mutate", "where", "field"), BAD_TREES, ids=[c[0] for c in BAD_TREES])
def test_bad_tree_names_feature_and_field_and_writes_nothing(
    session_factory: sessionmaker[Session], case: str, mutate, where: str | None, field: str
) -> None:
    with pytest.raises(InvalidInput) as info, transaction(session_factory) as s:
        import_grids(s, _broken(mutate))
    assert info.value.field == field, str(info.value)
    assert info.value.where == where, str(info.value)
    assert count(session_factory, GridNode) == 0


def test_failed_reimport_keeps_the_old_tree(session_factory: sessionmaker[Session]) -> None:
    with transaction(session_factory) as s:
        import_grids(s, sample.grid_geojson())
    doc = _broken(lambda d: _feature(d, "G3")["properties"].update(parent_code="nope"))
    _feature(doc, "G1")["properties"]["name"] = "should not be saved"
    with pytest.raises(InvalidInput), transaction(session_factory) as s:
        import_grids(s, doc)
    with session_factory() as s:
        assert s.scalars(select(GridNode.name).where(GridNode.code == "G1")).one() == "桥北第一网格"


BAD_CSV = [
    ("lat 200", "cam-x,rtsp://127.0.0.1/x,118.7,200", "line 6 ('cam-x')", "lat"),
    ("lon text", "cam-x,rtsp://127.0.0.1/x,east,32.1", "line 6 ('cam-x')", "lon"),
    ("bad scheme", "cam-x,ftp://127.0.0.1/x,118.7,32.1", "line 6 ('cam-x')", "url"),
    ("no url", "cam-x,,118.7,32.1", "line 6 ('cam-x')", "url"),
    ("no name", ",rtsp://127.0.0.1/x,118.7,32.1", "line 6", "name"),
    ("duplicate name", "cam-g1-a,rtsp://127.0.0.1/x,118.7,32.1", "line 6", "name"),
    ("lat without lon", "cam-x,rtsp://127.0.0.1/x,,32.1", "line 6 ('cam-x')", "lon"),
]


@pytest.mark.parametrize(("case", "row", "where", "field"), BAD_CSV, ids=[c[0] for c in BAD_CSV])
def test_bad_camera_rows_name_line_and_field(tmp_path, case: str, row: str, where: str, field: str) -> None:
    path = tmp_path / "cams.csv"
    path.write_text(sample.cameras_csv([row + ","]))
    with pytest.raises(InvalidInput) as info:
        parse_camera_file(path)
    assert (info.value.where, info.value.field) == (where, field), str(info.value)


def test_camera_errors_never_show_credentials(tmp_path) -> None:
    path = tmp_path / "cams.csv"
    path.write_text("name,url,lon,lat\ncam,ftp://user:hunter2pass@10.0.0.1/x,118.7,32.1\n")
    with pytest.raises(InvalidInput) as info:
        parse_camera_file(path)
    assert "hunter2pass" not in str(info.value)


def test_cameras_outside_every_grid_are_kept_and_reported(session_factory: sessionmaker[Session], tmp_path) -> None:
    path = tmp_path / "cams.yaml"
    path.write_text(
        "cameras:\n"
        "  - {name: inside, url: 'rtsp://127.0.0.1/a', lon: 118.705, lat: 32.105}\n"
        "  - {name: far-away, url: 'rtsp://127.0.0.1/b', lon: 116.4, lat: 39.9}\n"
        "  - {name: pinned, url: 'rtsp://127.0.0.1/c', lon: 116.4, lat: 39.9, grid: G3}\n"
    )
    with transaction(session_factory) as s:
        import_grids(s, sample.grid_geojson())
        report = register_cameras(s, parse_camera_file(path))
    assert report.outside == ["far-away"]
    with session_factory() as s:
        cams = {c.name: (c.grid.code if c.grid else None, c.grid_override) for c in s.scalars(select(Camera))}
    assert cams == {"inside": ("G1", False), "far-away": (None, False), "pinned": ("G3", True)}
