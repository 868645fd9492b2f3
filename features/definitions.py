"""The feature catalogue: name, meaning, unit, window and needed table of every feature.

The engine (features.snapshot) and the documentation (docs/features.md) both follow this
list; a test checks that the engine's columns are exactly these names, and another that the
committed docs/features.md is what `python -m features.definitions` prints, so neither can
drift from the code.
"""

from __future__ import annotations

from dataclasses import dataclass

from features.snapshot import CALENDAR_FEATURES, FeatureSettings
from features.tiers import TierSettings

LIFETIME = "all history before the cutoff"


@dataclass(frozen=True)
class FeatureDef:
    """One model input: what it means, its unit, the time window it looks at, and the
    contract table it needs (absent when that optional table is missing)."""

    name: str
    meaning: str
    unit: str
    window: str
    needs: str = "orders"


def _windowed(features: FeatureSettings) -> list[FeatureDef]:
    out: list[FeatureDef] = []
    for w in features.windows():
        win = f"[cutoff - {w} d, cutoff)"
        out.append(FeatureDef(f"orders_{w}d", "number of orders", "orders", win))
        out.append(FeatureDef(f"spend_{w}d", "sum of order amounts", "currency", win))
    return out


def _view_windows(features: FeatureSettings) -> list[FeatureDef]:
    return [
        FeatureDef(
            f"views_{w}d",
            "number of product views",
            "views",
            f"[cutoff - {w} d, cutoff)",
            "content_views",
        )
        for w in features.windows()
    ]


