"""Training speed: every model on the default shop, and one model on 1M customer-snapshots.

Each `models.train.train_classifier` call (a LightGBM fit with early stopping on the
validation window, then the refit on every cutoff labelled before the test window) is timed
next to scikit-learn's HistGradientBoostingClassifier doing the same two fits: the first with
early stopping on the same validation rows (same patience, on the loss), the refit with as
many trees as dangol's refit; same tree size, rows and threads. Measured in the same run: the
ratio is the robust number on a shared machine. The calendar features are kept in
(`calendar=True`): choosing them on validation costs dangol's main split one more first fit,
which a baseline making the same choice would pay alike.

    .venv/bin/python -m bench.training [--customers 20000] [--rows 1000000]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import date

import numpy as np
import pandas as pd

from features.snapshot import labelled_cutoffs, training_frame
from features.synthetic import generate_shop
from features.targets import probability_targets
from flows.config import DEFAULT_CONFIG, load_config
from models.train import TimeSplit, split_cutoffs, train_classifier, window_rows


def _seconds(work):
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def _hgb(config, trees: int, early_stopping: bool):
    """HistGradientBoosting with LightGBM's tree size; with early stopping, the same
    patience on the loss as LightGBM's first fit."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    params = config.training.lightgbm
    return HistGradientBoostingClassifier(
        max_leaf_nodes=params.num_leaves,
        max_depth=params.max_depth,
        learning_rate=params.learning_rate,
        max_iter=max(trees, 1),
        min_samples_leaf=params.min_child_samples,
        l2_regularization=params.reg_lambda,
        early_stopping=early_stopping,
        n_iter_no_change=config.training.early_stopping_rounds,
        scoring="loss",
        tol=0.0,
        random_state=0,
    )


def _matrix(rows: pd.DataFrame, columns: list[str]) -> np.ndarray:
    return rows[columns].to_numpy("float64")


def _sklearn_seconds(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    refit: pd.DataFrame | None,
    target: str,
    features: list[str],
    config,
    trees: int,
) -> tuple[float, int]:
    """The same two fits with HistGradientBoosting: early stopping on the validation window
    (LightGBM's patience), then the refit with the trees dangol's refit has. Returns the
    seconds and the trees its first fit boosted."""
    # HistGradientBoosting cannot bin a column with no value (order features of never-buyers)
    columns = [c for c in features if train[c].notna().any()]
    first = _hgb(config, config.training.lightgbm.n_estimators, early_stopping=True)
    x_val, y_val = _matrix(validation, columns), validation[target].to_numpy()
    seconds, _ = _seconds(
        lambda: first.fit(
            _matrix(train, columns), train[target].to_numpy(), X_val=x_val, y_val=y_val
        )
    )
    if refit is not None:
        second = _hgb(config, trees, early_stopping=False)
        more, _ = _seconds(lambda: second.fit(_matrix(refit, columns), refit[target].to_numpy()))
        seconds += more
    return seconds, first.n_iter_


def _row(label: str, target: str, split: TimeSplit, frame, config) -> str:
    seconds, model = _seconds(
        lambda: train_classifier(frame, target, split, config.training, calendar=True)
    )
    fitted = model.booster.current_iteration()
    train_rows = window_rows(frame, target, split.train)
    validation = window_rows(frame, target, split.validation)
    refit_rows = window_rows(frame, target, split.fitted(config.training.refit))
    refit = refit_rows if len(refit_rows) != len(train_rows) else None
    baseline, hgb_first = _sklearn_seconds(
        train_rows, validation, refit, target, model.features, config, fitted
    )
    return (
        f"| {label} | {len(train_rows):,} + {len(refit_rows):,} x {len(model.features)} | "
        f"{fitted} (HGB first fit {hgb_first}) | {seconds:.1f} s | {baseline:.1f} s | "
        f"{baseline / seconds:.2f}x |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    config = load_config(DEFAULT_CONFIG)
    print(
        f"# training benchmark, {date.today()}, {platform.machine()}, {os.cpu_count()} cores "
        f"(shared with other work: compare ratios, not seconds)"
    )
    tables = generate_shop(args.customers, seed=7)
    cutoffs = labelled_cutoffs(
        tables.orders["ordered_at"].min(),
        pd.Timestamp("2026-01-01"),
        config.training.cutoff_every_days,
        config.labels.horizon_days,
        config.training.min_history_days,
    )
    split = split_cutoffs(
        cutoffs,
        config.labels.horizon_days,
        config.training.test_cutoffs,
        config.training.validation_cutoffs,
    )
    used = sorted(set(split.refit + split.test))
    seconds, frame = _seconds(
        lambda: training_frame(tables, used, config.features, config.labels, config.tiers)
    )
    print(
        f"training frame: {len(frame):,} customer-snapshots at {len(used)} cutoffs, {seconds:.1f} s"
    )
    print(
        "| model | training + refit rows x features | trees | dangol (LightGBM) | sklearn HGB "
        "| ratio |"
    )
    print("|---|---|---|---|---|---|")
    # the classifiers (the value and timing models have their own recipes: bench.targets)
    targets = [spec.name for spec in probability_targets()]
    for target in targets:
        print(_row(f"{target}, default shop", target, split, frame, config))
    # 1M customer-snapshots: the training window's rows of the first target resampled to the
    # size; the refit then sees those rows plus every later cutoff labelled before the test
    first = targets[0]
    train = window_rows(frame, first, split.train)
    picks = np.random.default_rng(0).integers(0, len(train), args.rows)
    big_train = train.iloc[picks].reset_index(drop=True)
    rest = frame[~frame["cutoff"].isin(split.train)]
    big = pd.concat([big_train, rest], ignore_index=True)
    print(_row(f"{first}, {args.rows:,} snapshots", first, split, big, config))


if __name__ == "__main__":
    main()
