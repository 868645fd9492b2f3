"""Judging a change without a holdout (DESIGN §3.8): normal variation and a regression.

A policy change on a date (a new coupon, a new sign-up flow) has no control group. Two
questions decide whether the monthly rate after it moved for real: is the move larger than
the month-to-month changes of the previous 12 months, and does a regression with trend and
month-of-year seasonality give the "after" months a step whose 95% interval excludes 0
(the larger of the Newey-West and the conventional standard error, t distribution)?
docs/measurement.md defines the metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from features.schema import ShopTables
from models.cohorts import first_time_buyers
from models.measure import MeasurementError, p_text
from models.stats import Difference, ols_hac

# metric -> (days the outcome is observed after the entry event, what it is)
METRICS: dict[str, tuple[int, str]] = {
    "first_purchase_rate": (30, "members signed up in the month who ordered within 30 days"),
    "repurchase_rate": (90, "first-time buyers of the month who ordered again within 90 days"),
}
BAND_MONTHS = 12  # the month-to-month changes that define normal variation
MIN_PRE_MONTHS = 7


def _entries(tables: ShopTables, metric: str) -> pd.DataFrame:
    """customer_id, entered (sign-up or first order), and the time of the next order."""
    orders = tables.orders[["customer_id", "ordered_at"]]
    if metric == "first_purchase_rate":
        if tables.customers is None:
            raise MeasurementError(
                "first_purchase_rate needs sign-up dates: this data has no customers table "
                "(orders-only logs have no members who never bought); use --metric "
                "repurchase_rate, or configure data.tables.customers"
            )
        members = tables.customers[["customer_id", "signed_up_at"]]
        first = orders.groupby("customer_id")["ordered_at"].min()
        frame = members.rename(columns={"signed_up_at": "entered"})
        frame = frame.assign(outcome_at=frame["customer_id"].map(first))
        return frame[frame["entered"] >= orders["ordered_at"].min().normalize()]
    buyers = first_time_buyers(tables)
    return buyers.rename(columns={"first_order": "entered", "second_order": "outcome_at"})


def monthly_metric(tables: ShopTables, metric: str, data_end: pd.Timestamp) -> pd.DataFrame:
    """month, customers, successes, rate: the metric per entry month, complete months only.

    A month is complete when its last entrant's observation window has closed by the data
    end (month end + the metric's days <= data end).
    """
    if metric not in METRICS:
        raise MeasurementError(f"unknown metric {metric!r}; choose from {sorted(METRICS)}")
    days, _ = METRICS[metric]
    frame = _entries(tables, metric)
    delay = frame["outcome_at"] - frame["entered"]
    frame = frame.assign(
        success=((delay >= pd.Timedelta(0)) & (delay < pd.Timedelta(days=days))).astype(float),
        month=frame["entered"].dt.to_period("M"),
    )
    out = frame.groupby("month").agg(customers=("success", "size"), successes=("success", "sum"))
    month_end = out.index.to_timestamp() + pd.offsets.MonthBegin(1)
    out = out[(month_end + pd.Timedelta(days=days)) <= data_end]
    out["rate"] = out["successes"] / out["customers"]
    return out.reset_index()


def seasonal_designs(months: pd.PeriodIndex, n_other: int) -> list[tuple[np.ndarray, str]]:
    """The seasonal terms to try, richest first: month-of-year dummies when the series can
    afford them, then two yearly harmonics."""
    month = np.asarray(months.month)
    angle = 2 * np.pi * month / 12
    harmonics = np.column_stack(
        [np.sin(angle), np.cos(angle), np.sin(2 * angle), np.cos(2 * angle)]
    )
    options = [(harmonics, "two yearly harmonics (too few months for 11 month dummies)")]
    if len(months) - n_other - 11 >= 8 and len(set(month)) == 12:
        dummies = (month[:, None] == np.arange(2, 13)[None, :]).astype(float)
        options.insert(0, (dummies, "month-of-year dummies"))
    return options


def step_design(months: pd.PeriodIndex, when: pd.Timestamp) -> tuple[np.ndarray, str]:
    """Columns: intercept, trend, seasonal terms, and the step at `when` (last).

    The richest seasonal terms that leave the step identifiable: with exactly a year after
    the date and month dummies, a step is the same as a trend (each month's after-value is
    its before-value plus twelve months of slope), so the fit could say anything."""
    # calendar months, not rows: the month holding a mid-month date is left out, and the
    # after months must not slide one month back onto the trend (a pure trend read as a step)
    t = np.asarray([(month - months[0]).n for month in months], dtype=float)
    step = (months.to_timestamp() >= when).astype(float)
    options = seasonal_designs(months, 3)
    for number, (seasonal, kind) in enumerate(options):
        design = np.column_stack([np.ones_like(t), t - t.mean(), seasonal, step])
        if np.linalg.matrix_rank(design) == design.shape[1]:
            if number > 0:  # the richer terms were affordable but hid the step
                kind = "two yearly harmonics (month dummies would make the step a trend)"
            return design, kind
    raise MeasurementError(
        f"a step at {when.date()} cannot be told apart from trend and season in these "
        f"{len(months)} months; measure again when more months have passed"
    )


@dataclass
class ChangeResult:
    """The change at a date, against normal variation and by regression, with a verdict."""

    metric: str
    change_date: str
    pre_months: int
    post_months: int
    pre_rate: float  # last month before the change
    post_rate: float  # mean of the months after
    first_post_change: float  # first month after − last month before
    band_low: float  # 95% band of month-to-month changes over the previous 12 months
    band_high: float
    band_p_value: float
    regression: Difference  # the step of the after months (rate units)
    seasonality: str
    lags: int
    within_normal_variation: bool
    verdict: str = ""

    def to_dict(self) -> dict[str, Any]:
        pp = self.regression.scaled(100)
        return {
            "metric": self.metric,
            "change_date": self.change_date,
            "effect_pp": pp.estimate,
            "ci_low_pp": pp.ci_low,
            "ci_high_pp": pp.ci_high,
            "p_value": pp.p_value,
            "pre_months": self.pre_months,
            "post_months": self.post_months,
            "pre_rate": self.pre_rate,
            "post_rate": self.post_rate,
            "first_post_change_pp": 100 * self.first_post_change,
            "band_pp": [100 * self.band_low, 100 * self.band_high],
            "band_p_value": self.band_p_value,
            "seasonality": self.seasonality,
            "hac_lags": self.lags,
            "within_normal_variation": self.within_normal_variation,
            "verdict": self.verdict,
        }

    def report_lines(self) -> list[str]:
        r = self.regression.scaled(100)
        return [
            f"{self.metric} ({METRICS[self.metric][1]}); change on {self.change_date}: "
            f"{self.pre_months} months before, {self.post_months} after",
            f"last month before {self.pre_rate:.2%}, mean of the months after {self.post_rate:.2%}",
            f"first month-to-month change after the date: {100 * self.first_post_change:+.2f} pp; "
            f"normal band of the previous {BAND_MONTHS} months' changes: "
            f"{100 * self.band_low:+.2f} to {100 * self.band_high:+.2f} pp "
            f"({p_text(self.band_p_value)})",
            f"regression (trend, {self.seasonality}, step at the date; Newey-West, "
            f"{self.lags} lags): {r.estimate:+.2f} pp (95% CI {r.ci_low:+.2f} to "
            f"{r.ci_high:+.2f}), {p_text(r.p_value)}",
            self.verdict,
        ]


def judge_change(series: pd.DataFrame, change_date: date, metric: str) -> ChangeResult:
    """Compare the months from `change_date` on with the months before it.

    The month holding the date is left out when the date is not its first day (it mixes
    both regimes). Band: mean ± t(0.975, m−1)·sd·sqrt(1 + 1/m) of the last m ≤ 12
    month-to-month changes before the date (a 95% prediction interval for one more
    change). Regression: rate_t = a + b·t + seasonality + δ·after_t, δ the effect.
    """
    when = pd.Timestamp(change_date)
    starts = series["month"].dt.to_timestamp()
    before = series[(starts + pd.offsets.MonthBegin(1)) <= when]
    after = series[starts >= when]
    if len(before) < MIN_PRE_MONTHS or after.empty:
        raise MeasurementError(
            f"{metric}: {len(before)} complete months before {change_date} and {len(after)} "
            f"from it (need at least {MIN_PRE_MONTHS} before and 1 after; a month counts once "
            f"its observation window of {METRICS[metric][0]} days has closed)"
        )
    used = pd.concat([before, after])
    # the first change spans two months when the month holding the date is left out: the
    # band is built from the changes over the same number of months
    gap = (after["month"].iloc[0] - before["month"].iloc[-1]).n
    rates = before["rate"].to_numpy()
    changes = (rates[gap:] - rates[:-gap])[-BAND_MONTHS:]
    m = changes.size
    spread = changes.std(ddof=1) * np.sqrt(1 + 1 / m)
    q = float(stats.t.ppf(0.975, m - 1))
    first_change = float(after["rate"].iloc[0] - before["rate"].iloc[-1])
    centre = float(changes.mean())
    band_p = float(2 * stats.t.sf(abs(first_change - centre) / spread, m - 1)) if spread else 1.0

    design, kind = step_design(pd.PeriodIndex(used["month"]), when)
    fit = ols_hac(used["rate"].to_numpy(dtype=float), design)
    effect = fit.difference(design.shape[1] - 1)
    within = not effect.significant
    result = ChangeResult(
        metric=metric,
        change_date=str(change_date),
        pre_months=len(before),
        post_months=len(after),
        pre_rate=float(before["rate"].iloc[-1]),
        post_rate=float(after["rate"].mean()),
        first_post_change=first_change,
        band_low=centre - q * spread,
        band_high=centre + q * spread,
        band_p_value=band_p,
        regression=effect,
        seasonality=kind,
        lags=fit.lags,
        within_normal_variation=within,
    )
    result.verdict = _verdict(result)
    return result


def _verdict(r: ChangeResult) -> str:
    e = r.regression.scaled(100)
    inside = r.band_low <= r.first_post_change <= r.band_high
    band = "inside" if inside else "outside"
    if r.within_normal_variation:
        return (
            f"Within normal variation: {r.metric} after {r.change_date} is {e.estimate:+.2f} pp "
            f"from what trend and season predict ({p_text(e.p_value)}); the first monthly "
            f"change is {band} the band of the previous months' changes. Not evidence of "
            f"an effect."
        )
    direction = "rose" if e.estimate > 0 else "fell"
    return (
        f"Beyond normal variation: {r.metric} {direction} by {e.estimate:+.2f} pp after "
        f"{r.change_date} (95% CI {e.ci_low:+.2f} to {e.ci_high:+.2f}, {p_text(e.p_value)}, "
        f"trend and season accounted for); the first monthly change is {band} the band."
    )
