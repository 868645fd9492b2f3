"""The DuckDB feature engine against a brute-force oracle (a plain loop over raw events).

Like Feast's `find_asof_record` check: one slow, obviously correct reference; the fast
engine must agree with it on small random shops at hundreds of random cutoffs, including
ties at the cutoff instant, one-order customers, view-only customers, empty windows and
identical timestamps. Plus the leakage test and the missing-optional-table test.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from features.definitions import feature_definitions, feature_names
from features.schema import ShopTables
from features.snapshot import KEYS, FeatureSettings, build_features
from features.tiers import TierSettings

START = pd.Timestamp("2025-01-01")
SPAN_DAYS = 400
SETTINGS = FeatureSettings(windows_days=[7, 30, 90, 365], high_price_line=800.0)
TIERS = TierSettings(window_days=60, thresholds=[3000, 1200, 400, 100], vip_tiers=[1, 2])
DAY = 86400.0


def _times(rng: np.random.Generator, n: int) -> np.ndarray:
    """Event times on a coarse grid (whole hours, often midnight) so ties are frequent."""
    days = rng.integers(0, SPAN_DAYS, n)
    hours = np.where(rng.random(n) < 0.4, 0, rng.integers(0, 24, n))
    return (START + pd.to_timedelta(days * 24 + hours, unit="h")).to_numpy().copy()


def random_shop(seed: int, customers: int = 30) -> ShopTables:
    """A tiny shop mixing one-order, many-order, view-only and inactive customers."""
    rng = np.random.default_rng(seed)
    ids = [f"c{i:03d}" for i in range(customers)]
    orders, items, views = [], [], []
    serial = rng.permutation(10_000)  # order ids not in time order: tests the tie-break
    for cid in ids:
        kind = rng.choice(["none", "one", "many", "views_only"], p=[0.15, 0.25, 0.45, 0.15])
        n_orders = {"none": 0, "one": 1, "many": int(rng.integers(2, 10)), "views_only": 0}[kind]
        times = _times(rng, n_orders)
        if n_orders > 2 and rng.random() < 0.5:
            times[1] = times[0]  # two orders at the identical instant
        for t in times:
            oid = f"o{serial[len(orders)]:05d}"
            lines = int(rng.integers(1, 4))
            amount = 0.0
            for _ in range(lines):
                qty = float(rng.integers(1, 6))
                price = float(np.round(rng.lognormal(4.5, 1.0), 2))
                items.append((oid, f"p{rng.integers(0, 5)}", qty, price))
                amount += qty * price
            orders.append((oid, cid, t, round(amount, 2)))
        n_views = 0 if kind == "none" else int(rng.integers(0, 15))
        vtimes = _times(rng, n_views)
        if n_views > 2:
            vtimes[-1] = vtimes[0]  # identical view instants
        for t in vtimes:
            views.append((cid, t, f"p{rng.integers(0, 5)}", float(rng.lognormal(6.2, 0.8))))
    signup = _times(rng, customers)
    return ShopTables(
        orders=_frame(orders, ["order_id", "customer_id", "ordered_at", "amount"]),
        customers=_frame(list(zip(ids, signup, strict=True)), ["customer_id", "signed_up_at"]),
        order_items=_frame(items, ["order_id", "product_id", "quantity", "unit_price"]),
        content_views=_frame(views, ["customer_id", "viewed_at", "product_id", "price"]),
    )


def _frame(rows: list[tuple], columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=columns)
    for c in columns:
        if c.endswith("_id"):
            frame[c] = frame[c].astype("string")
        elif c.endswith("_at"):
            frame[c] = pd.to_datetime(frame[c]).astype("datetime64[ns]")
        else:
            frame[c] = frame[c].astype("float64")
    return frame


def random_cutoffs(tables: ShopTables, seed: int, n: int) -> list[pd.Timestamp]:
    """Half exactly at event instants (ties at the cutoff), half at random hours."""
    rng = np.random.default_rng(seed + 1)
    instants = pd.concat([tables.orders["ordered_at"], tables.content_views["viewed_at"]])
    tied = rng.choice(instants.to_numpy(), n // 2)
    free = START + pd.to_timedelta(rng.integers(0, (SPAN_DAYS + 30) * 24, n - n // 2), unit="h")
    return sorted({pd.Timestamp(t) for t in [*tied, *free]})


# ---- the oracle: plain Python over each customer's raw events ---------------------------


def _ratio(a: float, b: float) -> float:
    if a is None or b is None or math.isnan(a) or math.isnan(b) or b == 0:
        return math.nan
    return a / b


def _days(a: pd.Timestamp, b: pd.Timestamp) -> float:
    return (b - a).total_seconds() / DAY


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else math.nan


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _slope(xs: list[float], ys: list[float]) -> float:
    if len(xs) < 2:
        return math.nan
    mx, my = _mean(xs), _mean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var


def _tier(spend: float, tiers: TierSettings) -> int:
    tier = tiers.lowest_tier
    for i, line in enumerate(tiers.thresholds):
        if spend >= line:
            return i + 1
    return tier


def _order_part(orders: list[tuple], cut: pd.Timestamp, s: FeatureSettings, t: TierSettings):
    """Order features of one customer; `orders` are (time, id, amount) sorted by (time, id)."""
    row: dict[str, float] = {}
    before = [o for o in orders if o[0] < cut]
    amounts = [o[2] for o in before]

    def spend_since(days_from: float, days_to: float = 0.0) -> list[float]:
        lo, hi = cut - pd.Timedelta(days=days_from), cut - pd.Timedelta(days=days_to)
        return [o[2] for o in before if lo <= o[0] < hi]

    row["orders_lifetime"] = float(len(before))
    row["spend_lifetime"] = float(sum(amounts))
    row["avg_order_value"] = _mean(amounts)
    row["median_order_value"] = _median(amounts)
    row["max_order_value"] = max(amounts) if amounts else math.nan
    row["days_since_last_order"] = _days(before[-1][0], cut) if before else math.nan
    row["days_since_first_order"] = _days(before[0][0], cut) if before else math.nan
    for w in s.windows_days:
        inside = spend_since(w)
        row[f"orders_{w}d"] = float(len(inside))
        row[f"spend_{w}d"] = float(sum(inside))
    row["spend_prev_90d"] = float(sum(spend_since(180, 90)))
    row["tier_window_spend"] = float(sum(spend_since(t.window_days)))
    gaps = [_days(before[i - 1][0], before[i][0]) for i in range(1, len(before))]
    back = list(range(len(before) - 1, 0, -1))  # `back` of orders 2..n (1 = the last)
    row["mean_gap_days"] = _mean(gaps)
    row["median_gap_days"] = _median(gaps)
    row["last_gap_days"] = gaps[-1] if gaps else math.nan
    row["recent_gap_days"] = _mean([g for g, b in zip(gaps, back, strict=True) if b <= 3])
    row["earlier_gap_days"] = _mean([g for g, b in zip(gaps, back, strict=True) if b > 3])
    row["gap_slope"] = _slope([-b for b in back], gaps)
    row["recent_order_value"] = _mean(amounts[-3:])
    return row


def _view_part(views: list[tuple], cut: pd.Timestamp, s: FeatureSettings) -> dict[str, float]:
    before = [v for v in views if v[0] < cut]
    prices = [v[1] for v in before]
    row: dict[str, float] = {"views_lifetime": float(len(before))}
    for w in s.windows_days:
        row[f"views_{w}d"] = float(sum(1 for v in before if v[0] >= cut - pd.Timedelta(days=w)))
    last = max((v[0] for v in before), default=None)
    row["days_since_last_view"] = _days(last, cut) if before else math.nan
    row["last_viewed_price"] = max(v[1] for v in before if v[0] == last) if before else math.nan
    row["mean_viewed_price"] = _mean(prices)
    row["median_viewed_price"] = _median(prices)
    row["max_viewed_price"] = max(prices) if prices else math.nan
    high = sum(1 for p in prices if p >= s.high_price_line)
    row["high_price_views"] = float(high)
    row["high_price_view_share"] = high / len(prices) if prices else math.nan
    return row


def _item_part(lines: list[tuple], cut: pd.Timestamp, usual: dict[str, float]) -> dict[str, float]:
    units: dict[str, float] = {}
    spend: dict[str, float] = {}
    per_order: dict[str, dict[str, float]] = {}
    for when, product, qty, price, order in lines:
        if when < cut:
            units[product] = units.get(product, 0.0) + qty
            spend[product] = spend.get(product, 0.0) + qty * price
            orders = per_order.setdefault(product, {})
            orders[order] = orders.get(order, 0.0) + qty
    ratios = [_ratio(_mean(list(o.values())), usual[p]) for p, o in per_order.items()]
    ratios = [r for r in ratios if not math.isnan(r)]
    return {
        "max_units_one_product": max(units.values()) if units else math.nan,
        "top_product_spend_share": _ratio(max(spend.values()), sum(spend.values()))
        if spend
        else math.nan,
        "max_units_vs_usual": max(ratios) if ratios else math.nan,
    }


def _usual_units(lines: dict[str, list[tuple]], cut: pd.Timestamp) -> dict[str, float]:
    """Each product's median, over its buyers before `cut`, of their mean units per order."""
    by_product: dict[str, list[float]] = {}
    for customer_lines in lines.values():
        per_order: dict[tuple[str, str], float] = {}
        for when, product, qty, _price, order in customer_lines:
            if when < cut:
                per_order[(product, order)] = per_order.get((product, order), 0.0) + qty
        mine: dict[str, list[float]] = {}
        for (product, _order), qty in per_order.items():
            mine.setdefault(product, []).append(qty)
        for product, quantities in mine.items():
            by_product.setdefault(product, []).append(_mean(quantities))
    return {product: _median(values) for product, values in by_product.items()}


