"""Scores at a cutoff, ranked segments and their atomic export (DESIGN §1, §3.5).

Every segment is a rule over the feature snapshot and the scores, ranked by an explicit
score (mostly expected value = probability x expected order value). Which target's score a
segment uses, ranks by and is explained by is `features.targets.ranking_target(segment)`;
the rules here name no target. Suspected resellers are found first and removed from every
other segment. Rules, thresholds and recommended actions are configuration (`segments:`).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from features.targets import ranking_target
from features.tiers import TierSettings

RESELLERS = "suspected_resellers"
# Reasons say what raises the ranking score (+1), or for a list ranked by a risk, what
# lowers the probability of buying again (-1).
RAISES, LOWERS = 1, -1


class ActiveRule(BaseModel):
    """Active customers: a faster cycle or rising spend, and a high repurchase propensity."""

    model_config = ConfigDict(extra="forbid")

    min_score: float = Field(0.4, ge=0, le=1)
    max_gap_acceleration: float = Field(0.9, gt=0)
    min_order_value_rise: float = Field(1.1, gt=0)
    action: str = "Send a '₩X+ purchase' discount to raise order value while they are buying fast"


class RisingVipRule(BaseModel):
    """Non-VIP customers with a high probability of reaching a VIP tier within the horizon."""

    model_config = ConfigDict(extra="forbid")

    min_score: float = Field(0.2, ge=0, le=1)
    action: str = "Show how close the VIP tier is; offer a tier-up bonus on the next order"


class VipHighOrderValueRule(BaseModel):
    """VIPs whose average order is far above other VIPs' median."""

    model_config = ConfigDict(extra="forbid")

    min_aov_vs_vip_median: float = Field(1.5, gt=0)
    action: str = "Early access to high-price launches and partner offers"


class VipNewBigSpenderRule(BaseModel):
    """VIPs who joined recently and spent big quickly."""

    model_config = ConfigDict(extra="forbid")

    max_tenure_days: float = Field(180, gt=0)
    action: str = "Welcome-to-VIP pack and a second-purchase coupon to build the habit"


class VipSteadyRule(BaseModel):
    """Long-standing VIPs who keep buying (the loyal core)."""

    model_config = ConfigDict(extra="forbid")

    min_days_since_first_order: float = Field(365, gt=0)
    min_orders: int = Field(4, ge=1)
    action: str = "Gifts or coupon packs that thank long-time VIPs"


class VipAtRiskRule(BaseModel):
    """VIPs close to the downgrade line, or overdue, with a weak repurchase propensity."""

    model_config = ConfigDict(extra="forbid")

    max_margin_share: float = Field(0.25, ge=0)
    min_overdue_ratio: float = Field(1.5, gt=0)
    max_score: float = Field(0.6, ge=0, le=1)
    action: str = "Remind them of tier benefits and the spend needed to keep the tier"


class HighPriceBrowserRule(BaseModel):
    """Members who never bought but keep viewing high-price products."""

    model_config = ConfigDict(extra="forbid")

    min_high_price_views: int = Field(2, ge=1)
    min_last_vs_median_viewed_price: float = Field(0.8, ge=0)
    action: str = "First-purchase coupon on the high-price item they viewed (match competitors)"


class RepurchaseProspectRule(BaseModel):
    """Buyers likely to buy again, with the expected window of the next purchase."""

    model_config = ConfigDict(extra="forbid")

    min_score: float = Field(0.3, ge=0, le=1)
    window_share: float = Field(0.25, ge=0, le=1)
    action: str = "Time a coupon to arrive just before the expected next purchase"


class ResellerRule(BaseModel):
    """One product bought in abnormal quantities: listed apart, excluded from campaigns."""

    model_config = ConfigDict(extra="forbid")

    min_units_one_product: float = Field(20, gt=0)
    min_top_product_spend_share: float = Field(0.5, ge=0, le=1)
    action: str = "Exclude from campaigns; review manually"


class WhatIfSettings(BaseModel):
    """Campaign what-if: purchase-rate uplifts and the coupon's cost."""

    model_config = ConfigDict(extra="forbid")

    uplifts_pp: list[float] = Field(default=[3, 5, 7], min_length=1)
    coupon_rate: float = Field(0.1, ge=0, le=1)
    coupon_cap: float = Field(30_000, ge=0)


