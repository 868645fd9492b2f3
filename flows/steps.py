"""The pipeline's steps as plain functions over the config: the flows wrap them in tasks.

Kept free of Prefect so each step can be run and tested on its own.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from features.contract import LoadReport
from features.loaders import load_tables
from features.schema import ShopTables
from features.snapshot import build_features, labelled_cutoffs, training_frame
from flows.config import DangolConfig
from models.evaluate import (
    BASELINES,
    baseline_metrics,
    plot_calibration,
    plot_gain,
    probability_metrics,
)
from models.segments import build_segments, explain_members, score_customers, write_export
from models.train import CalibratedBooster, TimeSplit, split_cutoffs, train_classifier, window_rows
from models.whatif import segment_summary

TARGETS = ("repurchase", "vip_conversion")
Progress = Callable[[str], None]


def ensure_synthetic_shop(config: DangolConfig, progress: Progress = print) -> None:
    """Generate the embedded synthetic shop when the config asks for it and it is missing."""
    if config.synthetic is None:
        return
    from features.synthetic import generate_shop, write_shop

    out_dir = config.resolve(config.synthetic.out_dir)
    expected = [out_dir / f"{name}.parquet" for name in ("customers", "orders")]
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


def data_end(tables: ShopTables, config: DangolConfig) -> pd.Timestamp:
    """The configured end of the data, else the day after the last event."""
    if config.data.end is not None:
        return pd.Timestamp(config.data.end)
    last = tables.orders["ordered_at"].max()
    if tables.content_views is not None and len(tables.content_views):
        last = max(last, tables.content_views["viewed_at"].max())
    return pd.Timestamp(last).normalize() + pd.Timedelta(days=1)


def first_event(tables: ShopTables) -> pd.Timestamp:
    return pd.Timestamp(tables.orders["ordered_at"].min())


def build_training_data(tables: ShopTables, config: DangolConfig) -> tuple[pd.DataFrame, TimeSplit]:
    """Features and labels at every labelled cutoff, and their time split."""
    cutoffs = labelled_cutoffs(
        first_event(tables),
        data_end(tables, config),
        config.training.cutoff_every_days,
        config.labels.horizon_days,
        config.training.min_history_days,
    )
    split = split_cutoffs(
        cutoffs,
        config.labels.horizon_days,
        test_cutoffs=config.training.test_cutoffs,
        validation_cutoffs=config.training.validation_cutoffs,
    )
    used = split.train + split.validation + split.test
    frame = training_frame(tables, used, config.features, config.labels, config.tiers)
    return frame, split


@dataclass
class TrainedTarget:
    """One target's model with its holdout evaluation."""

    target: str
    model: CalibratedBooster
    test_rows: pd.DataFrame
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    plots: list[Path] = field(default_factory=list)

    def test_scores(self) -> np.ndarray:
        return self.model.predict_proba(self.test_rows)


def train_target(
    frame: pd.DataFrame, split: TimeSplit, target: str, config: DangolConfig, plot_dir: Path
) -> TrainedTarget:
    """Fit one target and evaluate it and its baselines on the test window."""
    model = train_classifier(frame, target, split, config.training)
    test_rows = window_rows(frame, target, split.test)
    outcome = test_rows[target].to_numpy()
    proba = model.predict_proba(test_rows)
    scores = {"model": proba} | {name: rule(test_rows) for name, rule in BASELINES[target].items()}
    plots = [
        plot_gain(
            outcome, scores, f"{target}: gain on the test window", plot_dir / f"{target}_gain.png"
        ),
        plot_calibration(
            outcome, proba, f"{target}: calibration", plot_dir / f"{target}_calibration.png"
        ),
    ]
    return TrainedTarget(
        target=target,
        model=model,
        test_rows=test_rows,
        metrics=probability_metrics(outcome, proba),
        baselines=baseline_metrics(target, test_rows),
        plots=plots,
    )


def latest_snapshot(
    tables: ShopTables, config: DangolConfig, cutoff: datetime | None
) -> pd.DataFrame:
    """Features of every known customer at the scoring cutoff (default: the data's end)."""
    when = pd.Timestamp(cutoff) if cutoff is not None else data_end(tables, config)
    return build_features(tables, [when], config.features, config.tiers)


def score_and_export(
    snapshot: pd.DataFrame,
    models: dict[str, CalibratedBooster],
    config: DangolConfig,
    stamp: datetime,
) -> tuple[Path, dict[str, int]]:
    """Scores, segments and the atomic export; returns the export folder and segment sizes."""
    scores = score_customers(snapshot, models, config.tiers)
    segments = build_segments(snapshot, scores, config.segments, config.tiers)
    segments, _contributions = explain_members(
        snapshot, segments, models, config.segments, config.data.currency
    )
    summary, markdown = segment_summary(segments, snapshot, config.segments, config.data.currency)
    folder = write_export(
        config.resolve(config.paths.exports),
        snapshot,
        scores,
        segments,
        stamp,
        summary=summary,
        summary_markdown=markdown,
    )
    return folder, {name: len(members) for name, members in segments.items()}


def scratch_dir() -> Path:
    """A fresh temporary folder for plots before they are logged."""
    return Path(tempfile.mkdtemp(prefix="dangol-"))
