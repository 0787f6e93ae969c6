"""The API's settings section.

The JWT signing key is never a value anyone else knows: a configured key must be strong in every
environment (:func:`check_secret_strength`); with none configured the demo uses the published
:data:`DEMO_SECRET` and every other installation a random key that the process wiring
(``gridpatrol.signing_key``) keeps in the data directory. ``create_app`` refuses to run without one.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from models.errors import ConfigError
from models.settings import Environment, LocaleSettings, check_environment

#: the development key that earlier versions signed with when none was configured: it is in the
#: source, so it is refused everywhere (a token forged with it was accepted as admin)
DEFAULT_SECRET = "change-me-gridpatrol-development-secret-key"
#: the one fixed key, for ``GRIDPATROL_ENVIRONMENT=demo`` only (published: anyone can forge a login)
DEMO_SECRET = "gridpatrol-demo-signing-key-PUBLISHED-never-use-outside-the-demo"
#: rules of :func:`check_secret_strength`
MIN_SECRET_CHARS = 32
MIN_DISTINCT_CHARS = 8
KNOWN_SECRETS = frozenset({DEFAULT_SECRET, DEMO_SECRET})
HOW_TO_GENERATE = "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"


def check_secret_strength(value: str, *, variable: str) -> None:
    """Refuse a configured secret that someone could guess: shorter than 32 characters, fewer than 8
    different characters (``kkkk...``), one short piece repeated (``abc123abc123...``), or a key
    published in GridPatrol's source. The message names ``variable`` and how to make a good one."""
    fix = f"set {variable} to a random value, e.g. the output of {HOW_TO_GENERATE}"
    if value in KNOWN_SECRETS:
        raise ConfigError(f"{variable} is a key published in GridPatrol's source: {fix}")
    if len(value) < MIN_SECRET_CHARS:
        raise ConfigError(f"{variable} must be at least {MIN_SECRET_CHARS} characters (got {len(value)}): {fix}")
    distinct = len(set(value))
    if distinct < MIN_DISTINCT_CHARS:
        raise ConfigError(
            f"{variable} is too repetitive ({distinct} different characters, at least {MIN_DISTINCT_CHARS}): {fix}"
        )
    period = _period(value)
    if period <= len(value) // 2:
        raise ConfigError(f"{variable} repeats one piece of {period} characters: {fix}")


def _period(value: str) -> int:
    """The length of the shortest piece whose repetition makes ``value`` (``len(value)`` if none)."""
    for p in range(1, len(value) // 2 + 1):
        if all(value[i] == value[i - p] for i in range(p, len(value))):
            return p
    return len(value)


class ApiSettings(LocaleSettings):
    environment: Environment = Field(
        default="development",
        description="development | production | demo; only demo signs with a fixed (published) key",
    )
    secret_key: str = Field(
        default="",
        description=(
            "HMAC key for JWT access tokens; empty = not configured: the demo uses DEMO_SECRET, an embedded "
            "installation a key generated in the data directory, a distributed one refuses to start"
        ),
    )
    access_token_ttl_s: int = Field(default=900, ge=60, le=86400, description="Lifetime of an access token")
    cors_origins: list[str] = Field(default_factory=list, description="Allowed CORS origins; empty = closed")
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Addresses or CIDRs of reverse proxies whose X-Forwarded-For is believed (comma-separated); "
            "empty: the peer address is the client's"
        ),
    )
    stream_recheck_s: float = Field(
        default=5.0, gt=0, le=60, description="How often an open stream (SSE) re-checks its viewer's access"
    )
    metrics_token: str | None = Field(
        default=None,
        description="Bearer token /metrics asks for; unset: /metrics is anonymous, and not served in production",
    )
    api_docs: bool | None = Field(
        default=None, description="Serve /docs, /redoc and /openapi.json; unset: off in production, on otherwise"
    )
    map_tiles_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^/\s]+/\S*\{z\}\S*\{x\}\S*\{y\}\S*$",
        description="Tile URL template (XYZ/WMTS REST, e.g. http://gis.intranet/tiles/{z}/{x}/{y}.png) of the "
        "customer's intranet map under the grid map; unset: no base map. Its origin is allowed in the CSP img-src",
    )

    _check_environment = field_validator("environment", mode="before")(check_environment)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _parse_trusted_proxies(cls, value: object) -> object:
        """``GRIDPATROL_TRUSTED_PROXIES=10.0.0.5,10.1.0.0/16``: each entry must be an address or a network."""
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise ValueError("GRIDPATROL_TRUSTED_PROXIES must be a comma-separated list of addresses or CIDRs")
        out = []
        for item in (str(i).strip() for i in items):
            if not item:
                continue
            try:
                out.append(str(ipaddress.ip_network(item, strict=False)))
            except ValueError as err:
                raise ValueError(f"GRIDPATROL_TRUSTED_PROXIES: {item!r} is not an address or CIDR") from err
        return out

    @model_validator(mode="after")
    def _check_secrets(self) -> ApiSettings:
        if self.secret_key or "secret_key" in self.model_fields_set:
            if not (self.environment == "demo" and self.secret_key == DEMO_SECRET):
                check_secret_strength(self.secret_key, variable="GRIDPATROL_SECRET_KEY")
        elif self.environment == "demo":
            self.secret_key = DEMO_SECRET
        if self.metrics_token is not None:
            check_secret_strength(self.metrics_token, variable="GRIDPATROL_METRICS_TOKEN")
        return self

    @property
    def map_tiles_origin(self) -> str | None:
        """``scheme://host[:port]`` of :attr:`map_tiles_url` (what the CSP allows images from)."""
        if not self.map_tiles_url:
            return None
        scheme, rest = self.map_tiles_url.split("://", 1)
        return f"{scheme}://{rest.split('/', 1)[0]}"

    @property
    def docs_enabled(self) -> bool:
        return self.api_docs if self.api_docs is not None else self.environment != "production"

    @property
    def metrics_served(self) -> bool:
        """Whether ``/metrics`` exists: behind its token, or anonymous outside production."""
        return self.metrics_token is not None or self.environment != "production"
