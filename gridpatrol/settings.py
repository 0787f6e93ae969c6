"""One ``Settings`` aggregating each part's section, built once by an entry point and passed down."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from api.settings import ApiSettings
from gridpatrol.mqtt import MqttSettings
from ingest.settings import IngestSettings
from models.db.settings import StorageSettings
from models.grid.credentials import CredentialsSettings
from models.notify.settings import NotifySettings
from models.settings import LocaleSettings, PartSettings
from models.tickets.categories import TicketSettings
from models.tickets.retention import RetentionSettings


class WorkerSettings(LocaleSettings):
    detector_backend: Literal["classic", "onnx", "yolo"] = Field(
        default="classic", description="Detector back-end of the workers (classic needs no weights)"
    )
    detector_model: str | None = Field(
        default=None, description="onnx: a stored model name or .onnx path; yolo: the .pt weights path"
    )
    models_dir: Path | None = Field(default=None, description="Where imported models live (default <data dir>/models)")


OFFLINE_NOTICE_MIN_S, OFFLINE_NOTICE_MAX_S = 10.0, 86_400.0


class TicketerSettings(PartSettings):
    ticketer_batch: int = Field(default=500, ge=1, le=10_000, description="Rule events handled per transaction")
    ticketer_stale_ms: int = Field(
        default=15_000, ge=100, description="Events a dead ticketer left unacknowledged this long are taken over"
    )
    ticketer_sweep_s: float = Field(default=2.0, gt=0, description="How often deadlines and verification are checked")
    bus_max_deliveries: int = Field(
        default=5, ge=1, le=1000, description="Deliveries of a rule event whose handling keeps failing before it is dead-lettered"
    )
    camera_offline_notice_s: float = Field(
        default=120.0,
        description="A camera offline this long raises one 'camera offline' notice (webhooks, MQTT, its grid leaders)",
    )

    @field_validator("camera_offline_notice_s")
    @classmethod
    def _offline_notice(cls, value: float) -> float:
        # below ~10 s a worker's ordinary reconnect (and the health board's refresh) would be an outage
        if not OFFLINE_NOTICE_MIN_S <= value <= OFFLINE_NOTICE_MAX_S:
            raise ValueError(
                f"GRIDPATROL_CAMERA_OFFLINE_NOTICE_S must be between {OFFLINE_NOTICE_MIN_S:.0f} and "
                f"{OFFLINE_NOTICE_MAX_S:.0f} seconds (got {value:g})"
            )
        return value


@dataclass(frozen=True)
class Settings:
    storage: StorageSettings
    api: ApiSettings
    ingest: IngestSettings
    tickets: TicketSettings
    worker: WorkerSettings
    ticketer: TicketerSettings
    credentials: CredentialsSettings = field(default_factory=CredentialsSettings)
    notify: NotifySettings = field(default_factory=NotifySettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            storage=StorageSettings(),
            api=ApiSettings(),
            ingest=IngestSettings(),
            tickets=TicketSettings(),
            worker=WorkerSettings(),
            ticketer=TicketerSettings(),
        )

    @property
    def models_dir(self) -> Path:
        return self.worker.models_dir or self.storage.data_dir / "models"
