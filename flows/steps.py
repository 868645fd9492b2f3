"""The pipeline's steps as plain functions over the config: the flows wrap them in tasks.

Kept free of Prefect so each step can be run and tested on its own.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from features.contract import LoadReport
from features.fingerprint import data_fingerprint
from features.loaders import load_tables
from features.schema import ShopTables
from features.snapshot import build_features, labelled_cutoffs, training_frame
from flows.config import DangolConfig
from models.drift import DriftSettings, drift_table, psi
from models.evaluate import (
    BaselineResults,
    baseline_rules,
    evaluate_baselines,
    gaps,
    plot_backtest,
    plot_calibration,
    plot_gain,
    plot_importance,
    probability_metrics,
)
from models.segments import (
    build_segments,
    explain_members,
    score_customers,
    write_export,
)
from models.train import (
    CalibratedBooster,
    InsufficientDataError,
    TimeSplit,
    check_sufficient,
    split_cutoffs,
    train_classifier,
    window_rows,
)
from models.whatif import segment_summary

# Every run trains these (scoring needs their champions); optional targets are trained when
# the data has their population.
TARGETS = ("repurchase", "vip_conversion")
OPTIONAL_TARGETS = ("first_purchase",)
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
    # every labelled cutoff, not only the split's: the backtest's earlier splits use the
    # cutoffs between the main split's windows
    used = (
        cutoffs
        if config.training.backtest_folds > 1
        else split.refit + split.test  # refit holds the training and validation cutoffs
    )
    frame = training_frame(tables, used, config.features, config.labels, config.tiers)
    return frame, split


@dataclass
class TrainedTarget:
    """One target's model with its holdout evaluation, baselines and backtest."""

    target: str
    model: CalibratedBooster
    test_rows: pd.DataFrame
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    plots: list[Path] = field(default_factory=list)
    baseline_failures: dict[str, str] = field(default_factory=dict)
    backtest: pd.DataFrame | None = None

    def test_scores(self) -> np.ndarray:
        return self.model.predict_proba(self.test_rows)

    def gaps(self) -> dict[str, dict[str, float]]:
        """Model minus each baseline, per metric both have."""
        return {name: gaps(self.metrics, m) for name, m in self.baselines.items()}


def applicable(frame: pd.DataFrame, target: str) -> bool:
    """Whether the target has a population at all (first purchase needs members who never
    bought: a log of orders alone has none)."""
    return target in frame and bool(frame[target].notna().any())


def targets_to_train(frame: pd.DataFrame) -> list[str]:
    """The required targets, then the optional ones that have a population in this data."""
    return list(TARGETS) + [t for t in OPTIONAL_TARGETS if applicable(frame, t)]


@dataclass
class SplitEvaluation:
    """The recipe's result on one split: model, test rows, metrics and baselines."""

    model: CalibratedBooster
    test_rows: pd.DataFrame
    proba: np.ndarray
    metrics: dict[str, float]
    baselines: BaselineResults


def evaluate_split(
    frame: pd.DataFrame, split: TimeSplit, target: str, config: DangolConfig
) -> SplitEvaluation:
    """Train on the split's training window and judge model and baselines on its test window."""
    model = train_classifier(frame, target, split, config.training)
    test_rows = window_rows(frame, target, split.test)
    check_sufficient(test_rows, target, "test", config.training)
    outcome = test_rows[target].to_numpy()
    proba = model.predict_proba(test_rows)
    rules = baseline_rules(target, config.labels.horizon_days, config.training.bgnbd_penalty)
    return SplitEvaluation(
        model=model,
        test_rows=test_rows,
        proba=proba,
        metrics=probability_metrics(outcome, proba),
        baselines=evaluate_baselines(target, test_rows, rules),
    )


def rolling_backtest(
    frame: pd.DataFrame, target: str, config: DangolConfig, first: SplitEvaluation, split: TimeSplit
) -> pd.DataFrame:
    """The same recipe at successive earlier test windows (rolling origin): one row per
    (fold, scorer) with its metrics. Fold 0 is the main split; earlier folds that the data
    cannot support are left out."""
    cutoffs = sorted(pd.Timestamp(c) for c in frame["cutoff"].unique())
    step = config.training.test_cutoffs
    folds = [(0, split, first)]
    for fold in range(1, config.training.backtest_folds):
        kept = cutoffs[: len(cutoffs) - fold * step]
        try:
            fold_split = split_cutoffs(
                kept,
                config.labels.horizon_days,
                test_cutoffs=step,
                validation_cutoffs=config.training.validation_cutoffs,
            )
            folds.append((fold, fold_split, evaluate_split(frame, fold_split, target, config)))
        except InsufficientDataError:
            break
    rows = []
    for fold, fold_split, result in folds:
        scorers = {"model": result.metrics} | result.baselines.metrics
        for scorer, metrics in scorers.items():
            rows.append(
                {"fold": fold, "test_start": fold_split.test[0], "scorer": scorer} | metrics
            )
    return pd.DataFrame(rows)


