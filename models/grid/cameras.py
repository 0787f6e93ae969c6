"""Camera registration: from CSV/YAML files or one at a time, placed into the grid tree by location.

A camera has a main stream (``url``, for viewing) and optionally a sub-stream (``sub_url``, lower
resolution, for analysis). ``analysis_stream`` picks the one the worker reads: ``sub``, ``main`` or
unset (auto: the sub-stream when there is one)."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.db.tables import Camera, GridNode
from models.errors import InvalidInput
from models.grid.credentials import CredentialKeyring, set_camera_secrets, stream_host
from models.grid.textfile import read_text_file
from models.secrets import redact_url

STREAM_SCHEMES = {"rtsp", "rtsps", "http", "https", "file"}
ONVIF_SCHEMES = {"http", "https"}
YAML_SUFFIXES = {".yaml", ".yml"}
CSV_DELIMITERS = (",", "\t", ";")
#: the values of ``cameras.analysis_stream``; ``auto`` is stored as NULL
ANALYSIS_STREAMS = ("auto", "sub", "main")
StreamName = Literal["main", "sub"]


@dataclass(frozen=True)
class CameraSpec:
    name: str
    url: str
    lon: float | None
    lat: float | None
    onvif_url: str | None = None
    grid_code: str | None = None
    enabled: bool = True
    sub_url: str | None = None
    #: False when the file has no sub_url column: an update leaves the camera's sub-stream as it is
    sub_url_given: bool = True
    #: None: leave the camera's setting as it is (a new camera: auto)
    analysis_stream: str | None = None


@dataclass
class CameraImportReport:
    created: int = 0
    updated: int = 0
    outside: list[str] = field(default_factory=list)


def _float(value: Any, *, where: str, field_name: str, low: float, high: float) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError) as err:
        raise InvalidInput(f"{value!r} is not a number", where=where, field=field_name) from err
    if not math.isfinite(number) or not low <= number <= high:
        raise InvalidInput(f"{value!r} is out of range {low:g}..{high:g}", where=where, field=field_name)
    return number


def _url(value: Any, *, where: str, field_name: str, schemes: set[str], required: bool) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise InvalidInput("is missing", where=where, field=field_name)
        return None
    text = str(value).strip()
    try:
        parts = urlsplit(text)
    except ValueError as err:
        raise InvalidInput("is not a valid URL", where=where, field=field_name) from err
    if parts.scheme not in schemes:
        raise InvalidInput(
            f"scheme must be one of {', '.join(sorted(schemes))} ({redact_url(text)})", where=where, field=field_name
        )
    if parts.scheme != "file" and not parts.hostname:
        raise InvalidInput(f"has no host ({redact_url(text)})", where=where, field=field_name)
    return text


def spec_from_row(row: dict[str, Any], *, where: str) -> CameraSpec:
    unknown = set(row) - {"name", "url", "sub_url", "analysis_stream", "lon", "lat", "onvif", "grid", "enabled"}
    if unknown:
        raise InvalidInput(f"unknown column(s): {', '.join(sorted(map(str, unknown)))}", where=where)
    name = str(row.get("name") or "").strip()
    if not name:
        raise InvalidInput("is missing", where=where, field="name")
    if len(name) > 200:
        raise InvalidInput("is longer than 200 characters", where=where, field="name")
    where = f"{where} ({name!r})"
    url = _url(row.get("url"), where=where, field_name="url", schemes=STREAM_SCHEMES, required=True)
    sub_url = _url(row.get("sub_url"), where=where, field_name="sub_url", schemes=STREAM_SCHEMES, required=False)
    analysis = str(row.get("analysis_stream") or "").strip().lower() or None
    if analysis is not None:
        # without a sub_url column the camera's stored sub-stream counts (checked again when stored)
        check_analysis_stream(analysis, has_sub=sub_url is not None or "sub_url" not in row, where=where)
    lon = _float(row.get("lon"), where=where, field_name="lon", low=-180, high=180)
    lat = _float(row.get("lat"), where=where, field_name="lat", low=-90, high=90)
    if (lon is None) != (lat is None):
        raise InvalidInput("lon and lat must be given together", where=where, field="lat" if lat is None else "lon")
    onvif = _url(row.get("onvif"), where=where, field_name="onvif", schemes=ONVIF_SCHEMES, required=False)
    grid = str(row.get("grid") or "").strip() or None
    enabled_raw = row.get("enabled", True)
    enabled = str(enabled_raw).strip().lower() not in {"0", "false", "no", "off"}
    assert url is not None
    return CameraSpec(
        name=name, url=url, lon=lon, lat=lat, onvif_url=onvif, grid_code=grid, enabled=enabled, sub_url=sub_url,
        sub_url_given="sub_url" in row, analysis_stream=analysis,
    )  # fmt: skip


def check_analysis_stream(value: str, *, has_sub: bool, where: str | None = None) -> None:
    """``value`` is one of :data:`ANALYSIS_STREAMS`, and ``sub`` only for a camera with a sub-stream."""
    if value not in ANALYSIS_STREAMS:
        raise InvalidInput(f"{value!r} is not one of {', '.join(ANALYSIS_STREAMS)}", where=where, field="analysis_stream")
    if value == "sub" and not has_sub:
        raise InvalidInput("is 'sub' but the camera has no sub-stream (sub_url)", where=where, field="analysis_stream")


def analysed_stream(setting: str | None, *, has_sub: bool) -> StreamName:
    """The stream the worker reads: the chosen one, auto (NULL) meaning the sub-stream when there is one.
    A ``sub`` setting on a camera whose sub-stream was removed falls back to the main stream."""
    if setting == "main" or not has_sub:
        return "main"
    return "sub"


def parse_camera_file(path: Path) -> list[CameraSpec]:
    """CSV (header ``name,url,lon,lat`` and optional ``sub_url``, ``analysis_stream``, ``onvif``, ``grid``) or YAML (a list, or ``cameras:``),
    in any encoding :func:`models.grid.textfile.read_text_file` knows."""
    return parse_camera_text(read_text_file(path).text, yaml_format=path.suffix.lower() in YAML_SUFFIXES)


def parse_camera_text(text: str, *, yaml_format: bool) -> list[CameraSpec]:
    """Validate a camera file's text; the first error names the CSV line (header = line 1) or YAML item (from 1)."""
    rows = _yaml_rows(text) if yaml_format else _csv_rows(text)
    specs = [spec_from_row(row, where=where) for where, row in rows]
    seen: dict[str, str] = {}
    for (where, _), spec in zip(rows, specs, strict=True):
        if spec.name in seen:
            raise InvalidInput(f"duplicate name, also at {seen[spec.name]}", where=where, field="name")
        seen[spec.name] = where
    return specs


