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


def segment_summary(
    segments: dict[str, pd.DataFrame],
    snapshot: pd.DataFrame,
    settings: SegmentSettings,
    currency: str,
    model_versions: dict[str, str] | None = None,
) -> tuple[dict, str]:
    """The export's summary: sizes, ranking score, action, what-if per segment (JSON + markdown)."""
    from models.reasons import format_money

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
    cutoff = str(pd.Timestamp(snapshot["cutoff"].iloc[0]).date()) if len(snapshot) else ""
    summary = {
        "cutoff": cutoff,
        "customers": len(snapshot),
        "currency": currency,
        "language": settings.language,
        "model_versions": model_versions or {},
        "coupon": {"rate": settings.whatif.coupon_rate, "cap": settings.whatif.coupon_cap},
        "segments": {
            name: {
                "members": len(members),
                "action": settings.action(name),
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
        f"{len(snapshot):,} customers scored; coupon {settings.whatif.coupon_rate:.0%} "
        f"capped at {format_money(settings.whatif.coupon_cap, currency)}.",
        "",
        "| segment | members | ranked by | action |",
        "|---|---:|---|---|",
    ]
    for name, info in summary["segments"].items():
        lines.append(f"| {name} | {info['members']:,} | {info['ranked_by']} | {info['action']} |")
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
            f"{format_money(row.extra_revenue, currency)} | "
            f"{format_money(row.coupon_cost, currency)} | "
            f"{format_money(row.net_extra_revenue, currency)} |"
        )
    return summary, "\n".join(lines) + "\n"
