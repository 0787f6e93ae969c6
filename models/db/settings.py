"""The kernel's settings section: where state lives (database, data directory, bus)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from models.settings import PartSettings


class StorageSettings(PartSettings):
    data_dir: Path = Field(default=Path("./var"), description="Directory for the SQLite file, evidence and caches")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy or plain postgresql:// URL; default: SQLite file gridpatrol.db under data_dir",
    )
    redis_url: str | None = Field(default=None, description="Redis URL for the bus and leases; unset = in-process")
    bus_namespace: str = Field(default="", max_length=64, description="Prefix of the bus's Redis keys")
    evidence_store: Literal["file", "database"] = Field(
        default="file",
        description="Where evidence images and clips live: file (<data dir>/evidence, a shared volume when "
        "distributed) or database (the evidence_blobs table: no shared filesystem needed)",
    )

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'gridpatrol.db').resolve()}"
