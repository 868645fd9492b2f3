"""Point-in-time features and labels (DESIGN §3.2-3.3), many cutoffs at once, on DuckDB.

Every feature of a row (customer, cutoff) is computed from events strictly before the cutoff;
labels look only at [cutoff, cutoff + horizon). One SQL statement per table joins the events
to the cutoffs, so a training frame of many cutoffs costs one pass, not one pass per cutoff.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import duckdb
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from features.schema import ShopTables
from features.targets import LABELS, TARGETS, WORTH_OUTCOMES
from features.tiers import (
    TierSettings,
    current_tier_line,
    lines_at,
    next_tier_line,
    tier_of_spend,
)

KEYS = ["customer_id", "cutoff"]
# spend_trend_90d compares the last 90 days with the 90 before, whatever the windows
TREND_WINDOW_DAYS = 90
# where the cutoff falls in the calendar year: the same for every customer at one cutoff, so
# the models learn the shop's seasonal level from cutoffs at different times of year; they
# describe the date, not the customer, and are never shown as a customer's reason
CALENDAR_FEATURES = ("season_sin", "season_cos")
DAYS_PER_YEAR = 365.25


class FeatureSettings(BaseModel):
    """What the feature engine computes: window lengths and the high-price line."""

    model_config = ConfigDict(extra="forbid")

    windows_days: list[int] = Field(default=[30, 90, 180, 365], min_length=1)
    high_price_line: float = Field(1_000_000, gt=0)

    def windows(self) -> list[int]:
        """The configured windows plus 90 days, which the spend trend always needs."""
        return sorted({*self.windows_days, TREND_WINDOW_DAYS})


class LabelSettings(BaseModel):
    """Label horizon H: labels look at [cutoff, cutoff + H); the money target looks at
    [cutoff, cutoff + value horizon)."""

    model_config = ConfigDict(extra="forbid")

    horizon_days: int = Field(90, gt=0)
    # The longest value horizon wanted. Training uses the longest feature window up to it
    # that the data can test out of time (three horizons of history: training, validation and
    # test labels must not overlap), so a one-year log still gets a value over H; the
    # horizon used is recorded in the release (docs/evaluation.md, Value).
    value_horizon_days: int = Field(365, gt=0)

    @model_validator(mode="after")
    def _value_looks_at_least_as_far(self) -> LabelSettings:
        if self.value_horizon_days >= self.horizon_days:
            return self
        if "value_horizon_days" not in self.model_fields_set:
            self.value_horizon_days = self.horizon_days  # the default, below a long H
        else:
            raise ValueError(
                f"value_horizon_days ({self.value_horizon_days}) must be at least horizon_days "
                f"({self.horizon_days}): the value target looks over H or longer"
            )
        return self


def _connect(tables: ShopTables) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    for name, frame in tables.present().items():
        con.register(name, frame)
    return con


def _register_cutoffs(con: duckdb.DuckDBPyConnection, cutoffs: Sequence[datetime]) -> None:
    frame = pd.DataFrame({"cutoff": pd.to_datetime(sorted(set(cutoffs))).astype("datetime64[ns]")})
    con.register("cutoffs", frame)


def _population_sql(present: set[str]) -> str:
    """Customers known before each cutoff: signed up (or first seen) strictly before it."""
    first_seen = ["SELECT customer_id, min(ordered_at) AS seen FROM orders GROUP BY 1"]
    if "content_views" in present:
        first_seen.append("SELECT customer_id, min(viewed_at) FROM content_views GROUP BY 1")
    if "customers" in present:
        first_seen.append("SELECT customer_id, min(signed_up_at) FROM customers GROUP BY 1")
    union = " UNION ALL ".join(first_seen)
    return f"""
        WITH seen AS (SELECT customer_id, min(seen) AS since FROM ({union}) GROUP BY 1)
        SELECT s.customer_id, c.cutoff,
               date_diff('second', s.since, c.cutoff) / 86400.0 AS tenure_days
        FROM seen s JOIN cutoffs c ON s.since < c.cutoff
    """


def _order_features_sql(features: FeatureSettings, tiers: TierSettings) -> str:
    windows = ",\n".join(
        f"count(*) FILTER (WHERE o.ordered_at >= c.cutoff - INTERVAL {w} DAY) AS orders_{w}d,\n"
        f"coalesce(sum(o.amount) FILTER (WHERE o.ordered_at >= c.cutoff - INTERVAL {w} DAY), 0)"
        f" AS spend_{w}d"
        for w in features.windows()
    )
    return f"""
        WITH ranked AS (
            -- one sort per (customer, cutoff): the previous order of an order before the
            -- cutoff is itself before the cutoff, so the gap needs no later event.
            -- back = order number counted back from the cutoff: 1 = the last order before it
            SELECT o.*, c.cutoff,
                   date_diff('second', lag(o.ordered_at) OVER w, o.ordered_at) / 86400.0
                       AS gap_days,
                   count(*) OVER (PARTITION BY o.customer_id, c.cutoff)
                       - row_number() OVER w + 1 AS back
            FROM orders o JOIN cutoffs c ON o.ordered_at < c.cutoff
            WINDOW w AS (PARTITION BY o.customer_id, c.cutoff ORDER BY o.ordered_at, o.order_id)
        )
        SELECT o.customer_id, c.cutoff,
            count(*) AS orders_lifetime,
            sum(o.amount) AS spend_lifetime,
            avg(o.amount) AS avg_order_value,
            median(o.amount) AS median_order_value,
            max(o.amount) AS max_order_value,
            date_diff('second', max(o.ordered_at), c.cutoff) / 86400.0 AS days_since_last_order,
            date_diff('second', min(o.ordered_at), c.cutoff) / 86400.0 AS days_since_first_order,
            {windows},
            coalesce(sum(o.amount) FILTER (WHERE o.ordered_at >= c.cutoff - INTERVAL 180 DAY
                                           AND o.ordered_at < c.cutoff - INTERVAL 90 DAY), 0)
                AS spend_prev_90d,
            coalesce(sum(o.amount) FILTER (
                WHERE o.ordered_at >= c.cutoff - INTERVAL {tiers.window_days} DAY), 0)
                AS tier_window_spend,
            avg(o.gap_days) AS mean_gap_days,
            median(o.gap_days) AS median_gap_days,
            max(o.gap_days) FILTER (WHERE o.back = 1) AS last_gap_days,
            avg(o.gap_days) FILTER (WHERE o.back <= 3) AS recent_gap_days,
            avg(o.gap_days) FILTER (WHERE o.back > 3) AS earlier_gap_days,
            -- gaps against their order number (later orders have smaller `back`)
            regr_slope(o.gap_days, -o.back) AS gap_slope,
            avg(o.amount) FILTER (WHERE o.back <= 3) AS recent_order_value
        FROM ranked o JOIN cutoffs c USING (cutoff)
        GROUP BY o.customer_id, c.cutoff
    """


def _view_features_sql(features: FeatureSettings) -> str:
    line = features.high_price_line
    windows = ",\n".join(
        f"count(*) FILTER (WHERE v.viewed_at >= c.cutoff - INTERVAL {w} DAY) AS views_{w}d"
        for w in features.windows()
    )
    return f"""
        SELECT v.customer_id, c.cutoff,
            count(*) AS views_lifetime,
            {windows},
            date_diff('second', max(v.viewed_at), c.cutoff) / 86400.0 AS days_since_last_view,
            -- ties at the last instant: the highest price, so the value is deterministic
            arg_max(v.price, (v.viewed_at, v.price)) AS last_viewed_price,
            avg(v.price) AS mean_viewed_price,
            median(v.price) AS median_viewed_price,
            max(v.price) AS max_viewed_price,
            count(*) FILTER (WHERE v.price >= {line}) AS high_price_views,
            avg(CASE WHEN v.price >= {line} THEN 1.0 ELSE 0.0 END) AS high_price_view_share
        FROM content_views v JOIN cutoffs c ON v.viewed_at < c.cutoff
        GROUP BY v.customer_id, c.cutoff
    """


def _reseller_features_sql() -> str:
    return """
        WITH per_order AS (
            -- units of a product in one order (a product may sit on several lines)
            SELECT o.customer_id, c.cutoff, i.order_id, i.product_id,
                   sum(i.quantity) AS units, sum(i.quantity * i.unit_price) AS spend
            FROM order_items i
            JOIN orders o USING (order_id)
            JOIN cutoffs c ON o.ordered_at < c.cutoff
            GROUP BY 1, 2, 3, 4
        ),
        per_product AS (
            SELECT customer_id, cutoff, product_id,
                   sum(units) AS units, sum(spend) AS spend, avg(units) AS units_per_order
            FROM per_order GROUP BY 1, 2, 3
        ),
        usual AS (
            -- a product's usual units per order: the median customer's, so a few frequent bulk
            -- buyers do not make themselves the norm; a bulk product everyone buys in quantity
            -- (fuel, water) has a large usual quantity
            SELECT cutoff, product_id, median(units_per_order) AS usual_units
            FROM per_product GROUP BY 1, 2
        )
        SELECT p.customer_id, p.cutoff,
               max(p.units) AS max_units_one_product,
               max(p.spend) / nullif(sum(p.spend), 0) AS top_product_spend_share,
               max(p.units_per_order / nullif(u.usual_units, 0)) AS max_units_vs_usual
        FROM per_product p JOIN usual u USING (cutoff, product_id)
        GROUP BY 1, 2
    """


def _signup_features_sql() -> str:
    return """
        SELECT s.customer_id, c.cutoff,
               date_diff('second', s.signed_up_at, c.cutoff) / 86400.0 AS days_since_signup
        FROM (SELECT customer_id, min(signed_up_at) AS signed_up_at FROM customers GROUP BY 1) s
        JOIN cutoffs c ON s.signed_up_at < c.cutoff
    """


def _derive(frame: pd.DataFrame, tiers: TierSettings) -> pd.DataFrame:
    """Ratios and tier columns that follow from the aggregated columns."""
    out = frame
    out["spend_trend_90d"] = np.log1p(out["spend_90d"]) - np.log1p(out["spend_prev_90d"])
    out["gap_acceleration"] = out["recent_gap_days"] / out["earlier_gap_days"]
    out["last_gap_vs_median"] = out["last_gap_days"] / out["median_gap_days"]
    out["overdue_ratio"] = out["days_since_last_order"] / out["median_gap_days"]
    out["recent_vs_avg_order_value"] = out["recent_order_value"] / out["avg_order_value"]
    # peers: the median customer's usual gap at the same cutoff (only pre-cutoff data)
    peers = out.groupby("cutoff")["median_gap_days"].transform("median")
    out["gap_vs_peers"] = out["median_gap_days"] / peers
    if "days_since_signup" in out:
        first_order = out["days_since_signup"] - out["days_since_first_order"]
        out["signup_to_first_order_days"] = first_order
    if "last_viewed_price" in out:
        out["last_vs_mean_viewed_price"] = out["last_viewed_price"] / out["mean_viewed_price"]
        out["last_vs_median_viewed_price"] = out["last_viewed_price"] / out["median_viewed_price"]
        out["viewed_price_vs_aov"] = out["mean_viewed_price"] / out["avg_order_value"]
    spend = out["tier_window_spend"].fillna(0.0).to_numpy()
    tier = np.zeros(len(out), dtype="int64")
    upper = np.zeros(len(out))
    lower = np.zeros(len(out))
    # lines per cutoff: fixed for absolute tiers, that date's spend quantiles otherwise
    for rows in out.groupby("cutoff").indices.values():
        lines = lines_at(spend[rows], tiers)
        tier[rows] = tier_of_spend(spend[rows], tiers, lines)
        upper[rows] = next_tier_line(tier[rows], tiers, lines)
        lower[rows] = current_tier_line(tier[rows], tiers, lines)
    out["tier"] = tier
    out["distance_to_next_tier"] = upper - spend
    out["margin_above_tier_line"] = spend - lower
    add_calendar(out)
    return out.replace([np.inf, -np.inf], np.nan)


def add_calendar(out: pd.DataFrame) -> None:
    """season_sin, season_cos: the cutoff's day of the year as an angle (1 January = 0)."""
    day = pd.to_datetime(out["cutoff"]).dt.day_of_year.to_numpy(dtype="float64")
    angle = 2 * np.pi * (day - 1) / DAYS_PER_YEAR
    out["season_sin"], out["season_cos"] = np.sin(angle), np.cos(angle)


