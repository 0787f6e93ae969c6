"""Settings base shared by every part. Each part declares its own section; ``gridpatrol.settings``
aggregates them. No module reads a global settings object: entry points build and pass them down."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class PartSettings(BaseSettings):
    """Base of each part's settings section; environment variables carry the ``GRIDPATROL_`` prefix."""

    model_config = SettingsConfigDict(env_prefix="GRIDPATROL_", extra="forbid", env_file=None)