class HoldoutSettings(BaseModel):
    """Every exported list holds out a random share, so the campaign can be measured later
    (`dangol measure --campaign <segment>-<cutoff>`); 0 turns holdouts off."""

    model_config = ConfigDict(extra="forbid")

    share: float = Field(0.1, ge=0, lt=1)
    # the attribution window written to campaigns.csv: cutoff .. cutoff + days
    campaign_days: int = Field(30, gt=0)


class ReportSettings(BaseModel):
    """The analyst report: where it goes and how many customers its SHAP plots use."""

    model_config = ConfigDict(extra="forbid")

    out_dir: Path = Path("../outputs/reports")
    shap_sample: int = Field(2000, ge=10)
    examples_per_segment: int = Field(1, ge=0)


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
    RESELLERS: "max units of one product",
}


class SegmentSettings(BaseModel):
    """Segment rules, recommended actions, reason language and the campaign what-if.

    `priority` orders the segments for a customer's primary segment (the one campaign a
    customer is in); every membership is kept as a flag in scores.parquet.
    """

    model_config = ConfigDict(extra="forbid")

    language: Literal["en", "ko"] = "en"
    reasons: int = Field(3, ge=1, le=10)
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
        return getattr(self, segment).action


def reason_direction(segment: str) -> int:
    """+1: reasons are what raises the ranking target's score; -1: what lowers it."""
    return REASON_DIRECTION.get(segment, RAISES)


def _ranking_score(scores: pd.DataFrame, segment: str) -> np.ndarray:
    """The score of the target that ranks `segment` (NaN where it has none)."""
    return _col(scores, ranking_target(segment).score_column)


def _col(snapshot: pd.DataFrame, name: str) -> np.ndarray:
    """A feature as float array; all-NaN when the feature is absent (optional table missing)."""
    if name not in snapshot:
        return np.full(len(snapshot), np.nan)
    return snapshot[name].to_numpy(dtype="float64", na_value=np.nan)


def _ranked(members: pd.DataFrame, by: str) -> pd.DataFrame:
    ranked = members.sort_values([by, "customer_id"], ascending=[False, True], ignore_index=True)
    ranked.insert(0, "rank", np.arange(1, len(ranked) + 1))
    return ranked


def _members(scores: pd.DataFrame, mask: np.ndarray, rank_score: np.ndarray) -> pd.DataFrame:
    members = scores[mask].copy()
    members["rank_score"] = rank_score[mask]
    return _ranked(members, "rank_score")


def reseller_mask(snapshot: pd.DataFrame, rule: ResellerRule) -> np.ndarray:
    units = _col(snapshot, "max_units_one_product")
    share = _col(snapshot, "top_product_spend_share")
    return (units >= rule.min_units_one_product) & (share >= rule.min_top_product_spend_share)


def _is_vip(snapshot: pd.DataFrame, tiers: TierSettings) -> np.ndarray:
    return snapshot["tier"].isin(tiers.vip_tiers).to_numpy()


def active_mask(snapshot: pd.DataFrame, scores: pd.DataFrame, rule: ActiveRule) -> np.ndarray:
    accelerating = (_col(snapshot, "gap_acceleration") <= rule.max_gap_acceleration) | (
        _col(snapshot, "last_gap_vs_median") <= rule.max_gap_acceleration
    )
    rising = (_col(snapshot, "recent_vs_avg_order_value") >= rule.min_order_value_rise) | (
        _col(snapshot, "spend_trend_90d") > 0
    )
    likely = _ranking_score(scores, "active") >= rule.min_score
    return (accelerating | rising) & likely


def vip_high_order_value_mask(
    snapshot: pd.DataFrame, tiers: TierSettings, rule: VipHighOrderValueRule
) -> np.ndarray:
    vip = _is_vip(snapshot, tiers)
    aov = _col(snapshot, "avg_order_value")
    median = np.nanmedian(aov[vip]) if vip.any() else np.nan
    return vip & (aov >= rule.min_aov_vs_vip_median * median)


def vip_new_big_spender_mask(
    snapshot: pd.DataFrame, tiers: TierSettings, rule: VipNewBigSpenderRule
) -> np.ndarray:
    return _is_vip(snapshot, tiers) & (_col(snapshot, "tenure_days") <= rule.max_tenure_days)


def vip_steady_mask(snapshot: pd.DataFrame, tiers: TierSettings, rule: VipSteadyRule) -> np.ndarray:
    long = _col(snapshot, "days_since_first_order") >= rule.min_days_since_first_order
    return _is_vip(snapshot, tiers) & long & (_col(snapshot, "orders_lifetime") >= rule.min_orders)


