"""The patrol and evaluation settings: check-in rules and the scoring model's weights and targets."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.db.tables import TicketCategory
from models.settings import LocaleSettings

#: the components of a score, in the order reports show them
COMPONENTS = (
    "workload",
    "on_time_accept",
    "on_time_resolve",
    "escalations",
    "reopens",
    "checkins",
    "video_coverage",
    "satisfaction",
)


class ScoringWeights(BaseModel):
    """Points each component contributes to a full score of 100 (they must add up to 100)."""

    model_config = ConfigDict(extra="forbid")

    workload: float = Field(default=20, ge=0, description="Tickets handled, weighted by category difficulty")
    on_time_accept: float = Field(default=15, ge=0, description="Share of tickets accepted before accept_by")
    on_time_resolve: float = Field(
        default=15, ge=0, description="Share of tickets resolved before resolve_by"
    )
    escalations: float = Field(default=10, ge=0, description="1 - escalations suffered per ticket")
    reopens: float = Field(default=10, ge=0, description="1 - reopens per ticket handled")
    checkins: float = Field(default=10, ge=0, description="Share of patrol tasks checked in")
    video_coverage: float = Field(default=10, ge=0, description="Share of camera-days viewed on video patrol")
    satisfaction: float = Field(default=10, ge=0, description="(satisfied + basically satisfied) / callbacks")

    @model_validator(mode="after")
    def _total_is_100(self) -> ScoringWeights:
        total = sum(getattr(self, c) for c in COMPONENTS)
        if abs(total - 100) > 1e-9:
            raise ValueError(f"the scoring weights must add up to 100 (they add up to {total:g})")
        return self


class PatrolSettings(LocaleSettings):
    patrol_default_radius_m: float = Field(
        default=50.0, gt=0, description="Check-in radius of a new patrol point"
    )
    patrol_max_accuracy_m: float = Field(
        default=200.0,
        gt=0,
        description="A check-in whose reported GPS accuracy is worse than this is refused",
    )
    patrol_photo_required: bool = Field(default=True, description="A check-in must carry a photo")
    video_patrol_max_heartbeat_s: float = Field(
        default=120.0, gt=0, description="Most seconds one video patrol heartbeat may add to a camera"
    )
    scoring_weights: ScoringWeights = Field(
        default_factory=ScoringWeights, description="Points per score component"
    )
    scoring_difficulty: dict[str, float] = Field(
        default_factory=lambda: {
            TicketCategory.road_occupation.value: 1.0,
            TicketCategory.fire_lane_blockage.value: 1.5,
            TicketCategory.crowding.value: 1.2,
            TicketCategory.other.value: 1.0,
        },
        description="Difficulty weight of a handled ticket per category (unknown categories weigh 1)",
    )
    scoring_workload_per_day: float = Field(
        default=1.0, gt=0, description="Weighted tickets handled per day that earn the full workload score"
    )

    def difficulty(self, category: str) -> float:
        return self.scoring_difficulty.get(category, 1.0)
