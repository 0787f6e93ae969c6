"""A GB/T 28181 camera is read only where the platform runs: a worker without the platform's source leaves
it unclaimed (for the worker beside the platform) instead of claiming it and failing to open it forever;
its RTSP cameras it reads as usual."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from detectors.backends import ClassicConfig
from gridpatrol.worker import Worker
from ingest.gb28181.media import channel_url
from ingest.leases import MemoryLeaseStore
from ingest.settings import IngestSettings
from models.bus.memory import MemoryBus
from models.db.engine import make_engine, make_session_factory, transaction
from models.db.tables import Camera
from models.evidence.store import FileEvidenceStore
from models.grid.credentials import CredentialKey, CredentialKeyring, set_camera_secrets
from tests.conftest import seed
from tests.support.databases import sqlite_copy

KEYRING = CredentialKeyring(CredentialKey.generate())


def _worker(factory, tmp_path: Path, **kwargs) -> Worker:  # type: ignore[no-untyped-def]
    return Worker(
        worker_id="w",
        session_factory=factory,
        bus=MemoryBus(),
        leases=MemoryLeaseStore(),
        evidence=FileEvidenceStore(tmp_path / "evidence"),
        backend=ClassicConfig(),
        ingest=IngestSettings(),
        credentials=KEYRING,
        **kwargs,
    )


def test_only_the_worker_beside_the_platform_takes_gb_cameras(_sqlite_template: Path, tmp_path: Path) -> None:
    factory = make_session_factory(make_engine(sqlite_copy(_sqlite_template, tmp_path)))
    seed(factory, tmp_path)
    with transaction(factory) as session:
        cams = {c.name: c for c in session.scalars(select(Camera))}
        set_camera_secrets(cams["cam-g1-a"], KEYRING, url=channel_url("34020000001320000001", "34020000001310000001"))
        for name in ("cam-g1-b", "cam-g2-a", "cam-g3-a"):
            set_camera_secrets(cams[name], KEYRING, url=f"rtsp://127.0.0.1:9/{name}")
        gb, rtsp = cams["cam-g1-a"].id, cams["cam-g2-a"].id

    plain = _worker(factory, tmp_path)
    plain.refresh()
    assert str(gb) not in plain.cameras and str(rtsp) in plain.cameras

    beside = _worker(factory, tmp_path, openers={"gb28181": lambda url, options: None})
    beside.refresh()
    assert str(gb) in beside.cameras and str(rtsp) in beside.cameras
