"""Scores at a cutoff, ranked segments and their atomic export (DESIGN §3.5)."""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from features.tiers import TierSettings
from models.train import CalibratedBooster

SCORE_COLUMNS = {
    "repurchase": "repurchase_score",
    "vip_conversion": "vip_score",
    "first_purchase": "first_purchase_score",
}


class ActiveRule(BaseModel):
    """Active customers: a faster cycle or rising spend, and a high repurchase propensity."""

    model_config = ConfigDict(extra="forbid")

    min_repurchase_score: float = Field(0.4, ge=0, le=1)
    max_gap_acceleration: float = Field(0.9, gt=0)
    min_order_value_rise: float = Field(1.1, gt=0)


class RisingVipRule(BaseModel):
    """Non-VIP customers with a high probability of reaching a VIP tier within the horizon."""

    model_config = ConfigDict(extra="forbid")

    min_vip_score: float = Field(0.2, ge=0, le=1)


class SegmentSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    active: ActiveRule = ActiveRule()
    rising_vip: RisingVipRule = RisingVipRule()


def score_customers(
    snapshot: pd.DataFrame, models: dict[str, CalibratedBooster], tiers: TierSettings
) -> pd.DataFrame:
    """Both scores for every customer of the snapshot, NaN outside each model's population."""
    scores = snapshot[["customer_id", "cutoff", "tier"]].copy()
    has_ordered = snapshot["orders_lifetime"].to_numpy() > 0
    not_vip = ~snapshot["tier"].isin(tiers.vip_tiers).to_numpy()
    populations = {
        "repurchase": has_ordered,
        "vip_conversion": not_vip,
        "first_purchase": ~has_ordered,
    }
    for column in SCORE_COLUMNS.values():
        scores[column] = np.nan  # a target without a model has no score
    for target, model in models.items():
        proba = model.predict_proba(snapshot)
        scores[SCORE_COLUMNS[target]] = np.where(populations[target], proba, np.nan)
    aov = snapshot["avg_order_value"].to_numpy()
    scores["expected_value"] = scores["repurchase_score"].to_numpy() * aov
    return scores


def _ranked(members: pd.DataFrame, by: str) -> pd.DataFrame:
    ranked = members.sort_values([by, "customer_id"], ascending=[False, True], ignore_index=True)
    ranked.insert(0, "rank", np.arange(1, len(ranked) + 1))
    return ranked


def active_segment(snapshot: pd.DataFrame, scores: pd.DataFrame, rule: ActiveRule) -> pd.DataFrame:
    """Accelerating or rising-spend buyers with high repurchase propensity, by expected value."""
    accelerating = (snapshot["gap_acceleration"] <= rule.max_gap_acceleration) | (
        snapshot["last_gap_vs_median"] <= rule.max_gap_acceleration
    )
    rising = (snapshot["recent_vs_avg_order_value"] >= rule.min_order_value_rise) | (
        snapshot["spend_trend_90d"] > 0
    )
    likely = scores["repurchase_score"] >= rule.min_repurchase_score
    members = scores[(accelerating | rising).to_numpy() & likely.to_numpy()]
    return _ranked(members, "expected_value")


def rising_vip_segment(scores: pd.DataFrame, rule: RisingVipRule) -> pd.DataFrame:
    """Non-VIPs most likely to climb into a VIP tier, by VIP probability."""
    return _ranked(scores[scores["vip_score"] >= rule.min_vip_score], "vip_score")


def build_segments(
    snapshot: pd.DataFrame, scores: pd.DataFrame, settings: SegmentSettings
) -> dict[str, pd.DataFrame]:
    """Every segment by name, each ranked."""
    return {
        "active": active_segment(snapshot, scores, settings.active),
        "rising_vip": rising_vip_segment(scores, settings.rising_vip),
    }


def write_export(
    exports_dir: Path,
    snapshot: pd.DataFrame,
    scores: pd.DataFrame,
    segments: dict[str, pd.DataFrame],
    stamp: datetime,
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
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    _point_latest(exports_dir, final)
    return final


def _point_latest(exports_dir: Path, target: Path) -> None:
    """Atomically repoint the `latest` symlink (rename over the old link)."""
    temporary = exports_dir / f".latest-{os.getpid()}"
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(target.name)
    os.replace(temporary, exports_dir / "latest")
