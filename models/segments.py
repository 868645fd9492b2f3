"""Scores at a cutoff, ranked segments and their atomic export (DESIGN §1, §3.5).

Every segment is a rule over the feature snapshot and the scores, ranked by an explicit
score (mostly expected value = probability x expected order value). Which target's score a
segment uses, ranks by and is explained by is `features.targets.ranking_target(segment)`;
the rules here name no target. Suspected resellers are found first and removed from every
other segment. Rules, thresholds and recommended actions are configuration (`segments:`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from string import Formatter
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from features.targets import TARGETS, ranking_target
from features.tiers import TierSettings
from models.jsontext import strict_json
from models.population import FrameAggregates, Population, Statistic, Stats
from models.uplift import UPLIFT_COLUMN

RESELLERS = "suspected_resellers"
# Reasons say what raises the ranking score (+1), or for a list ranked by a risk, what
# lowers the probability of buying again (-1).
RAISES, LOWERS = 1, -1


class Budget(BaseModel):
    """How long a rule's ranked list may be: at most `max_share` of the scored customers
    (None: the shop-wide `segments.max_share`) and at most `top_n` customers; the
    best-ranked members are kept.

    `rank_by: uplift` ranks the rule's members (and so picks the budget's best) by the live
    release's predicted uplift, P(buy | contacted) − P(buy | not), instead of the usual
    ranking score; without a winning uplift model in the release the usual ranking stays
    and the segment's note says so (docs/segments.md).
    """

    model_config = ConfigDict(extra="forbid")

    max_share: float | None = Field(None, gt=0, le=1)
    top_n: int | None = Field(None, ge=1)
    rank_by: Literal["default", "uplift"] = "default"


class ScoreLine(Budget):
    """Where the ranking target's score counts as high, relative to the shop by default.

    `min_lift`: score >= lift x the shop's base rate (the mean score over the target's
    population); `min_percentile`: score at or above that rank among the population (0.75 =
    the top quarter); `min_score`: an absolute line. The lines that are set all apply. Setting
    `min_score` alone turns the relative lines off (set them too to keep them).
    """

    min_score: float | None = Field(None, ge=0, le=1)
    min_lift: float | None = Field(1.0, ge=0)
    min_percentile: float | None = Field(None, ge=0, le=1)

    @model_validator(mode="after")
    def _absolute_alone(self) -> ScoreLine:
        given = self.model_fields_set
        if self.min_score is not None and "min_score" in given:
            if "min_lift" not in given:
                self.min_lift = None
            if "min_percentile" not in given:
                self.min_percentile = None
        return self


class ActiveRule(ScoreLine):
    """Active customers: a faster cycle or rising spend, and a repurchase score in the top half
    of the shop and above its base rate."""

    min_percentile: float | None = Field(0.5, ge=0, le=1)
    max_gap_acceleration: float = Field(0.9, gt=0)
    min_order_value_rise: float = Field(1.1, gt=0)
    action: str = "{order_value}+ purchase discount to raise order value while they buy fast"


class RisingVipRule(ScoreLine):
    """Non-VIP customers most likely to reach a VIP tier: the top decile of the VIP score and
    at least three times the shop's base rate."""

    min_lift: float | None = Field(3.0, ge=0)
    min_percentile: float | None = Field(0.9, ge=0, le=1)
    action: str = "Show that {tier_gap} more reaches the next tier; tier-up bonus on the next order"


class VipHighOrderValueRule(Budget):
    """VIPs whose average order is far above other VIPs' median."""

    min_aov_vs_vip_median: float = Field(1.5, gt=0)
    action: str = "Early access to high-price launches (their orders average {median_order_value})"


class VipNewBigSpenderRule(Budget):
    """VIPs who joined recently and spent big quickly."""

    max_tenure_days: float = Field(180, gt=0)
    action: str = "Welcome-to-VIP pack and a second-purchase coupon to build the habit"


class VipSteadyRule(Budget):
    """Long-standing VIPs who keep buying (the loyal core). Unset lines are the VIPs' own
    medians, so the rule holds on a shop of any age."""

    min_days_since_first_order: float | None = Field(None, gt=0)
    min_orders: int | None = Field(None, ge=1)
    action: str = "Gifts or coupon packs that thank long-time VIPs"


class VipAtRiskRule(Budget):
    """VIPs close to the downgrade line, or overdue, with a repurchase score at or below the
    shop's base rate (`max_lift`) or an absolute `max_score`."""

    max_margin_share: float = Field(0.25, ge=0)
    min_overdue_ratio: float = Field(1.5, gt=0)
    max_score: float | None = Field(None, ge=0, le=1)
    max_lift: float | None = Field(1.0, ge=0)
    action: str = "Remind them of tier benefits: {tier_margin} above the line they keep the tier at"


class HighPriceBrowserRule(ScoreLine):
    """Members who never bought but keep viewing high-price products."""

    min_lift: float | None = Field(None, ge=0)
    min_high_price_views: int = Field(2, ge=1)
    min_last_vs_median_viewed_price: float = Field(0.8, ge=0)
    action: str = "First-purchase coupon on the high-price item they viewed (around {viewed_price})"


class RepurchaseProspectRule(ScoreLine):
    """Buyers likely to buy again: the top quarter of the repurchase score, above the shop's
    base rate, with the expected window of the next purchase."""

    min_percentile: float | None = Field(0.75, ge=0, le=1)
    window_share: float = Field(0.25, ge=0, le=1)
    action: str = "Time a coupon to arrive just before the expected next purchase"


