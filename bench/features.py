"""Feature-engine benchmark (issue 3): all features at one cutoff on a large shop.

Default size: 1M customers, 10M orders (+15M order lines), 30M views. The embedded synthetic
shop averages ~3.4 orders per customer, so this bench uses its own fast, vectorised event
generator (`bench_shop`): uniform times over two years, gamma-Poisson order counts per
customer, lognormal amounts and prices. It exercises the same tables and columns; it does not
plant archetypes (the engine's speed does not depend on them).

Baselines measured in the same run:
- pandas: a straightforward pandas implementation of the same aggregates (groupby per table);
- lifetimes-style RFM: `summary_data_from_transaction_data` (frequency, recency, T,
  monetary_value) reimplemented faithfully from lifetimes 0.11 (`lifetimes/utils.py`): sort,
  to_period('D'), per-period sums, first-transaction marking, groupby min/max/count.
And a 26-cutoff training frame (features + labels) on the 100k-customer synthetic shop.

Run: `python -m bench.features [--customers N --orders N --views N]`; prints a table.
"""

from __future__ import annotations

import argparse
import os
import platform
import threading
import time
from collections.abc import Callable
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.schema import ShopTables
from features.snapshot import FeatureSettings, LabelSettings, build_features, training_frame
from features.synthetic import generate_shop
from features.tiers import TierSettings

START = pd.Timestamp("2024-01-01")
SPAN_S = 2 * 365 * 86400
CUTOFF = pd.Timestamp("2025-10-01")


def _strings(prefix: str, numbers: np.ndarray) -> pd.arrays.ArrowStringArray:
    text = pc.cast(pa.array(numbers, pa.int64()), pa.string())
    return pd.array(pc.binary_join_element_wise(prefix, text, ""), dtype="string")


def _times(rng: np.random.Generator, n: int) -> np.ndarray:
    seconds = rng.integers(0, SPAN_S, n)
    return (START.to_datetime64() + seconds.astype("timedelta64[s]")).astype("datetime64[ns]")