def _yaml_rows(text: str) -> list[tuple[str, dict[str, Any]]]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise InvalidInput(f"not valid YAML: {err}") from err
    if isinstance(doc, dict):
        doc = doc.get("cameras")
    if not isinstance(doc, list):
        raise InvalidInput("a YAML camera file is a list of cameras (or has a 'cameras:' list)")
    rows = []
    for number, item in enumerate(doc, start=1):
        if not isinstance(item, dict):
            raise InvalidInput("must be a mapping", where=f"camera {number}")
        rows.append((f"camera {number}", item))
    return rows


def sniff_delimiter(header_line: str) -> str:
    """The header's most frequent of comma, tab (Excel's "Unicode text") and semicolon; comma on a tie or none."""
    counts = {d: header_line.count(d) for d in CSV_DELIMITERS}
    best = max(CSV_DELIMITERS, key=lambda d: counts[d])  # max keeps the first on a tie: comma
    return best if counts[best] else ","


def _csv_rows(text: str) -> list[tuple[str, dict[str, Any]]]:
    stream = io.StringIO(text, newline=None)  # universal newlines: Excel writes CRLF
    delimiter = sniff_delimiter(stream.readline())
    stream.seek(0)
    reader = csv.DictReader(stream, delimiter=delimiter)
    header = [h.strip() for h in (reader.fieldnames or [])]
    for needed in ("name", "url", "lon", "lat"):
        if needed not in header:
            raise InvalidInput(f"the CSV header must have {needed!r} (got {','.join(header)})", where="line 1")
    rows = []
    for line_no, raw in enumerate(reader, start=2):
        if None in raw:
            raise InvalidInput("has more values than the header has columns", where=f"line {line_no}")
        rows.append((f"line {line_no}", {k.strip(): v for k, v in raw.items() if k is not None}))
    return rows


def register_cameras(
    session: Session, specs: list[CameraSpec], *, credentials: CredentialKeyring | None = None
) -> CameraImportReport:
    """Create or update cameras (matched by name) inside the caller's transaction.

    URLs are stored encrypted under ``credentials``; without a keyring they are stored as given and
    encrypted by the next worker start (:func:`models.grid.credentials.seal_cameras`)."""
    report = CameraImportReport()
    codes = {s.grid_code for s in specs if s.grid_code}
    grid_by_code = {n.code: n.id for n in session.scalars(select(GridNode).where(GridNode.code.in_(codes)))}
    for s in specs:
        if s.grid_code and s.grid_code not in grid_by_code:
            raise InvalidInput(f"no grid node has code {s.grid_code!r}", where=f"camera {s.name!r}", field="grid")
    existing = {c.name: c for c in session.scalars(select(Camera).where(Camera.name.in_([s.name for s in specs])))}
    to_locate = [s for s in specs if not s.grid_code and s.lon is not None and s.lat is not None]
    from models.grid.geo import GridLocator  # shapely and numpy: only when cameras are placed

    located = GridLocator.from_session(session).locate_many([(s.lon, s.lat) for s in to_locate])  # type: ignore[misc]
    where_found = {s.name: hit for s, hit in zip(to_locate, located, strict=True)}
    for s in specs:
        cam = existing.get(s.name)
        if cam is None:
            cam = Camera(name=s.name)
            session.add(cam)
            report.created += 1
        else:
            report.updated += 1
        set_camera_secrets(cam, credentials, url=s.url, onvif_url=s.onvif_url)
        if s.sub_url_given or cam.id is None:
            set_camera_secrets(cam, credentials, sub_url=s.sub_url)
        if s.analysis_stream is not None:
            check_analysis_stream(s.analysis_stream, has_sub=bool(cam.sub_url), where=f"camera {s.name!r}")
            cam.analysis_stream = None if s.analysis_stream == "auto" else s.analysis_stream
        cam.stream_host = stream_host(s.url)
        cam.lon, cam.lat = s.lon, s.lat
        cam.enabled = s.enabled
        if s.grid_code:
            cam.grid_id, cam.grid_override = grid_by_code[s.grid_code], True
        else:
            hit = where_found.get(s.name)
            cam.grid_id, cam.grid_override = (hit[0] if hit else None), False
            if hit is None:
                report.outside.append(s.name)
    session.flush()
    return report
