"""Campaign what-if (DESIGN §1): if a segment's purchase rate rises by 3, 5 or 7 points,
how many extra buyers and how much extra revenue follow, and what do the coupons cost?

Per member: the expected order value (own average order, else the mean viewed price). Extra
buyers = uplift x members; extra revenue = uplift x sum of expected order values. Coupons are
used by every buyer the campaign brings (baseline buyers too, since they also get the
coupon): cost = (baseline rate + uplift) x sum of min(rate x order value, cap).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.targets import ranking_target
from models.segments import (
    RANKED_BY,
    RESELLERS,
    SegmentSettings,
    WhatIfSettings,
    expected_order_value,
    overlap_table,
    render_action,
    scored_customers,
)


def segment_whatif(
    probability: np.ndarray, order_value: np.ndarray, settings: WhatIfSettings
) -> list[dict[str, float]]:
    """One row per uplift for a segment given each member's purchase probability and value."""
    value = np.nan_to_num(np.asarray(order_value, dtype="float64"), nan=0.0)
    rate = float(np.nanmean(probability)) if len(probability) else 0.0
    rate = rate if np.isfinite(rate) else 0.0
    coupon = np.minimum(settings.coupon_rate * value, settings.coupon_cap)
    rows = []
    for pp in settings.uplifts_pp:
        uplift = pp / 100.0
        new_rate = min(rate + uplift, 1.0)
        gained = new_rate - rate
        rows.append(
            {
                "uplift_pp": float(pp),
                "baseline_rate": rate,
                "baseline_buyers": rate * len(value),
                "baseline_revenue": rate * float(value.sum()),
                "extra_buyers": gained * len(value),
                "extra_revenue": gained * float(value.sum()),
                "coupon_cost": new_rate * float(coupon.sum()),
                "net_extra_revenue": gained * float(value.sum()) - new_rate * float(coupon.sum()),
            }
        )
    return rows


def whatif_table(
    segments: dict[str, pd.DataFrame],
    probability_column: dict[str, str],
    order_value: pd.Series,
    settings: WhatIfSettings,
) -> pd.DataFrame:
    """The what-if of every segment; `order_value` is indexed by customer_id."""
    rows = []
    for name, members in segments.items():
        column = probability_column[name]
        probability = (
            members[column].to_numpy("float64", na_value=np.nan)
            if column in members
            else np.zeros(len(members))
        )
        values = order_value.reindex(members["customer_id"]).to_numpy("float64", na_value=np.nan)
        for row in segment_whatif(probability, values, settings):
            rows.append({"segment": name, "members": len(members), **row})
    return pd.DataFrame(rows)


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
    settings: SegmentSettings,
    currency: str,
    model_versions: dict[str, str] | None = None,
    notes: dict[str, str] | None = None,
    primary: pd.Series | None = None,
    scores: pd.DataFrame | None = None,
) -> tuple[dict, str]:
    """The export's summary: sizes, primary members and overlaps, why a segment is empty or
    capped (`notes`), ranking score, action with its numbers, what-if per segment (JSON +
    markdown). `primary` is each customer's primary segment, indexed by customer id."""
    from models.reasons import format_money

    notes = notes or {}
    order_value = pd.Series(
        expected_order_value(snapshot), index=snapshot["customer_id"].to_numpy()
    )
    probability = {name: ranking_target(name).score_column for name in segments}
    table = whatif_table(
        {k: v for k, v in segments.items() if k != RESELLERS},
        probability,
        order_value,
        settings.whatif,
    )
    overlaps = overlap_table(segments, primary) if primary is not None else pd.DataFrame()
    actions = segment_actions(segments, snapshot, settings, currency)
    cutoff = str(pd.Timestamp(snapshot["cutoff"].iloc[0]).date()) if len(snapshot) else ""
    summary = {
        "cutoff": cutoff,
        "customers": len(snapshot),
        "scored": scored_customers(scores) if scores is not None else len(snapshot),
        "currency": currency,
        "language": settings.language,
        "model_versions": model_versions or {},
        "max_share": settings.max_share,
        "coupon": {"rate": settings.whatif.coupon_rate, "cap": settings.whatif.coupon_cap},
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
                "ranked_by": RANKED_BY.get(name, "expected_value"),
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
        f"capped at {format_money(settings.whatif.coupon_cap, currency, settings.language)}.",
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
        "| segment | uplift | extra buyers | extra revenue | coupon cost | net |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in table.itertuples(index=False):
        lines.append(
            f"| {row.segment} | +{row.uplift_pp:g} pp | {row.extra_buyers:,.1f} | "
            f"{format_money(row.extra_revenue, currency, settings.language)} | "
            f"{format_money(row.coupon_cost, currency, settings.language)} | "
            f"{format_money(row.net_extra_revenue, currency, settings.language)} |"
        )
    return summary, "\n".join(lines) + "\n"