def features_sql(present: set[str], features: FeatureSettings, tiers: TierSettings) -> str:
    """The one statement (DuckDB dialect) that aggregates every feature of every (customer,
    cutoff) from the tables in `present` and a `cutoffs` table; other engines transpile it
    (features.spark). Ratios and tiers follow in finish_features."""
    parts = [_order_features_sql(features, tiers)]
    if "content_views" in present:
        parts.append(_view_features_sql(features))
    if "order_items" in present:
        parts.append(_reseller_features_sql())
    if "customers" in present:
        parts.append(_signup_features_sql())
    # one statement: the engine joins the per-table aggregates (faster than pandas merges);
    # USING joins keep the keys once under `*` in every SQL dialect
    ctes = [f"population AS ({_population_sql(present)})"]
    ctes += [f"part{i} AS ({sql})" for i, sql in enumerate(parts)]
    joins = " ".join(f"LEFT JOIN part{i} USING (customer_id, cutoff)" for i in range(len(parts)))
    return f"WITH {', '.join(ctes)} SELECT * FROM population {joins}"


def finish_features(frame: pd.DataFrame, tiers: TierSettings) -> pd.DataFrame:
    """Aggregates -> the feature frame: empty windows count 0, then ratios and tiers (per
    cutoff: everything here looks only at rows of the same cutoff), ids as strings, sorted."""
    counts = [c for c in frame.columns if c.startswith(("orders_", "spend_", "views_"))]
    counts += [c for c in ("high_price_views", "tier_window_spend") if c in frame]
    frame[counts] = frame[counts].fillna(0.0)
    frame = _derive(frame, tiers)
    frame["customer_id"] = frame["customer_id"].astype("string")
    return frame.sort_values(KEYS, ignore_index=True)


