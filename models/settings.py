"""Settings base shared by every part. Each part declares its own section; ``gridpatrol.settings``
aggregates them. No module reads a global settings object: entry points build and pass them down."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic_settings import BaseSettings, SettingsConfigDict

#: ``GRIDPATROL_ENVIRONMENT``: a closed set, so that a typo (``prod``) fails at start instead of
#: silently skipping the production checks; ``demo`` is the only one that waives secret checks.
Environment = Literal["development", "production", "demo"]
ENVIRONMENTS: tuple[str, ...] = get_args(Environment)


def check_environment(value: object) -> object:
    """A ``before`` validator for an ``environment`` field: the error names the variable and the choices."""
    if value not in ENVIRONMENTS:
        raise ValueError(f"GRIDPATROL_ENVIRONMENT must be one of {', '.join(ENVIRONMENTS)} (got {value!r})")
    return value


class PartSettings(BaseSettings):
    """Base of each part's settings section; environment variables carry the ``GRIDPATROL_`` prefix."""

    model_config = SettingsConfigDict(env_prefix="GRIDPATROL_", extra="forbid", env_file=None)
