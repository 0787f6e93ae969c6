"""One contract for every evidence store: the directory (``file``) and the database (``database``, on
SQLite and PostgreSQL). Keys round-trip, clips are read in ranges, a key that would leave the store or
names nothing is "not found", and a deleted key is gone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from models.db.engine import make_engine, make_session_factory
from models.errors import NotFound
from models.evidence.database import DatabaseEvidenceStore
from models.evidence.store import EvidenceStore, FileEvidenceStore
from tests.support.databases import sqlite_copy, truncate_all
from tests.support.require import require

JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 240  # about 60 KB, like an annotated 640x360 frame
CLIP = bytes((i * 7) % 251 for i in range(2_000_000))  # a 2 MB clip's worth of bytes


@pytest.fixture(params=["file", "sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path, _sqlite_template: Path) -> Iterator[EvidenceStore]:
    if request.param == "file":
        yield FileEvidenceStore(tmp_path / "evidence")
        return
    if request.param == "sqlite":
        url = sqlite_copy(_sqlite_template, tmp_path)
    else:
        found: str | None = request.getfixturevalue("_postgres_url")
        require(found is not None, "PostgreSQL on 127.0.0.1:5432")
        assert found is not None
        truncate_all(found)
        url = found
    engine = make_engine(url)
    yield DatabaseEvidenceStore(make_session_factory(engine))
    engine.dispose()


def test_an_image_round_trips_under_a_dated_key(store: EvidenceStore) -> None:
    key = store.put(JPEG, prefix="cam-12", at=datetime(2026, 11, 27, 8, 0, tzinfo=UTC))
    assert key.startswith("2026/11/27/cam-12/") and key.endswith(".jpg"), key
    assert store.get(key) == JPEG
    assert store.size(key) == len(JPEG)
    other = store.put(JPEG[:100], prefix="cam-12")
    assert other != key and store.get(other) == JPEG[:100]


def test_a_clip_is_read_in_ranges(store: EvidenceStore) -> None:
    key = store.put(CLIP, prefix="cam 7/../x", suffix=".mp4")
    assert key.endswith(".mp4") and "/cam_7____x/" in key, key  # the prefix cannot add path segments
    assert store.size(key) == len(CLIP)
    assert store.read(key, start=0, length=10) == CLIP[:10]
    assert store.read(key, start=1_000_000, length=65_536) == CLIP[1_000_000:1_065_536]
    assert store.read(key, start=len(CLIP) - 5, length=100) == CLIP[-5:]  # a range past the end is cut
    assert store.read(key, start=len(CLIP), length=10) == b""


ESCAPING = ["../secret.jpg", "/etc/passwd", "2026/../../x.jpg", ".hidden/x.jpg", "a\\b.jpg", "a\x00b.jpg", "", "a/" * 9 + "x"]


def test_a_key_that_would_escape_is_not_found(store: EvidenceStore) -> None:
    store.put(JPEG, prefix="cam-1")  # something is stored: the refusals are not an empty store's
    for key in ESCAPING:
        for read in (store.get, store.size, lambda k: store.read(k, start=0, length=1)):
            with pytest.raises(NotFound):
                read(key)


def test_an_unknown_key_is_not_found_and_delete_removes(store: EvidenceStore) -> None:
    with pytest.raises(NotFound):
        store.get("2026/11/27/cam-1/0123456789abcdef.jpg")
    key = store.put(JPEG, prefix="cam-1")
    store.delete(key)
    for read in (store.get, store.size, lambda k: store.read(k, start=0, length=1)):
        with pytest.raises(NotFound):
            read(key)
    store.delete(key)  # deleting twice is no error (retention may race a manual delete)
