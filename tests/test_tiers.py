"""Membership tiers: absolute and quantile lines, tier at any date, migration matrix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.snapshot import FeatureSettings, build_features
from features.tiers import NEW, TierSettings, lines_at, migration_matrix, tier_of_spend, tiers_at
from tests.test_features_oracle import random_shop

KRW = TierSettings()


@pytest.mark.parametrize(
    ("spend", "tier"),
    [
        (0, 5),
        (99_999, 5),
        (100_000, 4),  # a line is reached at exactly its amount
        (599_999, 4),
        (600_000, 3),
        (2_000_000, 2),
        (4_999_999, 2),
        (5_000_000, 1),
        (1e12, 1),
    ],
)
def test_absolute_krw_tiers_of_design_section_1(spend: float, tier: int) -> None:
    assert tier_of_spend(np.array([spend]), KRW)[0] == tier


def test_quantile_tiers_follow_the_spend_distribution() -> None:
    tiers = TierSettings(basis="quantile", thresholds=[3, 2, 1], quantiles=[0.9, 0.5, 0.2])
    spend = np.concatenate([np.zeros(50), np.arange(1, 101, dtype="float64")])
    tier = tier_of_spend(spend, tiers)
    assert (tier[:50] == 4).all()  # no spend: lowest tier
    spenders = tier[50:]
    assert (spenders == 1).sum() == 10  # top 10% of spenders
    assert ((spenders <= 2).sum()) == 50
    assert np.all(np.diff(spenders) <= 0)  # more spend never means a lower tier
    assert lines_at(np.zeros(3), tiers) == [np.inf] * 3


def test_quantile_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="one quantile per threshold"):
        TierSettings(basis="quantile", thresholds=[3, 2, 1], quantiles=[0.9, 0.5])
    with pytest.raises(ValueError, match="descend strictly"):
        TierSettings(basis="quantile", thresholds=[3, 2, 1], quantiles=[0.5, 0.9, 0.1])


def test_tiers_at_matches_the_feature_engine_at_any_date() -> None:
    tables = random_shop(21)
    tiers = TierSettings(window_days=60, thresholds=[3000, 1200, 400, 100])
    for when in pd.date_range("2025-02-01", "2026-02-01", freq="37D"):
        direct = tiers_at(tables.orders, when, tiers)
        frame = build_features(tables, [when], FeatureSettings(), tiers)
        buyers = frame[frame["orders_lifetime"] > 0][["customer_id", "tier"]]
        merged = direct.merge(buyers, on="customer_id", suffixes=("", "_engine"))
        assert len(merged) == len(direct)
        assert (merged["tier"] == merged["tier_engine"]).all()


def test_migration_matrix_counts_and_shares() -> None:
    orders = pd.DataFrame(
        {
            "order_id": pd.array(["1", "2", "3", "4", "5"], dtype="string"),
            "customer_id": pd.array(["a", "b", "b", "c", "d"], dtype="string"),
            "ordered_at": pd.to_datetime(
                ["2025-01-10", "2025-01-20", "2025-06-10", "2025-06-20", "2025-06-30"]
            ),
            "amount": [700_000.0, 3_000_000.0, 2_500_000.0, 150_000.0, 50_000.0],
        }
    )
    counts, shares = migration_matrix(orders, "2025-02-01", "2025-08-01", KRW)
    # a: tier 3 -> 5 (window ran out); b: 2 -> 2 (re-bought); c, d: new
    assert counts.loc[3, 5] == 1 and counts.loc[2, 2] == 1
    assert counts.loc[NEW, 4] == 1 and counts.loc[NEW, 5] == 1
    assert counts.to_numpy().sum() == 4
    assert shares.loc[NEW, 4] == pytest.approx(0.5)
    assert shares.loc[3].sum() == pytest.approx(1.0)
    assert shares.loc[1].isna().all()  # nobody started in tier 1
    members = pd.DataFrame(
        {
            "customer_id": pd.array(["a", "e"], dtype="string"),
            "signed_up_at": pd.to_datetime(["2024-12-01", "2025-01-05"]),
        }
    )
    counts, _ = migration_matrix(orders, "2025-02-01", "2025-08-01", KRW, members)
    assert counts.loc[5, 5] == 1  # e: signed up, never bought
    with pytest.raises(ValueError, match="start < end"):
        migration_matrix(orders, "2025-07-01", "2025-02-01", KRW)


def test_quantile_tiers_in_features_and_labels_use_each_dates_own_lines() -> None:
    from features.snapshot import LabelSettings, training_frame

    tables = random_shop(22)
    tiers = TierSettings(
        window_days=90, basis="quantile", thresholds=[3, 2, 1], quantiles=[0.9, 0.6, 0.3]
    )
    cutoffs = list(pd.date_range("2025-03-01", "2025-12-01", freq="61D"))
    frame = training_frame(tables, cutoffs, FeatureSettings(), LabelSettings(), tiers)
    for _, rows in frame.groupby("cutoff"):
        spend = rows["tier_window_spend"].to_numpy()
        lines = lines_at(spend, tiers)
        assert (rows["tier"].to_numpy() == tier_of_spend(spend, tiers, lines)).all()
        spenders = rows[rows["tier_window_spend"] > 0]
        top = (spenders["tier"] == 1).mean()
        assert 0.0 < top <= 0.2  # roughly the top decile of that date's spenders
        assert rows.loc[rows["tier"] <= 2, "vip_conversion"].isna().all()
