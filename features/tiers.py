"""Membership tiers (DESIGN §1): a shop's own rule over trailing spend, as configuration."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator


class TierSettings(BaseModel):
    """Tier rule: spend over the trailing `window_days`, compared with descending thresholds.

    Tier 1 is the highest. `thresholds[i]` is the minimum trailing spend of tier i + 1; a
    customer below the last threshold is in the lowest tier, len(thresholds) + 1.
    """

    model_config = ConfigDict(extra="forbid")

    window_days: int = Field(182, gt=0)
    thresholds: list[float] = Field(default=[5_000_000, 2_000_000, 600_000, 100_000], min_length=1)
    vip_tiers: list[int] = Field(default=[1, 2], min_length=1)
    names: dict[int, str] = Field(
        default={1: "VIP", 2: "VIP", 3: "regular", 4: "regular", 5: "regular"}
    )

    @model_validator(mode="after")
    def _check_order(self) -> TierSettings:
        if any(a <= b for a, b in zip(self.thresholds, self.thresholds[1:], strict=False)):
            raise ValueError(f"tiers.thresholds must be strictly descending, got {self.thresholds}")
        lowest = len(self.thresholds) + 1
        bad = [t for t in self.vip_tiers if not 1 <= t <= lowest]
        if bad:
            raise ValueError(f"tiers.vip_tiers {bad} outside 1..{lowest}")
        return self

    @property
    def lowest_tier(self) -> int:
        return len(self.thresholds) + 1

    @property
    def vip_line(self) -> float:
        """Minimum trailing spend of the lowest VIP tier."""
        return self.thresholds[max(self.vip_tiers) - 1]


def tier_of_spend(spend: pd.Series | np.ndarray, tiers: TierSettings) -> np.ndarray:
    """Tier number (1 = highest) for each trailing-spend value."""
    # thresholds descend, so count how many thresholds the spend does NOT reach.
    ascending = np.asarray(tiers.thresholds[::-1], dtype="float64")
    reached = np.searchsorted(ascending, np.asarray(spend, dtype="float64"), side="right")
    return (tiers.lowest_tier - reached).astype("int64")


def next_tier_line(tier: np.ndarray, tiers: TierSettings) -> np.ndarray:
    """Trailing spend needed for the tier above `tier` (NaN for the top tier)."""
    lines = np.array([np.nan, *tiers.thresholds], dtype="float64")
    return lines[np.asarray(tier) - 1]


def current_tier_line(tier: np.ndarray, tiers: TierSettings) -> np.ndarray:
    """Trailing spend below which a customer drops out of `tier` (0 for the lowest tier)."""
    lines = np.array([*tiers.thresholds, 0.0], dtype="float64")
    return lines[np.asarray(tier) - 1]
