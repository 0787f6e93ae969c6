"""The GB/T 28181 platform's settings section (environment variables ``GRIDPATROL_GB28181_*``)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from models.settings import PartSettings

_GB_ID = re.compile(r"^\d{20}$")
MIN_PASSWORD_CHARS = 8
#: defaults that GB/T 28181 set-up guides and device manuals print
KNOWN_DEVICE_PASSWORDS = frozenset(
    {"12345678", "123456789", "1234567890", "admin123", "password", "admin12345"}
)
_DOMAIN = re.compile(r"^\d{10}$")


class Gb28181Settings(PartSettings):
    """Where the SIP platform listens, who it is, and how it judges its devices."""

    # hide_input_in_errors: a refused password must not be echoed in the error
    model_config = SettingsConfigDict(
        env_prefix="GRIDPATROL_GB28181_", extra="forbid", env_file=None, hide_input_in_errors=True
    )

    enabled: bool = Field(default=False, description="Run the GB/T 28181 platform inside 'gridpatrol serve'")
    sip_host: str = Field(default="0.0.0.0", description="Address the SIP listeners bind (UDP and TCP)")
    sip_port: int = Field(
        default=5060, ge=0, le=65535, description="SIP port, UDP and TCP (0: any free port)"
    )
    public_host: str | None = Field(
        default=None,
        description="Address devices reach the platform at, written in Via/Contact (default: the SIP host, "
        "or 127.0.0.1 when that is 0.0.0.0)",
    )
    id: str = Field(
        default="34020000002000000001", description="The platform's 20-digit SIP server ID (SIP 服务器编号)"
    )
    domain: str = Field(
        default="3402000000", description="The 10-digit SIP domain (SIP 域), the Digest realm"
    )
    password: SecretStr | None = Field(
        default=None, description="The password devices register with (SIP 认证密码); required to serve"
    )
    udp: bool = Field(default=True, description="Listen for SIP over UDP")
    tcp: bool = Field(default=True, description="Listen for SIP over TCP")
    max_tcp_connections: int = Field(
        default=10_000, ge=1, description="Most SIP TCP connections open at once (one per TCP device)"
    )
    keepalive_interval_s: float = Field(
        default=60.0, gt=0, description="Keepalive interval devices are expected to keep (心跳周期)"
    )
    keepalive_misses: int = Field(
        default=3, ge=1, description="Missed keepalive intervals after which a device is offline"
    )
    max_expires_s: int = Field(default=3600, ge=60, description="Longest registration granted")
    nonce_ttl_s: int = Field(default=300, ge=10, description="Seconds a Digest nonce stays good")
    catalog_on_register: bool = Field(default=True, description="Query a device's catalog when it registers")
    catalog_timeout_s: float = Field(
        default=15.0, gt=0, description="Seconds to wait for all of a catalog's Response MESSAGEs"
    )
    request_timeout_s: float = Field(
        default=8.0, gt=0, description="Seconds to wait for a device's final answer to INVITE, BYE or MESSAGE"
    )

    media_ip: str | None = Field(
        default=None,
        description="Address written in INVITE offers, where devices send media (default: public host)",
    )
    media_bind_ip: str = Field(default="0.0.0.0", description="Address the media receivers bind")
    media_ports: str | None = Field(
        default=None, description="Media port range FIRST-LAST for RTP receivers (unset: any free port)"
    )
    media_transport: Literal["udp", "tcp-passive", "tcp-active"] = Field(
        default="udp",
        description="How devices send media: udp, tcp-passive (they connect), tcp-active (we do)",
    )

    @field_validator("media_ports")
    @classmethod
    def _port_range(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        first, sep, last = value.partition("-")
        try:
            low, high = int(first), int(last)
        except ValueError:
            low = high = -1
        if not sep or not 0 < low <= high < 65536:
            raise ValueError(
                f"GRIDPATROL_GB28181_MEDIA_PORTS must be FIRST-LAST, e.g. 30000-30999 (got {value!r})"
            )
        return f"{low}-{high}"

    @property
    def media_port_range(self) -> tuple[int, int] | None:
        if self.media_ports is None:
            return None
        first, _, last = self.media_ports.partition("-")
        return int(first), int(last)

    @field_validator("password")
    @classmethod
    def _guessable_is_refused(cls, value: SecretStr | None) -> SecretStr | None:
        """Unset when empty; a password anyone could guess is refused (cameras cap its length, often
        at 16 or 32 characters, so the bar is lower than for GridPatrol's own keys)."""
        if value is None or not value.get_secret_value():
            return None
        plain = value.get_secret_value()
        if len(plain) < MIN_PASSWORD_CHARS or len(set(plain)) < 4 or plain.lower() in KNOWN_DEVICE_PASSWORDS:
            raise ValueError(
                f"GRIDPATROL_GB28181_PASSWORD is guessable: use at least {MIN_PASSWORD_CHARS} characters, "
                "not a well-known default such as 12345678, and set the same on the devices"
            )
        return value

    @field_validator("id")
    @classmethod
    def _id_digits(cls, value: str) -> str:
        if not _GB_ID.match(value):
            raise ValueError(f"GRIDPATROL_GB28181_ID must be 20 digits (got {value!r})")
        return value

    @field_validator("domain")
    @classmethod
    def _domain_digits(cls, value: str) -> str:
        if not _DOMAIN.match(value):
            raise ValueError(f"GRIDPATROL_GB28181_DOMAIN must be 10 digits (got {value!r})")
        return value

    @property
    def advertised_host(self) -> str:
        if self.public_host:
            return self.public_host
        return "127.0.0.1" if self.sip_host in ("0.0.0.0", "::", "") else self.sip_host

    @property
    def offline_after_s(self) -> float:
        return self.keepalive_interval_s * self.keepalive_misses


def is_gb_id(value: str) -> bool:
    """A 20-digit GB/T 28181 ID (device, channel, platform)."""
    return bool(_GB_ID.match(value))
