"""The RTSP gateway's settings section (environment variables ``GRIDPATROL_GATEWAY_*``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from models.identity.passwords import RTSP_REALM
from models.settings import PartSettings


class GatewaySettings(PartSettings):
    """Where the gateway listens, how it authenticates viewers and the limits it keeps."""

    model_config = SettingsConfigDict(env_prefix="GRIDPATROL_GATEWAY_", extra="forbid", env_file=None)

    host: str = Field(
        default="127.0.0.1", description="Address the RTSP server listens on (0.0.0.0: every address)"
    )
    port: int = Field(default=8554, ge=0, le=65535, description="RTSP TCP port (0: any free port)")
    linger_s: float = Field(
        default=10.0, ge=0, description="Seconds a camera's upstream stays open after its last viewer left"
    )
    viewers_per_camera: int = Field(default=64, ge=1, description="Most viewers of one camera stream at once")
    sessions_per_user: int = Field(default=16, ge=1, description="Most live sessions one user holds at once")
    max_connections: int = Field(
        default=2000, ge=1, description="Most RTSP connections the server accepts at once"
    )
    max_request_bytes: int = Field(
        default=16_384,
        ge=1024,
        description="Largest RTSP request (headers and body) accepted; larger ones: 413",
    )
    session_timeout_s: int = Field(
        default=60,
        ge=5,
        description="An RTSP session nothing is heard from for this long ends (Session timeout)",
    )
    recheck_s: float = Field(
        default=2.5,
        gt=0,
        le=5,
        description="How often each viewer's access is re-checked (a cut lands within it)",
    )
    allow_basic: bool = Field(
        default=False,
        description="Also accept Basic authentication (clear-text passwords: trusted networks only)",
    )
    realm: str = Field(
        default=RTSP_REALM,
        description="Digest realm; stored digest secrets are made for the default one, so change it only together "
        "with every user's password and rtsp token",
    )
    failed_logins_per_address: int = Field(
        default=30,
        ge=1,
        description="Refused logins from one address in 5 minutes before it is refused unchecked",
    )
    nonce_ttl_s: int = Field(
        default=300, ge=10, description="Seconds a Digest nonce stays good (then stale=TRUE)"
    )
    nonce_secret: SecretStr | None = Field(
        default=None,
        description="Key of the nonce HMAC, the same in every gateway process (unset: the API signing key)",
    )
    viewer_buffer_bytes: int = Field(
        default=4_000_000,
        ge=65_536,
        description="Unsent bytes a viewer may hold before the server stops feeding it",
    )
    replays: dict[str, Path] = Field(
        default_factory=dict,
        description="Recorded clips served as cameras at /replay/NAME (JSON: {NAME: FILE})",
    )