def backtest_summary(folds: pd.DataFrame) -> pd.DataFrame:
    """Mean and spread (standard deviation) of each metric per scorer across the folds."""
    metrics = [c for c in folds.columns if c not in ("fold", "test_start", "scorer")]
    summary = folds.groupby("scorer", sort=False)[metrics].agg(["mean", "std"])
    summary.insert(0, ("folds", ""), folds.groupby("scorer", sort=False).size())
    return summary


def train_target(
    frame: pd.DataFrame, split: TimeSplit, target: str, config: DangolConfig, plot_dir: Path
) -> TrainedTarget:
    """Fit one target, evaluate it and its baselines on the test window, and backtest it."""
    result = evaluate_split(frame, split, target, config)
    outcome = result.test_rows[target].to_numpy()
    scores = {"model": result.proba} | result.baselines.scores
    backtest = rolling_backtest(frame, target, config, result, split)
    booster = result.model.booster
    plots = [
        plot_gain(
            outcome, scores, f"{target}: gain on the test window", plot_dir / f"{target}_gain.png"
        ),
        plot_calibration(
            outcome, result.proba, f"{target}: calibration", plot_dir / f"{target}_calibration.png"
        ),
        plot_importance(
            result.model.features,
            booster.feature_importance("gain"),
            f"{target}: feature importance",
            plot_dir / f"{target}_importance.png",
        ),
        plot_backtest(
            backtest,
            "roc_auc",
            f"{target}: rolling-origin backtest",
            plot_dir / f"{target}_backtest.png",
        ),
    ]
    return TrainedTarget(
        target=target,
        model=result.model,
        test_rows=result.test_rows,
        metrics=result.metrics,
        baselines=result.baselines.metrics,
        plots=plots,
        baseline_failures=result.baselines.failures,
        backtest=backtest,
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


@dataclass
class DriftReport:
    """Feature and score PSI of today's snapshot against the champion's last training cutoff."""

    reference_cutoff: pd.Timestamp
    features: pd.DataFrame
    scores: dict[str, float]

    def worst(self, not_alerting: list[str] | None = None) -> tuple[str, float]:
        """The most shifted score or feature (leaving out `not_alerting`) and its PSI."""
        skip = set(not_alerting or [])
        candidates = {
            column: float(value)
            for column, value in zip(self.features["column"], self.features["psi"], strict=True)
            if column not in skip
        }
        candidates |= {f"{target} score": value for target, value in self.scores.items()}
        name = max(candidates, key=candidates.get)
        return name, float(candidates[name])


@dataclass(frozen=True)
class DriftDecision:
    """What the score flow does about drift: the message, and whether to start `retrain`."""

    message: str
    alert: bool
    retrain: bool


def drift_decision(report: DriftReport, settings: DriftSettings, deployed: bool) -> DriftDecision:
    """Alert when a watched feature or a score moves past `psi_alert`; retrain only when
    configured and running as a deployment (there is a retrain deployment to start)."""
    name, value = report.worst(settings.not_alerting)
    found = f"drift: {name} PSI {value:.3f} > {settings.psi_alert}"
    if value <= settings.psi_alert:
        return DriftDecision(
            f"no drift above {settings.psi_alert} (worst watched: {name} {value:.3f})",
            alert=False,
            retrain=False,
        )
    if not settings.retrain_on_drift:
        return DriftDecision(f"{found}; retrain_on_drift is off", alert=True, retrain=False)
    if not deployed:
        return DriftDecision(
            f"{found}; not deployed, run `dangol train` to retrain", alert=True, retrain=False
        )
    return DriftDecision(f"{found}; retraining", alert=True, retrain=True)


def drift_report(
    tables: ShopTables,
    snapshot: pd.DataFrame,
    models: dict[str, CalibratedBooster],
    reference_cutoff: pd.Timestamp,
    config: DangolConfig,
) -> DriftReport:
    """PSI per model feature and per score, reference = features as of `reference_cutoff`."""
    reference = build_features(tables, [reference_cutoff], config.features, config.tiers)
    used = sorted({f for model in models.values() for f in model.features})
    table = drift_table(reference, snapshot, used, config.drift.bins)
    scores = {
        target: psi(
            model.predict_proba(reference), model.predict_proba(snapshot), config.drift.bins
        )
        for target, model in models.items()
    }
    return DriftReport(reference_cutoff, table, scores)


def run_key(tables: ShopTables, config: DangolConfig) -> str:
    """What a training run's result depends on: the data, the modelling settings and the code.

    Paths, serving and schedule settings are left out: moving the store or the service does
    not change what would be trained.
    """
    from importlib.metadata import version

    settings = config.model_dump(
        mode="json", include={"data", "tiers", "features", "labels", "training", "registry"}
    )
    settings["data"].pop("tables", None)  # where the files are is not what they hold
    payload = json.dumps(
        {"data": data_fingerprint(tables), "settings": settings, "dangol": version("dangol")},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def scratch_dir() -> Path:
    """A fresh temporary folder for plots before they are logged."""
    return Path(tempfile.mkdtemp(prefix="dangol-"))
