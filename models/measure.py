"""Did a campaign work? Treated against holdout, with intervals, p-values, CUPED and ROI.

`campaign_outcomes` turns the `contacts`, `campaigns` and `orders` tables into one row per
contacted customer: group, orders and revenue inside the campaign's attribution window,
pre-period spend and the coupon cost of the customer's window orders. `measure_campaign`
compares the groups (two-proportion z-test on conversion, Fisher's exact test with few
expected buyers; on CUPED-adjusted revenue per customer, Welch's statistic calibrated by
label shuffles and the bootstrap) and prices the result (incremental buyers and revenue,
coupon cost, ROI) in one verdict sentence.
docs/measurement.md has the formulas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.contract import ContractError
from features.schema import HOLDOUT, TREATED, ShopTables
from models.reasons import format_money
from models.stats import (
    Cuped,
    Difference,
    cuped,
    is_constant,
    resampled_difference,
    two_proportion_ztest,
    welch_ttest,
)

PRE_DAYS = 180  # CUPED covariate: spend over this many days before the window opens

# the fewest customers per group a campaign can be measured with
MIN_GROUP = 2


class MeasurementError(ContractError):
    """The data cannot answer the measurement asked for (unknown campaign, window still open,
    an empty group, a table missing). A ContractError, so the CLI reports it as an expected
    error: one message, exit code 2."""


@dataclass(frozen=True)
class CampaignWindow:
    """The campaign's description and attribution rule (from `campaigns`, or the default)."""

    campaign_id: str
    name: str
    started_at: pd.Timestamp | None  # None: each customer's window opens at contacted_at
    ends_at: pd.Timestamp | None
    coupon_rate: float
    coupon_cap: float  # inf when uncapped
    attribution_days: int

    def bounds(self, contacted_at: pd.Series) -> tuple[pd.Series, pd.Series]:
        """Per customer [start, end): the campaign's window, or contacted_at + default days."""
        if self.started_at is not None and self.ends_at is not None:
            return (
                pd.Series(self.started_at, index=contacted_at.index),
                pd.Series(self.ends_at, index=contacted_at.index),
            )
        return contacted_at, contacted_at + pd.Timedelta(days=self.attribution_days)


def _num(value: Any, default: float) -> float:
    return default if value is None or pd.isna(value) else float(value)


def campaign_window(tables: ShopTables, campaign_id: str, attribution_days: int) -> CampaignWindow:
    """The campaign's window and coupon terms; MeasurementError if it was never logged."""
    contacts = tables.contacts
    if contacts is None:
        raise MeasurementError(
            "no contacts table: configure data.tables.contacts (campaign_id, customer_id, "
            "group, contacted_at) to measure campaigns"
        )
    known = contacts["campaign_id"].dropna().unique().tolist()
    planned = tables.campaigns is not None and campaign_id in set(tables.campaigns["campaign_id"])
    if campaign_id not in known and planned:
        raise MeasurementError(
            f"campaign {campaign_id!r} is in the campaigns table, but no contact of it was "
            "loaded: the contacts table has none for it, or they were rejected or filtered "
            "out (contacts at or after the data end are rejected: as far as this data goes "
            "it has not been sent yet); `dangol check` lists the rejected rows"
        )
    if campaign_id not in known:
        listed = ", ".join(sorted(map(str, known))[:20]) or "none"
        raise MeasurementError(
            f"unknown campaign {campaign_id!r}: the contacts table has campaigns {listed} "
            "(a campaign whose row or contacts were rejected on load is not among them: "
            "the load lines above, or `dangol check`, say why)"
        )
    row = None
    if tables.campaigns is not None:
        rows = tables.campaigns[tables.campaigns["campaign_id"] == campaign_id]
        row = rows.iloc[0] if len(rows) else None
    if row is None:
        return CampaignWindow(campaign_id, campaign_id, None, None, 0.0, np.inf, attribution_days)
    return CampaignWindow(
        campaign_id,
        str(row["name"]),
        pd.Timestamp(row["started_at"]),
        pd.Timestamp(row["ends_at"]),
        _num(row.get("coupon_rate"), 0.0),
        _num(row.get("coupon_cap"), np.inf),
        attribution_days,
    )


def coupon_cost(amounts: pd.Series, rate: float, cap: float) -> pd.Series:
    """Per order: rate × amount, at most `cap` (the coupon's per-order ceiling)."""
    return np.minimum(rate * amounts, cap)


