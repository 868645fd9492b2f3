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

from models.segments import WhatIfSettings


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
        column = probability_column.get(name, "repurchase_score")
        probability = (
            members[column].to_numpy("float64", na_value=np.nan)
            if column in members
            else np.zeros(len(members))
        )
        values = order_value.reindex(members["customer_id"]).to_numpy("float64", na_value=np.nan)
        for row in segment_whatif(probability, values, settings):
            rows.append({"segment": name, "members": len(members), **row})
    return pd.DataFrame(rows)
