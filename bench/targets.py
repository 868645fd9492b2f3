"""The test-window and backtest numbers of docs/evaluation.md for chosen targets, without
registering anything: `python -m bench.targets --config C [--target T ...] [--drop F ...]`.
`--drop` removes feature columns from the training frame first: the same run without them
(an ablation; e.g. `--drop season_sin --drop season_cos`).

The same code path as `dangol train` (flows.training.train_target: split, fit, refit,
baselines, rolling-origin backtest); `dangol train` logs the same numbers to MLflow as
`test.*`, `baseline.<name>.*` and `backtest.<scorer>.<metric>.mean|std`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from features.targets import TARGETS, headline_metrics
from flows import training
from flows.config import load_config
from flows.data import load_shop
from models.value import decile_table

# shown per fold besides the headline: the promotion metric and calibration of the
# classifiers, how far off the money amounts are (the value target's decile-error goal)
# and on how many days of its window the time of year was never in training
FOLD_METRICS = (
    "pr_auc",
    "brier",
    "total_error_pct",
    "max_top5_decile_error_pct",
    "unseen_season_days",
)


def report(config_path: Path, targets: list[str], drop: list[str]) -> None:
    config = load_config(config_path)
    tables, _ = load_shop(config, progress=lambda _line: None)
    started = time.perf_counter()
    frame, split = training.build_training_data(tables, config)
    frame = frame.drop(columns=drop)
    print(f"training frame {frame.shape} in {time.perf_counter() - started:.0f} s")
    for target in targets:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as plots:
            trained = training.train_target(frame, split, target, config, Path(plots))
        seconds = time.perf_counter() - started
        window = trained.split.to_dict() if trained.split else {}
        print(f"\n## {target}: horizon {trained.horizon_days} days, {seconds:.0f} s")
        print(f"test cutoffs {window.get('test')}, {len(trained.test_rows):,} test rows")
        print(f"model: {getattr(trained.model, 'recipe', type(trained.model).__name__)}")
        if hasattr(trained.model, "calendar"):
            print(f"  calendar features: {'used' if trained.model.calendar else 'not used'}")
        print(f"  {getattr(trained.model, 'chosen_by', '')}")
        print("test:", {k: round(v, 3) for k, v in trained.metrics.items()})
        for name, metrics in trained.baselines.items():
            print(f"  {name}:", {k: round(v, 3) for k, v in metrics.items()})
        for name, why in trained.baseline_failures.items():
            print(f"  {name}: FAILED ({why})")
        if TARGETS[target].kind == "amount":
            rows = trained.test_rows
            table = decile_table(
                rows[target].to_numpy(), trained.test_scores(), rows["customer_id"].to_numpy()
            )
            print("deciles (error with its 95% interval, bootstrap over customers):")
            print(table.round(3).to_string())
        key = headline_metrics(target)[0][0]
        summary = training.backtest_summary(trained.backtest)
        print(summary[[("folds", ""), (key, "mean"), (key, "std")]].round(4).to_string())
        folds = trained.backtest[trained.backtest["scorer"] == "model"]
        shown = [c for c in (key, *FOLD_METRICS) if c in folds]
        print("model per fold:\n" + folds.set_index("test_start")[shown].round(3).to_string())
        gaps = training.backtest_gaps(trained.backtest)
        if key in gaps.columns.get_level_values(0):
            print(f"model minus baseline, paired by fold ({key}):")
            print(gaps[[(key, "mean"), (key, "std")]].round(4).to_string())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--target", action="append", choices=list(TARGETS))
    parser.add_argument("--drop", action="append", default=[], help="a feature to leave out")
    args = parser.parse_args()
    report(args.config, args.target or list(TARGETS), args.drop)


if __name__ == "__main__":
    main()
