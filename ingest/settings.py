"""The ingest part's settings section (environment variables ``GRIDPATROL_<FIELD>``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from models.errors import ConfigError
from models.settings import PartSettings

if TYPE_CHECKING:  # imported where used: every CLI command reads settings, few need PyAV and numpy
    from ingest.clips import ClipOptions
    from ingest.reader import StreamOptions
    from ingest.sampling import SamplingOptions


class IngestSettings(PartSettings):
    rtsp_transport: Literal["tcp", "udp"] = Field(default="tcp", description="RTSP lower transport")
    open_timeout_s: float = Field(default=5.0, gt=0, description="Seconds to wait for a camera to answer")
    read_timeout_s: float = Field(default=5.0, gt=0, description="Seconds without data before reconnecting")
    backoff_max_s: float = Field(default=30.0, gt=0, description="Longest wait between reconnect attempts")
    analysis_fps: float = Field(default=2.0, ge=0, description="Frames per second handed to detection; 0 = all")
    analysis_width: int = Field(default=640, ge=16, description="Detector input width (aspect kept)")
    keyframes_only: bool = Field(default=False, description="Decode keyframes only (cheapest; GOP ~ 1/analysis_fps)")
    display_fps: float = Field(default=5.0, ge=0, description="Camera wall tap rate; 0 = off")
    worker_capacity: int = Field(default=100, ge=0, description="Most cameras one worker process reads")
    lease_ttl_s: float = Field(default=10.0, gt=0, description="Camera lease lifetime; takeover time after a crash")
    lease_prefix: str = Field(default="gridpatrol:", description="Redis key prefix of leases and workers")
    connect_stagger_s: float = Field(default=0.05, ge=0, description="Pause between camera connects")
    clips_enabled: bool = Field(default=True, description="Record a video clip of every started event")
    clip_buffer_s: float = Field(default=15.0, gt=0, description="Seconds of compressed video buffered per camera")
    clip_buffer_mb: float = Field(default=24.0, gt=0, description="Most megabytes buffered per camera")
    clip_pre_s: float = Field(default=10.0, ge=0, description="Clip seconds before the event (<= clip_buffer_s)")
    clip_post_s: float = Field(default=20.0, gt=0, description="Clip seconds after the event")

    @model_validator(mode="after")
    def _buffer_holds_pre_roll(self) -> IngestSettings:
        if self.clip_pre_s > self.clip_buffer_s:
            raise ConfigError(
                f"GRIDPATROL_CLIP_PRE_S ({self.clip_pre_s}) must not exceed GRIDPATROL_CLIP_BUFFER_S ({self.clip_buffer_s})"
            )
        return self

    def clip_options(self) -> ClipOptions:
        from ingest.clips import ClipOptions

        return ClipOptions(
            buffer_s=self.clip_buffer_s,
            buffer_bytes=int(self.clip_buffer_mb * 1024 * 1024),
            pre_s=self.clip_pre_s,
            post_s=self.clip_post_s,
        )

    def stream_options(self) -> StreamOptions:
        from ingest.reader import StreamOptions

        return StreamOptions(
            transport=self.rtsp_transport,
            open_timeout_s=self.open_timeout_s,
            read_timeout_s=self.read_timeout_s,
            backoff_max_s=self.backoff_max_s,
        )

    def sampling_options(self) -> SamplingOptions:
        from ingest.sampling import SamplingOptions

        return SamplingOptions(
            analysis_fps=self.analysis_fps,
            analysis_width=self.analysis_width,
            keyframes_only=self.keyframes_only,
            display_fps=self.display_fps,
        )