def bench_shop(customers: int, orders: int, views: int, seed: int = 7) -> ShopTables:
    """A large random shop in seconds: heterogeneous order rates, 1.5 lines per order."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(0.7, 1.0, customers)
    rate /= rate.sum()
    owner = rng.choice(customers, orders, p=rate)
    viewer = rng.choice(customers, views, p=0.5 * rate + 0.5 / customers)
    ids = _strings("C", np.arange(customers))
    lines = int(orders * 1.5)
    line_order = np.concatenate([np.arange(orders), rng.integers(0, orders, lines - orders)])
    line_price = np.round(rng.lognormal(10.3, 1.0, lines), -2)
    quantity = rng.choice([1.0, 2.0, 3.0, 50.0], lines, p=[0.86, 0.09, 0.0495, 0.0005])
    amount = np.bincount(line_order, weights=quantity * line_price, minlength=orders)
    order_ids = _strings("O", np.arange(orders))
    products = _strings("P", np.arange(5000))
    return ShopTables(
        customers=pd.DataFrame(
            {"customer_id": ids, "signed_up_at": _times(rng, customers) - np.timedelta64(400, "D")}
        ),
        orders=pd.DataFrame(
            {
                "order_id": order_ids,
                "customer_id": ids.take(owner),
                "ordered_at": _times(rng, orders),
                "amount": amount,
            }
        ),
        order_items=pd.DataFrame(
            {
                "order_id": order_ids.take(line_order),
                "product_id": products.take(rng.integers(0, 5000, lines)),
                "quantity": quantity,
                "unit_price": line_price,
            }
        ),
        content_views=pd.DataFrame(
            {
                "customer_id": ids.take(viewer),
                "viewed_at": _times(rng, views),
                "product_id": products.take(rng.integers(0, 5000, views)),
                "price": np.round(rng.lognormal(10.8, 1.2, views), -2),
            }
        ),
    )


def pandas_features(tables: ShopTables, cutoff: pd.Timestamp, s: FeatureSettings) -> pd.DataFrame:
    """The same aggregates written the straightforward pandas way (the baseline)."""
    day = pd.Timedelta(days=1)
    o = tables.orders[tables.orders["ordered_at"] < cutoff]
    o = o.sort_values(["customer_id", "ordered_at", "order_id"])
    o["gap"] = o.groupby("customer_id")["ordered_at"].diff() / day
    g = o.groupby("customer_id")
    out = pd.DataFrame(
        {
            "orders_lifetime": g.size(),
            "spend_lifetime": g["amount"].sum(),
            "avg_order_value": g["amount"].mean(),
            "median_order_value": g["amount"].median(),
            "max_order_value": g["amount"].max(),
            "days_since_last_order": (cutoff - g["ordered_at"].max()) / day,
            "days_since_first_order": (cutoff - g["ordered_at"].min()) / day,
            "mean_gap_days": g["gap"].mean(),
            "median_gap_days": g["gap"].median(),
            "last_gap_days": g["gap"].last(),
            "recent_order_value": g.tail(3).groupby("customer_id")["amount"].mean(),
        }
    )
    for w in s.windows():
        recent = o[o["ordered_at"] >= cutoff - pd.Timedelta(days=w)].groupby("customer_id")
        out[f"orders_{w}d"] = recent.size()
        out[f"spend_{w}d"] = recent["amount"].sum()
    v = tables.content_views[tables.content_views["viewed_at"] < cutoff]
    v = v.sort_values(["customer_id", "viewed_at", "price"])
    gv = v.groupby("customer_id")
    out = out.join(
        pd.DataFrame(
            {
                "views_lifetime": gv.size(),
                "days_since_last_view": (cutoff - gv["viewed_at"].max()) / day,
                "last_viewed_price": gv["price"].last(),
                "mean_viewed_price": gv["price"].mean(),
                "median_viewed_price": gv["price"].median(),
                "max_viewed_price": gv["price"].max(),
                "high_price_views": (v["price"] >= s.high_price_line)
                .groupby(v["customer_id"])
                .sum(),
            }
        ),
        how="outer",
    )
    for w in s.windows():
        out[f"views_{w}d"] = (
            v[v["viewed_at"] >= cutoff - pd.Timedelta(days=w)].groupby("customer_id").size()
        )
    items = tables.order_items.merge(o[["order_id", "customer_id"]], on="order_id")
    items["spend"] = items["quantity"] * items["unit_price"]
    per = items.groupby(["customer_id", "product_id"])[["quantity", "spend"]].sum()
    gp = per.groupby(level="customer_id")
    out["max_units_one_product"] = gp["quantity"].max()
    out["top_product_spend_share"] = gp["spend"].max() / gp["spend"].sum()
    return out


def lifetimes_summary(
    transactions: pd.DataFrame, observation_period_end: pd.Timestamp, freq: str = "D"
) -> pd.DataFrame:
    """lifetimes.utils.summary_data_from_transaction_data, same pandas steps (v0.11)."""
    cust, when, money = "customer_id", "ordered_at", "amount"
    end = pd.to_datetime(observation_period_end).to_period(freq).to_timestamp()
    select = [cust, when, money]
    tx = transactions[select].sort_values(select).copy()
    tx[when] = pd.to_datetime(tx[when])
    tx = tx.set_index(when).to_period(freq).to_timestamp()
    tx = tx.loc[tx.index <= end].reset_index()
    period = tx.groupby([when, cust], sort=False, as_index=False).sum()
    period["first"] = False
    firsts = period.groupby(cust, sort=True, as_index=False).head(1).index
    period.loc[firsts, "first"] = True
    period[when] = pd.Index(period[when]).to_period(freq)
    repeated = period[[cust, when, money, "first"]].copy()
    repeated[when] = pd.Index(repeated[when]).to_timestamp()
    customers = repeated.groupby(cust, sort=False)[when].agg(["min", "max", "count"])
    customers["frequency"] = customers["count"] - 1
    customers["T"] = (end - customers["min"]) / np.timedelta64(1, freq)
    customers["recency"] = (customers["max"] - customers["min"]) / np.timedelta64(1, freq)
    repeated.loc[repeated["first"], money] = np.nan
    customers["monetary_value"] = repeated.groupby(cust)[money].mean().fillna(0)
    return customers[["frequency", "recency", "T", "monetary_value"]].astype(float)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measured(work: Callable[[], object]) -> tuple[float, float, object]:
    """Wall seconds and peak resident memory (MB, whole process) while `work` runs."""
    peak = [_rss_mb()]
    done = threading.Event()

    def poll() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], _rss_mb())

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    started = time.perf_counter()
    result = work()
    seconds = time.perf_counter() - started
    done.set()
    thread.join()
    return seconds, max(peak[0], _rss_mb()), result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--orders", type=int, default=10_000_000)
    parser.add_argument("--views", type=int, default=30_000_000)
    parser.add_argument("--frame-customers", type=int, default=100_000)
    parser.add_argument("--skip-pandas", action="store_true", help="skip the pandas baseline")
    args = parser.parse_args(argv)
    settings, tiers = FeatureSettings(), TierSettings()
    machine = f"{platform.machine()}, {os.cpu_count()} cpus"
    print(f"# dangol feature benchmark, {date.today()}, {machine}")
    seconds, _, tables = measured(lambda: bench_shop(args.customers, args.orders, args.views))
    sizes = {k: f"{len(v):,}" for k, v in tables.present().items()}
    print(f"bench shop generated in {seconds:.1f} s: {sizes}; rss {_rss_mb():,.0f} MB")
    base = _rss_mb()
    fast, peak, frame = measured(lambda: build_features(tables, [CUTOFF], settings, tiers))
    print(f"engine: {fast:.2f} s, peak rss {peak:,.0f} MB (+{peak - base:,.0f} MB over inputs)")
    rows = [(f"all {frame.shape[1] - 2} features, {len(frame):,} customers, 1 cutoff", fast, None)]
    life, _, _ = measured(lambda: lifetimes_summary(tables.orders, CUTOFF - pd.Timedelta(days=1)))
    rows.append(("lifetimes-style RFM summary (4 columns)", life, fast))
    if not args.skip_pandas:
        slow, _, _ = measured(lambda: pandas_features(tables, CUTOFF, settings))
        rows.append(("straightforward pandas, same aggregates", slow, fast))
    tables = frame = None  # free the large inputs before the training-frame run
    shop = generate_shop(args.frame_customers, seed=7)
    cutoffs = [CUTOFF - pd.Timedelta(days=14 * k) for k in range(26)]
    train, _, tf = measured(lambda: training_frame(shop, cutoffs, settings, LabelSettings(), tiers))
    rows.append(
        (
            f"training frame: {args.frame_customers:,} synthetic customers x 26 cutoffs "
            f"({len(tf):,} rows)",
            train,
            None,
        )
    )
    print("| task | seconds | baseline / dangol |")
    print("|---|---|---|")
    for name, secs, ref in rows:
        ratio = f"{secs / ref:.1f}x" if ref else "-"
        print(f"| {name} | {secs:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
