"""Labels (docs/labels.md) against a brute-force oracle, and which cutoffs get labelled."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from features.snapshot import KEYS, LabelSettings, labelled_cutoffs, training_frame
from features.targets import amount_target, timing_target
from tests.test_features_oracle import SETTINGS, TIERS, random_cutoffs, random_shop


def _label_oracle(tables, cutoffs, horizon_days: int) -> pd.DataFrame:
    """repurchase / first_purchase / vip_conversion per (known customer, cutoff), by loop."""
    orders = tables.orders.sort_values("ordered_at")
    by_customer = {cid: g for cid, g in orders.groupby("customer_id")}
    rows = []
    horizon = pd.Timedelta(days=horizon_days)
    window = pd.Timedelta(days=TIERS.window_days)
    for cut in cutoffs:
        for cid, g in by_customer.items():
            times, amounts = list(g["ordered_at"]), list(g["amount"])
            before = [t for t in times if t < cut]
            inside = [t for t in times if cut <= t < cut + horizon]
            spend_at_cut = sum(
                a for t, a in zip(times, amounts, strict=False) if cut - window <= t < cut
            )
            is_vip = spend_at_cut >= TIERS.vip_line
            # trailing spend just after each order in the horizon (orders at that instant too)
            reached = any(
                sum(a for t, a in zip(times, amounts, strict=False) if s - window <= t <= s)
                >= TIERS.vip_line
                for s in inside
            )
            rows.append(
                {
                    "customer_id": cid,
                    "cutoff": cut,
                    "repurchase": float(bool(inside)) if before else math.nan,
                    "first_purchase": math.nan if before else float(bool(inside)),
                    "vip_conversion": math.nan if is_vip else float(reached),
                }
            )
    return pd.DataFrame(rows)


@pytest.mark.parametrize("horizon", [30, 90])
def test_labels_match_the_oracle(horizon: int) -> None:
    tables = random_shop(11)
    cutoffs = random_cutoffs(tables, 11, 60)
    frame = training_frame(tables, cutoffs, SETTINGS, LabelSettings(horizon_days=horizon), TIERS)
    expected = _label_oracle(tables, cutoffs, horizon)
    labels = ["repurchase", "first_purchase", "vip_conversion"]
    # customers known only from views/sign-up have no orders at all: first_purchase = 0
    merged = frame[KEYS + labels].merge(expected, on=KEYS, how="left", suffixes=("", "_oracle"))
    no_orders = merged["repurchase_oracle"].isna() & merged["first_purchase_oracle"].isna()
    merged.loc[no_orders, "first_purchase_oracle"] = 0.0
    never_bought = ~merged["customer_id"].isin(tables.orders["customer_id"])
    merged.loc[never_bought, "vip_conversion_oracle"] = 0.0
    for label in labels:
        np.testing.assert_array_equal(merged[label], merged[f"{label}_oracle"], err_msg=label)
    assert merged["repurchase"].notna().any() and merged["first_purchase"].notna().any()
    assert (merged["repurchase"] == 1).any() and (merged["repurchase"] == 0).any()
    assert (merged["vip_conversion"] == 1).any()


@pytest.mark.parametrize(("horizon", "value_horizon"), [(30, 90), (90, 30), (60, 60)])
def test_spend_and_next_order_labels_match_a_loop(horizon: int, value_horizon: int) -> None:
    """Spend over the value horizon, the days to the next order within H and that order's
    amount (what a conversion was worth), per customer."""
    tables = random_shop(13)
    cutoffs = random_cutoffs(tables, 13, 40)
    labels = LabelSettings(horizon_days=horizon)
    frame = training_frame(tables, cutoffs, SETTINGS, labels, TIERS, value_horizon)
    value, timing = amount_target().name, timing_target().name
    orders = tables.orders
    checked = 0
    for row in frame.itertuples():
        mine = orders[orders["customer_id"] == row.customer_id]
        after = mine["ordered_at"] - row.cutoff
        first = mine[(after >= pd.Timedelta(0)) & (after < pd.Timedelta(days=horizon))]
        first = first.sort_values(["ordered_at", "order_id"]).head(1)["amount"]
        if row.orders_lifetime > 0:
            first = first.iloc[:0]  # a buyer's next order is no first order: NaN
        worth = row.first_order_amount
        assert (math.isnan(worth) and first.empty) or worth == pytest.approx(first.iloc[0])
        if row.orders_lifetime == 0:
            continue
        spend = mine.loc[
            (after >= pd.Timedelta(0)) & (after < pd.Timedelta(days=value_horizon)), "amount"
        ]
        assert getattr(row, value) == pytest.approx(spend.sum())
        within = after[(after >= pd.Timedelta(0)) & (after < pd.Timedelta(days=horizon))]
        expected_days = within.min().total_seconds() / 86400 if len(within) else math.nan
        days = getattr(row, timing)
        assert (math.isnan(days) and math.isnan(expected_days)) or days == pytest.approx(
            expected_days
        )
        checked += 1
    assert checked > 50
    assert frame.loc[frame["orders_lifetime"] == 0, [value, timing]].isna().all().all()
    assert (frame[value] > 0).any() and frame[timing].notna().any()
    assert frame.loc[frame["orders_lifetime"] == 0, "first_order_amount"].notna().any()


def test_each_label_is_nan_outside_its_population() -> None:
    tables = random_shop(12)
    frame = training_frame(tables, random_cutoffs(tables, 12, 30), SETTINGS, LabelSettings(), TIERS)
    has_ordered = frame["orders_lifetime"] > 0
    assert frame.loc[has_ordered, "repurchase"].notna().all()
    assert frame.loc[~has_ordered, "repurchase"].isna().all()
    assert frame.loc[has_ordered, "first_purchase"].isna().all()
    assert frame.loc[~has_ordered, "first_purchase"].notna().all()
    vip = frame["tier"].isin(TIERS.vip_tiers)
    assert frame.loc[vip, "vip_conversion"].isna().all()
    assert frame.loc[~vip, "vip_conversion"].notna().all()


@pytest.mark.parametrize(
    ("end", "every", "horizon", "history"),
    [("2026-01-01", 14, 90, 90), ("2026-01-01 13:00", 7, 30, 0), ("2025-06-15", 30, 60, 28)],
)
def test_labelled_cutoffs_keep_the_whole_horizon_inside_the_data(
    end: str, every: int, horizon: int, history: int
) -> None:
    first, data_end = pd.Timestamp("2025-01-03 10:00"), pd.Timestamp(end)
    cutoffs = labelled_cutoffs(first, data_end, every, horizon, history)
    assert cutoffs, "expected some cutoffs"
    assert all(c + pd.Timedelta(days=horizon) <= data_end for c in cutoffs)
    # the latest cutoff is the last one allowed: one more day would cross the data end
    assert cutoffs[-1] + pd.Timedelta(days=horizon + 1) > data_end
    assert all(c >= first.normalize() + pd.Timedelta(days=history) for c in cutoffs)
    steps = np.diff(np.array(cutoffs, dtype="datetime64[ns]")).astype("timedelta64[D]")
    assert (steps == np.timedelta64(every, "D")).all()
    assert cutoffs == sorted(cutoffs)


def test_no_cutoff_when_the_data_is_shorter_than_history_plus_horizon() -> None:
    first = pd.Timestamp("2025-01-01")
    assert labelled_cutoffs(first, first + pd.Timedelta(days=100), 7, 90, 30) == []