def campaign_outcomes(
    tables: ShopTables,
    campaign_id: str,
    data_end: pd.Timestamp,
    attribution_days: int = 30,
    pre_days: int = PRE_DAYS,
) -> tuple[pd.DataFrame, CampaignWindow]:
    """One row per contacted customer: group, window orders, revenue, pre-spend, coupon cost.

    Window orders are those in [window_start, window_end). The coupon cost assumes every
    window order of a treated customer redeemed the coupon (the contract logs no
    redemptions, so this is the upper bound of the cost). Raises MeasurementError when the
    window has not ended by `data_end` or a group is empty.
    """
    window = campaign_window(tables, campaign_id, attribution_days)
    assert tables.contacts is not None
    contacts = tables.contacts[tables.contacts["campaign_id"] == campaign_id]
    frame = contacts[["customer_id", "group", "contacted_at"]].reset_index(drop=True)
    start, end = window.bounds(frame["contacted_at"])
    if end.max() > data_end:
        raise MeasurementError(
            f"campaign {campaign_id!r}: its attribution window ends {end.max()}, after the "
            f"data end {data_end}; measure it once the window has closed and its orders are in"
        )
    frame["window_start"], frame["window_end"] = start.to_numpy(), end.to_numpy()
    groups = frame["group"].value_counts()
    for group in (TREATED, HOLDOUT):
        if groups.get(group, 0) < MIN_GROUP:
            raise MeasurementError(
                f"campaign {campaign_id!r}: the {group} group has {groups.get(group, 0)} "
                f"customers; a comparison needs both treated and holdout customers"
            )
    pre_start = np.minimum(frame["window_start"], frame["contacted_at"])
    frame["pre_start"] = pre_start - pd.Timedelta(days=pre_days)
    frame["pre_end"] = pre_start
    orders = tables.orders[["customer_id", "ordered_at", "amount"]].merge(
        frame[["customer_id", "group", "window_start", "window_end", "pre_start", "pre_end"]],
        on="customer_id",
    )
    inside = orders[
        (orders["ordered_at"] >= orders["window_start"])
        & (orders["ordered_at"] < orders["window_end"])
    ]
    inside = inside.assign(
        cost=np.where(
            inside["group"] == TREATED,
            coupon_cost(inside["amount"], window.coupon_rate, window.coupon_cap),
            0.0,
        )
    )
    pre = orders[
        (orders["ordered_at"] >= orders["pre_start"]) & (orders["ordered_at"] < orders["pre_end"])
    ]
    per = inside.groupby("customer_id").agg(
        orders=("amount", "size"), revenue=("amount", "sum"), coupon_cost=("cost", "sum")
    )
    frame = frame.join(per, on="customer_id")
    frame["pre_spend"] = frame["customer_id"].map(pre.groupby("customer_id")["amount"].sum())
    fill = ["orders", "revenue", "coupon_cost", "pre_spend"]
    frame[fill] = frame[fill].fillna(0.0).astype("float64")
    frame["buyer"] = (frame["orders"] > 0).astype("float64")
    return frame.drop(columns=["pre_start", "pre_end"]), window


@dataclass
class GroupSummary:
    """Customers, buyers, conversion, orders and revenue of one group."""

    customers: int
    buyers: int
    conversion: float
    orders: int
    revenue: float
    revenue_per_customer: float

    @classmethod
    def of(cls, rows: pd.DataFrame) -> GroupSummary:
        n = len(rows)
        return cls(
            n,
            int(rows["buyer"].sum()),
            float(rows["buyer"].mean()),
            int(rows["orders"].sum()),
            float(rows["revenue"].sum()),
            float(rows["revenue"].mean()),
        )


@dataclass
class CampaignResult:
    """Treated against holdout for one campaign, priced, with a verdict."""

    campaign_id: str
    name: str
    window: str
    treated: GroupSummary
    holdout: GroupSummary
    conversion: Difference  # percentage points, z-test (Fisher's with few buyers)
    conversion_cuped: Difference  # percentage points, CUPED-adjusted, Welch
    revenue: Difference  # per customer, CUPED-adjusted, resampled (`revenue_difference`)
    revenue_raw: Difference  # per customer, unadjusted, resampled
    variance_reduction: dict[str, float]
    theta: dict[str, float]
    incremental_buyers: float
    incremental_revenue: float
    incremental_revenue_ci: tuple[float, float]
    coupon_cost: float
    roi: float | None
    margin: float
    currency: str
    verdict: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: headline keys first, details below."""
        return {
            "campaign_id": self.campaign_id,
            "name": self.name,
            "window": self.window,
            "uplift_pp": self.conversion.estimate,
            "ci_low_pp": self.conversion.ci_low,
            "ci_high_pp": self.conversion.ci_high,
            "p_value": self.conversion.p_value,
            "treated": self.treated.__dict__,
            "holdout": self.holdout.__dict__,
            "uplift_pp_cuped": self.conversion_cuped.to_dict(),
            "revenue_per_customer_uplift": self.revenue.to_dict(),
            "revenue_per_customer_uplift_unadjusted": self.revenue_raw.to_dict(),
            "cuped_variance_reduction": self.variance_reduction,
            "cuped_theta": self.theta,
            "incremental_buyers": self.incremental_buyers,
            "incremental_revenue": self.incremental_revenue,
            "incremental_revenue_ci": list(self.incremental_revenue_ci),
            "coupon_cost": self.coupon_cost,
            "roi": self.roi,
            "margin": self.margin,
            "currency": self.currency,
            "verdict": self.verdict,
        }


def money(value: float, currency: str) -> str:
    """Money as the exports write it (the currency's symbol and minor units: £688.09,
    ₩12,345, -₩33.8M); an interval's end that resampling could not bound is "unbounded"."""
    return format_money(value, currency) if np.isfinite(value) else "unbounded"


