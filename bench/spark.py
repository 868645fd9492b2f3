"""Spark against DuckDB on the same shop, same features, same run (issue 16).

The shop (bench.features.bench_shop) is written as Parquet to a temp folder. DuckDB builds the
features the way `dangol` runs it (tables in memory, features.snapshot.build_features);
Spark (local[N] on this machine) reads the Parquet files, runs the transpiled SQL and the
per-cutoff finish, and writes the result with the `noop` sink (all work done, nothing
stored), then again collected to the driver as pandas. Prints a Markdown table and the
per-core throughput (input events per second per core) that docs/scale.md's plan uses.

Run: `python -m bench.spark [--customers N --orders N --views N --cores N]` (needs the
`spark` dependency group and Java); `python -m bench.spark --quality` measures model quality
against the customer sample that training on Spark brings to the driver;
`python -m bench.spark --scoring [--customers N]` times the score-and-explain core on the
driver against the same core per partition on Spark (models.spark_scoring), same models,
same snapshot, and checks that both give the same lists.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

import pandas as pd

from bench.features import CUTOFF, bench_shop
from features import snapshot
from features import spark as on_spark
from features.snapshot import FeatureSettings
from features.tiers import TierSettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--orders", type=int, default=10_000_000)
    parser.add_argument("--views", type=int, default=30_000_000)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument(
        "--quality", action="store_true", help="model quality against the training sample size"
    )
    parser.add_argument(
        "--scoring", action="store_true", help="scores, segments and reasons: driver vs Spark"
    )
    args = parser.parse_args(argv)
    if args.quality:
        sample_quality()
        return
    if args.scoring:
        scoring(args.customers, args.cores)
        return
    settings, tiers = FeatureSettings(), TierSettings()
    tables = bench_shop(args.customers, args.orders, args.views)
    events = sum(len(f) for f in tables.present().values())
    scratch = Path(tempfile.mkdtemp(prefix="dangol-bench-spark-"))
    try:
        paths = {}
        for name, frame in tables.present().items():
            paths[name] = str(scratch / f"{name}.parquet")
            frame.to_parquet(paths[name], index=False)
        started = time.perf_counter()
        reference = snapshot.build_features(tables, [CUTOFF], settings, tiers)
        duck = time.perf_counter() - started
        conf = {"spark.sql.shuffle.partitions": str(4 * args.cores)}
        conf["spark.driver.memory"] = os.environ.get("BENCH_SPARK_MEMORY", "10g")
        started = time.perf_counter()
        with on_spark.spark_session(f"local[{args.cores}]", conf) as spark:
            startup = time.perf_counter() - started
            frames = on_spark.frames_from_sources(spark, paths, scratch)
            started = time.perf_counter()
            frame = on_spark.feature_frame(spark, frames, [CUTOFF], settings, tiers)
            frame.write.format("noop").mode("overwrite").save()
            computed = time.perf_counter() - started
            started = time.perf_counter()
            collected = on_spark.to_pandas_features(
                on_spark.feature_frame(spark, frames, [CUTOFF], settings, tiers)
            )
            with_collect = time.perf_counter() - started
        assert len(collected) == len(reference)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    rate = events / computed / args.cores
    print(f"## Spark vs DuckDB, {date.today()} ({platform.node()}, {os.cpu_count()} cores)\n")
    print(
        f"{args.customers:,} customers, {len(tables.orders):,} orders, "
        f"{len(tables.order_items):,} order lines, {len(tables.content_views):,} views "
        f"({events:,} input rows); one cutoff, every feature; Spark local[{args.cores}]\n"
    )
    print("| engine | seconds | vs DuckDB |")
    print("| --- | ---: | ---: |")
    print(f"| DuckDB (in memory, as `dangol` runs it) | {duck:.1f} | 1.0x |")
    print(f"| Spark: features computed (noop sink) | {computed:.1f} | {computed / duck:.1f}x |")
    ratio = with_collect / duck
    print(f"| Spark: features collected to pandas | {with_collect:.1f} | {ratio:.1f}x |")
    print(f"| Spark session start (not in the above) | {startup:.1f} | |")
    print(f"\nSpark throughput: {rate:,.0f} input rows per second per core")


def sample_quality(customers: int = 20_000, sizes: tuple[int, ...] = (1_000, 2_500, 5_000, 10_000)):
    """Model quality against the training sample size: the synthetic shop's training frame
    (DuckDB; the Spark frame is the same), a customer-level sample of the training and
    validation cutoffs for LightGBM, judged on the FULL test window. Prints a Markdown table
    (ROC-AUC and PR-AUC per required target and sample size)."""
    import numpy as np

    from features.snapshot import LabelSettings, labelled_cutoffs, training_frame
    from features.synthetic import generate_shop
    from features.targets import TARGETS
    from models.evaluate import probability_metrics
    from models.train import (
        InsufficientDataError,
        TrainingSettings,
        split_cutoffs,
        train_classifier,
        window_rows,
    )

    shop = generate_shop(customers, 7)
    settings, labels, tiers = TrainingSettings(), LabelSettings(), TierSettings()
    cutoffs = labelled_cutoffs(
        shop.orders["ordered_at"].min(),
        pd.Timestamp("2026-01-01"),
        settings.cutoff_every_days,
        labels.horizon_days,
        settings.min_history_days,
    )
    split = split_cutoffs(cutoffs, labels.horizon_days, settings.test_cutoffs, 2)
    frame = training_frame(shop, split.refit + split.test, FeatureSettings(), labels, tiers)
    ids = frame["customer_id"].unique()
    rng = np.random.default_rng(0)
    print(f"\n## Quality against the training sample ({customers:,}-customer synthetic shop)\n")
    print("| customers sampled | target | ROC-AUC (full test window) | PR-AUC |")
    print("| ---: | --- | ---: | ---: |")
    for size in [*sizes, len(ids)]:
        chosen = set(rng.choice(ids, size=min(size, len(ids)), replace=False))
        test = frame["cutoff"].isin(split.test)
        sampled = frame[frame["customer_id"].isin(chosen) | test]
        for spec in TARGETS.values():
            if not spec.required:
                continue
            try:
                model = train_classifier(sampled, spec.name, split, settings)
            except InsufficientDataError as exc:
                print(f"| {size:,} | {spec.name} | too little data: {exc} | |")
                continue
            rows = window_rows(frame, spec.name, split.test)
            m = probability_metrics(rows[spec.name].to_numpy(), model.predict_proba(rows))
            print(f"| {size:,} | {spec.name} | {m['roc_auc']:.3f} | {m['pr_auc']:.3f} |")


def scoring(customers: int, cores: int, shop: int = 8_000) -> None:
    """The score-and-explain core over `customers` tiled snapshot rows (bench.segments): on
    the driver in memory, then per partition on Spark local[cores]; same lists checked."""
    from bench.segments import tile, train_models
    from models.scoring import score_and_explain
    from models.segments import SegmentSettings
    from models.spark_scoring import score_and_explain_on_spark, to_spark_frame

    models, snapshot = train_models(shop)
    big = tile(snapshot, customers)
    settings, tiers = SegmentSettings(), TierSettings()
    started = time.perf_counter()
    local = score_and_explain(big, models, settings, tiers, "KRW")
    driver = time.perf_counter() - started
    conf = {
        "spark.sql.shuffle.partitions": str(4 * cores),
        "spark.driver.memory": os.environ.get("BENCH_SPARK_MEMORY", "6g"),
    }
    with on_spark.spark_session(f"local[{cores}]", conf) as spark:
        frame = to_spark_frame(spark, big).repartition(4 * cores).cache()
        frame.count()  # the snapshot on the executors, as the feature step leaves it
        started = time.perf_counter()
        result = score_and_explain_on_spark(spark, frame, models, settings, tiers, "KRW")
        distributed = time.perf_counter() - started
        result.release()
    for name, members in local.segments.items():
        got = result.scored.segments[name]
        assert got["customer_id"].tolist() == members["customer_id"].tolist(), name
    memberships = sum(len(m) for m in local.segments.values())
    print(f"## Scores, segments and reasons: driver vs Spark, {date.today()}\n")
    print(
        f"{customers:,} customers ({len(models)} models, {memberships:,} memberships "
        f"explained); Spark local[{cores}], {4 * cores} partitions; same lists on both\n"
    )
    print("| where | seconds | vs driver |")
    print("| --- | ---: | ---: |")
    print(f"| the core in memory on the driver | {driver:.1f} | 1.0x |")
    ratio = distributed / driver
    print(f"| the core per partition on Spark (4 passes) | {distributed:.1f} | {ratio:.1f}x |")


if __name__ == "__main__":
    main()
