"""The ingest part's settings section (environment variables ``GRIDPATROL_<FIELD>``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ingest.reader import StreamOptions
from ingest.sampling import SamplingOptions
from models.settings import PartSettings


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

    def stream_options(self) -> StreamOptions:
        return StreamOptions(
            transport=self.rtsp_transport,
            open_timeout_s=self.open_timeout_s,
            read_timeout_s=self.read_timeout_s,
            backoff_max_s=self.backoff_max_s,
        )

    def sampling_options(self) -> SamplingOptions:
        return SamplingOptions(
            analysis_fps=self.analysis_fps,
            analysis_width=self.analysis_width,
            keyframes_only=self.keyframes_only,
            display_fps=self.display_fps,
        )
