"""Data stage: the validated contract tables, the data's time span, and the run key.

Plain functions over the config (no Prefect), wrapped in tasks by the flows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import datetime

import pandas as pd

from features import engine
from features.contract import LoadReport
from features.fingerprint import code_version, data_fingerprint
from features.loaders import load_tables
from features.schema import ShopTables
from flows.config import DangolConfig

Progress = Callable[[str], None]


def ensure_synthetic_shop(config: DangolConfig, progress: Progress = print) -> None:
    """Generate the embedded synthetic shop when the config asks for it and it is missing."""
    if config.synthetic is None:
        return
    from features.synthetic import generate_shop, write_shop

    out_dir = config.resolve(config.synthetic.out_dir)
    # every table the config reads from the shop's folder (a shop written by an older version
    # may lack a newer table, e.g. campaigns): regenerate the whole shop if one is missing
    expected = [out_dir / f"{name}.parquet" for name in ("customers", "orders")]
    expected += [
        path
        for source in config.data.tables.values()
        if (path := config.resolve(source.path)).parent == out_dir
    ]
    if all(path.exists() for path in expected):
        return
    progress(f"generating the synthetic shop ({config.synthetic.customers:,} customers)")
    tables = generate_shop(
        config.synthetic.customers,
        config.synthetic.seed,
        start=str(config.synthetic.start),
        end=str(config.synthetic.end),
    )
    write_shop(tables, out_dir)


def load_shop(config: DangolConfig, progress: Progress = print) -> tuple[ShopTables, LoadReport]:
    """The validated contract tables of the configured source."""
    ensure_synthetic_shop(config, progress)
    tables, report = load_tables(config.data, base_dir=config.base_dir)
    for line in report.summary_lines():
        progress(line)
    return tables, report


class CutoffOutOfRangeError(ValueError):
    """A scoring date the data cannot describe: after its end, or before anyone is known."""


def data_end(tables: ShopTables, config: DangolConfig) -> pd.Timestamp:
    """The configured end of the data (naive, in the shop's time zone), else the day after
    the last event."""
    if config.data.end is not None:
        return config.data.end_timestamp()
    last = tables.orders["ordered_at"].max()
    if tables.content_views is not None and len(tables.content_views):
        last = max(last, tables.content_views["viewed_at"].max())
    return pd.Timestamp(last).normalize() + pd.Timedelta(days=1)


def first_event(tables: ShopTables) -> pd.Timestamp:
    return pd.Timestamp(tables.orders["ordered_at"].min())


def run_key(tables: ShopTables, config: DangolConfig) -> str:
    """What a training run's result depends on: the data, the modelling settings and the code.

    Paths, serving and schedule settings are left out: moving the store or the service does
    not change what would be trained.
    """
    settings = config.model_dump(
        mode="json", include={"data", "tiers", "features", "labels", "training", "registry"}
    )
    settings["data"].pop("tables", None)  # where the files are is not what they hold
    if config.engine == "spark" and config.spark.training_sample_customers is not None:
        # a sample trains on other rows than the whole frame (the engine alone does not)
        settings["spark_sample"] = [
            config.spark.training_sample_customers,
            config.spark.sample_seed,
        ]
    payload = json.dumps(
        {"data": data_fingerprint(tables), "settings": settings, "code": code_version()},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def build_features(
    tables: ShopTables, config: DangolConfig, cutoffs: Sequence[datetime]
) -> pd.DataFrame:
    """Features at the cutoffs on the configured engine (DuckDB or Spark: the same frame)."""
    return engine.build_features(
        tables,
        cutoffs,
        config.features,
        config.tiers,
        config.engine,
        config.spark,
        config.base_dir,
    )


def training_frame(
    tables: ShopTables,
    config: DangolConfig,
    cutoffs: Sequence[datetime],
    value_horizon_days: int | None = None,
) -> pd.DataFrame:
    """Features and labels at the cutoffs on the configured engine (on Spark, a customer
    sample when spark.training_sample_customers is set); spend over `value_horizon_days`."""
    return engine.training_frame(
        tables,
        cutoffs,
        config.features,
        config.labels,
        config.tiers,
        config.engine,
        config.spark,
        config.base_dir,
        value_horizon_days,
    )
