"""A small, real-shaped grid tree and camera set for tests (Jiangbei New Area coordinates).

district D1 ─┬─ street S1 ── community C1 ─┬─ grid G1   (cameras cam-g1-a, cam-g1-b)
             │                             └─ grid G2   (camera  cam-g2-a)
             └─ street S2 ── community C2 ─── grid G3   (camera  cam-g3-a)
Each grid is a 0.01° square; a community/street/district polygon covers its children.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LON0, LAT0 = 118.70, 32.10
CELL = 0.01

#: grid code → (column, row) of its cell
GRID_CELLS = {"G1": (0, 0), "G2": (1, 0), "G3": (3, 0)}


def _square(x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    return {"type": "Polygon", "coordinates": [ring]}


def _cell(col: int, row: int, cols: int = 1) -> dict[str, Any]:
    x0, y0 = LON0 + col * CELL, LAT0 + row * CELL
    return _square(x0, y0, x0 + cols * CELL, y0 + CELL)


def _feature(code: str, name: str, kind: str, parent: str | None, geometry: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = {"code": code, "name": name, "kind": kind}
    if parent:
        props["parent_code"] = parent
    return {"type": "Feature", "properties": props, "geometry": geometry}


def grid_geojson() -> dict[str, Any]:
    return {
        "type": "FeatureCollection",
        "features": [
            _feature("D1", "江北新区", "district", None, _cell(0, 0, cols=4)),
            _feature("S1", "泰山街道", "street", "D1", _cell(0, 0, cols=2)),
            _feature("S2", "顶山街道", "street", "D1", _cell(2, 0, cols=2)),
            _feature("C1", "桥北社区", "community", "S1", _cell(0, 0, cols=2)),
            _feature("C2", "南浦社区", "community", "S2", _cell(2, 0, cols=2)),
            _feature("G1", "桥北第一网格", "grid", "C1", _cell(*GRID_CELLS["G1"])),
            _feature("G2", "桥北第二网格", "grid", "C1", _cell(*GRID_CELLS["G2"])),
            _feature("G3", "南浦第一网格", "grid", "C2", _cell(*GRID_CELLS["G3"])),
        ],
    }


def point_in(grid_code: str, dx: float = 0.5, dy: float = 0.5) -> tuple[float, float]:
    col, row = GRID_CELLS[grid_code]
    return LON0 + (col + dx) * CELL, LAT0 + (row + dy) * CELL


#: camera name → grid code it stands in (None: outside every grid)
CAMERAS: dict[str, str | None] = {"cam-g1-a": "G1", "cam-g1-b": "G1", "cam-g2-a": "G2", "cam-g3-a": "G3"}

CAMERA_SECRET = "s3cr3t-Pa55"


def cameras_csv(extra_rows: list[str] | None = None) -> str:
    lines = ["name,url,lon,lat,onvif"]
    for i, (name, grid) in enumerate(CAMERAS.items()):
        assert grid is not None
        lon, lat = point_in(grid, 0.3 + 0.1 * i, 0.5)
        lines.append(f"{name},rtsp://admin:{CAMERA_SECRET}@127.0.0.1:8554/{name},{lon:.6f},{lat:.6f},")
    lines.extend(extra_rows or [])
    return "\n".join(lines) + "\n"


#: username → (role, grid codes)
USERS: dict[str, tuple[str, list[str]]] = {
    "admin1": ("admin", []),
    "operator1": ("operator", []),
    "manager-s1": ("manager", ["S1"]),
    "manager-d1": ("manager", ["D1"]),
    "leader-g1": ("grid_leader", ["G1"]),
    "leader-g3": ("grid_leader", ["G3"]),
    "patroller-g2": ("patroller", ["G2"]),
}
PASSWORD = "correct-horse-9"


def write_files(directory: Path) -> tuple[Path, Path]:
    grids = directory / "grids.geojson"
    grids.write_text(json.dumps(grid_geojson(), ensure_ascii=False), encoding="utf-8")
    cams = directory / "cameras.csv"
    cams.write_text(cameras_csv(), encoding="utf-8")
    return grids, cams
