"""Membership tiers (DESIGN §1): a shop's own rule over trailing spend, as configuration."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator


class TierSettings(BaseModel):
    """Tier rule: spend over the trailing `window_days`, compared with descending thresholds.

    Tier 1 is the highest. `thresholds[i]` is the minimum trailing spend of tier i + 1; a
    customer below the last threshold is in the lowest tier, len(thresholds) + 1.
    With `basis: quantile` the lines are instead the given descending `quantiles` of the
    trailing spend of customers who spent anything in the window, recomputed at each date
    (e.g. [0.99, 0.95, 0.8, 0.5]: tier 1 = top 1% of spenders). Tiers are recalculated on a
    rolling basis: the tier at a date uses the window ending just before that date.
    """

    model_config = ConfigDict(extra="forbid")

    window_days: int = Field(182, gt=0)
    basis: Literal["absolute", "quantile"] = "absolute"
    thresholds: list[float] = Field(default=[5_000_000, 2_000_000, 600_000, 100_000], min_length=1)
    quantiles: list[float] | None = None
    vip_tiers: list[int] = Field(default=[1, 2], min_length=1)
    names: dict[int, str] = Field(
        default={1: "VIP", 2: "VIP", 3: "regular", 4: "regular", 5: "regular"}
    )

    @model_validator(mode="after")
    def _check_order(self) -> TierSettings:
        if any(a <= b for a, b in zip(self.thresholds, self.thresholds[1:], strict=False)):
            raise ValueError(f"tiers.thresholds must be strictly descending, got {self.thresholds}")
        if self.basis == "quantile":
            q = self.quantiles or []
            if len(q) != len(self.thresholds):
                raise ValueError(
                    "tiers.quantiles needs one quantile per threshold "
                    f"({len(self.thresholds)}), got {self.quantiles}"
                )
            if any(not 0 < x < 1 for x in q) or any(a <= b for a, b in zip(q, q[1:], strict=False)):
                raise ValueError(f"tiers.quantiles must descend strictly within (0, 1), got {q}")
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


def lines_at(spend: pd.Series | np.ndarray, tiers: TierSettings) -> list[float]:
    """The tier lines in force for this population of trailing spends (one date's customers).

    Absolute basis: the configured thresholds. Quantile basis: the configured quantiles of
    the positive spends (nudged to stay strictly descending); with no spender at all, +inf.
    """
    if tiers.basis == "absolute":
        return list(tiers.thresholds)
    values = np.asarray(spend, dtype="float64")
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        return [np.inf] * len(tiers.thresholds)
    lines = [float(np.quantile(values, q)) for q in tiers.quantiles or []]
    for i in range(1, len(lines)):  # equal quantiles: keep lines strictly descending
        lines[i] = min(lines[i], np.nextafter(lines[i - 1], -np.inf))
    return lines


def tier_of_spend(
    spend: pd.Series | np.ndarray, tiers: TierSettings, lines: list[float] | None = None
) -> np.ndarray:
    """Tier number (1 = highest) for each trailing-spend value, against `lines` (default:
    the lines of this population, lines_at)."""
    lines = lines_at(spend, tiers) if lines is None else lines
    # thresholds descend, so count how many thresholds the spend does NOT reach.
    ascending = np.asarray(lines[::-1], dtype="float64")
    reached = np.searchsorted(ascending, np.asarray(spend, dtype="float64"), side="right")
    return (tiers.lowest_tier - reached).astype("int64")


def next_tier_line(
    tier: np.ndarray, tiers: TierSettings, lines: list[float] | None = None
) -> np.ndarray:
    """Trailing spend needed for the tier above `tier` (NaN for the top tier)."""
    table = np.array([np.nan, *(tiers.thresholds if lines is None else lines)], dtype="float64")
    return table[np.asarray(tier) - 1]


def current_tier_line(
    tier: np.ndarray, tiers: TierSettings, lines: list[float] | None = None
) -> np.ndarray:
    """Trailing spend below which a customer drops out of `tier` (0 for the lowest tier)."""
    table = np.array([*(tiers.thresholds if lines is None else lines), 0.0], dtype="float64")
    return table[np.asarray(tier) - 1]


def tiers_at(
    orders: pd.DataFrame,
    when: datetime,
    tiers: TierSettings,
    members: pd.Series | None = None,
) -> pd.DataFrame:
    """Tier of every customer known at `when`: trailing spend over [when - window, when).

    Known = has an order before `when`, or is listed in `members` (e.g. customers signed up
    before `when`); customers without spend in the window sit in the lowest tier.
    """
    when = pd.Timestamp(when)
    before = orders[orders["ordered_at"] < when]
    start = when - pd.Timedelta(days=tiers.window_days)
    window = before[before["ordered_at"] >= start]
    spend = window.groupby("customer_id", observed=True)["amount"].sum()
    known = pd.Index(before["customer_id"].unique())
    if members is not None:
        known = known.union(pd.Index(members.unique()))
    frame = pd.DataFrame({"customer_id": known.astype("string")})
    frame["tier_window_spend"] = frame["customer_id"].map(spend).fillna(0.0).astype("float64")
    frame["tier"] = tier_of_spend(frame["tier_window_spend"].to_numpy(), tiers)
    return frame.sort_values("customer_id", ignore_index=True)


NEW = "new"  # row label of the migration matrix for customers not yet known at the start


def migration_matrix(
    orders: pd.DataFrame,
    start: datetime,
    end: datetime,
    tiers: TierSettings,
    members: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Counts and row shares of customers moving from their tier at `start` to that at `end`.

    Rows: tier at `start` (or "new" for customers first known after it); columns: tier at
    `end`. `members` is the customers table (customer_id, signed_up_at) when there is one.
    Shares are per row (where each start tier went) and sum to 1.
    """
    if pd.Timestamp(end) <= pd.Timestamp(start):
        raise ValueError(f"migration needs start < end, got {start} and {end}")

    def known(at: datetime) -> pd.Series | None:
        if members is None:
            return None
        return members.loc[members["signed_up_at"] < pd.Timestamp(at), "customer_id"]

    before = tiers_at(orders, start, tiers, known(start)).set_index("customer_id")["tier"]
    after = tiers_at(orders, end, tiers, known(end)).set_index("customer_id")["tier"]
    rows = before.reindex(after.index).astype("object").fillna(NEW)
    levels = list(range(1, tiers.lowest_tier + 1))
    counts = pd.crosstab(rows.rename("from_tier"), after.rename("to_tier"))
    counts = counts.reindex(index=[*levels, NEW], columns=levels, fill_value=0)
    shares = counts.div(counts.sum(axis=1).replace(0, np.nan), axis=0)
    return counts, shares
