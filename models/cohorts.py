"""Cohorts by first-order month (DESIGN §3.8): repurchase, LTV and tier movement over time.

A customer's cohort is the month of their first order in the data. For each horizon the
cohort's numbers are filled only when every member can be observed that long (the cohort
month's end plus the horizon lies within the data); younger cohorts are left blank instead
of being shown with half their future missing. docs/measurement.md defines every column.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from features.schema import ShopTables
from features.tiers import TierSettings, tier_of_spend
from models.stats import Difference, resampled_difference, two_proportion_ztest

# horizons in days: "3 months" = 91 days, "6 months" = 182, "12 months" = 365
VALUE_HORIZONS = {3: 91, 6: 182}
TIER_HORIZONS = {6: 182, 12: 365}


def _trailing_spend(
    orders: pd.DataFrame, at: pd.Series, window_days: int, since: pd.Series | None = None
) -> pd.Series:
    """Per customer (index of `at`): spend in [at − window, at), or [since, at) if given."""
    o = orders.join(at.rename("at"), on="customer_id", how="inner")
    lo = o["at"] - pd.Timedelta(days=window_days)
    if since is not None:
        lo = o["customer_id"].map(since)
    inside = (o["ordered_at"] >= lo) & (o["ordered_at"] < o["at"])
    spend = o[inside].groupby("customer_id")["amount"].sum()
    return spend.reindex(at.index, fill_value=0.0)


def first_time_buyers(tables: ShopTables) -> pd.DataFrame:
    """customer_id, first_order, second_order (NaT if none) of every first-time buyer.

    A first-time buyer's first order in the data is their first order. With a customers
    table, members who signed up before the data's first order are left out: they may have
    bought before the data began, so their first order in the data is not their first.
    Without one (orders-only logs) every buyer counts, and the earliest cohorts mix in
    customers who bought before the log starts.
    """
    orders = tables.orders[["customer_id", "ordered_at"]]
    ordered = orders.sort_values(["customer_id", "ordered_at"], kind="stable")
    rank = ordered.groupby("customer_id").cumcount()
    first = ordered[rank == 0].set_index("customer_id")["ordered_at"]
    second = ordered[rank == 1].set_index("customer_id")["ordered_at"]
    frame = pd.DataFrame({"customer_id": first.index, "first_order": first.to_numpy()})
    frame["second_order"] = frame["customer_id"].map(second)
    if tables.customers is not None:
        start = orders["ordered_at"].min().normalize()
        signed = frame["customer_id"].map(tables.customers.set_index("customer_id")["signed_up_at"])
        frame = frame[~(signed < start).fillna(False).to_numpy(dtype=bool)]
    return frame.reset_index(drop=True)


def cohort_customers(
    tables: ShopTables, data_end: pd.Timestamp, tiers: TierSettings
) -> pd.DataFrame:
    """One row per first-time buyer (`first_time_buyers`): cohort month and, per horizon,
    the outcome or NaN if unobservable.

    repeat_{h}m: another order in (first order, first + h months]; ltv_{h}m: spend in
    [first order, first + h months); tier_move_{h}m: −1 / 0 / +1 for down / same / up from
    the tier just after the first order (its day included) to the tier h months later.
    """
    orders = tables.orders[["customer_id", "ordered_at", "amount"]]
    buyers = first_time_buyers(tables).set_index("customer_id")
    frame = buyers[["first_order"]].copy()
    frame["cohort"] = frame["first_order"].dt.to_period("M")
    cohort_end = frame["cohort"].dt.to_timestamp() + pd.offsets.MonthBegin(1)
    gap = (buyers["second_order"] - frame["first_order"]).dt.total_seconds() / 86_400
    for months, days in VALUE_HORIZONS.items():
        seen = (cohort_end + pd.Timedelta(days=days)) <= data_end
        until = frame["first_order"] + pd.Timedelta(days=days)
        spend = _trailing_spend(orders, until, days, since=frame["first_order"])
        frame[f"repeat_{months}m"] = np.where(seen, (gap <= days).astype(float), np.nan)
        frame[f"ltv_{months}m"] = np.where(seen, spend, np.nan)
    start_at = frame["first_order"].dt.normalize() + pd.Timedelta(days=1)
    tier_start = tier_of_spend(_trailing_spend(orders, start_at, tiers.window_days), tiers)
    frame["tier_start"] = tier_start
    for months, days in TIER_HORIZONS.items():
        seen = (cohort_end + pd.Timedelta(days=days + 1)) <= data_end
        spend = _trailing_spend(orders, start_at + pd.Timedelta(days=days), tiers.window_days)
        move = np.sign(tier_start - tier_of_spend(spend, tiers)).astype(float)  # up = +1
        frame[f"tier_move_{months}m"] = np.where(seen, move, np.nan)
    return frame.reset_index()


def cohort_table(customers: pd.DataFrame) -> pd.DataFrame:
    """Per cohort month: customers, repurchase and LTV at 3/6 months, tier up/same/down."""
    groups = customers.groupby("cohort")
    table = groups.size().rename("customers").to_frame()
    for months in VALUE_HORIZONS:
        table[f"repeat_{months}m"] = groups[f"repeat_{months}m"].mean()
        table[f"ltv_{months}m"] = groups[f"ltv_{months}m"].mean()
    for months in TIER_HORIZONS:
        move = customers[f"tier_move_{months}m"]
        for name, value in (("up", 1.0), ("same", 0.0), ("down", -1.0)):
            hit = (move == value).astype(float).where(move.notna())
            table[f"tier_{name}_{months}m"] = hit.groupby(customers["cohort"]).mean()
    table.index = table.index.astype(str)
    return table.rename_axis("cohort").reset_index()


def table_lines(table: pd.DataFrame) -> list[str]:
    """The cohort table as printed by `dangol cohorts` (blank = not observable yet)."""
    shown = table.copy()
    for column in shown.columns:
        if column.startswith(("repeat_", "tier_")):
            shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.1%}")
        elif column.startswith("ltv"):
            shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:,.0f}")
    return shown.to_string(index=False).splitlines()


def _row(metric: str, before: np.ndarray, after: np.ndarray, diff: Difference) -> dict:
    return {
        "metric": metric,
        "customers_before": before.size,
        "customers_after": after.size,
        "before": float(before.mean()) if before.size else np.nan,
        "after": float(after.mean()) if after.size else np.nan,
        "difference": diff.estimate,
        "ci_low": diff.ci_low,
        "ci_high": diff.ci_high,
        "p_value": diff.p_value,
    }


def compare_cohorts(customers: pd.DataFrame, change_date: date) -> pd.DataFrame:
    """Cohorts starting before `change_date` against those from it: after − before, 95% CI.

    Rates (repurchase, tier up) by `two_proportion_ztest`, LTV by Welch's statistic with its
    interval and p calibrated by resampling (`resampled_difference`: spend's heavy tail makes
    Student's t over-call), each on the customers observable at that horizon. The cohort
    holding the date (if the date is not its first day) mixes both regimes and is left out.
    """
    when = pd.Timestamp(change_date)
    starts = customers["cohort"].dt.to_timestamp()
    is_before = (starts + pd.offsets.MonthBegin(1)) <= when
    is_after = starts >= when
    rows = []
    metrics = [f"repeat_{m}m" for m in VALUE_HORIZONS] + [f"ltv_{m}m" for m in VALUE_HORIZONS]
    metrics += [f"tier_up_{m}m" for m in TIER_HORIZONS]
    for metric in metrics:
        source = metric.replace("tier_up", "tier_move")
        values = customers[source]
        if metric.startswith("tier_up"):
            values = (values == 1.0).astype(float).where(values.notna())
        b = values[is_before].dropna().to_numpy()
        a = values[is_after].dropna().to_numpy()
        if a.size < 2 or b.size < 2:
            nan = Difference(np.nan, np.nan, np.nan, np.nan, np.nan)
            rows.append(_row(metric, b, a, nan))
        elif metric.startswith("ltv"):
            rows.append(_row(metric, b, a, resampled_difference(a, b)))
        else:
            rows.append(_row(metric, b, a, two_proportion_ztest(a.sum(), a.size, b.sum(), b.size)))
    return pd.DataFrame(rows)


def _save(fig, path: Path) -> Path:
    """Save a figure as PNG atomically (`features.files.write_atomic`)."""
    from features.files import write_atomic

    return write_atomic(
        path, lambda staging: fig.savefig(staging, format="png", dpi=110, bbox_inches="tight")
    )


def plot_cohorts(table: pd.DataFrame, out_dir: Path, stem: str) -> list[Path]:
    """Repurchase, LTV and tier-movement charts by cohort as PNG files in `out_dir`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    x = np.arange(len(table))
    labels = table["cohort"].tolist()
    paths = []
    for kind, title in (("repeat", "repeat-purchase rate"), ("ltv", "LTV (mean spend)")):
        fig, ax = plt.subplots(figsize=(10, 4))
        for months in VALUE_HORIZONS:
            ax.plot(x, table[f"{kind}_{months}m"], marker="o", label=f"{months} months")
        ax.set_title(f"{title} by first-order month")
        ax.set_xticks(x, labels, rotation=90)
        ax.legend()
        paths.append(_save(fig, out_dir / f"{stem}_{kind}.png"))
        plt.close(fig)
    fig, axes = plt.subplots(1, len(TIER_HORIZONS), figsize=(12, 4), sharey=True)
    for ax, months in zip(np.atleast_1d(axes), TIER_HORIZONS, strict=True):
        bottom = np.zeros(len(table))
        for name in ("up", "same", "down"):
            values = table[f"tier_{name}_{months}m"].fillna(0).to_numpy()
            ax.bar(x, values, bottom=bottom, label=name)
            bottom += values
        ax.set_title(f"tier movement after {months} months")
        ax.set_xticks(x, labels, rotation=90)
    np.atleast_1d(axes)[0].legend()
    paths.append(_save(fig, out_dir / f"{stem}_tiers.png"))
    plt.close(fig)
    return paths
