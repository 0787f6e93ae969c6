"""Ticket categories: case codes, deadlines per category, rule → category, the sources of manual cases."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from models.db.tables import TicketCategory, TicketState
from models.errors import ConfigError
from models.settings import Environment, PartSettings, check_environment

S = TicketState


class CategoryPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    case_code: str = Field(description="City-management case code (e.g. 街面秩序/占道经营)")
    accept_within_s: int = Field(gt=0, description="Time to accept before escalating to the street")
    resolve_within_s: int = Field(gt=0, description="Time to resolve before escalating to the district")


DEFAULT_CATEGORIES = {
    TicketCategory.road_occupation.value: CategoryPolicy(
        case_code="街面秩序/占道经营", accept_within_s=30 * 60, resolve_within_s=4 * 3600
    ),
    TicketCategory.fire_lane_blockage.value: CategoryPolicy(
        case_code="消防通道堵塞", accept_within_s=10 * 60, resolve_within_s=3600
    ),
    TicketCategory.crowding.value: CategoryPolicy(case_code="人员聚集", accept_within_s=5 * 60, resolve_within_s=3600),
    TicketCategory.other.value: CategoryPolicy(case_code="其他", accept_within_s=3600, resolve_within_s=24 * 3600),
}

#: rule name → ticket category
RULE_CATEGORY = {
    "road_occupation": TicketCategory.road_occupation.value,
    "fire_lane_blockage": TicketCategory.fire_lane_blockage.value,
    "crowding": TicketCategory.crowding.value,
}

MANUAL_SOURCES = ("patrol", "hotline_12345", "police_110", "api")


class TicketSettings(PartSettings):
    ticket_categories: dict[str, CategoryPolicy] = Field(
        default_factory=lambda: dict(DEFAULT_CATEGORIES), description="Case code and deadlines per category"
    )
    ticket_verify_clear_s: int = Field(default=60, ge=0, description="Clear time that verifies a resolved ticket")
    ticket_max_snapshots: int = Field(default=10, ge=1, description="Snapshots kept per ticket beyond the first")
    ticket_max_clips: int = Field(
        default=2, ge=1, description="Event clips kept per ticket: the first and the latest (max - 1)"
    )
    clip_retention_days: int = Field(
        default=30, ge=0, description="Clips of tickets closed longer ago than this are deleted; 0 = keep"
    )
    ticket_auto_dispatch: bool = Field(default=True, description="Dispatch new tickets to the grid's leader at once")
    webhook_urls: list[str] = Field(default_factory=list, description="Endpoints that receive ticket events")
    webhook_secret: str = Field(default="", description="HMAC-SHA256 key for the X-GridPatrol-Signature header")
    environment: Environment = Field(
        default="development", description="development | production | demo; only demo may send unsigned webhooks"
    )

    _check_environment = field_validator("environment", mode="before")(check_environment)

    @model_validator(mode="after")
    def _refuse_unsigned_webhooks(self) -> TicketSettings:
        # an empty key still "signs" (HMAC with b""): anyone could forge the receiver's events
        if self.webhook_urls and not self.webhook_secret and self.environment != "demo":
            raise ConfigError(
                "GRIDPATROL_WEBHOOK_SECRET must be set when GRIDPATROL_WEBHOOK_URLS is "
                "(webhooks without a key are accepted only with GRIDPATROL_ENVIRONMENT=demo)"
            )
        return self

    def category(self, name: str) -> CategoryPolicy:
        return self.ticket_categories.get(name) or DEFAULT_CATEGORIES[name]
