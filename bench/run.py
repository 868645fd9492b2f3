"""`make bench`: time the pipeline's hot paths against named baselines in the same run.

Runs, in order: a quick feature comparison on the synthetic shop, the features benchmark
(1M customers), training (`bench.training`), segments and SHAP (`bench.segments`) and serving
(`bench.serving`, which needs `wrk`: `apt-get install -y wrk`), the everyday path
(`bench.everyday`: a fresh `dangol demo` per step and the warm `dangol score`), then Spark
against DuckDB at 1M customers and the scoring core per partition (`bench.spark`, when the
`spark` group is installed). About 25 minutes on 2 cores.
Prints Markdown tables; paste them into docs/benchmarks.md with the machine and date.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date

import pandas as pd

from bench import features as features_bench
from features.schema import ShopTables
from features.snapshot import FeatureSettings, build_features
from features.synthetic import generate_shop
from features.tiers import TierSettings


def timed(work: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def pandas_rfm(tables: ShopTables, cutoff: pd.Timestamp) -> pd.DataFrame:
    """The straightforward pandas baseline: recency, frequency, monetary per customer."""
    orders = tables.orders[tables.orders["ordered_at"] < cutoff]
    grouped = orders.groupby("customer_id")
    frame = pd.DataFrame(
        {
            "orders_lifetime": grouped.size(),
            "spend_lifetime": grouped["amount"].sum(),
            "days_since_last_order": (cutoff - grouped["ordered_at"].max()).dt.total_seconds()
            / 86400,
        }
    )
    for days in (30, 90, 180, 365):
        recent = orders[orders["ordered_at"] >= cutoff - pd.Timedelta(days=days)]
        by_customer = recent.groupby("customer_id")["amount"]
        frame[f"orders_{days}d"] = by_customer.size()
        frame[f"spend_{days}d"] = by_customer.sum()
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=200_000)
    args = parser.parse_args()
    print(f"# dangol benchmarks, {date.today()}, {platform.processor() or platform.machine()}")
    seconds, tables = timed(lambda: generate_shop(args.customers, seed=7))
    rows = {name: len(frame) for name, frame in tables.present().items()}
    print(f"synthetic shop, {args.customers:,} customers: {seconds:.1f} s {rows}")
    cutoff = pd.Timestamp("2025-10-01")
    fast, snapshot = timed(
        lambda: build_features(tables, [cutoff], FeatureSettings(), TierSettings())
    )
    slow, _ = timed(lambda: pandas_rfm(tables, cutoff))
    print("| task | dangol (DuckDB) | baseline | ratio |")
    print("|---|---|---|---|")
    print(
        f"| all {snapshot.shape[1] - 2} features at one cutoff vs pandas RFM (11 columns) | "
        f"{fast:.2f} s | {slow:.2f} s | {slow / fast:.2f}x |"
    )
    # issue 3: 1M customers / 10M orders / 30M views, vs pandas and lifetimes-style RFM
    features_bench.main([])
    steps = [
        ("bench.training", []),
        ("bench.segments", []),
        ("bench.serving", []),
        ("bench.everyday", []),
        # issue 16: 1M customers on local Spark against DuckDB; the core per partition
        ("bench.spark", []),
        ("bench.spark", ["--scoring", "--customers", "200000"]),
    ]
    for module, args in steps:
        if module == "bench.serving" and shutil.which("wrk") is None:
            print("\n# bench.serving skipped: wrk not found (apt-get install -y wrk)")
            continue
        if module == "bench.spark" and importlib.util.find_spec("pyspark") is None:
            print("\n# bench.spark skipped: the spark group is not installed (make test does)")
            continue
        print(f"\n# {module} {' '.join(args)}", flush=True)
        # each in its own process: its memory peak and threads do not carry into the next
        subprocess.run([sys.executable, "-m", module, *args], check=True)


if __name__ == "__main__":
    main()
