"""Evidence kept in the database: one row per image or clip (PostgreSQL ``bytea``, SQLite ``BLOB``).

For deployments whose workers, ticketers and API run on machines that share no filesystem: the database
they already share carries the evidence too, with no other server to run. Clips are read in ranges
(``substr`` in SQL), so serving a seek in a 2 MB clip moves only the bytes asked for. Keys are the same
as the file store's and checked the same way.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from models.db.tables import EvidenceBlob, utcnow
from models.errors import NotFound
from models.evidence.paths import check_key
from models.evidence.store import new_key


def _key(key: str) -> str:
    return "/".join(check_key(key))


class DatabaseEvidenceStore:
    """The evidence store on the ``evidence_blobs`` table; each call is its own short transaction."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self._factory = factory

    def put(self, data: bytes, *, prefix: str, suffix: str = ".jpg", at: datetime | None = None) -> str:
        key = new_key(prefix=prefix, suffix=suffix, at=at)
        with self._factory.begin() as session:
            session.add(EvidenceBlob(key=_key(key), size=len(data), data=bytes(data), created_at=at or utcnow()))
        return key

    def get(self, key: str) -> bytes:
        with self._factory() as session:
            data = session.scalar(select(EvidenceBlob.data).where(EvidenceBlob.key == _key(key)))
        if data is None:
            raise NotFound("evidence not found")
        return bytes(data)

    def size(self, key: str) -> int:
        with self._factory() as session:
            size = session.scalar(select(EvidenceBlob.size).where(EvidenceBlob.key == _key(key)))
        if size is None:
            raise NotFound("evidence not found")
        return int(size)

    def read(self, key: str, *, start: int, length: int) -> bytes:
        if start < 0 or length < 0:
            raise ValueError("start and length must not be negative")
        # substr counts from 1, on bytea (PostgreSQL) and BLOB (SQLite) alike: only the range leaves the server
        part = func.substr(EvidenceBlob.data, start + 1, length)
        with self._factory() as session:
            row = session.execute(select(part).where(EvidenceBlob.key == _key(key))).first()
        if row is None:
            raise NotFound("evidence not found")
        return bytes(row[0] or b"")

    def delete(self, key: str) -> None:
        with self._factory.begin() as session:
            session.execute(delete(EvidenceBlob).where(EvidenceBlob.key == _key(key)))