def build_features(
    tables: ShopTables,
    cutoffs: Sequence[datetime],
    features: FeatureSettings,
    tiers: TierSettings,
) -> pd.DataFrame:
    """One row per (customer known before the cutoff, cutoff) with every feature as of then.

    Features that need an optional table (views, order lines) are absent when it is missing.
    """
    con = _connect(tables)
    _register_cutoffs(con, cutoffs)
    frame = con.sql(features_sql(set(tables.present()), features, tiers)).df()
    con.close()
    return finish_features(frame, tiers)


def labels_sql(
    labels: LabelSettings, tiers: TierSettings, value_horizon_days: int | None = None
) -> str:
    """Outcomes per (customer, cutoff) with an order in [cutoff, cutoff + max(H, value
    horizon)) (DuckDB dialect; other engines transpile it). See build_labels."""
    horizon = labels.horizon_days
    value_horizon = value_horizon_days or horizon
    in_horizon = f"r.ordered_at < c.cutoff + INTERVAL {horizon} DAY"
    return f"""
        WITH rolling AS (
            SELECT customer_id, order_id, ordered_at, amount,
                   sum(amount) OVER (PARTITION BY customer_id ORDER BY ordered_at
                       RANGE BETWEEN INTERVAL {tiers.window_days} DAY PRECEDING
                       AND CURRENT ROW) AS trailing_spend
            FROM orders
        )
        SELECT r.customer_id, c.cutoff,
               count(*) FILTER (WHERE {in_horizon}) > 0 AS bought,
               date_diff('second', c.cutoff, min(r.ordered_at) FILTER (WHERE {in_horizon}))
                   / 86400.0 AS days_to_next_order,
               max(r.trailing_spend) FILTER (WHERE {in_horizon}) AS max_trailing_spend,
               arg_min(r.amount, (r.ordered_at, r.order_id)) FILTER (WHERE {in_horizon})
                   AS first_order_amount,
               coalesce(sum(r.amount) FILTER (
                   WHERE r.ordered_at < c.cutoff + INTERVAL {value_horizon} DAY), 0) AS spend
        FROM rolling r JOIN cutoffs c
          ON r.ordered_at >= c.cutoff
         AND r.ordered_at < c.cutoff + INTERVAL {max(horizon, value_horizon)} DAY
        GROUP BY 1, 2
    """


