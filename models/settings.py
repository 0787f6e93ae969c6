"""Settings base shared by every part. Each part declares its own section; ``gridpatrol.settings``
aggregates them. No module reads a global settings object: entry points build and pass them down."""

from __future__ import annotations

from typing import Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
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


#: the installation's time zone when none is configured: Chinese cities run on Beijing time
DEFAULT_TIMEZONE = "Asia/Shanghai"


def zone_info(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; a ValueError naming the variable when there is no such zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ValueError(f"GRIDPATROL_TIMEZONE {name!r} is not an IANA time zone (e.g. Asia/Shanghai)") from err


class LocaleSettings(PartSettings):
    """The installation's time zone, for every part that shows a time of day to people or reads one from
    them: rule schedules, deadlines shown, statistics per day, reports, evidence banners. Instants are
    stored and exchanged in UTC with their offset whatever this says."""

    timezone: str = Field(
        default=DEFAULT_TIMEZONE, description="IANA time zone of schedules, banners and per-day figures (GRIDPATROL_TIMEZONE)"
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        zone_info(value)
        return value

    @property
    def tz(self) -> ZoneInfo:
        return zone_info(self.timezone)
