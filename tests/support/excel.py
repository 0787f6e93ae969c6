"""Import files as Excel and Chinese Windows save them, and a grid file whose polygons overlap and spill.

Used by the kernel tests (tests/models/test_import_files.py) and the CLI tests (tests/e2e/test_import_cli.py).
"""

from __future__ import annotations

import copy
import math
from typing import Any

from tests.support import sample

#: the names Chinese staff give cameras; none of them survives a wrong decoding
NAMES = ("北门", "南门岗亭", "东门·消防通道")
EARTH_RADIUS_M = 6_371_008.8


def camera_rows(delimiter: str = ",") -> str:
    """A camera table (header + one row per name, all in grid G1) with CRLF line ends, as Excel writes."""
    lines = [delimiter.join(["name", "url", "lon", "lat"])]
    for i, name in enumerate(NAMES):
        lon, lat = sample.point_in("G1", 0.2 + 0.2 * i, 0.5)
        lines.append(delimiter.join([name, f"rtsp://127.0.0.1:8554/cam{i}", f"{lon:.6f}", f"{lat:.6f}"]))
    return "\r\n".join(lines) + "\r\n"


def camera_yaml() -> str:
    items = []
    for i, name in enumerate(NAMES):
        lon, lat = sample.point_in("G1", 0.2 + 0.2 * i, 0.5)
        items.append(f"  - {{name: '{name}', url: 'rtsp://127.0.0.1:8554/cam{i}', lon: {lon:.6f}, lat: {lat:.6f}}}")
    return "cameras:\n" + "\n".join(items) + "\n"


#: what `file` calls binary: a PNG signature, NULs and bytes no text encoding here accepts
BINARY = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00\xff\xfe\x80\x00" * 8


def _square(x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


#: G2 slides half a cell west onto G1 (both under C1); community C2 reaches 0.002° west out of its street S2
G2_SHIFTED = (sample.LON0 + 0.5 * sample.CELL, sample.LAT0, sample.LON0 + 1.5 * sample.CELL, sample.LAT0 + sample.CELL)
C2_WIDER = (sample.LON0 + 2 * sample.CELL - 0.002, sample.LAT0, sample.LON0 + 4 * sample.CELL, sample.LAT0 + sample.CELL)


def overlapping_tree() -> dict[str, Any]:
    doc = copy.deepcopy(sample.grid_geojson())
    feats = {f["properties"]["code"]: f for f in doc["features"]}
    feats["G2"]["geometry"] = _square(*G2_SHIFTED)
    feats["C2"]["geometry"] = _square(*C2_WIDER)
    return doc


def rectangle_m2(lon0: float, lat0: float, lon1: float, lat1: float) -> float:
    """Exact area of a lon/lat rectangle on the sphere, to check the importer's rougher projection against."""
    return EARTH_RADIUS_M**2 * math.radians(lon1 - lon0) * (math.sin(math.radians(lat1)) - math.sin(math.radians(lat0)))


#: the overlap of G1 and the shifted G2, and the part of C2 outside S2
OVERLAP_M2 = rectangle_m2(G2_SHIFTED[0], sample.LAT0, sample.LON0 + sample.CELL, sample.LAT0 + sample.CELL)
SPILL_M2 = rectangle_m2(C2_WIDER[0], sample.LAT0, sample.LON0 + 2 * sample.CELL, sample.LAT0 + sample.CELL)
