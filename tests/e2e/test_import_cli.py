"""The import commands on files as they come from the field (issue 11 item 4), through the real CLI, on
SQLite and PostgreSQL: Excel's encodings and delimiters, binary files, overlapping grids and --strict."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from models.db.tables import Camera, GridNode, Zone
from tests.support import excel, sample
from tests.support.procs import run_cli


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "GRIDPATROL_DATA_DIR": str(tmp_path / "var"),
        "GRIDPATROL_DATABASE_URL": db_url.replace("postgresql+psycopg://", "postgresql://"),
        "GRIDPATROL_SECRET_KEY": "e2e-secret-key-with-at-least-32-characters",
    }


def ok(result) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def refused(result) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr


def count(factory: sessionmaker[Session], model: type) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def test_excel_encodings_import_and_say_what_was_read(
    env: dict[str, str], session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    grids = tmp_path / "grids.geojson"
    grids.write_bytes(json.dumps(sample.grid_geojson(), ensure_ascii=False).encode("utf-8-sig"))
    out = ok(run_cli(["grids", "import", str(grids)], env))
    assert "read grids.geojson as UTF-8 with BOM" in out and "8 created" in out

    gbk = tmp_path / "cameras.csv"
    gbk.write_bytes(excel.camera_rows().encode("gb18030"))
    out = ok(run_cli(["cameras", "import", str(gbk)], env))
    assert "read cameras.csv as GB18030" in out and "3 created" in out

    unicode_text = tmp_path / "unicode.txt.csv"  # Excel "Unicode text": UTF-16LE with BOM, tab-separated
    unicode_text.write_bytes(excel.camera_rows("\t").replace("rtsp://127.0.0.1", "rtsp://127.0.0.2").encode("utf-16"))
    out = ok(run_cli(["cameras", "import", str(unicode_text)], env))
    assert "read unicode.txt.csv as UTF-16LE with BOM" in out and "3 updated" in out

    zones = tmp_path / "zones.json"
    lane = {"name": "北门消防通道", "kind": "fire_lane", "polygon": [[0.1, 0.5], [0.4, 0.5], [0.4, 0.9], [0.1, 0.9]], "dwell_s": 10}
    zones.write_bytes(json.dumps({"zones": [lane]}, ensure_ascii=False).encode("gb18030"))
    out = ok(run_cli(["zones", "set", "北门", str(zones)], env))
    assert "read zones.json as GB18030" in out and "zones version 1" in out

    with session_factory() as s:
        stored = {c.name: c.grid.code for c in s.scalars(select(Camera))}
        zone_names = list(s.scalars(select(Zone.name)))
    assert stored == dict.fromkeys(excel.NAMES, "G1")
    assert zone_names == ["北门消防通道"]


@pytest.mark.parametrize("what", ["cameras", "grids"])
def test_a_binary_file_is_refused_by_name(env: dict[str, str], tmp_path: Path, what: str) -> None:
    path = tmp_path / ("photo.csv" if what == "cameras" else "photo.geojson")
    path.write_bytes(excel.BINARY)
    err = refused(run_cli([what, "import", str(path)], env))
    assert f"{path}: is not a text file in UTF-8, UTF-16 with a byte-order mark or GB18030" in err, err
    assert "nothing was imported" in err


def test_overlaps_are_warned_about_and_strict_refuses_them(
    env: dict[str, str], session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    path = tmp_path / "overlapping.geojson"
    path.write_text(json.dumps(excel.overlapping_tree(), ensure_ascii=False), encoding="utf-8")

    err = refused(run_cli(["grids", "import", "--strict", str(path)], env))
    assert "refused by the strict import" in err and "nothing was imported" in err
    assert count(session_factory, GridNode) == 0

    out = ok(run_cli(["grids", "import", str(path)], env))
    assert "8 created" in out
    lines = [line for line in out.splitlines() if line.startswith("warning:") and "m²" in line]
    assert len(lines) == 2, out
    overlap = next(line for line in lines if "overlap" in line)
    spill = next(line for line in lines if "spills" in line)
    assert "feature 6 (code 'G1')" in overlap and "feature 7 (code 'G2')" in overlap
    assert "feature 5 (code 'C2')" in spill and "(code 'S2')" in spill
    for line, expected in [(overlap, excel.OVERLAP_M2), (spill, excel.SPILL_M2)]:
        found = re.search(r"about ([\d,]+) m²", line)
        assert found, line
        assert float(found.group(1).replace(",", "")) == pytest.approx(expected, rel=1e-3)
    assert count(session_factory, GridNode) == 8