def oracle(
    tables: ShopTables, cutoffs: list[pd.Timestamp], s: FeatureSettings, t: TierSettings
) -> pd.DataFrame:
    """Every feature, one (customer, cutoff) at a time, from the raw rows."""
    orders: dict[str, list[tuple]] = {}
    for r in tables.orders.itertuples():
        orders.setdefault(r.customer_id, []).append((r.ordered_at, r.order_id, r.amount))
    for v in orders.values():
        v.sort(key=lambda o: (o[0], o[1]))
    views: dict[str, list[tuple]] = {}
    if tables.content_views is not None:
        for r in tables.content_views.itertuples():
            views.setdefault(r.customer_id, []).append((r.viewed_at, r.price))
    lines: dict[str, list[tuple]] = {}
    if tables.order_items is not None:
        owner = {r.order_id: (r.customer_id, r.ordered_at) for r in tables.orders.itertuples()}
        for r in tables.order_items.itertuples():
            cid, when = owner[r.order_id]
            lines.setdefault(cid, []).append(
                (when, r.product_id, r.quantity, r.unit_price, r.order_id)
            )
    signup: dict[str, pd.Timestamp] = {}
    if tables.customers is not None:
        signup = dict(
            zip(tables.customers["customer_id"], tables.customers["signed_up_at"], strict=False)
        )
    known = set(orders) | set(views) | set(signup)
    rows = []
    for cut in cutoffs:
        usual = _usual_units(lines, cut)
        for cid in sorted(known):
            firsts = [o[0] for o in orders.get(cid, [])] + [v[0] for v in views.get(cid, [])]
            firsts += [signup[cid]] if cid in signup else []
            since = min(firsts)
            if not since < cut:
                continue
            row: dict[str, object] = {"customer_id": cid, "cutoff": cut}
            row["tenure_days"] = _days(since, cut)
            # the date's place in the year, from the calendar: 1 January is angle 0
            angle = 2 * math.pi * (cut.timetuple().tm_yday - 1) / 365.25
            row["season_sin"], row["season_cos"] = math.sin(angle), math.cos(angle)
            row.update(_order_part(orders.get(cid, []), cut, s, t))
            if tables.content_views is not None:
                row.update(_view_part(views.get(cid, []), cut, s))
            if tables.order_items is not None:
                row.update(_item_part(lines.get(cid, []), cut, usual))
            if tables.customers is not None:
                joined = signup.get(cid)
                ok = joined is not None and joined < cut
                row["days_since_signup"] = _days(joined, cut) if ok else math.nan
                first = row["days_since_first_order"]
                row["signup_to_first_order_days"] = (
                    row["days_since_signup"] - first if ok else math.nan
                )
            _derived(row, t)
            rows.append(row)
    frame = pd.DataFrame(rows)
    peers = frame.groupby("cutoff")["median_gap_days"].transform("median")
    frame["gap_vs_peers"] = [
        _ratio(a, b) for a, b in zip(frame["median_gap_days"], peers, strict=False)
    ]
    return frame


