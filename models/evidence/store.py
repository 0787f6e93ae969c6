"""Evidence images (annotated snapshots, reporters' photos): an interface and the filesystem store.

Keys are relative, slash-separated names the store chose (``2026/11/27/cam-12/<uuid>.jpg``); a key that
would escape the store's root is refused, so a key coming from a message or a URL cannot read
arbitrary files. An object store can implement the same protocol.
"""

from __future__ import annotations

import os
import re
import uuid
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Protocol

from models.db.tables import utcnow
from models.errors import InvalidInput, NotFound
from models.evidence.paths import safe_join
from models.secrets import ensure_private_dir

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class EvidenceStore(Protocol):
    def put(self, data: bytes, *, prefix: str, suffix: str = ".jpg", at: datetime | None = None) -> str: ...

    def get(self, key: str) -> bytes: ...

    def size(self, key: str) -> int: ...

    def read(self, key: str, *, start: int, length: int) -> bytes:
        """``length`` bytes from ``start`` (video clips are served in ranges, never read whole)."""
        ...

    def delete(self, key: str) -> None: ...


def image_suffix(data: bytes) -> str:
    if data.startswith(JPEG_MAGIC):
        return ".jpg"
    if data.startswith(PNG_MAGIC):
        return ".png"
    raise InvalidInput("must be a JPEG or PNG image", field="photos")


def new_key(*, prefix: str, suffix: str, at: datetime | None = None) -> str:
    """A fresh key: ``YYYY/MM/DD/<prefix>/<uuid><suffix>`` (the prefix reduced to safe characters)."""
    at = at or utcnow()
    safe_prefix = re.sub(r"[^A-Za-z0-9_-]", "_", prefix)[:60] or "x"
    return f"{at:%Y/%m/%d}/{safe_prefix}/{uuid.uuid4().hex}{suffix}"


class FileEvidenceStore:
    """Evidence under one directory (shared by workers and ticketers: a volume in distributed mode)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        return safe_join(self.root, key)

    def put(self, data: bytes, *, prefix: str, suffix: str = ".jpg", at: datetime | None = None) -> str:
        key = new_key(prefix=prefix, suffix=suffix, at=at)
        path = self._path(key)
        # evidence shows people and plates: owner-only (0700) at every level, like the data directory
        for level in reversed(PurePosixPath(key).parents):
            ensure_private_dir(self.root / level)
        tmp = path.with_suffix(path.suffix + ".part")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)  # readers never see half a file
        return key

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError as err:
            raise NotFound("evidence not found") from err

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError as err:
            raise NotFound("evidence not found") from err

    def read(self, key: str, *, start: int, length: int) -> bytes:
        try:
            with self._path(key).open("rb") as fh:
                fh.seek(start)
                return fh.read(length)
        except FileNotFoundError as err:
            raise NotFound("evidence not found") from err

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
