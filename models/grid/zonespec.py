"""The zones file: what the API stores per camera, the CLI reads and the detectors run.

``{"zones": [{"name": "east lane", "kind": "fire_lane", "polygon": [[0.1, 0.5], ...], "dwell_s": 10}]}``
Polygons are normalised to the image (0..1, x to the right, y down) so that they survive a change of
resolution. Validation errors name the zone and the field (``parse_zones`` raises ``InvalidInput``).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal, TypeVar, overload

import pydantic
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from models.db.tables import ZoneKind
from models.errors import InvalidInput

#: the rule each kind of zone runs (a mask runs none); rule names are also ticket categories
RuleName = Literal["fire_lane_blockage", "road_occupation", "crowding"]
RULE_OF_KIND: dict[ZoneKind, RuleName] = {
    ZoneKind.crowd_area: "crowding",
    ZoneKind.fire_lane: "fire_lane_blockage",
    ZoneKind.road: "road_occupation",
}
MAX_VERTICES = 64
_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")

DEFAULT_CLASSES: dict[str, tuple[str, ...]] = {
    # What each kind counts when the zone names no classes. "static_object" is the classic backend's
    # static foreground; COCO names cover the YOLO backends.
    "road": (
        "car", "truck", "bus", "motorcycle", "bicycle", "umbrella", "bench", "chair", "dining table",
        "suitcase", "backpack", "handbag", "potted plant", "static_object",
    ),
    "fire_lane": (
        "car", "truck", "bus", "motorcycle", "bicycle", "umbrella", "bench", "chair", "dining table",
        "suitcase", "backpack", "handbag", "potted plant", "static_object",
    ),
    "crowd_area": ("person",),
    "mask": (),
}


def _zone_name(info: ValidationInfo) -> str:
    name = info.data.get("name") if info.data else None
    return f"zone '{name}'" if name else "zone"


class ZoneSpec(BaseModel):
    """One zone of a camera and the parameters of the rule its kind runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=80, description="Unique within the camera.")
    kind: ZoneKind = Field(description="road | fire_lane | crowd_area | mask (mask: excluded from analysis).")
    polygon: list[tuple[float, float]] = Field(
        description="Vertices [x, y] normalised to 0..1; a repeated first vertex at the end is accepted."
    )
    dwell_s: float = Field(10.0, ge=0.0, le=86_400.0, description="Seconds the condition must hold.")
    classes: list[str] | None = Field(None, max_length=100, description="Class names counted; default by kind.")
    min_score: float = Field(0.3, ge=0.0, le=1.0, description="Detections below this confidence are ignored.")
    min_area: float = Field(0.0005, ge=0.0, le=1.0, description="Minimum box area as a fraction of the frame.")
    min_people: int = Field(5, ge=1, le=10_000, description="crowd_area: people needed for crowding.")
    min_object_m: float = Field(
        0.5, gt=0.0, le=100.0,
        description="fire_lane: smallest stationary object reported, in metres across the lane (measured against "
        "the lane's painted width where the object stands, which is lane_width_m).",
    )
    lane_width_m: float = Field(
        4.0, gt=0.0, le=100.0,
        description="fire_lane: the lane's width in metres, the scale for min_object_m (4 m: the minimum clear "
        "width of a fire lane).",
    )
    coverage: float | None = Field(
        None, ge=0.0, le=1.0,
        description="fire_lane, optional stricter condition: objects (vehicles excepted) must also cover this "
        "fraction of the lane's area. None or 0: off.",
    )
    person_area: float = Field(
        0.006, gt=0.0, le=1.0,
        description="crowd_area, classic backend: frame fraction one person covers, to turn occupancy into a count.",
    )
    area_m2: float | None = Field(None, gt=0.0, le=1e7, description="crowd_area: real area, for a density.")
    density_per_m2: float | None = Field(
        None, gt=0.0, le=20.0, description="crowd_area: people per m2 that count as crowding (needs area_m2)."
    )
    schedule: list[str] | None = Field(
        None, max_length=24, description="road: daily windows 'HH:MM-HH:MM' (local time) when the rule runs."
    )
    clear_s: float = Field(5.0, ge=0.0, le=3600.0, description="Seconds the condition must be gone to end.")
    update_every_s: float = Field(60.0, ge=1.0, le=86_400.0, description="At most one 'updated' per this.")

    @field_validator("polygon")
    @classmethod
    def _check_polygon(cls, value: list[tuple[float, float]], info: ValidationInfo) -> list[tuple[float, float]]:
        where = _zone_name(info)
        points = list(value)
        if len(points) >= 2 and points[0] == points[-1]:
            points = points[:-1]
        if len(points) < 3:
            raise ValueError(f"{where}: a polygon needs at least 3 distinct vertices")
        if len(points) > MAX_VERTICES:
            raise ValueError(f"{where}: at most {MAX_VERTICES} vertices, got {len(points)}")
        for i, (x, y) in enumerate(points):
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise ValueError(f"{where}: vertex {i} ({x}, {y}) is outside 0..1")
        # shapely (and numpy) imported here: the bus messages import this module, and every CLI command them
        from shapely.geometry import Polygon
        from shapely.validation import explain_validity

        shape = Polygon(points)
        if not shape.is_valid:
            raise ValueError(f"{where}: polygon is not simple ({explain_validity(shape)})")
        if shape.area < 1e-6:
            raise ValueError(f"{where}: polygon has no area")
        return points

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        for window in value or []:
            if not _WINDOW.match(window):
                raise ValueError(f"{_zone_name(info)}: schedule window {window!r} is not 'HH:MM-HH:MM'")
        return value

    @model_validator(mode="after")
    def _check_combination(self) -> ZoneSpec:
        if self.density_per_m2 is not None and self.area_m2 is None:
            raise ValueError(f"zone '{self.name}': density_per_m2 needs area_m2")
        if self.schedule and self.kind != "road":
            raise ValueError(f"zone '{self.name}': schedule applies to road zones only")
        if self.min_object_m > self.lane_width_m:
            raise ValueError(
                f"zone '{self.name}': min_object_m ({self.min_object_m:g} m) is wider than the lane "
                f"(lane_width_m {self.lane_width_m:g} m)"
            )
        return self

    def counted_classes(self) -> tuple[str, ...]:
        """Class names this zone counts: its own list or its kind's default."""
        return tuple(self.classes) if self.classes is not None else DEFAULT_CLASSES[self.kind]

    def windows_min(self) -> list[tuple[int, int]]:
        """The schedule as (start, end) minutes of the day; a window may wrap past midnight."""
        out = []
        for window in self.schedule or []:
            m = _WINDOW.match(window)
            assert m is not None
            h1, m1, h2, m2 = (int(g) for g in m.groups())
            out.append((h1 * 60 + m1, h2 * 60 + m2))
        return out