def p_text(p_value: float) -> str:
    """A p-value as reports print it: p = 0.0497 (three figures below 0.1, so a value next to
    0.05 is not rounded onto it), p = 0.312, or p < 0.001."""
    if p_value < 0.001:
        return "p < 0.001"
    return f"p = {p_value:.3g}" if p_value < 0.1 else f"p = {p_value:.3f}"


def verdict(result: CampaignResult) -> str:
    """One plain sentence: did conversion move beyond noise, and what did it earn?"""
    c = result.conversion
    ci = f"95% CI {c.ci_low:+.1f} to {c.ci_high:+.1f} pp, {p_text(c.p_value)}"
    if c.beyond_noise and c.estimate > 0:
        head = f"Campaign {result.campaign_id} raised conversion by {c.estimate:+.1f} pp ({ci})"
    elif c.beyond_noise:
        head = f"Campaign {result.campaign_id} lowered conversion by {c.estimate:+.1f} pp ({ci})"
    else:
        head = (
            f"Campaign {result.campaign_id} shows no conversion effect beyond noise: "
            f"{c.estimate:+.1f} pp ({ci})"
        )
    cur = result.currency
    revenue = (
        f"incremental revenue {money(result.incremental_revenue, cur)}"
        f"{'' if result.revenue.beyond_noise else ' (not significant)'}"
    )
    if result.roi is None:
        return f"{head}; {revenue}; no coupon cost logged."
    return (
        f"{head}; {revenue} for {money(result.coupon_cost, cur)} of coupons, ROI {result.roi:.2f}."
    )


def _constant_group(outcome: np.ndarray, is_treated: np.ndarray) -> bool:
    """Whether a group's raw outcome does not vary (all bought, none did, all spent 0): its
    CUPED-adjusted spread is then only the adjustment's jitter, not the outcome's noise,
    and Welch alone gave +95.7 pp (95.2 to 96.3) for 100 treated buyers against 2 held-out
    non-buyers, where the raw interval was 34 to 100."""
    return any(is_constant(outcome[group]) for group in (is_treated, ~is_treated))


def revenue_cuped(outcomes: pd.DataFrame) -> Cuped:
    """Revenue per customer adjusted on pre-period spend itself (conversion is adjusted on
    its logarithm instead)."""
    return cuped(outcomes["revenue"].to_numpy(), outcomes["pre_spend"].to_numpy())


def revenue_difference(outcomes: pd.DataFrame, adjusted: Cuped | None = None) -> Difference:
    """Treated − holdout revenue per customer, CUPED-adjusted when `adjusted` is given. Spend's
    tail is a few big buyers, so the interval and p come from resampling; a group whose raw
    revenue did not vary borrows the pooled spread, adjusted or not (the same data must not
    be "beyond noise" one way and not the other)."""
    is_t = (outcomes["group"] == TREATED).to_numpy()
    revenue = outcomes["revenue"].to_numpy()
    values = revenue if adjusted is None else adjusted.adjusted
    return resampled_difference(values[is_t], values[~is_t], _constant_group(revenue, is_t))


def compare_groups(outcomes: pd.DataFrame) -> dict[str, Any]:
    """The statistics of a treated/holdout outcome frame (buyer, revenue, pre_spend)."""
    is_t = (outcomes["group"] == TREATED).to_numpy()
    buyer = outcomes["buyer"].to_numpy()
    pre = outcomes["pre_spend"].to_numpy()
    conversion = two_proportion_ztest(
        buyer[is_t].sum(), is_t.sum(), buyer[~is_t].sum(), (~is_t).sum()
    )
    # Conversion is adjusted on whether and how much the customer spent before (log scale:
    # spend is heavy-tailed); revenue on pre-period spend itself.
    conv_cuped = cuped(buyer, np.log1p(pre))
    rev_cuped = revenue_cuped(outcomes)
    return {
        "conversion": conversion.scaled(100),
        # a group that all bought (or none did) has no spread to adjust: the raw interval
        "conversion_cuped": conversion.scaled(100)
        if _constant_group(buyer, is_t)
        else welch_ttest(conv_cuped.adjusted[is_t], conv_cuped.adjusted[~is_t]).scaled(100),
        "revenue": revenue_difference(outcomes, rev_cuped),
        "revenue_raw": revenue_difference(outcomes),
        "variance_reduction": {
            "conversion": conv_cuped.variance_reduction,
            "revenue": rev_cuped.variance_reduction,
        },
        "theta": {"conversion": conv_cuped.theta, "revenue": rev_cuped.theta},
    }


