"""Data stage: the validated contract tables, the data's time span, and the run key.

Plain functions over the config (no Prefect), wrapped in tasks by the flows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import datetime

import numpy as np
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
    warning = quiet_end_warning(tables, config)
    if warning:
        progress(warning)
    return tables, report


def quiet_end_warning(tables: ShopTables, config: DangolConfig) -> str | None:
    """A warning when the configured data end lies further after the last order than the
    shop was ever quiet before: most likely the export stops earlier than `data.end` says,
    and every label, window and campaign after the last order would read as silence."""
    if config.data.end is None or len(tables.orders) < 2:
        return None
    times = np.sort(tables.orders["ordered_at"].to_numpy("datetime64[ns]"))
    end = np.datetime64(config.data.end_timestamp())
    quiet_at_end = end - times[-1]
    longest_before = np.diff(times).max()
    if quiet_at_end <= max(longest_before, np.timedelta64(1, "D")):
        return None
    days = quiet_at_end / np.timedelta64(1, "D")
    before = longest_before / np.timedelta64(1, "D")
    return (
        f"warning: no order in the {days:.0f} days before data.end "
        f"({pd.Timestamp(end).date()}); the last order is {pd.Timestamp(times[-1])} and the "
        f"shop was never quiet for more than {before:.1f} days before. If the export stops "
        "there, set data.end to the day after it: labels and campaign windows after the "
        "last order would count as customers not buying"
    )


class CutoffOutOfRangeError(ValueError):
    """A date the data cannot describe: after its end, or before anyone is known."""


def refuse_after_end(when: datetime, end: pd.Timestamp, what: str, why: str = "") -> None:
    """Refuse a date after the data's end: nothing after it is known, so every customer
    would look silent since then (`why` adds what that would mean for the command)."""
    if pd.Timestamp(when) > end:
        raise CutoffOutOfRangeError(
            f"{what} {pd.Timestamp(when).date()} is after the end of the data ({end.date()}): "
            f"nothing after that is known{why}"
        )


def refuse_unknown_cutoffs(
    snapshot: pd.DataFrame, cutoffs: Sequence[datetime], tables: ShopTables
) -> None:
    """Refuse a feature snapshot with no row at one of its cutoffs: no customer is known
    before it, so there is nothing to score or learn there."""
    present = set(pd.to_datetime(snapshot["cutoff"]).dt.normalize()) if len(snapshot) else set()
    for when in cutoffs:
        if pd.Timestamp(when).normalize() not in present:
            raise CutoffOutOfRangeError(
                f"cutoff {pd.Timestamp(when).date()}: no customer is known before it (the "
                f"first order is on {first_event(tables).date()})"
            )


def check_date_in_data(
    tables: ShopTables, config: DangolConfig, when: datetime, what: str
) -> pd.Timestamp:
    """The date, refused with the data's range when it lies after the data's end or before
    the day of its first order (every number there would be empty or made of silence)."""
    end, first = data_end(tables, config), first_event(tables).normalize()
    span = f"; the data covers {first.date()} to {end.date()}"
    refuse_after_end(when, end, what, span)
    if pd.Timestamp(when) < first:
        raise CutoffOutOfRangeError(
            f"{what} {pd.Timestamp(when).date()} is before the first order ({first.date()}): "
            f"nothing before that is known{span}"
        )
    return pd.Timestamp(when)


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
