"""Import files as they come from the field (issue 11 item 4): Excel's encodings and delimiters, binary
files refused by name, items numbered from 1, and overlapping or spilling grids warned about or refused."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from models.db.engine import transaction
from models.db.tables import Camera, GridNode
from models.errors import InvalidInput
from models.grid.cameras import parse_camera_file, parse_camera_text, register_cameras, sniff_delimiter
from models.grid.overlaps import area_m2
from models.grid.textfile import decode_text, read_text_file
from models.grid.tree import import_grids
from tests.support import excel, sample

#: file name, its bytes as Excel/Windows would save them, the encoding we must report
EXCEL_FILES = [
    ("gbk.csv", excel.camera_rows().encode("gb18030"), "GB18030"),
    ("gbk-plain.csv", excel.camera_rows().encode("gbk"), "GB18030"),  # GBK proper is a subset of GB18030
    ("unicode-text.csv", excel.camera_rows("\t").encode("utf-16"), "UTF-16LE with BOM"),  # Excel "Unicode text"
    ("utf16be.csv", b"\xfe\xff" + excel.camera_rows("\t").encode("utf-16-be"), "UTF-16BE with BOM"),
    ("utf8-bom.csv", excel.camera_rows(";").encode("utf-8-sig"), "UTF-8 with BOM"),  # "CSV UTF-8", semicolons
    ("utf8.csv", excel.camera_rows().encode("utf-8"), "UTF-8"),
    ("cameras.yaml", excel.camera_yaml().encode("gb18030"), "GB18030"),
    ("cameras-bom.yml", excel.camera_yaml().encode("utf-8-sig"), "UTF-8 with BOM"),
]


def _xlsx() -> bytes:
    """A zip like Excel's .xlsx (the usual mistake: the workbook instead of a CSV export)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("xl/sharedStrings.xml", "<sst><si><t>北门</t></si></sst>" * 20)
    return buffer.getvalue()


def count(factory: sessionmaker[Session], model: type) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


@pytest.mark.parametrize(("name", "data", "encoding"), EXCEL_FILES, ids=[f[0] for f in EXCEL_FILES])
def test_every_excel_encoding_is_read_and_named(tmp_path: Path, name: str, data: bytes, encoding: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    decoded = read_text_file(path)
    assert decoded.encoding == encoding
    assert all(n in decoded.text for n in excel.NAMES) and "\ufeff" not in decoded.text
    specs = parse_camera_file(path)
    assert [s.name for s in specs] == list(excel.NAMES)
    assert specs[0].url == "rtsp://127.0.0.1:8554/cam0" and specs[0].lat == pytest.approx(sample.LAT0 + 0.005)


@pytest.mark.parametrize(("name", "data", "encoding"), EXCEL_FILES[:3], ids=[f[0] for f in EXCEL_FILES[:3]])
def test_excel_files_are_stored_with_their_chinese_names(
    session_factory: sessionmaker[Session], tmp_path: Path, name: str, data: bytes, encoding: str
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with transaction(session_factory) as s:
        import_grids(s, sample.grid_geojson())
        report = register_cameras(s, parse_camera_file(path))
    assert (report.created, report.outside) == (3, [])
    with session_factory() as s:
        stored = {c.name: c.grid.code for c in s.scalars(select(Camera))}
    assert stored == dict.fromkeys(excel.NAMES, "G1")


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (excel.BINARY, "PNG"),
        (b"name,url\x00,lon,lat\n", "NUL in otherwise ASCII text"),
        (b"\xff\xd8\xff\xe0" + bytes(range(256)), "JPEG-like bytes"),
        (b"\xfe\xff\xd8\x00", "UTF-16BE mark followed by a lone surrogate"),
        (_xlsx(), "a workbook saved as .xlsx instead of CSV"),
    ],
    ids=["png", "nul", "jpeg", "bad-utf16", "xlsx"],
)
def test_a_binary_file_is_refused_naming_the_file(tmp_path: Path, data: bytes, why: str) -> None:
    path = tmp_path / "照片.csv"
    path.write_bytes(data)
    with pytest.raises(InvalidInput) as info:
        parse_camera_file(path)
    assert info.value.where == str(path), why
    assert "not a text file" in str(info.value) and "GB18030" in str(info.value)


@pytest.mark.parametrize(
    ("header", "delimiter"),
    [("name,url,lon,lat", ","), ("name\turl\tlon\tlat", "\t"), ("name;url;lon;lat", ";"), ("name", ","), ("", ",")],
)
def test_the_delimiter_is_sniffed_from_the_header(header: str, delimiter: str) -> None:
    assert sniff_delimiter(header) == delimiter


def test_a_tab_separated_row_error_still_names_line_and_field() -> None:
    text = excel.camera_rows("\t") + "坏的\trtsp://127.0.0.1/x\t118.7\t200\r\n"
    with pytest.raises(InvalidInput) as info:
        parse_camera_text(text, yaml_format=False)
    assert (info.value.where, info.value.field) == ("line 5 ('坏的')", "lat")