def measure_campaign(
    tables: ShopTables,
    campaign_id: str,
    data_end: pd.Timestamp,
    attribution_days: int = 30,
    pre_days: int = PRE_DAYS,
    margin: float = 1.0,
    currency: str = "KRW",
) -> CampaignResult:
    """Measure one logged campaign against its holdout (see the module docstring).

    Incremental buyers = uplift × treated customers; incremental revenue = CUPED-adjusted
    revenue-per-customer uplift × treated customers; ROI = (margin × incremental revenue −
    coupon cost) / coupon cost, None without a coupon cost.
    """
    outcomes, window = campaign_outcomes(tables, campaign_id, data_end, attribution_days, pre_days)
    stats_ = compare_groups(outcomes)
    treated = GroupSummary.of(outcomes[outcomes["group"] == TREATED])
    holdout = GroupSummary.of(outcomes[outcomes["group"] == HOLDOUT])
    revenue: Difference = stats_["revenue"]
    n = treated.customers
    cost = float(outcomes["coupon_cost"].sum())
    incremental = revenue.estimate * n
    roi = (margin * incremental - cost) / cost if cost > 0 else None
    if window.started_at is not None:
        span = f"{window.started_at} to {window.ends_at} (campaign window)"
    else:
        span = f"{window.attribution_days} days from each contacted_at (default window)"
    result = CampaignResult(
        campaign_id=campaign_id,
        name=window.name,
        window=span,
        treated=treated,
        holdout=holdout,
        conversion=stats_["conversion"],
        conversion_cuped=stats_["conversion_cuped"],
        revenue=revenue,
        revenue_raw=stats_["revenue_raw"],
        variance_reduction=stats_["variance_reduction"],
        theta=stats_["theta"],
        incremental_buyers=stats_["conversion"].estimate / 100 * n,
        incremental_revenue=incremental,
        incremental_revenue_ci=(revenue.ci_low * n, revenue.ci_high * n),
        coupon_cost=cost,
        roi=roi,
        margin=margin,
        currency=currency,
    )
    result.verdict = verdict(result)
    return result


def report_lines(result: CampaignResult) -> list[str]:
    """The human-readable report of `dangol measure --campaign`."""
    cur = result.currency
    lines = [f"campaign {result.campaign_id} ({result.name}); window {result.window}"]
    lines.append(
        f"{'group':<8} {'customers':>10} {'buyers':>8} {'conversion':>11} {'orders':>8} "
        f"{'revenue/customer':>18}"
    )
    for name, g in (("treated", result.treated), ("holdout", result.holdout)):
        lines.append(
            f"{name:<8} {g.customers:>10,} {g.buyers:>8,} {g.conversion:>11.2%} {g.orders:>8,} "
            f"{money(g.revenue_per_customer, cur):>18}"
        )
    c, cc, r = result.conversion, result.conversion_cuped, result.revenue
    vr = result.variance_reduction
    lines += [
        f"conversion uplift: {c.estimate:+.2f} pp (95% CI {c.ci_low:+.2f} to {c.ci_high:+.2f}), "
        f"{p_text(c.p_value)} (two-proportion test: z, or Fisher's exact with few expected buyers)",
        f"  CUPED-adjusted:  {cc.estimate:+.2f} pp (95% CI {cc.ci_low:+.2f} to "
        f"{cc.ci_high:+.2f}), {p_text(cc.p_value)}; variance removed {vr['conversion']:.1%}",
        f"revenue per customer uplift (CUPED): {money(r.estimate, cur)} (95% CI "
        f"{money(r.ci_low, cur)} to {money(r.ci_high, cur)}), {p_text(r.p_value)} (resampled); "
        f"variance removed {vr['revenue']:.1%}",
        f"  unadjusted: {money(result.revenue_raw.estimate, cur)}, "
        f"{p_text(result.revenue_raw.p_value)}",
        f"incremental buyers {result.incremental_buyers:+,.1f}; incremental revenue "
        f"{money(result.incremental_revenue, cur)} (95% CI "
        f"{money(result.incremental_revenue_ci[0], cur)} to "
        f"{money(result.incremental_revenue_ci[1], cur)})",
        f"coupon cost {money(result.coupon_cost, cur)}; ROI "
        + ("n/a (no coupon cost)" if result.roi is None else f"{result.roi:.2f}")
        + (f" at margin {result.margin:g}" if result.margin != 1 else ""),
        result.verdict,
    ]
    return lines
