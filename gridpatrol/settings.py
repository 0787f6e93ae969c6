"""One ``Settings`` aggregating each part's section, built once by an entry point and passed down."""

from __future__ import annotations

from dataclasses import dataclass

from api.settings import ApiSettings
from models.storage_settings import StorageSettings


@dataclass(frozen=True)
class Settings:
    storage: StorageSettings
    api: ApiSettings

    @classmethod
    def from_env(cls) -> Settings:
        return cls(storage=StorageSettings(), api=ApiSettings())
