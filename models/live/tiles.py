"""A tile: one camera's latest analysed frame as a small JPEG, with what the worker saw on it.

Tiles cross process boundaries (Redis) as one byte string: a 4-byte length, the metadata as JSON,
then the JPEG. Widths are a few fixed buckets so that a demand is one key per (camera, width).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

from models.errors import InvalidInput

#: the widths a tile is encoded at; a requested width rounds up to the next one
WIDTHS: tuple[int, ...] = (160, 320, 480, 640, 960, 1280, 1920)
DEFAULT_WIDTH = 480
#: the first byte of a binary tile message on the wall WebSocket
WIRE_TILE = 0x01
_HEADER = struct.Struct(">I")
_WIRE = struct.Struct(">BIQ")


def width_bucket(width: int) -> int:
    """The smallest bucket at least ``width`` wide (the largest bucket for anything wider)."""
    for w in WIDTHS:
        if w >= width:
            return w
    return WIDTHS[-1]


@dataclass(frozen=True)
class TileDetection:
    """One detection box in normalised image coordinates (0..1), with its class name and score."""

    xyxy_norm: tuple[float, float, float, float]
    label: str
    score: float

    def to_json(self) -> dict[str, Any]:
        return {
            "xyxy_norm": [round(v, 4) for v in self.xyxy_norm],
            "label": self.label,
            "score": round(self.score, 3),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TileDetection:
        x1, y1, x2, y2 = (float(v) for v in data["xyxy_norm"])
        return cls((x1, y1, x2, y2), str(data["label"]), float(data["score"]))


@dataclass(frozen=True)
class Tile:
    """A camera's frame as the worker published it: capture time in epoch seconds, JPEG bytes."""

    camera_id: int
    captured_at: float
    jpeg: bytes
    width: int
    height: int
    #: the latest detections on this frame (tracked, masks applied), for the snapshot overlay
    detections: tuple[TileDetection, ...] = ()
    #: rule names active on the camera right now (an alarm: tiles come faster, the wall highlights it)
    rules: tuple[str, ...] = ()
    #: the worker that published it
    worker: str = ""
    #: the frame's own size before scaling
    source_wh: tuple[int, int] = field(default=(0, 0))

    @property
    def alarm(self) -> bool:
        return bool(self.rules)

    def metadata(self) -> dict[str, Any]:
        return {
            "camera_id": self.camera_id,
            "captured_at": self.captured_at,
            "width": self.width,
            "height": self.height,
            "detections": [d.to_json() for d in self.detections],
            "rules": list(self.rules),
            "worker": self.worker,
            "source_wh": list(self.source_wh),
        }

    def pack(self) -> bytes:
        """Metadata and JPEG as one byte string (what travels through Redis)."""
        meta = json.dumps(self.metadata(), separators=(",", ":")).encode()
        return _HEADER.pack(len(meta)) + meta + self.jpeg

    @classmethod
    def unpack(cls, raw: bytes) -> Tile:
        """The inverse of :meth:`pack`; a malformed payload is :class:`InvalidInput`."""
        try:
            (n,) = _HEADER.unpack_from(raw)
            meta = json.loads(raw[_HEADER.size : _HEADER.size + n])
            sw, sh = meta.get("source_wh") or (0, 0)
            return cls(
                camera_id=int(meta["camera_id"]),
                captured_at=float(meta["captured_at"]),
                jpeg=bytes(raw[_HEADER.size + n :]),
                width=int(meta["width"]),
                height=int(meta["height"]),
                detections=tuple(TileDetection.from_json(d) for d in meta.get("detections", [])),
                rules=tuple(str(r) for r in meta.get("rules", [])),
                worker=str(meta.get("worker", "")),
                source_wh=(int(sw), int(sh)),
            )
        except (struct.error, ValueError, KeyError, TypeError) as err:
            raise InvalidInput(f"malformed tile: {err}") from err

    def wire(self) -> bytes:
        """The binary WebSocket message: 0x01, camera id (uint32 BE), capture ms (uint64 BE), JPEG."""
        return _WIRE.pack(WIRE_TILE, self.camera_id, int(round(self.captured_at * 1000))) + self.jpeg


def parse_wire(message: bytes) -> tuple[int, int, bytes]:
    """(camera id, capture time in ms, JPEG) of a binary tile message (for clients and tests)."""
    kind, camera_id, ms = _WIRE.unpack_from(message)
    if kind != WIRE_TILE:
        raise InvalidInput(f"not a tile message (type byte {kind:#x})")
    return camera_id, ms, message[_WIRE.size :]
