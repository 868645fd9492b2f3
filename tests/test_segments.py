"""Segment rules on crafted customers, the what-if arithmetic and the atomic `latest` export."""

from __future__ import annotations

import json
import types
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.schema import ShopTables
from features.snapshot import FeatureSettings, build_features
from features.targets import TARGETS
from features.tiers import TierSettings
from models.release import ReleaseMismatchError
from models.scoring import (
    ORDER_VALUE,
    expected_value,
    memberships,
    order_values,
    primary_segments,
)
from models.segments import (
    RESELLERS,
    ActiveRule,
    ResellerRule,
    SegmentSettings,
    WhatIfSettings,
    build_segments,
    export_cutoff,
    next_purchase_window,
    render_action,
    reseller_mask,
    reseller_signals,
    segment_notes,
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
    "max_units_vs_usual": 1.0,
    "spend_lifetime": 150_000.0,
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
        "max_units_vs_usual": 50.0,
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
    scores[ORDER_VALUE] = order_values(snapshot, {}, TierSettings())
    scores["expected_value"] = expected_value(scores)
    return snapshot, scores


# The crafted rows test each rule's logic with absolute lines and no size budget (ten
# customers are no shop to take percentiles of); the relative defaults are tested below on
# populations.
ABSOLUTE = SegmentSettings.model_validate(
    {
        "max_share": 1.0,
        "active": {"min_score": 0.4},
        "rising_vip": {"min_score": 0.2},
        "vip_steady": {"min_days_since_first_order": 365, "min_orders": 4},
        "vip_at_risk": {"max_score": 0.6, "max_lift": None},
        "repurchase_prospects": {"min_score": 0.3},
        "suspected_resellers": {"max_share": 1.0},
    }
)


@pytest.fixture(scope="module")
def segments() -> dict[str, pd.DataFrame]:
    snapshot, scores = _crafted()
    return build_segments(snapshot, scores, ABSOLUTE, TierSettings())


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
    strict = ABSOLUTE.model_copy(update={"active": ActiveRule(min_score=0.65)})
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
    # no cap unless the shop sets one (₩30,000 meant nothing to a shop in dollars)
    (uncapped,) = segment_whatif(
        np.array([0.2, 0.4]), np.array([10_000.0, 50_000.0]), WhatIfSettings(uplifts_pp=[5])
    )
    assert WhatIfSettings().coupon_cap is None
    assert uncapped["coupon_cost"] == pytest.approx(0.35 * 6_000)


def test_whatif_says_how_far_the_rate_could_move_and_keeps_assumptions_beside_a_wide_measure():
    """At a 99% base rate +3/5/7 pp all move the rate to 100%: each row says what it
    applied. A campaign measured on a holdout of three (+10.5 pp, −45.8 to +15.1) says less
    than the assumptions, so they stay beside it; a tight measurement stands alone."""
    from models.whatif import uplift_text, whatif_table

    settings = WhatIfSettings(uplifts_pp=[3, 5, 7])
    rows = segment_whatif(np.array([0.99, 0.99]), np.array([100.0, 100.0]), settings)
    assert [round(r["applied_pp"], 6) for r in rows] == [1.0, 1.0, 1.0]
    text = uplift_text(pd.Series(rows[2] | {"members": 2}))
    assert text == "+7 pp (applied +1.0: the rate reaches 100%)"
    members = pd.DataFrame({"customer_id": ["a", "b"]})
    rates = pd.Series([0.3, 0.5], index=["a", "b"])
    order_value = pd.Series([100.0, 200.0], index=["a", "b"])
    measured = pd.DataFrame(
        {"segment": ["active"] * 3, "campaign_id": ["wide", "tight", "lopsided"]}
        | {"uplift_pp": [10.5, 4.0, 8.0], "ci_low_pp": [-45.8, 1.5, -0.5]}
        | {"ci_high_pp": [15.1, 6.5, 13.0]}
    )
    # lopsided: 5 pp wide above but 8.5 below the estimate, more than the largest 7 pp
    for campaign, sources in (("wide", 4), ("tight", 1), ("lopsided", 4)):
        found = measured[measured["campaign_id"] == campaign]
        table = whatif_table({"active": members}, rates, order_value, settings, found)
        assert len(table) == sources and table["source"].iloc[0] == f"measured {campaign}"
    # a revenue interval resampling could not bound says so; an unmeasured one is not shown
    from models.whatif import revenue_text

    row = pd.Series(rows[0] | {"extra_revenue_ci_low": -np.inf, "extra_revenue_ci_high": 50.0})
    assert revenue_text(row, "GBP", "en").endswith("(unbounded, £50.00)")
    assert "(" not in revenue_text(pd.Series(rows[0]), "GBP", "en")


def test_summary_has_sizes_actions_and_whatif(segments: dict[str, pd.DataFrame]) -> None:
    snapshot, scores = _crafted()
    summary, markdown = segment_summary(segments, snapshot, scores, ABSOLUTE, "KRW")
    active = summary["segments"]["active"]
    assert active["members"] == 2
    assert [w["uplift_pp"] for w in active["whatif"]] == [3, 5, 7]
    assert (
        "whatif" not in summary["segments"][RESELLERS]
        or not summary["segments"][RESELLERS]["whatif"]
    )
    assert "₩" in markdown and "+7 pp" in markdown
    # an empty list has nobody to contact: no what-if rows of zeros
    empty = {**segments, "vip_at_risk": segments["vip_at_risk"].iloc[:0]}
    summary, _ = segment_summary(empty, snapshot, scores, ABSOLUTE, "KRW")
    assert summary["segments"]["vip_at_risk"]["members"] == 0
    assert summary["segments"]["vip_at_risk"]["whatif"] == []
    # every list empty (a date before anyone bought): still a summary, no crash
    nothing = {name: members.iloc[:0] for name, members in segments.items()}
    summary, _ = segment_summary(nothing, snapshot, scores, ABSOLUTE, "KRW")
    assert all(entry["whatif"] == [] for entry in summary["segments"].values())


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


def test_an_export_of_the_same_second_never_removes_the_one_latest_shows(tmp_path: Path) -> None:
    first = _export(tmp_path, "2026-01-01T00:00:00", 1.0)
    second = _export(tmp_path, "2026-01-01T00:00:00", 2.0)
    assert second.name == "20260101T000000-2" and first.exists()
    assert (tmp_path / "latest").resolve() == second.resolve()
    assert pd.read_parquet(first / "scores.parquet")["expected_value"].eq(1.0).all()


def test_two_exports_finishing_in_the_same_second_each_keep_their_folder(
    tmp_path: Path, monkeypatch
) -> None:
    """Another scoring run publishes the same stamp's folder while this one is writing: the
    rename must neither fail nor land on the other's finished folder."""
    snapshot, scores = _crafted()
    other = tmp_path / "20260101T000000"
    original = pd.DataFrame.to_parquet

    def meanwhile(self, path, *args, **kwargs):
        if str(path).endswith("scores.parquet") and not other.exists():
            other.mkdir()
            (other / "marker").write_text("the other run")
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", meanwhile)
    mine = write_export(tmp_path, snapshot, scores, {}, datetime(2026, 1, 1))
    assert mine.name == "20260101T000000-2" and (mine / "scores.parquet").exists()
    assert (other / "marker").read_text() == "the other run"
    assert not list(tmp_path.glob(".staging-*"))


def test_a_backfill_of_an_earlier_cutoff_leaves_latest_on_the_current_lists(
    tmp_path: Path,
) -> None:
    current = _export(tmp_path, "2026-01-01T00:00:00", 1.0)
    snapshot, scores = _crafted()
    earlier = snapshot.assign(cutoff=pd.Timestamp(CUTOFF) - pd.Timedelta(days=30))
    backfill = write_export(tmp_path, earlier, scores, {}, datetime(2026, 1, 2))
    assert backfill.exists() and (tmp_path / "latest").resolve() == current.resolve()
    from flows.export import where_exported

    assert where_exported(backfill).endswith(
        f"latest stays on {current.name} (cutoff {CUTOFF:%Y-%m-%d}), a later cutoff"
    )
    assert where_exported(current).endswith("(and " + str(tmp_path / "latest") + ")")
    assert export_cutoff(tmp_path / "latest") == pd.Timestamp(CUTOFF)
    # the same cutoff again (a rescore after a fix) moves it
    again = write_export(tmp_path, snapshot, scores, {}, datetime(2026, 1, 3))
    assert (tmp_path / "latest").resolve() == again.resolve()


def test_an_earlier_cutoff_replaces_latest_built_with_other_settings(tmp_path: Path) -> None:
    """data.end moved back, then a feature setting changed and a release trained on it: the
    export at the later cutoff was built with the old setting, which the live release cannot
    read, so the new export replaces it; the service refuses the stale one meanwhile."""
    from models.segments import SNAPSHOT_SETTINGS, export_settings
    from serving.state import check_export_fits

    snapshot, scores = _crafted()
    old = {"tiers": {"basis": "absolute"}, "features": {"high_price_line": 1000000}}
    new = {**old, "features": {"high_price_line": 1000001}}
    current = write_export(
        tmp_path, snapshot, scores, {}, datetime(2026, 1, 1), summary={SNAPSHOT_SETTINGS: old}
    )
    earlier = snapshot.assign(cutoff=pd.Timestamp(CUTOFF) - pd.Timedelta(days=30))
    same = write_export(
        tmp_path, earlier, scores, {}, datetime(2026, 1, 2), summary={SNAPSHOT_SETTINGS: old}
    )
    assert (tmp_path / "latest").resolve() == current.resolve() != same.resolve()

    live = types.SimpleNamespace(label="release v5", tiers=new["tiers"], features=new["features"])
    with pytest.raises(
        ReleaseMismatchError, match="other feature settings than the live release v5"
    ):
        check_export_fits(current, live)
    moved = write_export(
        tmp_path, earlier, scores, {}, datetime(2026, 1, 3), summary={SNAPSHOT_SETTINGS: new}
    )
    assert (tmp_path / "latest").resolve() == moved.resolve()
    assert export_settings(tmp_path / "latest") == new
    check_export_fits(moved, live)  # fits: no error


def test_summary_json_is_strict_json_without_nan(tmp_path: Path) -> None:
    """A what-if row without a measured interval carries NaN in Python; JavaScript, jq and
    most JSON readers reject a bare NaN, so the file must say null."""
    snapshot, scores = _crafted()
    summary = {"whatif": [{"ci_low_pp": float("nan"), "gain": np.float64(np.inf)}]}
    summary["at"] = pd.Timestamp("2026-01-01")
    folder = write_export(tmp_path, snapshot, scores, {}, datetime(2026, 1, 1), summary=summary)
    text = (folder / "summary.json").read_text(encoding="utf-8")
    assert "NaN" not in text and "Infinity" not in text
    parsed = json.loads(text, parse_constant=lambda name: pytest.fail(f"bare {name}"))
    assert parsed == {"whatif": [{"ci_low_pp": None, "gain": None}], "at": "2026-01-01 00:00:00"}


def _population(n: int, base_rate: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A shop of `n` buyers whose repurchase scores centre on `base_rate` (a grocery log sits
    near 0.9, a fashion shop near 0.2), with random cycles, trends and tiers."""
    rng = np.random.default_rng(seed)
    strength = 8.0
    repurchase = rng.beta(base_rate * strength, (1 - base_rate) * strength, n)
    tier = rng.choice([1, 2, 3, 4, 5], size=n, p=[0.03, 0.07, 0.2, 0.3, 0.4])
    spend = np.exp(rng.normal(12, 1, n))
    frame = pd.DataFrame(
        {
            "customer_id": pd.array([f"c{i:05d}" for i in range(n)], dtype="string"),
            "cutoff": CUTOFF,
            "orders_lifetime": rng.integers(1, 30, n).astype(float),
            "avg_order_value": np.exp(rng.normal(11, 0.6, n)),
            "recent_vs_avg_order_value": np.exp(rng.normal(0, 0.3, n)),
            "spend_trend_90d": rng.normal(0, 0.5, n),
            "gap_acceleration": np.exp(rng.normal(0, 0.4, n)),
            "last_gap_vs_median": np.exp(rng.normal(0, 0.4, n)),
            "tenure_days": rng.uniform(30, 700, n),
            "days_since_first_order": rng.uniform(20, 690, n),
            "days_since_last_order": rng.uniform(0, 200, n),
            "median_gap_days": rng.uniform(5, 90, n),
            "overdue_ratio": np.exp(rng.normal(0, 0.6, n)),
            "tier_window_spend": spend,
            "margin_above_tier_line": spend * rng.uniform(0.02, 0.8, n),
            "distance_to_next_tier": spend * rng.uniform(0.05, 1.0, n),
            "spend_lifetime": spend * 2,
            "high_price_views": 0.0,
            "last_vs_median_viewed_price": np.nan,
            "mean_viewed_price": np.nan,
            "max_units_one_product": rng.integers(1, 10, n).astype(float),
            "top_product_spend_share": rng.uniform(0.05, 0.6, n),
            "max_units_vs_usual": np.exp(rng.normal(0, 0.4, n)),
            "tier": tier,
        }
    )
    scores = frame[["customer_id", "cutoff", "tier"]].copy()
    scores["repurchase_score"] = repurchase
    scores["vip_score"] = np.where(tier > 2, rng.beta(0.5, 20, n) * (6 - tier), np.nan)
    scores["first_purchase_score"] = np.nan
    scores[ORDER_VALUE] = order_values(frame, {}, TierSettings())
    scores["expected_value"] = expected_value(scores)
    return frame, scores


@pytest.mark.parametrize("base_rate", [0.15, 0.5, 0.9])
def test_default_lines_are_selective_at_any_base_rate(base_rate: float) -> None:
    snapshot, scores = _population(4_000, base_rate, seed=int(base_rate * 100))
    segments = build_segments(snapshot, scores, SegmentSettings(), TierSettings())
    for name, members in segments.items():
        assert len(members) <= 0.25 * len(scores), f"{name}: {len(members)} of {len(scores)}"
    assert 0.1 * len(scores) < len(segments["repurchase_prospects"]) <= 0.25 * len(scores)
    assert len(segments["active"]) > 0 and len(segments["rising_vip"]) > 0
    # the Active list is not just a slice of the prospects: a fresh campaign of its own
    active = set(segments["active"]["customer_id"])
    prospects = set(segments["repurchase_prospects"]["customer_id"])
    assert active - prospects


def test_absolute_lines_are_what_the_relative_defaults_fix() -> None:
    """On a grocery-like shop (base rate 0.9) the old absolute line lists nearly everyone."""
    snapshot, scores = _population(4_000, 0.9, seed=3)
    old = SegmentSettings.model_validate(
        {"max_share": 1.0, "repurchase_prospects": {"min_score": 0.3}}
    )
    listed = len(build_segments(snapshot, scores, old, TierSettings())["repurchase_prospects"])
    assert listed > 0.9 * len(scores)
    # min_score alone is an absolute line: the relative defaults are off...
    assert old.repurchase_prospects.min_percentile is None
    assert old.repurchase_prospects.min_lift is None
    # ...and the cap still holds when it is left on
    capped = SegmentSettings.model_validate({"repurchase_prospects": {"min_score": 0.3}})
    members = build_segments(snapshot, scores, capped, TierSettings())["repurchase_prospects"]
    assert len(members) == int(0.25 * len(scores))
    # the budget keeps the best-ranked: every kept member ranks above every dropped one
    kept = set(members["customer_id"])
    dropped = scores[~scores["customer_id"].isin(kept)]["expected_value"]
    assert members["expected_value"].min() >= dropped.max()


def test_a_segment_budget_of_top_n_and_share() -> None:
    snapshot, scores = _population(1_000, 0.4, seed=5)
    settings = SegmentSettings.model_validate(
        {"max_share": 0.1, "repurchase_prospects": {"top_n": 40}, "active": {"max_share": 0.5}}
    )
    segments = build_segments(snapshot, scores, settings, TierSettings())
    assert len(segments["repurchase_prospects"]) == 40
    # a rule's own share never widens the shop-wide cap
    assert len(segments["active"]) <= 100
    assert settings.share_of("active") == 0.1


def _shop_with_bulk_product() -> ShopTables:
    """Forty households; every one buys fuel in thousands of units per order (a bulk product),
    and groceries a few at a time. One reseller buys 60 of one grocery per order, every
    order; one household buys that grocery twice as often as others but two at a time."""
    rows, items = [], []
    day = pd.Timestamp("2025-01-01")
    for h in range(40):
        cid = f"h{h:02d}"
        for k in range(6):
            oid = f"{cid}-{k}"
            rows.append((oid, cid, day + pd.Timedelta(days=7 * k + h % 5), 0.0))
            items.append((oid, "fuel", float(20_000 + 500 * (h % 7)), 0.002))
            items.append((oid, f"g{(h + k) % 9}", 1.0 + (h + k) % 2, 3.0))
            if cid == "h01":
                items.append((oid, "g0", 60.0, 3.0))
            if cid == "h02":
                items.append((oid, "g0", 2.0, 3.0))
    orders = pd.DataFrame(rows, columns=["order_id", "customer_id", "ordered_at", "amount"])
    lines = pd.DataFrame(items, columns=["order_id", "product_id", "quantity", "unit_price"])
    amounts = (lines["quantity"] * lines["unit_price"]).groupby(lines["order_id"]).sum()
    orders["amount"] = orders["order_id"].map(amounts)
    for frame in (orders, lines):
        for column in ("order_id", "customer_id", "product_id"):
            if column in frame:
                frame[column] = frame[column].astype("string")
    orders["ordered_at"] = orders["ordered_at"].astype("datetime64[ns]")
    return ShopTables(orders=orders, order_items=lines)


def test_bulk_products_do_not_flag_and_a_real_reseller_does() -> None:
    tables = _shop_with_bulk_product()
    snapshot = build_features(
        tables, [pd.Timestamp("2025-03-01")], FeatureSettings(), TierSettings()
    )
    # fuel is thousands of units for everyone: the absolute units line would flag them all
    assert (snapshot["max_units_one_product"] >= 20_000).all()
    ratio = snapshot.set_index("customer_id")["max_units_vs_usual"]
    assert ratio["h01"] >= 10 and ratio.drop("h01").max() < 3
    flagged = snapshot.loc[reseller_mask(snapshot, ResellerRule()), "customer_id"]
    assert list(flagged) == ["h01"]
    # bulk alone is one signal: without a second one nobody is flagged
    only_bulk = ResellerRule(min_top_product_spend_share=1.0)
    assert not reseller_mask(snapshot.drop(columns="spend_lifetime"), only_bulk).any()
    signals = reseller_signals(snapshot, ResellerRule())
    assert signals.loc[snapshot["customer_id"].eq("h01").to_numpy()].sum(axis=1).item() >= 2


def test_actions_carry_numbers_from_the_members_in_the_shop_currency() -> None:
    members = pd.DataFrame({"avg_order_value": [80_000.0, 120_000.0, 140_000.0, 150_000.0]})
    text = render_action(SegmentSettings().action("active"), members, "KRW")
    # the upper quartile of the members' order values (141,250), rounded like an offer
    assert text.startswith("₩140,000+ purchase discount")
    assert render_action("{order_value}+ off", members * 0.01, "GBP") == "£1,400+ off"
    assert render_action("{order_value}+ off", members.iloc[:0], "GBP") == "[order value]+ off"
    with pytest.raises(ValueError, match="unknown placeholder"):
        SegmentSettings.model_validate({"active": {"action": "{discount} off"}})


def test_summary_shows_overlaps_primary_notes_and_rendered_actions() -> None:
    snapshot, scores = _crafted()
    segments = build_segments(snapshot, scores, ABSOLUTE, TierSettings())
    flags = memberships(scores, segments)
    primary = pd.Series(
        primary_segments(flags, ABSOLUTE.priority), index=scores["customer_id"].to_numpy()
    )
    notes = segment_notes(snapshot.drop(columns=["high_price_views"]), scores, segments, ABSOLUTE)
    summary, markdown = segment_summary(
        segments, snapshot, scores, ABSOLUTE, "KRW", notes=notes, primary=primary
    )
    active = summary["segments"]["active"]
    # both Active customers are prospects too; their one campaign is Active (priority)
    assert active["overlaps"]["repurchase_prospects"] == 2 and active["primary"] == 2
    assert summary["segments"]["repurchase_prospects"]["primary"] == 1
    assert notes["high_price_browsers"] == "needs content_views, which this data has not"
    assert "₩X" not in markdown and "₩" in summary["segments"]["active"]["action"]
    assert "needs content_views" in markdown


def test_a_list_emptied_by_the_resellers_says_so() -> None:
    """When everyone who meets a rule is a suspected reseller (a wholesale shop's biggest
    accounts), "no customer meets the rule" would send the analyst to the wrong rule."""
    snapshot, scores = _crafted()
    alone = scores["customer_id"].ne("vip_steady").to_numpy()
    snapshot, scores = snapshot[alone], scores[alone]
    segments = build_segments(snapshot, scores, ABSOLUTE, TierSettings())
    notes = segment_notes(snapshot, scores, segments, ABSOLUTE, TierSettings())
    assert segments["vip_steady"].empty
    assert notes["vip_steady"].startswith("the one customer who meets the rule is a suspected")
    # a reseller past its own budget is not listed apart, so it stays in the other lists
    one_percent = ABSOLUTE.model_copy(update={"suspected_resellers": ResellerRule(max_share=0.01)})
    segments = build_segments(snapshot, scores, one_percent, TierSettings())
    assert segments[RESELLERS].empty
    assert list(segments["vip_steady"]["customer_id"]) == ["reseller"]
    assert "vip_steady" not in segment_notes(snapshot, scores, segments, one_percent)


def test_notes_say_why_a_segment_is_empty_or_capped() -> None:
    snapshot, scores = _population(1_000, 0.4, seed=9)
    no_vip_model = scores.assign(vip_score=np.nan)
    settings = SegmentSettings()
    segments = build_segments(snapshot, no_vip_model, settings, TierSettings())
    notes = segment_notes(snapshot, no_vip_model, segments, settings)
    assert segments["rising_vip"].empty
    assert notes["rising_vip"].startswith("no model for target ")
    # everyone here has ordered: the browsers' model (first orders) has no one to score
    browsers_target = next(
        name for name in TARGETS if TARGETS[name].segments == ("high_price_browsers",)
    )
    assert notes["high_price_browsers"].startswith("nobody to score at this cutoff")
    assert notes["high_price_browsers"].endswith(f"(the {browsers_target} model's population)")
    # a date before anyone had ordered: the model exists but has no one to score
    nobody = snapshot.assign(orders_lifetime=0.0)
    no_buyers = scores.assign(**{TARGETS[n].score_column: np.nan for n in TARGETS})
    early = segment_notes(nobody, no_buyers, build_segments(nobody, no_buyers, settings), settings)
    assert early["repurchase_prospects"].startswith("nobody to score at this cutoff: no ")
    capped = segment_notes(
        snapshot,
        scores,
        build_segments(snapshot, scores, SegmentSettings(max_share=0.05), TierSettings()),
        SegmentSettings(max_share=0.05),
    )
    assert capped["repurchase_prospects"].startswith("capped at 5% of 1,000 scored customers")