def vip_at_risk_mask(
    snapshot: pd.DataFrame, scores: pd.DataFrame, tiers: TierSettings, rule: VipAtRiskRule
) -> np.ndarray:
    spend = _col(snapshot, "tier_window_spend")
    margin = _col(snapshot, "margin_above_tier_line")
    line = spend - margin
    near_line = margin <= rule.max_margin_share * np.where(line > 0, line, np.nan)
    overdue = _col(snapshot, "overdue_ratio") >= rule.min_overdue_ratio
    weak = ~(_ranking_score(scores, "vip_at_risk") > rule.max_score)
    return _is_vip(snapshot, tiers) & (near_line | overdue) & weak


def high_price_browser_mask(snapshot: pd.DataFrame, rule: HighPriceBrowserRule) -> np.ndarray:
    never_bought = ~(_col(snapshot, "orders_lifetime") > 0)
    many = _col(snapshot, "high_price_views") >= rule.min_high_price_views
    still = _col(snapshot, "last_vs_median_viewed_price") >= rule.min_last_vs_median_viewed_price
    return never_bought & many & still


def next_purchase_window(
    snapshot: pd.DataFrame, share: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected next purchase = last order + the customer's median gap (peers' median gap when
    they have one order); the window is that day +- `share` of the gap, never before the cutoff.
    Returns (expected, window start, window end) as datetime64 arrays."""
    gap = _col(snapshot, "median_gap_days")
    peers = np.nanmedian(gap) if np.isfinite(gap).any() else 30.0
    gap = np.where(np.isfinite(gap), gap, peers)
    cutoff = snapshot["cutoff"].to_numpy("datetime64[ns]")
    last = cutoff - (_col(snapshot, "days_since_last_order") * 86400e9).astype("timedelta64[ns]")
    days = np.timedelta64(86_400_000_000_000, "ns")
    expected = last + (gap * days.astype("float64")).astype("timedelta64[ns]")
    spread = (share * gap * days.astype("float64")).astype("timedelta64[ns]")
    start = np.maximum(expected - spread, cutoff)
    end = np.maximum(expected + spread, cutoff + days)
    day = "datetime64[D]"
    return expected.astype(day), start.astype(day), end.astype(day)


WINDOW_COLUMNS = ("expected_next_purchase", "next_purchase_from", "next_purchase_to")


def next_purchase_dates(
    snapshot: pd.DataFrame, scores: pd.DataFrame, settings: SegmentSettings
) -> dict[str, np.ndarray]:
    """The learned next-order date and window where the scores carry them (the timing model,
    models.timing: NaT when an order within the horizon is less likely than not); without a
    timing model, the median-gap rule."""
    if all(column in scores for column in WINDOW_COLUMNS):
        return {c: scores[c].to_numpy("datetime64[D]") for c in WINDOW_COLUMNS}
    rule = next_purchase_window(snapshot, settings.repurchase_prospects.window_share)
    return dict(zip(WINDOW_COLUMNS, rule, strict=True))


def build_segments(
    snapshot: pd.DataFrame,
    scores: pd.DataFrame,
    settings: SegmentSettings,
    tiers: TierSettings | None = None,
) -> dict[str, pd.DataFrame]:
    """Every segment by name, each ranked by its `rank_score`; resellers excluded elsewhere.

    `snapshot` and `scores` must be row-aligned (scores from models.scoring.score_customers).
    A segment whose ranking target has no model has no members.
    """
    tiers = tiers or TierSettings()
    snapshot = snapshot.reset_index(drop=True)
    scores = scores.reset_index(drop=True)
    reseller = reseller_mask(snapshot, settings.suspected_resellers)
    keep = ~reseller
    ev = _col(scores, "expected_value")
    spend = _col(snapshot, "tier_window_spend")

    def score(segment: str) -> np.ndarray:
        return _ranking_score(scores, segment)

    rules: dict[str, tuple[Callable[[], np.ndarray], np.ndarray]] = {
        "active": (lambda: active_mask(snapshot, scores, settings.active), ev),
        # the probability of reaching a VIP tier within the horizon
        "rising_vip": (
            lambda: score("rising_vip") >= settings.rising_vip.min_score,
            score("rising_vip"),
        ),
        "vip_high_order_value": (
            lambda: vip_high_order_value_mask(snapshot, tiers, settings.vip_high_order_value),
            ev,
        ),
        "vip_new_big_spender": (
            lambda: vip_new_big_spender_mask(snapshot, tiers, settings.vip_new_big_spender),
            ev,
        ),
        "vip_steady": (lambda: vip_steady_mask(snapshot, tiers, settings.vip_steady), ev),
        # spend at risk: trailing spend x probability of not buying again
        "vip_at_risk": (
            lambda: vip_at_risk_mask(snapshot, scores, tiers, settings.vip_at_risk),
            spend * (1 - np.nan_to_num(score("vip_at_risk"), nan=0.0)),
        ),
        # probability of a first order x the mean viewed price: their expected value
        "high_price_browsers": (
            lambda: (
                high_price_browser_mask(snapshot, settings.high_price_browsers)
                & np.isfinite(score("high_price_browsers"))
            ),
            ev,
        ),
        "repurchase_prospects": (
            lambda: score("repurchase_prospects") >= settings.repurchase_prospects.min_score,
            ev,
        ),
    }
    segments: dict[str, pd.DataFrame] = {}
    for name, (mask, rank_score) in rules.items():
        segments[name] = _members(scores, mask() & keep, rank_score)
    prospects = segments["repurchase_prospects"]
    where = pd.Index(scores["customer_id"]).get_indexer(prospects["customer_id"])
    for column, dates in next_purchase_dates(snapshot, scores, settings).items():
        prospects[column] = dates[where]
    units = _col(snapshot, "max_units_one_product")
    segments[RESELLERS] = _members(scores, reseller, np.nan_to_num(units, nan=0.0))
    return segments


def expected_order_value(snapshot: pd.DataFrame) -> np.ndarray:
    """Value of one more order: own average order, else the mean viewed price."""
    aov = _col(snapshot, "avg_order_value")
    return np.where(np.isfinite(aov), aov, _col(snapshot, "mean_viewed_price"))


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
    final = exports_dir / stamp.strftime("%Y%m%dT%H%M%S")
    staging = exports_dir / f".staging-{final.name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    snapshot.to_parquet(staging / "features.parquet", index=False)
    scores.to_parquet(staging / "scores.parquet", index=False)
    for name, members in segments.items():
        members.to_csv(staging / f"segment_{name}.csv", index=False, encoding="utf-8-sig")
        members.to_parquet(staging / f"segment_{name}.parquet", index=False)
    if summary is not None:
        text = json.dumps(summary, indent=2, ensure_ascii=False, default=str)
        (staging / "summary.json").write_text(text, encoding="utf-8")
    if summary_markdown is not None:
        (staging / "summary.md").write_text(summary_markdown, encoding="utf-8")
    if campaigns is not None:
        write_campaigns(segments, campaigns, staging / "campaigns")
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    _point_latest(exports_dir, final)
    return final


@dataclass(frozen=True)
class CampaignPlan:
    """How the export's lists become measurable campaigns: one per segment (resellers
    excepted), id `<segment>-<cutoff>` so a re-run assigns the same holdouts."""

    cutoff: pd.Timestamp
    settings: SegmentSettings

    def campaign_id(self, segment: str) -> str:
        return f"{segment}-{self.cutoff:%Y%m%d}"


def write_campaigns(
    segments: dict[str, pd.DataFrame], plan: CampaignPlan, out_dir: Path
) -> pd.DataFrame:
    """Per segment `<id>_treated.csv` (the list to contact) and `<id>_contacts.csv` (treated
    and holdout, the contract's `contacts`), and `campaigns.csv` (the contract's
    `campaigns`): append the two to the shop's tables to measure the campaigns later."""
    from models.holdout import export_with_holdout, write_atomic_csv

    holdout, whatif = plan.settings.holdout, plan.settings.whatif
    rows = []
    for name, members in segments.items():
        if name == RESELLERS or holdout.share <= 0 or members.empty:
            continue
        campaign_id = plan.campaign_id(name)
        export_with_holdout(members, campaign_id, holdout.share, plan.cutoff, out_dir)
        rows.append(
            {
                "campaign_id": campaign_id,
                "name": f"{name} {plan.cutoff:%Y-%m-%d}",
                "started_at": plan.cutoff,
                "ends_at": plan.cutoff + pd.Timedelta(days=holdout.campaign_days),
                "segment": name,
                "offer": plan.settings.action(name),
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
