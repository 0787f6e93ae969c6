"""The API's settings section."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from models.errors import ConfigError
from models.settings import Environment, PartSettings, check_environment

DEFAULT_SECRET = "change-me-gridpatrol-development-secret-key"


class ApiSettings(PartSettings):
    environment: Environment = Field(
        default="development", description="development | production | demo; production refuses a default secret"
    )
    secret_key: str = Field(default=DEFAULT_SECRET, description="HMAC key for JWT access tokens")
    access_token_ttl_s: int = Field(default=900, ge=60, le=86400, description="Lifetime of an access token")
    cors_origins: list[str] = Field(default_factory=list, description="Allowed CORS origins; empty = closed")

    _check_environment = field_validator("environment", mode="before")(check_environment)

    @model_validator(mode="after")
    def _refuse_default_secret(self) -> ApiSettings:
        if self.environment == "production" and (self.secret_key == DEFAULT_SECRET or len(self.secret_key) < 32):
            raise ConfigError(
                "GRIDPATROL_SECRET_KEY must be set to a random value of at least 32 characters in production"
            )
        return self
