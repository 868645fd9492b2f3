"""Campaign what-if (DESIGN §1): if a segment's purchase rate rises by some points, how
many extra buyers and how much extra revenue follow, and what do the coupons cost?

The uplift comes from evidence where there is some (`source` of each row):
- "uplift model": the live release's uplift model (models.uplift): extra buyers = the sum of
  the members' predicted uplifts, extra revenue = the sum of uplift x order value;
- "measured <campaign>": the latest finished campaign that targeted this segment name
  (`campaigns.segment`), its treated - holdout conversion with the 95% interval, and its
  measured revenue uplift and coupon cost per customer for the money;
- "assumed": the fixed `whatif.uplifts_pp` (+3/5/7 pp), when neither exists or the
  measured interval is wider than the largest of them.

Per member: the chance of an order while the campaign runs, without it (`base_rates`:
the scores' `campaign_probability`), and the worth of that order (`order_value` of the
scores: own average order, else the learned first order, models.worth). Extra buyers =
uplift x members; extra revenue = uplift x sum of expected order values. Coupons are used by
every buyer the campaign brings (baseline buyers too, since they also get the coupon):
cost = (baseline rate + uplift) x sum of min(rate x order value, cap).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.scoring import CAMPAIGN_PROBABILITY, ORDER_VALUE, purchase_probability
from models.segments import (
    RESELLERS,
    SegmentSettings,
    WhatIfSettings,
    overlap_table,
    ranked_by,
    render_action,
    scored_customers,
)
from models.uplift import UPLIFT_COLUMN

MODEL_SOURCE = "uplift model"
ASSUMED_SOURCE = "assumed"


def _base_rate(probability: np.ndarray) -> float:
    """The members' mean chance (members without one count at the others' mean)."""
    rate = float(np.nanmean(probability)) if len(probability) else 0.0
    return rate if np.isfinite(rate) else 0.0


def _row(
    rate: float, pp: float, value: np.ndarray, coupon: np.ndarray, source: str
) -> dict[str, float | str]:
    """One what-if row for a uniform uplift of `pp` points over the members."""
    new_rate = min(max(rate + pp / 100.0, 0.0), 1.0)
    gained = new_rate - rate
    return {
        "source": source,
        "uplift_pp": float(pp),
        "ci_low_pp": np.nan,
        "ci_high_pp": np.nan,
        # the points the rate actually moves: less than asked where it would pass 0 or 100%
        "applied_pp": 100 * gained,
        "baseline_rate": rate,
        "baseline_buyers": rate * len(value),
        "baseline_revenue": rate * float(value.sum()),
        "extra_buyers": gained * len(value),
        "extra_revenue": gained * float(value.sum()),
        "coupon_cost": new_rate * float(coupon.sum()),
        "net_extra_revenue": gained * float(value.sum()) - new_rate * float(coupon.sum()),
        "extra_revenue_ci_low": np.nan,
        "extra_revenue_ci_high": np.nan,
    }


# a what-if table's columns: the segment, its size, and what `_row` says (one home: the row)
WHATIF_COLUMNS = ["segment", "members", *_row(0.0, 0.0, np.zeros(0), np.zeros(0), "")]


def _capped(cap: float | None, currency: str, language: str) -> str:
    from models.reasons import format_money

    return "without a cap" if cap is None else f"capped at {format_money(cap, currency, language)}"


def _values(order_value: np.ndarray, settings: WhatIfSettings) -> tuple[np.ndarray, np.ndarray]:
    value = np.nan_to_num(np.asarray(order_value, dtype="float64"), nan=0.0)
    cap = np.inf if settings.coupon_cap is None else settings.coupon_cap
    return value, np.minimum(settings.coupon_rate * value, cap)


def segment_whatif(
    probability: np.ndarray, order_value: np.ndarray, settings: WhatIfSettings
) -> list[dict[str, float | str]]:
    """One row per assumed uplift (`whatif.uplifts_pp`) for a segment given each member's
    base rate (`base_rates`) and order value."""
    value, coupon = _values(order_value, settings)
    rate = _base_rate(probability)
    return [_row(rate, pp, value, coupon, ASSUMED_SOURCE) for pp in settings.uplifts_pp]


def model_whatif(
    probability: np.ndarray,
    uplift: np.ndarray,
    order_value: np.ndarray,
    settings: WhatIfSettings,
) -> dict[str, float | str]:
    """The row of the uplift model: each member's own predicted uplift (probability points),
    extra buyers = their sum, extra revenue = the sum of uplift x order value."""
    value, coupon = _values(order_value, settings)
    rate = _base_rate(probability)
    uplift = np.nan_to_num(np.asarray(uplift, dtype="float64"), nan=0.0)
    mean = float(uplift.mean()) if len(uplift) else 0.0
    row = _row(rate, 100 * mean, value, coupon, MODEL_SOURCE)
    # not clipped by the member's base rate: the uplift is the uplift model's own estimate
    # for the campaign window, the base rate another model's (docs/measurement.md)
    extra_revenue = float((uplift * value).sum())
    row |= {
        "applied_pp": 100 * float(uplift.mean()) if len(uplift) else 0.0,
        "extra_buyers": float(uplift.sum()),
        "extra_revenue": extra_revenue,
        "net_extra_revenue": extra_revenue - float(row["coupon_cost"]),
    }
    return row


def measured_whatif(
    probability: np.ndarray,
    order_value: np.ndarray,
    measured: pd.Series,
    settings: WhatIfSettings,
) -> dict[str, float | str]:
    """The row of a measured campaign (`measured`: a
    `models.uplift.measured_uplift_of_segments` row) over the segment's members: its
    conversion uplift in pp with the 95% interval, and the money as `dangol measure` priced
    the campaign: extra revenue = its CUPED revenue uplift per customer (with its interval)
    × members, coupon cost = its coupon cost per treated customer × members. Conversion
    times each member's order value would count every extra buyer at a full expected order
    and miss the spend the campaign moved or lost (K2510: +9 pp of buyers, revenue per
    customer unchanged)."""
    value, coupon = _values(order_value, settings)
    row = _row(
        _base_rate(probability),
        float(measured["uplift_pp"]),
        value,
        coupon,
        f"measured {measured['campaign_id']}",
    )
    row |= {"ci_low_pp": measured["ci_low_pp"], "ci_high_pp": measured["ci_high_pp"]}
    revenue = float(measured.get("revenue_uplift", np.nan))
    if not np.isfinite(revenue):  # not measured (a group too small): no money, not a guess
        unknown = ("extra_revenue", "coupon_cost", "net_extra_revenue")
        return row | dict.fromkeys(unknown, np.nan)
    members = len(value)
    cost = float(measured["coupon_cost_per_treated"]) * members
    return row | {
        "extra_revenue": revenue * members,
        "extra_revenue_ci_low": float(measured["revenue_ci_low"]) * members,
        "extra_revenue_ci_high": float(measured["revenue_ci_high"]) * members,
        "coupon_cost": cost,
        "net_extra_revenue": revenue * members - cost,
    }


def precise_enough(measured: pd.Series, settings: WhatIfSettings) -> bool:
    """Whether a measured uplift may stand alone for its segment: its 95% interval reaches
    no further from the estimate, on either side, than the largest assumed uplift. A holdout
    of three gave +10.5 pp (−45.8 to +15.1), which says less than the assumptions; those
    rows then stay beside it."""
    estimate = float(measured["uplift_pp"])
    reach = max(estimate - float(measured["ci_low_pp"]), float(measured["ci_high_pp"]) - estimate)
    largest = max((abs(pp) for pp in settings.uplifts_pp), default=0.0)
    return bool(np.isfinite(reach)) and reach <= largest


def whatif_table(
    segments: dict[str, pd.DataFrame],
    probability: pd.Series,
    order_value: pd.Series,
    settings: WhatIfSettings,
    measured: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The what-if of every segment; `probability` (each member's base rate) and
    `order_value` are indexed by customer_id. Per segment a
    row from the uplift model where the members carry a predicted uplift, a row from the
    measured campaign that targeted the segment (`measured`, one row per segment name), and
    the assumed +3/5/7 pp rows when neither exists or the measurement is too wide to stand
    alone (`precise_enough`)."""
    by_segment = (
        measured.set_index("segment")
        if measured is not None and len(measured)
        else pd.DataFrame(columns=["uplift_pp"])
    )
    rows = []
    for name, members in segments.items():
        if members.empty:  # nobody to contact: no rows of zeros (its note says why)
            continue
        ids = members["customer_id"]
        rates = probability.reindex(ids).to_numpy("float64", na_value=np.nan)
        values = order_value.reindex(ids).to_numpy("float64", na_value=np.nan)
        found = []
        uplift = (
            members[UPLIFT_COLUMN].to_numpy("float64", na_value=np.nan)
            if UPLIFT_COLUMN in members
            else np.array([])
        )
        if np.isfinite(uplift).any():
            found.append(model_whatif(rates, uplift, values, settings))
        assumed = segment_whatif(rates, values, settings)
        if name in by_segment.index and np.isfinite(by_segment.loc[name, "uplift_pp"]):
            campaign = by_segment.loc[name]
            found.append(measured_whatif(rates, values, campaign, settings))
            if not precise_enough(campaign, settings):
                found += assumed
        for row in found or assumed:
            rows.append({"segment": name, "members": len(members), **row})
    # the columns even when every list is empty (a date before anyone bought, a tiny shop)
    return pd.DataFrame(rows, columns=WHATIF_COLUMNS)