class ZonesFile(BaseModel):
    """The zones of one camera."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    zones: list[ZoneSpec] = Field(default_factory=list, max_length=64, description="At most 64 zones.")

    @model_validator(mode="after")
    def _unique_names(self) -> ZonesFile:
        seen: set[str] = set()
        for zone in self.zones:
            if zone.name in seen:
                raise ValueError(f"zone '{zone.name}': name is used twice")
            seen.add(zone.name)
        return self


class ZonesDocument(ZonesFile):
    """A camera's zones as the API and the CLI exchange them: what ``GET .../zones`` and ``zones get``
    print, ``PUT .../zones`` and ``zones set`` read back unchanged."""

    camera_id: int | None = Field(default=None, description="The camera; when given it must be the camera addressed.")
    version: int | None = Field(
        default=None,
        ge=0,
        description="The version this edit starts from. When given and the camera's zones have been saved since, "
        "the save is refused (409) instead of overwriting someone else's change; omit it to overwrite.",
    )
    author: str | None = Field(default=None, description="Who saved this version (read-only; ignored on save).")
    saved_at: datetime | None = Field(default=None, description="When this version was saved (read-only; ignored on save).")


Z = TypeVar("Z", bound=ZonesFile)


@overload
def parse_zones(data: Any) -> ZonesFile: ...
@overload
def parse_zones(data: Any, model: type[Z]) -> Z: ...
def parse_zones(data: Any, model: type[ZonesFile] = ZonesFile) -> ZonesFile:
    """Validate a zones document (a dict or JSON text); errors name the zone and the field."""
    try:
        if isinstance(data, str | bytes):
            return model.model_validate_json(data)
        return model.model_validate(data)
    except pydantic.ValidationError as err:
        first = err.errors()[0]
        loc = list(first.get("loc", ()))
        where = None
        field = None
        if len(loc) >= 2 and loc[0] == "zones" and isinstance(loc[1], int):
            index = loc[1]
            where = f"zone #{index}"
            if isinstance(data, dict):
                zones = data.get("zones")
                if isinstance(zones, list) and index < len(zones) and isinstance(zones[index], dict):
                    name = zones[index].get("name")
                    if name:
                        where = f"zone '{name}'"
            field = ".".join(str(p) for p in loc[2:]) or None
        elif loc:
            field = ".".join(str(p) for p in loc)
        message = str(first.get("msg", "invalid"))
        if message.startswith("Value error, "):
            message = message[len("Value error, "):]
        if where and message.startswith(where + ": "):
            message = message[len(where) + 2:]
        raise InvalidInput(message, where=where, field=field) from err