def build_labels(
    tables: ShopTables,
    cutoffs: Sequence[datetime],
    labels: LabelSettings,
    tiers: TierSettings,
    value_horizon_days: int | None = None,
) -> pd.DataFrame:
    """Outcomes after each cutoff per (customer, cutoff) for customers with any order in
    [cutoff, cutoff + max(H, value horizon)).

    Over [cutoff, cutoff + H): `bought` (any order), `days_to_next_order` (from the cutoff
    to the first order, in days), `first_order_amount` (its amount; the earlier order id
    when two share a time) and `max_trailing_spend`, the highest trailing tier spend
    taken just after an order (attach_labels compares it with the lowest VIP line). Over
    [cutoff, cutoff + value horizon) (H when not given): `spend`. Customers without an order
    in either window get no row (attach_labels fills no order and no spend).
    """
    con = _connect(tables)
    _register_cutoffs(con, cutoffs)
    out = con.sql(labels_sql(labels, tiers, value_horizon_days)).df()
    con.close()
    out["customer_id"] = out["customer_id"].astype("string")
    return out


def attach_labels(frame: pd.DataFrame, outcomes: pd.DataFrame, tiers: TierSettings) -> pd.DataFrame:
    """Add every target's label column (features.targets), each NaN outside its population.

    The outcomes the targets' labels read: `bought` (any order in the horizon), `spend` (over
    the value horizon; NaN where the caller marked it unobserved) and `vip_reached` (the
    trailing tier spend after an order in the horizon reached the lowest VIP line in force at
    the cutoff: fixed, or that date's spend quantile) and `days_to_next_order` (NaN: no
    order within H). `first_order_amount` stays for the worth models (`WORTH_OUTCOMES`),
    where its target converted (NaN elsewhere); it is never a model input.
    """
    merged = frame.merge(outcomes, on=KEYS, how="left")
    merged["bought"] = merged["bought"].fillna(False).astype(bool)
    merged["spend"] = merged["spend"].fillna(0.0)
    vip_index = max(tiers.vip_tiers) - 1
    vip_line = merged.groupby("cutoff")["tier_window_spend"].transform(
        lambda spend: lines_at(spend.to_numpy(), tiers)[vip_index]
    )
    merged["vip_reached"] = merged["max_trailing_spend"].fillna(0.0) >= vip_line
    for spec in TARGETS.values():
        merged[spec.name] = spec.label(merged, tiers)
        if spec.worth_outcome:  # what a conversion of this target was worth: its rows only
            merged[spec.worth_outcome] = merged[spec.worth_outcome].where(merged[spec.name] == 1)
    outcomes = ["bought", "max_trailing_spend", "vip_reached", "spend", "days_to_next_order"]
    return merged.drop(columns=outcomes)


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The model inputs: every column except keys, labels and the worth outcomes."""
    return [c for c in frame.columns if c not in (*KEYS, *LABELS, *WORTH_OUTCOMES)]


def labelled_cutoffs(
    first_event: datetime,
    data_end: datetime,
    every_days: int,
    horizon_days: int,
    min_history_days: int,
) -> list[pd.Timestamp]:
    """Cutoffs every N days whose whole label horizon lies inside the data, latest first-aligned.

    Aligned to the last possible cutoff (data_end - H) so that the test window is as recent
    as the data allows.
    """
    last = pd.Timestamp(data_end).normalize() - pd.Timedelta(days=horizon_days)
    first = pd.Timestamp(first_event).normalize() + pd.Timedelta(days=min_history_days)
    if last < first:
        return []
    steps = int((last - first).days // every_days)
    return [last - pd.Timedelta(days=every_days * k) for k in range(steps, -1, -1)]


def training_frame(
    tables: ShopTables,
    cutoffs: Sequence[datetime],
    features: FeatureSettings,
    labels: LabelSettings,
    tiers: TierSettings,
    value_horizon_days: int | None = None,
) -> pd.DataFrame:
    """Features and labels stacked over the given cutoffs (spend over `value_horizon_days`,
    H when not given)."""
    frame = build_features(tables, cutoffs, features, tiers)
    outcomes = build_labels(tables, cutoffs, labels, tiers, value_horizon_days)
    return attach_labels(frame, outcomes, tiers)