def _derived(row: dict, t: TierSettings) -> None:
    row["spend_trend_90d"] = math.log1p(row["spend_90d"]) - math.log1p(row["spend_prev_90d"])
    row["gap_acceleration"] = _ratio(row["recent_gap_days"], row["earlier_gap_days"])
    row["last_gap_vs_median"] = _ratio(row["last_gap_days"], row["median_gap_days"])
    row["overdue_ratio"] = _ratio(row["days_since_last_order"], row["median_gap_days"])
    row["recent_vs_avg_order_value"] = _ratio(row["recent_order_value"], row["avg_order_value"])
    if "last_viewed_price" in row:
        row["last_vs_mean_viewed_price"] = _ratio(
            row["last_viewed_price"], row["mean_viewed_price"]
        )
        row["last_vs_median_viewed_price"] = _ratio(
            row["last_viewed_price"], row["median_viewed_price"]
        )
        row["viewed_price_vs_aov"] = _ratio(row["mean_viewed_price"], row["avg_order_value"])
    spend = row["tier_window_spend"]
    tier = _tier(spend, t)
    row["tier"] = tier
    row["distance_to_next_tier"] = t.thresholds[tier - 2] - spend if tier > 1 else math.nan
    line = t.thresholds[tier - 1] if tier <= len(t.thresholds) else 0.0
    row["margin_above_tier_line"] = spend - line