def feature_definitions(features: FeatureSettings, tiers: TierSettings) -> list[FeatureDef]:
    """Every feature build_features returns for these settings, in documentation order."""
    tier_win = f"[cutoff - {tiers.window_days} d, cutoff)"
    line = f"{features.high_price_line:,.0f}"
    gaps = "gaps between consecutive orders (ties by order_id) before the cutoff"
    v = "content_views"
    return [
        FeatureDef(
            "tenure_days",
            "days since the customer was first known (sign-up, first order or first view)",
            "days",
            LIFETIME,
            "orders",
        ),
        FeatureDef(
            "days_since_signup",
            "days since sign-up (NaN if the sign-up date is not before the cutoff)",
            "days",
            LIFETIME,
            "customers",
        ),
        FeatureDef(
            "signup_to_first_order_days",
            "days from sign-up to the first order before the cutoff (negative if the first "
            "order precedes the recorded sign-up)",
            "days",
            LIFETIME,
            "customers",
        ),
        FeatureDef("orders_lifetime", "number of orders", "orders", LIFETIME),
        FeatureDef("spend_lifetime", "sum of order amounts", "currency", LIFETIME),
        FeatureDef("avg_order_value", "mean order amount", "currency", LIFETIME),
        FeatureDef("median_order_value", "median order amount", "currency", LIFETIME),
        FeatureDef("max_order_value", "largest order amount", "currency", LIFETIME),
        FeatureDef("days_since_last_order", "days since the last order", "days", LIFETIME),
        FeatureDef("days_since_first_order", "days since the first order", "days", LIFETIME),
        *_windowed(features),
        FeatureDef(
            "spend_prev_90d",
            "sum of order amounts in the 90 days before the last 90",
            "currency",
            "[cutoff - 180 d, cutoff - 90 d)",
        ),
        FeatureDef(
            "tier_window_spend",
            "trailing spend the membership tier is computed from",
            "currency",
            tier_win,
        ),
        FeatureDef("mean_gap_days", f"mean of the {gaps}", "days", LIFETIME),
        FeatureDef("median_gap_days", f"median of the {gaps}", "days", LIFETIME),
        FeatureDef("last_gap_days", "gap between the last two orders", "days", LIFETIME),
        FeatureDef("recent_gap_days", "mean gap leading to the last 3 orders", "days", LIFETIME),
        FeatureDef(
            "earlier_gap_days", "mean gap leading to the orders before those", "days", LIFETIME
        ),
        FeatureDef(
            "gap_slope",
            "least-squares slope of each gap against its order number (negative = "
            "the cycle is speeding up)",
            "days per order",
            LIFETIME,
        ),
        FeatureDef("recent_order_value", "mean amount of the last 3 orders", "currency", LIFETIME),
        FeatureDef(
            "spend_trend_90d",
            "log1p(spend_90d) - log1p(spend_prev_90d)",
            "log ratio",
            "[cutoff - 180 d, cutoff)",
        ),
        FeatureDef(
            "gap_acceleration",
            "recent_gap_days / earlier_gap_days (< 1 = buying faster than before)",
            "ratio",
            LIFETIME,
        ),
        FeatureDef("last_gap_vs_median", "last_gap_days / median_gap_days", "ratio", LIFETIME),
        FeatureDef(
            "overdue_ratio",
            "days_since_last_order / median_gap_days (> 1 = later than usual)",
            "ratio",
            LIFETIME,
        ),
        FeatureDef(
            "gap_vs_peers",
            "median_gap_days / the median of median_gap_days over all customers at the "
            "same cutoff (< 1 = buys more often than peers)",
            "ratio",
            LIFETIME,
        ),
        FeatureDef(
            "recent_vs_avg_order_value",
            "recent_order_value / avg_order_value",
            "ratio",
            LIFETIME,
        ),
        FeatureDef("views_lifetime", "number of product views", "views", LIFETIME, v),
        *_view_windows(features),
        FeatureDef("days_since_last_view", "days since the last view", "days", LIFETIME, v),
        FeatureDef(
            "last_viewed_price",
            "price of the most recently viewed product (highest price among views at "
            "that same instant)",
            "currency",
            LIFETIME,
            v,
        ),
        FeatureDef("mean_viewed_price", "mean price of viewed products", "currency", LIFETIME, v),
        FeatureDef(
            "median_viewed_price", "median price of viewed products", "currency", LIFETIME, v
        ),
        FeatureDef("max_viewed_price", "highest viewed price", "currency", LIFETIME, v),
        FeatureDef("high_price_views", f"views of products priced >= {line}", "views", LIFETIME, v),
        FeatureDef(
            "high_price_view_share",
            f"share of views priced >= {line}",
            "share 0-1",
            LIFETIME,
            v,
        ),
        FeatureDef(
            "last_vs_mean_viewed_price",
            "last_viewed_price / mean_viewed_price",
            "ratio",
            LIFETIME,
            v,
        ),
        FeatureDef(
            "last_vs_median_viewed_price",
            "last_viewed_price / median_viewed_price",
            "ratio",
            LIFETIME,
            v,
        ),
        FeatureDef(
            "viewed_price_vs_aov",
            "mean_viewed_price / avg_order_value",
            "ratio",
            LIFETIME,
            v,
        ),
        FeatureDef(
            "max_units_one_product",
            "most units bought of a single product",
            "units",
            LIFETIME,
            "order_items",
        ),
        FeatureDef(
            "top_product_spend_share",
            "share of line spend (quantity x unit price) on the top product",
            "share 0-1",
            LIFETIME,
            "order_items",
        ),
        FeatureDef(
            "max_units_vs_usual",
            "largest ratio, over the products bought, of the customer's mean units per order "
            "of the product to the median of that mean over all its buyers before the cutoff "
            "(bulk products everyone buys in quantity stay near 1)",
            "ratio",
            LIFETIME,
            "order_items",
        ),
        FeatureDef(
            "tier",
            "membership tier from tier_window_spend (1 = highest)",
            "tier number",
            tier_win,
        ),
        FeatureDef(
            "distance_to_next_tier",
            "spend still needed to reach the tier above (NaN at the top)",
            "currency",
            tier_win,
        ),
        FeatureDef(
            "margin_above_tier_line",
            "spend that can fall away before dropping out of the current tier (distance "
            "to the downgrade line)",
            "currency",
            tier_win,
        ),
        *(
            FeatureDef(
                name,
                f"{fn} of 2 pi (day of the year of the cutoff - 1) / 365.25: the time of year, "
                "the same for every customer, so models can learn the shop's seasonal level (a "
                "classifier leaves them out when validation shows they hurt it, "
                "docs/evaluation.md); never shown as a reason",
                "-1 to 1",
                "the cutoff date",
            )
            for name, fn in zip(CALENDAR_FEATURES, ("sine", "cosine"), strict=True)
        ),
    ]


def feature_names(features: FeatureSettings, tiers: TierSettings, present: set[str]) -> list[str]:
    """Names of the features built when the tables in `present` exist."""
    return [f.name for f in feature_definitions(features, tiers) if f.needs in present]


def render_markdown(features: FeatureSettings, tiers: TierSettings) -> str:
    """docs/features.md for the given (default) settings."""
    lines = [
        "# Features",
        "",
        "Generated by `python -m features.definitions > docs/features.md` from",
        "`features/definitions.py`; a test fails when this file is stale. One row per",
        "(customer, cutoff); every feature uses only events strictly before the cutoff.",
        f"Windows shown for the default settings (windows {features.windows()} days,",
        f"tier window {tiers.window_days} days, high-price line {features.high_price_line:,.0f});",
        "the config changes them. A feature whose table is missing is absent.",
        "Ratios with a zero or missing denominator are NaN.",
        "",
        "| name | meaning | unit | window | needs table |",
        "| --- | --- | --- | --- | --- |",
    ]
    for f in feature_definitions(features, tiers):
        lines.append(f"| `{f.name}` | {f.meaning} | {f.unit} | {f.window} | {f.needs} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_markdown(FeatureSettings(), TierSettings()), end="")