@pytest.mark.parametrize(
    ("yaml_text", "where", "field"),
    [
        ("- just a string\n", "camera 1", None),
        ("- {name: a, url: 'rtsp://127.0.0.1/a'}\n- {name: b, url: 'ftp://127.0.0.1/b'}\n", "camera 2 ('b')", "url"),
        ("cameras:\n  - {url: 'rtsp://127.0.0.1/a'}\n", "camera 1", "name"),
        ("- {name: a, url: 'rtsp://127.0.0.1/a'}\n- {name: a, url: 'rtsp://127.0.0.1/b'}\n", "camera 2", "name"),
    ],
    ids=["not a mapping", "second bad", "first unnamed", "duplicate"],
)
def test_yaml_items_are_numbered_from_one(yaml_text: str, where: str, field: str | None) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_camera_text(yaml_text, yaml_format=True)
    assert (info.value.where, info.value.field) == (where, field), str(info.value)


def test_features_are_numbered_from_one(session_factory: sessionmaker[Session]) -> None:
    doc = sample.grid_geojson()
    doc["features"][0]["properties"]["kind"] = "village"
    doc["features"][-1]["properties"]["code"] = "D1"
    with pytest.raises(InvalidInput) as info, transaction(session_factory) as s:
        import_grids(s, doc)
    assert info.value.where == "feature 1 (code 'D1')"
    doc["features"][0]["properties"]["kind"] = "district"
    with pytest.raises(InvalidInput) as info, transaction(session_factory) as s:
        import_grids(s, doc)
    assert (info.value.where, info.value.field) == ("feature 8 (code 'D1')", "code")
    assert "also used by feature 1" in str(info.value)


def test_the_rough_area_matches_the_sphere_within_a_permille() -> None:
    from shapely.geometry import box

    x0, y0, x1, y1 = excel.G2_SHIFTED
    assert area_m2(box(x0, y0, x1, y1)) == pytest.approx(excel.rectangle_m2(x0, y0, x1, y1), rel=1e-3)


def test_overlaps_and_spills_are_reported_with_both_names_and_the_area(session_factory: sessionmaker[Session]) -> None:
    with transaction(session_factory) as s:
        report = import_grids(s, excel.overlapping_tree())
    assert report.created == 8
    warnings = {w.problem: w for w in report.geometry_warnings}
    assert len(report.geometry_warnings) == 2 and set(warnings) == {"overlap", "spill"}
    overlap, spill = warnings["overlap"], warnings["spill"]
    assert overlap.codes == ("G1", "G2") and overlap.area_m2 == pytest.approx(excel.OVERLAP_M2, rel=1e-3)
    assert spill.codes == ("C2", "S2") and spill.area_m2 == pytest.approx(excel.SPILL_M2, rel=1e-3)
    text = str(overlap)
    assert "feature 6 (code 'G1')" in text and "feature 7 (code 'G2')" in text
    assert f"{overlap.area_m2:,.0f} m²" in text and 500_000 < overlap.area_m2 < 550_000
    assert "feature 5 (code 'C2')" in str(spill) and "(code 'S2')" in str(spill) and "outside" in str(spill)


def test_shared_borders_and_nested_copies_do_not_warn(session_factory: sessionmaker[Session]) -> None:
    """The sample tree's grids share borders and C1 is exactly S1: nothing to say."""
    with transaction(session_factory) as s:
        assert import_grids(s, sample.grid_geojson()).geometry_warnings == []
        assert import_grids(s, sample.grid_geojson(), strict=True).updated == 8


def test_strict_refuses_and_writes_nothing(session_factory: sessionmaker[Session]) -> None:
    with pytest.raises(InvalidInput) as info, transaction(session_factory) as s:
        import_grids(s, excel.overlapping_tree(), strict=True)
    message = str(info.value)
    assert "2 overlap(s)/spill(s)" in message and "'G1'" in message and "'G2'" in message and "'S2'" in message
    assert count(session_factory, GridNode) == 0


def test_an_overlap_with_a_node_already_stored_names_it(session_factory: sessionmaker[Session]) -> None:
    with transaction(session_factory) as s:
        import_grids(s, sample.grid_geojson())
    lon, lat = sample.LON0 + 0.002, sample.LAT0
    ring = [[lon, lat], [lon + 0.004, lat], [lon + 0.004, lat + 0.004], [lon, lat + 0.004], [lon, lat]]
    extra = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"code": "G4", "name": "新增网格", "kind": "grid", "parent_code": "C1"},
                "geometry": {"type": "Polygon", "coordinates": [ring]},
            }
        ],
    }
    with transaction(session_factory) as s:
        report = import_grids(s, extra)
    (warning,) = report.geometry_warnings
    assert warning.codes == ("G4", "G1")
    assert str(warning).startswith("feature 1 (code 'G4') and node 'G1' (already in the database) overlap by about")
    assert warning.area_m2 == pytest.approx(excel.rectangle_m2(lon, lat, lon + 0.004, lat + 0.004), rel=1e-3)


def test_decode_prefers_utf8_when_both_fit() -> None:
    """Pure ASCII (and any valid UTF-8) is read as UTF-8, never guessed to be GB18030."""
    assert decode_text(b"name,url,lon,lat\n", name="x.csv").encoding == "UTF-8"
    assert decode_text("北门".encode(), name="x.csv").text == "北门"