class ResellerRule(Budget):
    """Bulk buying that does not look like a household's: listed apart, excluded from every
    campaign.

    Signals: `bulk` (units per order of a product >= `min_units_vs_usual` x that product's
    usual units per order, its buyers' median; a bulk product everyone buys in quantity,
    such as fuel or water, stays near 1), `concentrated` (that product's share of spend >=
    `min_top_product_spend_share`), `big` (lifetime spend in the shop's top
    `min_spend_percentile`) and, when set, `units` (>= `min_units_one_product` units of one
    product). A suspected reseller shows `bulk` and at least `min_signals` - 1 other signals.
    """

    max_share: float | None = Field(0.02, gt=0, le=1)
    rank_by: Literal["default"] = "default"  # excluded from campaigns: no uplift ranking
    min_units_vs_usual: float = Field(10, gt=1)
    min_top_product_spend_share: float = Field(0.5, ge=0, le=1)
    min_spend_percentile: float = Field(0.9, ge=0, le=1)
    min_units_one_product: float | None = Field(None, gt=0)
    min_signals: int = Field(2, ge=1, le=4)
    action: str = "Exclude from campaigns; review manually"


# Numbers an action template may use, from the segment's members: {name} -> (feature,
# quantile). order_value is the members' upper-quartile average order, a line above most of
# their orders ("₩150,000+ purchase discount"); the others are the members' medians.
ACTION_NUMBERS: dict[str, tuple[str, float]] = {
    "order_value": ("avg_order_value", 0.75),
    "median_order_value": ("avg_order_value", 0.5),
    "tier_gap": ("distance_to_next_tier", 0.5),
    "tier_margin": ("margin_above_tier_line", 0.5),
    "viewed_price": ("mean_viewed_price", 0.5),
}


def _placeholders(template: str) -> list[str]:
    return [field for _, field, _, _ in Formatter().parse(template) if field]


def round_offer(value: float) -> float:
    """Two significant digits (147,320 -> 150,000), so an offer reads like one."""
    if not np.isfinite(value) or value <= 0:
        return value
    return float(np.round(value, 1 - int(np.floor(np.log10(value)))))


def render_action(
    template: str, features: pd.DataFrame, currency: str, language: str = "en"
) -> str:
    """The action with its numbers from the members' features (rows of the snapshot), in the
    shop's currency and the one money format (models.reasons.format_money)."""
    from models.reasons import format_money

    values = {}
    for name in _placeholders(template):
        feature, quantile = ACTION_NUMBERS[name]
        column = feature_values(features, feature)
        finite = column[np.isfinite(column)]
        value = round_offer(float(np.quantile(finite, quantile))) if finite.size else np.nan
        # no member to take it from (an empty list): the action stays a template to fill
        fallback = f"[{name.replace('_', ' ')}]"
        values[name] = format_money(value, currency, language) if np.isfinite(value) else fallback
    return template.format(**values)


class WhatIfSettings(BaseModel):
    """Campaign what-if: purchase-rate uplifts and the coupon's cost."""

    model_config = ConfigDict(extra="forbid")

    uplifts_pp: list[float] = Field(default=[3, 5, 7], min_length=1)
    coupon_rate: float = Field(0.1, ge=0, le=1)
    # the most one coupon takes off, in the shop's currency; unset: no cap (a number in
    # one currency means nothing in another)
    coupon_cap: float | None = Field(None, ge=0)


class HoldoutSettings(BaseModel):
    """Every exported list holds out a random share, so the campaign can be measured later
    (`dangol measure --campaign <segment>-<cutoff>`); 0 turns holdouts off."""

    model_config = ConfigDict(extra="forbid")

    share: float = Field(0.1, ge=0, lt=1)
    # the attribution window written to campaigns.csv: cutoff .. cutoff + days; also the
    # window of the what-if's base rates (models.scoring.campaign_probabilities)
    campaign_days: int = Field(30, gt=0)