def _compare(engine: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert sorted(engine.columns) == sorted(expected.columns)
    cols = sorted(engine.columns)
    left = engine[cols].sort_values(KEYS, ignore_index=True)
    right = expected[cols].sort_values(KEYS, ignore_index=True)
    left["customer_id"] = left["customer_id"].astype(str)
    right["customer_id"] = right["customer_id"].astype(str)
    right["cutoff"] = right["cutoff"].astype("datetime64[ns]")
    left["cutoff"] = left["cutoff"].astype("datetime64[ns]")
    pd.testing.assert_frame_equal(left, right, check_dtype=False, rtol=1e-9, atol=1e-7)


# ---- tests ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_engine_matches_oracle_at_many_random_cutoffs(seed: int) -> None:
    tables = random_shop(seed)
    cutoffs = random_cutoffs(tables, seed, 120)
    engine = build_features(tables, cutoffs, SETTINGS, TIERS)
    expected = oracle(tables, cutoffs, SETTINGS, TIERS)
    assert len(engine) > 1000
    _compare(engine, expected)


def test_oracle_cases_are_exercised() -> None:
    """The random shops really contain the edge cases the oracle test claims to cover."""
    tables = random_shop(1)
    cutoffs = random_cutoffs(tables, 1, 120)
    expected = oracle(tables, cutoffs, SETTINGS, TIERS)
    instants = set(tables.orders["ordered_at"]) | set(tables.content_views["viewed_at"])
    assert sum(c in instants for c in cutoffs) >= 30  # ties at the cutoff instant
    assert (expected["orders_lifetime"] == 1).any()  # one order
    views_only = (expected["orders_lifetime"] == 0) & (expected["views_lifetime"] > 0)
    assert views_only.any()
    assert ((expected["orders_lifetime"] > 0) & (expected["orders_7d"] == 0)).any()
    assert tables.orders.duplicated(["customer_id", "ordered_at"]).any()
    assert expected["tier"].nunique() >= 3


@pytest.mark.parametrize("seed", [4, 5])
def test_engine_matches_oracle_without_optional_tables(seed: int) -> None:
    full = random_shop(seed)
    cutoffs = random_cutoffs(full, seed, 40)
    for dropped in ("content_views", "order_items", "customers"):
        tables = ShopTables(**{**full.present(), dropped: None})
        engine = build_features(tables, cutoffs, SETTINGS, TIERS)
        _compare(engine, oracle(tables, cutoffs, SETTINGS, TIERS))


def test_missing_tables_drop_exactly_their_features() -> None:
    full = random_shop(6)
    cutoffs = random_cutoffs(full, 6, 10)
    optional = ("content_views", "order_items", "customers")
    for mask in range(8):
        dropped = {name for i, name in enumerate(optional) if mask >> i & 1}
        tables = ShopTables(**{**full.present(), **dict.fromkeys(dropped)})
        frame = build_features(tables, cutoffs, SETTINGS, TIERS)
        present = set(tables.present())
        assert set(frame.columns) - set(KEYS) == set(feature_names(SETTINGS, TIERS, present))


def test_every_definition_is_built_and_every_column_is_defined() -> None:
    frame = build_features(random_shop(7), [START + pd.Timedelta(days=200)], SETTINGS, TIERS)
    names = [f.name for f in feature_definitions(SETTINGS, TIERS)]
    assert len(names) == len(set(names))
    assert set(frame.columns) - set(KEYS) == set(names)


def _perturb_after(tables: ShopTables, cut: pd.Timestamp, seed: int) -> ShopTables:
    """Change, add and delete events at or after `cut`; nothing before it is touched."""
    rng = np.random.default_rng(seed)
    orders = tables.orders.copy()
    late = orders["ordered_at"] >= cut
    orders.loc[late, "amount"] = orders.loc[late, "amount"] * rng.uniform(0.1, 10, late.sum())
    shift = pd.to_timedelta(rng.integers(0, 90 * 24, late.sum()), unit="h")
    orders.loc[late, "ordered_at"] = orders.loc[late, "ordered_at"] + shift
    drop = late & (rng.random(len(orders)) < 0.3)
    kept = orders[~drop]
    n_new = 25
    new_ids = [f"n{i:04d}" for i in range(n_new)]
    customers = list(tables.orders["customer_id"].unique()) + ["fresh1", "fresh2"]
    added = pd.DataFrame(
        {
            "order_id": pd.array(new_ids, dtype="string"),
            "customer_id": pd.array(rng.choice(customers, n_new), dtype="string"),
            # some exactly at the cutoff instant
            "ordered_at": cut + pd.to_timedelta(rng.integers(0, 3, n_new) * 24 * 3600, unit="s"),
            "amount": rng.uniform(1, 5000, n_new),
        }
    )
    orders = pd.concat([kept, added], ignore_index=True)
    items = tables.order_items[tables.order_items["order_id"].isin(orders["order_id"])].copy()
    late_ids = set(orders.loc[orders["ordered_at"] >= cut, "order_id"])
    late_items = items["order_id"].isin(late_ids)
    items.loc[late_items, "quantity"] = items.loc[late_items, "quantity"] * 50
    new_items = pd.DataFrame(
        {
            "order_id": pd.array(new_ids, dtype="string"),
            "product_id": pd.array(["p9"] * n_new, dtype="string"),
            "quantity": 100.0,
            "unit_price": 10.0,
        }
    )
    items = pd.concat([items, new_items], ignore_index=True)
    views = tables.content_views.copy()
    vlate = views["viewed_at"] >= cut
    views.loc[vlate, "price"] = views.loc[vlate, "price"] * 3
    views = views[~(vlate & (rng.random(len(views)) < 0.3))]
    extra = pd.DataFrame(
        {
            "customer_id": pd.array(rng.choice(customers, 20), dtype="string"),
            "viewed_at": cut + pd.to_timedelta(rng.integers(0, 5, 20), unit="D"),
            "product_id": pd.array(["p1"] * 20, dtype="string"),
            "price": 5_000_000.0,
        }
    )
    views = pd.concat([views, extra], ignore_index=True)
    signups = tables.customers.copy()
    slate = signups["signed_up_at"] >= cut
    signups.loc[slate, "signed_up_at"] = signups.loc[slate, "signed_up_at"] + pd.Timedelta(days=3)
    return ShopTables(orders=orders, customers=signups, order_items=items, content_views=views)


@pytest.mark.parametrize("seed", range(8))
def test_events_at_or_after_the_cutoff_change_no_feature(seed: int) -> None:
    tables = random_shop(100 + seed)
    for k, cut in enumerate(random_cutoffs(tables, seed, 6)):
        before = build_features(tables, [cut], SETTINGS, TIERS)
        after = build_features(_perturb_after(tables, cut, seed * 10 + k), [cut], SETTINGS, TIERS)
        pd.testing.assert_frame_equal(before, after)


def test_leakage_test_would_catch_a_leak() -> None:
    """Sanity check of the perturbation: it does change features at a later cutoff."""
    tables = random_shop(100)
    cut = START + pd.Timedelta(days=200)
    later = [cut + pd.Timedelta(days=30)]
    before = build_features(tables, later, SETTINGS, TIERS)
    after = build_features(_perturb_after(tables, cut, 0), later, SETTINGS, TIERS)
    assert not before.equals(after)


def test_committed_feature_docs_match_the_generator() -> None:
    """docs/features.md is regenerated with `python -m features.definitions > docs/features.md`."""
    from pathlib import Path

    from features.definitions import render_markdown

    committed = (Path(__file__).parents[1] / "docs" / "features.md").read_text(encoding="utf-8")
    assert committed == render_markdown(FeatureSettings(), TierSettings()), (
        "docs/features.md is stale: run `python -m features.definitions > docs/features.md`"
    )
