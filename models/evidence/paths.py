"""Evidence files are served from one directory; a stored or requested name can never leave it."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from models.errors import NotFound

#: one path segment: letters, digits, dot, dash, underscore; no leading dot (no "..", no hidden files)
_SEGMENT = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")
MAX_DEPTH = 8


def check_key(relative: str) -> tuple[str, ...]:
    """The segments of a store key when it is a plain relative path of safe segments; :class:`NotFound`
    otherwise (a probe learns nothing). Every evidence store checks keys this way."""
    if not relative or "\\" in relative or "\x00" in relative or relative.startswith("/"):
        raise NotFound("evidence file not found")
    parts = PurePosixPath(relative).parts
    if not parts or len(parts) > MAX_DEPTH or not all(_SEGMENT.match(p) for p in parts):
        raise NotFound("evidence file not found")
    return parts


def safe_join(root: Path, relative: str) -> Path:
    """``root / relative`` when ``relative`` is a plain relative path of safe segments that stays inside
    ``root`` once symlinks are resolved; :class:`NotFound` otherwise (a probe learns nothing)."""
    parts = check_key(relative)
    base = root.resolve()
    target = base.joinpath(*parts).resolve()
    if not target.is_relative_to(base) or target == base:
        raise NotFound("evidence file not found")
    return target
