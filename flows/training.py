"""Training stage: features and labels at every labelled cutoff, one target's model with its
holdout evaluation, baselines and rolling-origin backtest.

Plain functions over the config (no Prefect, no MLflow), wrapped in tasks by the flows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.schema import ShopTables
from features.snapshot import labelled_cutoffs
from features.targets import TARGETS
from flows.config import DangolConfig
from flows.data import data_end, first_event, training_frame
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
from models.train import (
    CalibratedBooster,
    InsufficientDataError,
    TimeSplit,
    check_sufficient,
    split_cutoffs,
    train_classifier,
    window_rows,
)


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
    frame = training_frame(tables, config, used)
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
    """Every required target, and each optional one that has a population in this data."""
    return [n for n, spec in TARGETS.items() if spec.required or applicable(frame, n)]


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