class ReportSettings(BaseModel):
    """The analyst report: how many customers its SHAP plots use and how many examples per
    segment it explains (where it is written is `paths.reports`)."""

    model_config = ConfigDict(extra="forbid")

    shap_sample: int = Field(2000, ge=10)
    examples_per_segment: int = Field(1, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _moved_out_dir(cls, value: object) -> object:
        if isinstance(value, dict) and "out_dir" in value:
            raise ValueError(
                "segments.report.out_dir is now paths.reports (everything a run writes is "
                "configured under paths:)"
            )
        return value


SEGMENT_NAMES = (
    "active",
    "rising_vip",
    "vip_high_order_value",
    "vip_new_big_spender",
    "vip_steady",
    "vip_at_risk",
    "high_price_browsers",
    "repurchase_prospects",
    RESELLERS,
)
# A list ranked by a risk is explained by the contributions that lower its target's score.
REASON_DIRECTION = {"vip_at_risk": LOWERS}
RANKED_BY = {
    "rising_vip": "score (probability of reaching a VIP tier)",
    "vip_at_risk": "tier-window spend x (1 - score): spend at risk",
    RESELLERS: "units per order of one product / its buyers' usual",
}


class SegmentSettings(BaseModel):
    """Segment rules, recommended actions, reason language and the campaign what-if.

    `priority` orders the segments for a customer's primary segment (the one campaign a
    customer is in); every membership is kept as a flag in scores.parquet.
    """

    model_config = ConfigDict(extra="forbid")

    language: Literal["en", "ko"] = "en"
    reasons: int = Field(3, ge=1, le=10)
    # no segment lists more than this share of the scored customers (its best-ranked ones)
    max_share: float = Field(0.25, gt=0, le=1)
    priority: list[str] = Field(
        default=[
            RESELLERS,
            "vip_at_risk",
            "rising_vip",
            "vip_high_order_value",
            "vip_new_big_spender",
            "vip_steady",
            "high_price_browsers",
            "active",
            "repurchase_prospects",
        ]
    )
    active: ActiveRule = ActiveRule()
    rising_vip: RisingVipRule = RisingVipRule()
    vip_high_order_value: VipHighOrderValueRule = VipHighOrderValueRule()
    vip_new_big_spender: VipNewBigSpenderRule = VipNewBigSpenderRule()
    vip_steady: VipSteadyRule = VipSteadyRule()
    vip_at_risk: VipAtRiskRule = VipAtRiskRule()
    high_price_browsers: HighPriceBrowserRule = HighPriceBrowserRule()
    repurchase_prospects: RepurchaseProspectRule = RepurchaseProspectRule()
    suspected_resellers: ResellerRule = ResellerRule()
    whatif: WhatIfSettings = WhatIfSettings()
    holdout: HoldoutSettings = HoldoutSettings()
    report: ReportSettings = ReportSettings()

    @field_validator("priority")
    @classmethod
    def _known_segments(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(SEGMENT_NAMES))
        if unknown:
            raise ValueError(f"unknown segments {unknown}; known: {', '.join(SEGMENT_NAMES)}")
        # segments left out of the list come last, in their usual order
        return [*dict.fromkeys(value), *(name for name in SEGMENT_NAMES if name not in value)]

    def action(self, segment: str) -> str:
        """The segment's action template (numbers filled in by `render_action`)."""
        return getattr(self, segment).action

    @model_validator(mode="after")
    def _known_placeholders(self) -> SegmentSettings:
        for name in SEGMENT_NAMES:
            unknown = set(_placeholders(self.action(name))) - set(ACTION_NUMBERS)
            if unknown:
                raise ValueError(
                    f"segments.{name}.action: unknown placeholder(s) {sorted(unknown)}; "
                    f"known: {', '.join('{' + k + '}' for k in ACTION_NUMBERS)}"
                )
        return self

    def share_of(self, segment: str) -> float:
        """The share of scored customers the segment may hold at most."""
        own = getattr(self, segment).max_share
        return min(own, self.max_share) if own is not None else self.max_share


def reason_direction(segment: str) -> int:
    """+1: reasons are what raises the ranking target's score; -1: what lowers it."""
    return REASON_DIRECTION.get(segment, RAISES)


def _ranking_score(scores: pd.DataFrame, segment: str) -> np.ndarray:
    """The score of the target that ranks `segment` (NaN where it has none)."""
    return feature_values(scores, ranking_target(segment).score_column)


def feature_values(snapshot: pd.DataFrame, name: str) -> np.ndarray:
    """A feature as float array; all-NaN when the feature is absent (optional table missing)."""
    if name not in snapshot:
        return np.full(len(snapshot), np.nan)
    return snapshot[name].to_numpy(dtype="float64", na_value=np.nan)


def ranked_members(members: pd.DataFrame, by: str) -> pd.DataFrame:
    """Members best first (ties by customer id), numbered from 1 in `rank`."""
    ranked = members.sort_values([by, "customer_id"], ascending=[False, True], ignore_index=True)
    ranked.insert(0, "rank", np.arange(1, len(ranked) + 1))
    return ranked


def _members(scores: pd.DataFrame, mask: np.ndarray, rank_score: np.ndarray) -> pd.DataFrame:
    members = scores[mask].copy()
    members["rank_score"] = rank_score[mask]
    return ranked_members(members, "rank_score")


def scored_flags(scores: pd.DataFrame) -> np.ndarray:
    """Per row, whether any target scored the customer."""
    columns = [c for c in scores if c.endswith("_score")]
    if not columns:
        return np.zeros(len(scores), dtype=bool)
    return np.isfinite(scores[columns].to_numpy("float64", na_value=np.nan)).any(axis=1)


def scored_customers(scores: pd.DataFrame) -> int:
    """Customers with at least one score (every row when no score column is filled)."""
    return int(scored_flags(scores).sum()) or len(scores)


# The columns the shop-wide statistics are taken over (`population_inputs`): a value where
# the customer belongs to the statistic's population, NaN elsewhere.
CUSTOMERS, SCORED = "customers", "scored"
BUYER_SPEND = "buyer_spend_lifetime"
VIP_MEDIAN_OF = ("avg_order_value", "days_since_first_order", "orders_lifetime")
GAP = "median_gap_days"


def vip_column(feature: str) -> str:
    return f"vip_{feature}"


def buyer_spend(snapshot: pd.DataFrame) -> np.ndarray:
    """Lifetime spend of the customers who ordered (NaN for the others)."""
    return np.where(
        feature_values(snapshot, "orders_lifetime") > 0,
        feature_values(snapshot, "spend_lifetime"),
        np.nan,
    )


def population_inputs(
    snapshot: pd.DataFrame, scores: pd.DataFrame, tiers: TierSettings
) -> pd.DataFrame:
    """Per row, the values each shop-wide statistic of the rules is taken over (row-aligned
    with `snapshot`; models.population computes the statistics on any engine)."""
    vip = _is_vip(snapshot, tiers)
    columns = {
        CUSTOMERS: np.ones(len(snapshot)),
        SCORED: np.where(scored_flags(scores), 1.0, np.nan),
        BUYER_SPEND: buyer_spend(snapshot),
        GAP: feature_values(snapshot, GAP),
    }
    for feature in VIP_MEDIAN_OF:
        columns[vip_column(feature)] = np.where(vip, feature_values(snapshot, feature), np.nan)
    for spec in TARGETS.values():
        columns[spec.score_column] = feature_values(scores, spec.score_column)
    return pd.DataFrame(columns, index=snapshot.index)


def _line_statistics(column: str, line: ScoreLine) -> list[Statistic]:
    needed = [Statistic("mean", column)] if line.min_lift is not None else []
    if line.min_percentile is not None:
        needed.append(Statistic("line", column, line.min_percentile))
    return needed


def statistics_needed(settings: SegmentSettings) -> list[Statistic]:
    """Every shop-wide statistic `segment_rules` reads for these settings: what a cluster computes
    before the rules run per partition."""
    needed = [Statistic("count", CUSTOMERS), Statistic("count", SCORED), Statistic("median", GAP)]
    for name in SEGMENT_NAMES:
        rule = getattr(settings, name)
        if isinstance(rule, ScoreLine):
            needed += _line_statistics(ranking_target(name).score_column, rule)
    needed += [Statistic("median", vip_column(feature)) for feature in VIP_MEDIAN_OF]
    needed.append(Statistic("mean", ranking_target("vip_at_risk").score_column))
    needed.append(Statistic("line", BUYER_SPEND, settings.suspected_resellers.min_spend_percentile))
    return needed


def local_population(
    snapshot: pd.DataFrame, scores: pd.DataFrame, tiers: TierSettings
) -> Population:
    """The population of a snapshot in memory: its statistics and budgets over its rows."""
    stats = Stats(FrameAggregates(population_inputs(snapshot, scores, tiers)))
    return Population(stats, scored=population_scored(stats))


def population_scored(stats: Stats) -> int:
    """Customers with at least one score (every customer when none was scored)."""
    return stats.count(SCORED) or stats.count(CUSTOMERS)


def score_line_mask(scores: pd.DataFrame, column: str, line: ScoreLine, stats: Stats) -> np.ndarray:
    """Customers whose score clears every line that is set (NaN scores never do): the
    relative lines against the shop's base rate (mean score) and percentile line."""
    score = feature_values(scores, column)
    keep = np.isfinite(score)
    if line.min_score is not None:
        keep &= score >= line.min_score
    if line.min_lift is not None:
        keep &= score >= line.min_lift * stats.mean(column)
    if line.min_percentile is not None:
        keep &= score >= stats.line(column, line.min_percentile)
    return keep


def _snapshot_stats(snapshot: pd.DataFrame) -> Stats:
    """Statistics over a snapshot alone (the rules that need no scores, called on their own)."""
    frame = pd.DataFrame({BUYER_SPEND: buyer_spend(snapshot), GAP: feature_values(snapshot, GAP)})
    return Stats(FrameAggregates(frame))


def reseller_signals(
    snapshot: pd.DataFrame, rule: ResellerRule, stats: Stats | None = None
) -> pd.DataFrame:
    """Each customer's reseller signals as booleans (see `ResellerRule`); "big" is against
    the shop's buyers (`stats`, default: this snapshot's)."""
    stats = stats or _snapshot_stats(snapshot)
    signals = {
        "bulk": feature_values(snapshot, "max_units_vs_usual") >= rule.min_units_vs_usual,
        "concentrated": feature_values(snapshot, "top_product_spend_share")
        >= rule.min_top_product_spend_share,
        "big": buyer_spend(snapshot) >= stats.line(BUYER_SPEND, rule.min_spend_percentile),
    }
    if rule.min_units_one_product is not None:
        signals["units"] = (
            feature_values(snapshot, "max_units_one_product") >= rule.min_units_one_product
        )
    return pd.DataFrame(signals, index=snapshot.index)


def reseller_mask(
    snapshot: pd.DataFrame, rule: ResellerRule, stats: Stats | None = None
) -> np.ndarray:
    """Bulk buying of one product against its usual quantity, plus enough other signals."""
    signals = reseller_signals(snapshot, rule, stats)
    count = signals.sum(axis=1).to_numpy()
    return signals["bulk"].to_numpy() & (count >= rule.min_signals)


def _is_vip(snapshot: pd.DataFrame, tiers: TierSettings) -> np.ndarray:
    return snapshot["tier"].isin(tiers.vip_tiers).to_numpy()


def active_mask(
    snapshot: pd.DataFrame, scores: pd.DataFrame, rule: ActiveRule, stats: Stats
) -> np.ndarray:
    accelerating = (feature_values(snapshot, "gap_acceleration") <= rule.max_gap_acceleration) | (
        feature_values(snapshot, "last_gap_vs_median") <= rule.max_gap_acceleration
    )
    rising = (
        feature_values(snapshot, "recent_vs_avg_order_value") >= rule.min_order_value_rise
    ) | (feature_values(snapshot, "spend_trend_90d") > 0)
    likely = score_line_mask(scores, ranking_target("active").score_column, rule, stats)
    return (accelerating | rising) & likely


def vip_high_order_value_mask(
    snapshot: pd.DataFrame, tiers: TierSettings, rule: VipHighOrderValueRule, stats: Stats
) -> np.ndarray:
    median = stats.median(vip_column("avg_order_value"))
    aov = feature_values(snapshot, "avg_order_value")
    return _is_vip(snapshot, tiers) & (aov >= rule.min_aov_vs_vip_median * median)


def vip_new_big_spender_mask(
    snapshot: pd.DataFrame, tiers: TierSettings, rule: VipNewBigSpenderRule
) -> np.ndarray:
    return _is_vip(snapshot, tiers) & (
        feature_values(snapshot, "tenure_days") <= rule.max_tenure_days
    )


def vip_steady_mask(
    snapshot: pd.DataFrame, tiers: TierSettings, rule: VipSteadyRule, stats: Stats
) -> np.ndarray:
    days = feature_values(snapshot, "days_since_first_order")
    orders = feature_values(snapshot, "orders_lifetime")
    min_days = rule.min_days_since_first_order
    min_orders = rule.min_orders
    # unset lines: the VIPs' own medians (longer and more often than the typical VIP)
    if min_days is None:
        min_days = stats.median(vip_column("days_since_first_order"))
    if min_orders is None:
        min_orders = stats.median(vip_column("orders_lifetime"))
    return _is_vip(snapshot, tiers) & (days >= min_days) & (orders >= min_orders)


def vip_at_risk_mask(
    snapshot: pd.DataFrame,
    scores: pd.DataFrame,
    tiers: TierSettings,
    rule: VipAtRiskRule,
    stats: Stats,
) -> np.ndarray:
    spend = feature_values(snapshot, "tier_window_spend")
    margin = feature_values(snapshot, "margin_above_tier_line")
    line = spend - margin
    near_line = margin <= rule.max_margin_share * np.where(line > 0, line, np.nan)
    overdue = feature_values(snapshot, "overdue_ratio") >= rule.min_overdue_ratio
    score = _ranking_score(scores, "vip_at_risk")
    weak = np.ones(len(snapshot), dtype=bool)
    if rule.max_score is not None:
        weak &= ~(score > rule.max_score)
    if rule.max_lift is not None:
        base_rate = stats.mean(ranking_target("vip_at_risk").score_column)
        weak &= ~(score > rule.max_lift * base_rate)
    return _is_vip(snapshot, tiers) & (near_line | overdue) & weak


def high_price_browser_mask(snapshot: pd.DataFrame, rule: HighPriceBrowserRule) -> np.ndarray:
    never_bought = ~(feature_values(snapshot, "orders_lifetime") > 0)
    many = feature_values(snapshot, "high_price_views") >= rule.min_high_price_views
    still = (
        feature_values(snapshot, "last_vs_median_viewed_price")
        >= rule.min_last_vs_median_viewed_price
    )
    return never_bought & many & still


def next_purchase_window(
    snapshot: pd.DataFrame, share: float, stats: Stats | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected next purchase = last order + the customer's median gap (peers' median gap when
    they have one order, over the shop: `stats`, default this snapshot's); the window is that
    day +- `share` of the gap, never before the cutoff.
    Returns (expected, window start, window end) as datetime64 arrays."""
    gap = feature_values(snapshot, GAP)
    peers = (stats or _snapshot_stats(snapshot)).median(GAP)
    peers = peers if np.isfinite(peers) else 30.0
    gap = np.where(np.isfinite(gap), gap, peers)
    cutoff = snapshot["cutoff"].to_numpy("datetime64[ns]")
    last = cutoff - (feature_values(snapshot, "days_since_last_order") * 86400e9).astype(
        "timedelta64[ns]"
    )
    days = np.timedelta64(86_400_000_000_000, "ns")
    expected = last + (gap * days.astype("float64")).astype("timedelta64[ns]")
    spread = (share * gap * days.astype("float64")).astype("timedelta64[ns]")
    start = np.maximum(expected - spread, cutoff)
    end = np.maximum(expected + spread, cutoff + days)
    day = "datetime64[D]"
    return expected.astype(day), start.astype(day), end.astype(day)


WINDOW_COLUMNS = ("expected_next_purchase", "next_purchase_from", "next_purchase_to")


def next_purchase_dates(
    snapshot: pd.DataFrame, scores: pd.DataFrame, settings: SegmentSettings, stats: Stats
) -> dict[str, np.ndarray]:
    """The learned next-order date and window where the scores carry them (the timing model,
    models.timing: NaT when an order within the horizon is less likely than not); without a
    timing model, the median-gap rule."""
    if all(column in scores for column in WINDOW_COLUMNS):
        return {c: scores[c].to_numpy("datetime64[D]") for c in WINDOW_COLUMNS}
    rule = next_purchase_window(snapshot, settings.repurchase_prospects.window_share, stats)
    return dict(zip(WINDOW_COLUMNS, rule, strict=True))


def segment_rules(
    snapshot: pd.DataFrame,
    scores: pd.DataFrame,
    settings: SegmentSettings,
    tiers: TierSettings,
    stats: Stats,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every segment's rule (before resellers are removed and the budget applies) and the
    score that ranks it (the predicted uplift for `rank_by: uplift` when the scores carry
    one). Row by row, given the shop-wide `stats`."""
    ev = feature_values(scores, "expected_value")
    spend = feature_values(snapshot, "tier_window_spend")

    def score(segment: str) -> np.ndarray:
        return _ranking_score(scores, segment)

    def line(segment: str) -> np.ndarray:
        column = ranking_target(segment).score_column
        return score_line_mask(scores, column, getattr(settings, segment), stats)

    rules = {
        "active": (active_mask(snapshot, scores, settings.active, stats), ev),
        # the probability of reaching a VIP tier within the horizon
        "rising_vip": (line("rising_vip"), score("rising_vip")),
        "vip_high_order_value": (
            vip_high_order_value_mask(snapshot, tiers, settings.vip_high_order_value, stats),
            ev,
        ),
        "vip_new_big_spender": (
            vip_new_big_spender_mask(snapshot, tiers, settings.vip_new_big_spender),
            ev,
        ),
        "vip_steady": (vip_steady_mask(snapshot, tiers, settings.vip_steady, stats), ev),
        # spend at risk: trailing spend x probability of not buying again
        "vip_at_risk": (
            vip_at_risk_mask(snapshot, scores, tiers, settings.vip_at_risk, stats),
            spend * (1 - np.nan_to_num(score("vip_at_risk"), nan=0.0)),
        ),
        # probability of a first order x what it is worth (models.worth): their expected value
        "high_price_browsers": (
            high_price_browser_mask(snapshot, settings.high_price_browsers)
            & line("high_price_browsers"),
            ev,
        ),
        "repurchase_prospects": (line("repurchase_prospects"), ev),
        RESELLERS: (
            reseller_mask(snapshot, settings.suspected_resellers, stats),
            np.nan_to_num(feature_values(snapshot, "max_units_vs_usual"), nan=0.0),
        ),
    }
    if has_uplift(scores):
        uplift = feature_values(scores, UPLIFT_COLUMN)
        for name in uplift_ranked(settings):
            rules[name] = (rules[name][0], uplift)
    return rules


def uplift_ranked(settings: SegmentSettings) -> list[str]:
    """The segments configured with `rank_by: uplift`."""
    return [name for name in SEGMENT_NAMES if getattr(settings, name).rank_by == "uplift"]


def has_uplift(scores: pd.DataFrame) -> bool:
    """Whether the scores carry a predicted uplift (the live release's uplift model won)."""
    return bool(np.isfinite(feature_values(scores, UPLIFT_COLUMN)).any())


UPLIFT_RANKING = "predicted uplift: P(buy | contacted) - P(buy | not)"
UPLIFT_FALLBACK = (
    "rank_by: uplift, but the live release has no uplift model that beat the response "
    "model: ranked as usual"
)


def ranked_by(segment: str, settings: SegmentSettings, scores: pd.DataFrame) -> str:
    """What a segment's list is ordered by, in words (the summary's `ranked_by`)."""
    uplift = has_uplift(scores)
    if uplift and segment in uplift_ranked(settings):
        return UPLIFT_RANKING
    return RANKED_BY.get(segment, "expected_value")


def segment_limit(segment: str, settings: SegmentSettings, scored: int) -> int:
    """The most members a segment may list: its share of the scored customers, and top_n."""
    limit = int(np.floor(settings.share_of(segment) * scored))
    top_n = getattr(settings, segment).top_n
    return min(limit, top_n) if top_n is not None else limit


def build_segments(
    snapshot: pd.DataFrame,
    scores: pd.DataFrame,
    settings: SegmentSettings,
    tiers: TierSettings | None = None,
    population: Population | None = None,
) -> dict[str, pd.DataFrame]:
    """Every segment by name, each ranked by its `rank_score`; resellers excluded elsewhere.

    `snapshot` and `scores` must be row-aligned (scores from models.scoring.score_customers).
    A segment whose ranking target has no model has no members. No segment lists more than
    its budget (`segments.max_share` of the scored customers by default): the best-ranked
    members of its rule are kept. `population`: the whole shop's statistics and budget cuts
    when the rows are one part of it (default: the rows are the shop).
    """
    tiers = tiers or TierSettings()
    snapshot = snapshot.reset_index(drop=True)
    scores = scores.reset_index(drop=True)
    population = population or local_population(snapshot, scores, tiers)
    rules = segment_rules(snapshot, scores, settings, tiers, population.stats)
    ids = scores["customer_id"]
    segments: dict[str, pd.DataFrame] = {}
    for name, kept in kept_members(rules, ids, settings, population).items():
        segments[name] = _members(scores, kept, rules[name][1])
    prospects = segments["repurchase_prospects"]
    where = pd.Index(scores["customer_id"]).get_indexer(prospects["customer_id"])
    dates = next_purchase_dates(snapshot, scores, settings, population.stats)
    for column, values in dates.items():
        prospects[column] = values[where]
    # resellers last, as the lists have always been ordered
    segments[RESELLERS] = segments.pop(RESELLERS)
    return segments


def kept_members(
    rules: dict[str, tuple[np.ndarray, np.ndarray]],
    customer_ids: pd.Series,
    settings: SegmentSettings,
    population: Population,
) -> dict[str, np.ndarray]:
    """Each segment's members: its rule, suspected resellers removed, cut to its budget."""
    scored = population.scored

    def budgeted(name: str, mask: np.ndarray) -> np.ndarray:
        limit = segment_limit(name, settings, scored)
        return population.within_budget(name, mask, rules[name][1], customer_ids, limit)

    reseller = budgeted(RESELLERS, rules[RESELLERS][0])
    kept = {RESELLERS: reseller}
    for name, (mask, _rank) in rules.items():
        if name != RESELLERS:
            kept[name] = budgeted(name, mask & ~reseller)
    return kept


# Which feature (and so which table) and which target's scores each rule cannot do without.
RULE_NEEDS_FEATURE = {
    "active": "gap_acceleration",
    "high_price_browsers": "high_price_views",
    RESELLERS: "max_units_vs_usual",
}
RULE_NEEDS_SCORE = ("active", "rising_vip", "high_price_browsers", "repurchase_prospects")
VIP_SEGMENTS = ("vip_high_order_value", "vip_new_big_spender", "vip_steady", "vip_at_risk")


def table_of(feature: str) -> str:
    """The contract table a feature is computed from."""
    from features.definitions import feature_definitions
    from features.snapshot import FeatureSettings

    needs = {f.name: f.needs for f in feature_definitions(FeatureSettings(), TierSettings())}
    return needs.get(feature, "orders")


def segment_notes(
    snapshot: pd.DataFrame,
    scores: pd.DataFrame,
    segments: dict[str, pd.DataFrame],
    settings: SegmentSettings,
    tiers: TierSettings | None = None,
    population: Population | None = None,
) -> dict[str, str]:
    """Why a segment is empty, or how its budget cut it: one sentence per segment that needs
    one ("needs content_views, which this data has not"; "no model for target X"; "capped at
    25% of scored customers: 1,000 of 4,210 that meet the rule")."""
    tiers = tiers or TierSettings()
    snapshot = snapshot.reset_index(drop=True)
    scores = scores.reset_index(drop=True)
    population = population or local_population(snapshot, scores, tiers)
    rules = segment_rules(snapshot, scores, settings, tiers, population.stats)
    # the resellers listed (within their own budget) are the ones the other lists lost
    listed = segments.get(RESELLERS, pd.DataFrame({"customer_id": []}))["customer_id"]
    reseller = scores["customer_id"].isin(listed).to_numpy(dtype=bool)
    scored = population.scored
    notes = {}
    for name, members in segments.items():
        feature = RULE_NEEDS_FEATURE.get(name)
        target = ranking_target(name)
        if feature is not None and feature not in snapshot:
            notes[name] = f"needs {table_of(feature)}, which this data has not"
        elif name in RULE_NEEDS_SCORE and not np.isfinite(_ranking_score(scores, name)).any():
            if target.in_population(snapshot, tiers).any():
                notes[name] = f"no model for target {target.name}"
            else:  # a model scores no one when nobody is whom it scores
                notes[name] = (
                    f"nobody to score at this cutoff: no {target.population_text} "
                    f"(the {target.name} model's population)"
                )
        elif name in VIP_SEGMENTS and not _is_vip(snapshot, tiers).any():
            notes[name] = f"no customer is in a VIP tier ({tiers.vip_tiers}) at the cutoff"
        else:
            rule = rules[name][0]
            mask = rule & ~reseller if name != RESELLERS else rule
            qualifying = int(mask.sum())
            if qualifying == 0:
                notes[name] = _empty_rule_note(int((rule & reseller).sum()))
            elif qualifying > len(members):
                share = settings.share_of(name)
                notes[name] = (
                    f"capped at {share:.0%} of {scored:,} scored customers: the best-ranked "
                    f"{len(members):,} of {qualifying:,} that meet the rule"
                )
    if not has_uplift(scores):
        for name in uplift_ranked(settings):
            notes[name] = "; ".join(filter(None, [notes.get(name), UPLIFT_FALLBACK]))
    return notes


def _empty_rule_note(resellers_meeting_rule: int) -> str:
    """An empty list: nobody meets the rule, or everyone who does is a suspected reseller
    (which on a shop where bulk buying is normal says to loosen that rule, not this one)."""
    if resellers_meeting_rule == 0:
        return "no customer meets the rule at this cutoff"
    who = (
        "the one customer who meets the rule is a suspected reseller"
        if resellers_meeting_rule == 1
        else f"all {resellers_meeting_rule:,} customers who meet the rule are suspected resellers"
    )
    return (
        f"{who}, listed apart (if bulk buying is normal here, raise "
        "suspected_resellers.min_units_vs_usual)"
    )


def write_export(
    exports_dir: Path,
    snapshot: pd.DataFrame,
    scores: pd.DataFrame,
    segments: dict[str, pd.DataFrame],
    stamp: datetime,
    summary: dict | None = None,
    summary_markdown: str | None = None,
    campaigns: CampaignPlan | None = None,
) -> Path:
    """Write every file into a fresh dated folder, then move `latest` to it in one step.

    A crash before the final rename leaves only a hidden temporary folder behind: the
    previous export and its `latest` pointer stay as they were.
    """
    exports_dir.mkdir(parents=True, exist_ok=True)
    stamped = stamp.strftime("%Y%m%dT%H%M%S")
    staging = exports_dir / f".staging-{stamped}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    snapshot.to_parquet(staging / "features.parquet", index=False)
    scores.to_parquet(staging / "scores.parquet", index=False)
    segments = with_primary(segments, scores)
    for name, members in segments.items():
        members.to_csv(staging / f"segment_{name}.csv", index=False, encoding="utf-8-sig")
        members.to_parquet(staging / f"segment_{name}.parquet", index=False)
    if summary is not None:
        text = strict_json(summary, indent=2, ensure_ascii=False)
        (staging / "summary.json").write_text(text, encoding="utf-8")
    if summary_markdown is not None:
        (staging / "summary.md").write_text(summary_markdown, encoding="utf-8")
    if campaigns is not None:
        write_campaigns(segments, campaigns, staging / "campaigns")
    final = _publish(staging, exports_dir, stamped)
    with _latest_lock(exports_dir):  # compare and repoint as one step among exports
        if not _older_than_latest(exports_dir, snapshot) or _latest_built_otherwise(
            exports_dir, summary
        ):
            _point_latest(exports_dir, final)
    return final


def _publish(staging: Path, exports_dir: Path, name: str) -> Path:
    """Rename the finished staging folder to `name`, or `name-2`, `name-3`, ... when an export
    of the same second is there. A rename never lands on a finished export (a folder with
    files refuses it), so two exports at once each get their own, and none is deleted to
    make room (`latest` may point at it)."""
    number = 1
    while True:
        candidate = exports_dir / (name if number == 1 else f"{name}-{number}")
        try:
            os.rename(staging, candidate)
            return candidate
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            number += 1


@contextlib.contextmanager
def _latest_lock(exports_dir: Path) -> Iterator[None]:
    """An exclusive lock on the exports folder itself (no lock file left beside the
    exports; released when the process dies)."""
    folder = os.open(exports_dir, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        yield
    finally:
        os.close(folder)


# summary.json's record of the settings the export's features.parquet was built with
SNAPSHOT_SETTINGS = "snapshot_settings"


def export_settings(folder: Path) -> dict | None:
    """The snapshot settings an export recorded in its summary.json (None: unrecorded)."""
    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    recorded = summary.get(SNAPSHOT_SETTINGS) if isinstance(summary, dict) else None
    return recorded if isinstance(recorded, dict) else None


def export_cutoff(folder: Path) -> pd.Timestamp | None:
    """The cutoff an export scored at (None when it cannot be read)."""
    try:
        cutoffs = pd.read_parquet(folder / "features.parquet", columns=["cutoff"])["cutoff"]
    except (OSError, ValueError, KeyError, ImportError):
        return None
    return pd.Timestamp(cutoffs.max()) if len(cutoffs) else None


def _older_than_latest(exports_dir: Path, snapshot: pd.DataFrame) -> bool:
    """Whether this export scored an earlier cutoff than the one `latest` holds: a backfill
    of a past date must not replace the current lists that marketing and the service read."""
    current = export_cutoff(exports_dir / "latest")
    if current is None or "cutoff" not in snapshot or snapshot.empty:
        return False
    return pd.Timestamp(snapshot["cutoff"].max()) < current


def _latest_built_otherwise(exports_dir: Path, summary: dict | None) -> bool:
    """Whether `latest` holds a snapshot built with other settings than this export's: the
    live release can no longer score it, so this export replaces it even at an earlier
    cutoff (a date moved back, then a feature setting changed)."""
    ours = (summary or {}).get(SNAPSHOT_SETTINGS)
    theirs = export_settings(exports_dir / "latest")
    return ours is not None and theirs is not None and ours != theirs


PRIMARY_COLUMN = "primary_segment"


def with_primary(
    segments: dict[str, pd.DataFrame], scores: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    """Each member row with the customer's primary segment (their one campaign), when the
    scores carry it."""
    if PRIMARY_COLUMN not in scores:
        return segments
    primary = scores.set_index("customer_id")[PRIMARY_COLUMN]
    return {
        name: members.assign(**{PRIMARY_COLUMN: primary.reindex(members["customer_id"]).to_numpy()})
        for name, members in segments.items()
    }


def overlap_table(segments: dict[str, pd.DataFrame], primary: pd.Series) -> pd.DataFrame:
    """Per segment: members, how many have it as their primary segment (its campaign), and
    how many it shares with every other segment (`primary` is indexed by customer id)."""
    ids = {name: pd.Index(members["customer_id"]) for name, members in segments.items()}
    rows = {}
    for name, members in ids.items():
        row = {
            "members": len(members),
            "primary": int((primary.reindex(members) == name).sum()),
        }
        row |= {f"also {other}": len(members.intersection(o)) for other, o in ids.items()}
        row.pop(f"also {name}")
        rows[name] = row
    return pd.DataFrame(rows).T.fillna(0).astype("int64") if rows else pd.DataFrame()


@dataclass(frozen=True)
class CampaignPlan:
    """How the export's lists become measurable campaigns: one per segment (resellers
    excepted), id `<segment>-<cutoff>` so a re-run assigns the same holdouts. A customer is
    in one campaign only, their primary segment's; `offers` are the rendered actions."""

    cutoff: pd.Timestamp
    settings: SegmentSettings
    offers: dict[str, str] | None = None

    def offer(self, segment: str) -> str:
        return (self.offers or {}).get(segment, self.settings.action(segment))

    def campaign_id(self, segment: str) -> str:
        return f"{segment}-{self.cutoff:%Y%m%d}"


def campaign_lists(
    segments: dict[str, pd.DataFrame], plan: CampaignPlan
) -> dict[str, pd.DataFrame]:
    """Each campaign's list: the segment's members whose primary segment it is (resellers
    and empty lists have none; nor does any segment without a holdout share)."""
    if plan.settings.holdout.share <= 0:
        return {}
    lists = {}
    for name, members in segments.items():
        if PRIMARY_COLUMN in members:
            # one campaign per customer: the list of their primary segment
            members = members[members[PRIMARY_COLUMN].eq(name).fillna(False).to_numpy(bool)]
        if name != RESELLERS and not members.empty:
            lists[name] = members
    return lists


def unmeasurable_campaigns(segments: dict[str, pd.DataFrame], plan: CampaignPlan) -> dict[str, str]:
    """Per segment whose campaign will split into fewer than `MIN_GROUP` treated or held-out
    customers: a note saying `dangol measure` will not be able to judge it."""
    from features.schema import HOLDOUT
    from models.holdout import assign_groups
    from models.measure import MIN_GROUP

    notes = {}
    for name, members in campaign_lists(segments, plan).items():
        groups = assign_groups(
            members["customer_id"].astype(str), plan.campaign_id(name), plan.settings.holdout.share
        )
        held = int((groups == HOLDOUT).sum())
        treated = len(groups) - held
        if min(held, treated) < MIN_GROUP:
            notes[name] = (
                f"its campaign splits into {treated} treated and {held} held out: too few to "
                f"measure (at least {MIN_GROUP} in each)"
            )
    return notes


def write_campaigns(
    segments: dict[str, pd.DataFrame], plan: CampaignPlan, out_dir: Path
) -> pd.DataFrame:
    """Per segment `<id>_treated.csv` (the list to contact) and `<id>_contacts.csv` (treated
    and holdout, the contract's `contacts`), and `campaigns.csv` (the contract's
    `campaigns`): append the two to the shop's tables to measure the campaigns later."""
    from features.files import write_atomic_csv
    from models.holdout import export_with_holdout

    holdout, whatif = plan.settings.holdout, plan.settings.whatif
    rows = []
    for name, members in campaign_lists(segments, plan).items():
        campaign_id = plan.campaign_id(name)
        export_with_holdout(members, campaign_id, holdout.share, plan.cutoff, out_dir)
        rows.append(
            {
                "campaign_id": campaign_id,
                "name": f"{name} {plan.cutoff:%Y-%m-%d}",
                "started_at": plan.cutoff,
                "ends_at": plan.cutoff + pd.Timedelta(days=holdout.campaign_days),
                "segment": name,
                "offer": plan.offer(name),
                "coupon_rate": whatif.coupon_rate,
                "coupon_cap": whatif.coupon_cap,
            }
        )
    table = pd.DataFrame(rows)
    if rows:
        write_atomic_csv(table, out_dir / "campaigns.csv")
    return table


def _point_latest(exports_dir: Path, target: Path) -> None:
    """Atomically repoint the `latest` symlink (rename over the old link)."""
    temporary = exports_dir / f".latest-{os.getpid()}"
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(target.name)
    os.replace(temporary, exports_dir / "latest")