def campaign_whatif(
    segments: dict[str, pd.DataFrame],
    scores: pd.DataFrame,
    settings: SegmentSettings,
    measured: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The what-if of every campaign segment (resellers are never contacted): the export's
    summary and the report show this table. A member's base rate is their probability of an
    order within the campaign's window (`base_rates`); an extra conversion is worth their
    next order as scoring valued it (`ORDER_VALUE` of `scores`: a learned first order for
    members who never ordered)."""
    ids = scores["customer_id"].to_numpy()
    order_value = pd.Series(scores[ORDER_VALUE].to_numpy("float64", na_value=np.nan), index=ids)
    return whatif_table(
        {k: v for k, v in segments.items() if k != RESELLERS},
        pd.Series(base_rates(scores), index=ids),
        order_value,
        settings.whatif,
        measured,
    )


def base_rates(scores: pd.DataFrame) -> np.ndarray:
    """Each customer's chance of an order while a campaign runs, without it: the
    `CAMPAIGN_PROBABILITY` scoring gave (`segments.holdout.campaign_days` from the cutoff).
    Without one (a release without a timing model) the probability of an order within the
    horizon (`purchase_probability`): larger than the window's, which `base_rate_window`
    says. A member without either (a target the release lacks) counts at the mean of the
    segment's others (`_base_rate`)."""
    if campaign_window_known(scores):
        return scores[CAMPAIGN_PROBABILITY].to_numpy("float64", na_value=np.nan)
    return purchase_probability(scores)


def campaign_window_known(scores: pd.DataFrame) -> bool:
    return CAMPAIGN_PROBABILITY in scores and bool(scores[CAMPAIGN_PROBABILITY].notna().any())


def base_rate_window(scores: pd.DataFrame, settings: SegmentSettings) -> str:
    """What the what-if's base rates cover, in words."""
    if campaign_window_known(scores):
        return f"an order within the campaign's {settings.holdout.campaign_days} days"
    why = "the release has no timing model" if CAMPAIGN_PROBABILITY in scores else "no window"
    return f"an order within the models' horizon ({why})"


def base_rate_sentence(scores: pd.DataFrame, settings: SegmentSettings) -> str:
    """The what-if's base rate in one sentence, for the summary and the report."""
    return (
        f"The base rate is the members' mean chance of {base_rate_window(scores, settings)} "
        "without the campaign."
    )


def segment_actions(
    segments: dict[str, pd.DataFrame],
    snapshot: pd.DataFrame,
    settings: SegmentSettings,
    currency: str,
) -> dict[str, str]:
    """Each segment's action with its numbers from its members (e.g. "₩150,000+ purchase
    discount" from the members' order values)."""
    by_id = snapshot.set_index("customer_id")
    return {
        name: render_action(
            settings.action(name),
            by_id.reindex(members["customer_id"]),
            currency,
            settings.language,
        )
        for name, members in segments.items()
    }


def segment_summary(
    segments: dict[str, pd.DataFrame],
    snapshot: pd.DataFrame,
    scores: pd.DataFrame,
    settings: SegmentSettings,
    currency: str,
    model_versions: dict[str, str] | None = None,
    notes: dict[str, str] | None = None,
    primary: pd.Series | None = None,
    measured: pd.DataFrame | None = None,
) -> tuple[dict, str]:
    """The export's summary: sizes, primary members and overlaps, why a segment is empty or
    capped (`notes`), ranking score, action with its numbers, what-if per segment (JSON +
    markdown). `primary` is each customer's primary segment, indexed by customer id;
    `measured`: measured uplift per segment name (models.uplift.measured_uplift_of_segments)."""
    from models.reasons import format_money

    notes = notes or {}
    table = campaign_whatif(segments, scores, settings, measured)
    overlaps = overlap_table(segments, primary) if primary is not None else pd.DataFrame()
    actions = segment_actions(segments, snapshot, settings, currency)
    cutoff = str(pd.Timestamp(snapshot["cutoff"].iloc[0]).date()) if len(snapshot) else ""
    summary = {
        "cutoff": cutoff,
        "customers": len(snapshot),
        "scored": scored_customers(scores),
        "currency": currency,
        "language": settings.language,
        "model_versions": model_versions or {},
        "max_share": settings.max_share,
        "coupon": {"rate": settings.whatif.coupon_rate, "cap": settings.whatif.coupon_cap},
        "whatif_base_rate": base_rate_window(scores, settings),
        "segments": {
            name: {
                "members": len(members),
                **(
                    {
                        "primary": int(overlaps.loc[name, "primary"]),
                        "overlaps": {
                            column.removeprefix("also "): int(overlaps.loc[name, column])
                            for column in overlaps.columns
                            if column.startswith("also ") and overlaps.loc[name, column]
                        },
                    }
                    if name in overlaps.index
                    else {}
                ),
                "note": notes.get(name, ""),
                "action": actions[name],
                "ranked_by": ranked_by(name, settings, scores),
                "total_expected_value": float(np.nansum(members.get("expected_value", 0.0))),
                "whatif": table[table["segment"] == name]
                .drop(columns=["segment"])
                .to_dict("records"),
            }
            for name, members in segments.items()
        },
    }
    lines = [
        f"# Segments at {cutoff}",
        "",
        f"{len(snapshot):,} customers, {summary['scored']:,} scored; no segment holds more "
        f"than {settings.max_share:.0%} of the scored; coupon {settings.whatif.coupon_rate:.0%} "
        f"{_capped(settings.whatif.coupon_cap, currency, settings.language)}.",
        "A customer's one campaign is their primary segment (the first of `segments.priority`",
        "they belong to); `primary` counts those, `overlaps` the members shared with others.",
        "",
        "| segment | members | primary | overlaps | ranked by | action | note |",
        "|---|---:|---:|---|---|---|---|",
    ]
    for name, info in summary["segments"].items():
        shared = ", ".join(f"{k} {v:,}" for k, v in info.get("overlaps", {}).items()) or "-"
        primary_count = f"{info['primary']:,}" if "primary" in info else "-"
        lines.append(
            f"| {name} | {info['members']:,} | {primary_count} | {shared} | {info['ranked_by']} "
            f"| {info['action']} | {info['note'] or '-'} |"
        )
    lines += [
        "",
        "## Campaign what-if",
        "",
        "Uplift by source: the live uplift model (mean predicted uplift, extra buyers = the sum",
        "over the members), the latest campaign that targeted the segment (measured, 95% CI;",
        "its money is the campaign's measured revenue uplift and coupon cost per customer, as",
        "`dangol measure` prices it), or the assumed points of `segments.whatif.uplifts_pp`",
        "(without either, or beside a measurement wider than they are). Every member counts,",
        "so members shared by two segments count in both.",
        base_rate_sentence(scores, settings),
        "",
        "| segment | source | base rate | uplift | extra buyers | extra revenue | coupon cost "
        "| net |",
        "|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for row in table.itertuples(index=False):
        lines.append(
            f"| {row.segment} | {row.source} | {row.baseline_rate:.1%} | {uplift_text(row)} | "
            f"{row.extra_buyers:,.1f} | {revenue_text(row, currency, settings.language)} | "
            f"{format_money(row.coupon_cost, currency, settings.language)} | "
            f"{format_money(row.net_extra_revenue, currency, settings.language)} |"
        )
    return summary, "\n".join(lines) + "\n"


def uplift_text(row) -> str:
    """A what-if row's uplift in points, with its interval when measured and the points
    applied when the rate could not move that far: "+7.71 pp (+5.4, +10.0)", "+7 pp
    (applied +1.0: the rate reaches 100%)"."""
    text = f"{row.uplift_pp:+.3g} pp"
    if np.isfinite(row.ci_low_pp) and np.isfinite(row.ci_high_pp):
        text += f" ({row.ci_low_pp:+.1f}, {row.ci_high_pp:+.1f})"
    if abs(row.applied_pp - row.uplift_pp) > 0.05:
        bound = "100%" if row.uplift_pp > 0 else "0%"
        text += f" (applied {row.applied_pp:+.1f}: the rate reaches {bound})"
    return text


def revenue_text(row, currency: str, language: str) -> str:
    """Extra revenue, with its interval when it was measured ("unbounded" where resampling
    could not bound an end)."""
    from models.reasons import format_money

    text = format_money(row.extra_revenue, currency, language)
    low, high = row.extra_revenue_ci_low, row.extra_revenue_ci_high
    if not (np.isnan(low) or np.isnan(high)):
        ends = (
            format_money(end, currency, language) if np.isfinite(end) else "unbounded"
            for end in (low, high)
        )
        text += " ({}, {})".format(*ends)
    return text
