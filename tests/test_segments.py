"""Segment rules on crafted customers, the what-if arithmetic and the atomic `latest` export."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.tiers import TierSettings
from models.scoring import expected_value
from models.segments import (
    RESELLERS,
    SegmentSettings,
    WhatIfSettings,
    build_segments,
    next_purchase_window,
    write_export,
)
from models.whatif import segment_summary, segment_whatif

CUTOFF = pd.Timestamp("2026-01-01")
SCORES = ["repurchase_score", "vip_score", "first_purchase_score"]

# One crafted customer per rule, plus a reseller who would match several rules.
BASE = {
    "orders_lifetime": 3.0,
    "avg_order_value": 50_000.0,
    "recent_vs_avg_order_value": 1.0,
    "spend_trend_90d": -0.5,
    "gap_acceleration": 1.2,
    "last_gap_vs_median": 1.2,
    "tenure_days": 700.0,
    "days_since_first_order": 600.0,
    "days_since_last_order": 30.0,
    "median_gap_days": 60.0,
    "overdue_ratio": 0.5,
    "tier_window_spend": 150_000.0,
    "margin_above_tier_line": 50_000.0,
    "high_price_views": 0.0,
    "last_vs_median_viewed_price": np.nan,
    "mean_viewed_price": np.nan,
    "max_units_one_product": 2.0,
    "top_product_spend_share": 0.3,
    "tier": 4,
    "repurchase_score": 0.2,
    "vip_score": 0.05,
    "first_purchase_score": np.nan,
}
CUSTOMERS = {
    # accelerating and likely to buy: Active and a repurchase prospect
    "active": {"gap_acceleration": 0.5, "repurchase_score": 0.7},
    # rising spend, likely: Active too (ranked by expected value: larger order value first)
    "active_spend": {"spend_trend_90d": 0.8, "repurchase_score": 0.6, "avg_order_value": 90_000},
    # likely but neither faster nor spending more: only a prospect
    "prospect": {"repurchase_score": 0.35},
    "rising": {"vip_score": 0.5, "tier": 3},
    "vip_big": {
        "tier": 2,
        "vip_score": np.nan,
        "avg_order_value": 900_000,
        "tier_window_spend": 3_000_000,
        "margin_above_tier_line": 1_000_000,
    },
    "vip_new": {
        "tier": 2,
        "vip_score": np.nan,
        "tenure_days": 60,
        "tier_window_spend": 3_000_000,
        "margin_above_tier_line": 1_000_000,
    },
    "vip_steady": {
        "tier": 1,
        "vip_score": np.nan,
        "orders_lifetime": 12,
        "tier_window_spend": 7_000_000,
        "margin_above_tier_line": 2_000_000,
    },
    "vip_risk": {
        "tier": 2,
        "vip_score": np.nan,
        "tier_window_spend": 2_100_000,
        "margin_above_tier_line": 100_000,
    },
    "browser": {
        "orders_lifetime": 0,
        "avg_order_value": np.nan,
        "repurchase_score": np.nan,
        "days_since_last_order": np.nan,
        "high_price_views": 5,
        "last_vs_median_viewed_price": 1.1,
        "mean_viewed_price": 1_500_000,
        "vip_score": 0.02,
        "first_purchase_score": 0.1,
        "tier": 5,
    },
    # abnormal quantities of one product: would be Active, VIP steady, a prospect...
    "reseller": {
        "max_units_one_product": 200,
        "top_product_spend_share": 0.9,
        "gap_acceleration": 0.5,
        "repurchase_score": 0.9,
        "tier": 1,
        "orders_lifetime": 12,
        "tier_window_spend": 9_000_000,
        "margin_above_tier_line": 4_000_000,
    },
}
EXPECTED = {
    "active": ["active_spend", "active", "reseller"],
    "rising_vip": ["rising"],
    "vip_high_order_value": ["vip_big"],
    "vip_new_big_spender": ["vip_new"],
    "vip_steady": ["vip_steady", "reseller"],
    "vip_at_risk": ["vip_risk"],
    "high_price_browsers": ["browser"],
    "repurchase_prospects": ["reseller", "active", "active_spend", "prospect"],
}


def _crafted() -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = [
        {"customer_id": cid, "cutoff": CUTOFF, **(BASE | over)} for cid, over in CUSTOMERS.items()
    ]
    frame = pd.DataFrame(rows)
    frame["customer_id"] = frame["customer_id"].astype("string")
    snapshot = frame.drop(columns=SCORES)
    scores = frame[["customer_id", "cutoff", "tier", *SCORES]].copy()
    scores["expected_value"] = expected_value(snapshot, scores)
    return snapshot, scores


@pytest.fixture(scope="module")
def segments() -> dict[str, pd.DataFrame]:
    snapshot, scores = _crafted()
    return build_segments(snapshot, scores, SegmentSettings(), TierSettings())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_rule_finds_its_crafted_customers_and_never_the_reseller(
    segments: dict[str, pd.DataFrame], name: str
) -> None:
    expected = [cid for cid in EXPECTED[name] if cid != "reseller"]
    members = segments[name]
    if name in ("active", "repurchase_prospects", "vip_steady"):
        # ranked by expected value = repurchase_score x avg_order_value, best first
        ev = members["expected_value"].to_numpy()
        assert np.all(ev[:-1] >= ev[1:])
        assert sorted(members["customer_id"]) == sorted(expected)
    else:
        assert list(members["customer_id"]) == expected
    assert list(members["rank"]) == list(range(1, len(members) + 1))


def test_resellers_are_listed_apart(segments: dict[str, pd.DataFrame]) -> None:
    assert list(segments[RESELLERS]["customer_id"]) == ["reseller"]
    others = pd.concat([m for n, m in segments.items() if n != RESELLERS])
    assert "reseller" not in set(others["customer_id"])


def test_active_ranks_by_expected_value(segments: dict[str, pd.DataFrame]) -> None:
    # 0.6 x 90,000 = 54,000 beats 0.7 x 50,000 = 35,000
    assert list(segments["active"]["customer_id"]) == ["active_spend", "active"]


def test_thresholds_come_from_config() -> None:
    snapshot, scores = _crafted()
    strict = SegmentSettings.model_validate({"active": {"min_score": 0.65}})
    members = build_segments(snapshot, scores, strict, TierSettings())["active"]
    assert list(members["customer_id"]) == ["active"]


def test_next_purchase_window_is_last_order_plus_median_gap() -> None:
    snapshot = pd.DataFrame(
        {
            "cutoff": [CUTOFF] * 3,
            "days_since_last_order": [30.0, 100.0, 10.0],
            "median_gap_days": [60.0, 40.0, np.nan],  # one-order buyer: peers' median gap
        }
    )
    expected, start, end = next_purchase_window(snapshot, share=0.25)
    assert str(expected[0]) == "2026-01-31"  # 30 days ago + 60
    assert str(start[0]) == "2026-01-16" and str(end[0]) == "2026-02-15"
    # overdue: the window starts at the cutoff, not in the past
    assert str(start[1]) == "2026-01-01"
    assert str(expected[2]) == "2026-02-10"  # 10 days ago + median(60, 40) = 50 days


def test_whatif_arithmetic() -> None:
    settings = WhatIfSettings(uplifts_pp=[5], coupon_rate=0.1, coupon_cap=3_000)
    (row,) = segment_whatif(np.array([0.2, 0.4]), np.array([10_000.0, 50_000.0]), settings)
    assert row["baseline_rate"] == pytest.approx(0.3)
    assert row["extra_buyers"] == pytest.approx(0.1)  # 5 pp of 2 members
    assert row["extra_revenue"] == pytest.approx(0.05 * 60_000)
    # coupons: min(1,000, 3,000) + min(5,000, 3,000) = 4,000, used by 35% of members
    assert row["coupon_cost"] == pytest.approx(0.35 * 4_000)


def test_summary_has_sizes_actions_and_whatif(segments: dict[str, pd.DataFrame]) -> None:
    snapshot, _ = _crafted()
    summary, markdown = segment_summary(segments, snapshot, SegmentSettings(), "KRW")
    active = summary["segments"]["active"]
    assert active["members"] == 2
    assert [w["uplift_pp"] for w in active["whatif"]] == [3, 5, 7]
    assert (
        "whatif" not in summary["segments"][RESELLERS]
        or not summary["segments"][RESELLERS]["whatif"]
    )
    assert "₩" in markdown and "+7 pp" in markdown


def _export(root: Path, stamp: str, marker: float) -> Path:
    snapshot, scores = _crafted()
    scores = scores.assign(expected_value=marker)
    segments = {"active": scores.head(2).assign(reason_1="최근 30일간 3회 주문")}
    return write_export(
        root, snapshot, scores, segments, datetime.fromisoformat(stamp), summary={"marker": marker}
    )


def test_export_moves_latest_only_when_complete(tmp_path: Path, monkeypatch) -> None:
    first = _export(tmp_path, "2026-01-01T00:00:00", 1.0)
    latest = tmp_path / "latest"
    assert latest.resolve() == first.resolve()
    # CSV with a BOM so spreadsheet tools read Korean right
    raw = (latest / "segment_active.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert "최근 30일간" in raw.decode("utf-8-sig")
    assert (latest / "segment_active.parquet").exists() and (latest / "summary.json").exists()

    # a crash while writing the second export's segment files
    original = pd.DataFrame.to_parquet

    def crash_on_segments(self, path, *args, **kwargs):
        if "segment_" in str(path):
            raise OSError("disk full")
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", crash_on_segments)
    with pytest.raises(OSError, match="disk full"):
        _export(tmp_path, "2026-01-02T00:00:00", 2.0)
    monkeypatch.undo()
    assert latest.resolve() == first.resolve()
    assert pd.read_parquet(latest / "scores.parquet")["expected_value"].eq(1.0).all()
    assert not (tmp_path / "20260102T000000").exists()

    second = _export(tmp_path, "2026-01-03T00:00:00", 3.0)
    assert latest.resolve() == second.resolve()
    assert pd.read_parquet(latest / "scores.parquet")["expected_value"].eq(3.0).all()
    assert first.exists(), "older exports stay for comparison"
