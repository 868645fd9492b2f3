"""The test-window and backtest numbers of docs/evaluation.md for chosen targets, without
registering anything: `python -m bench.targets --config C [--target T ...]`.

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


def report(config_path: Path, targets: list[str]) -> None:
    config = load_config(config_path)
    tables, _ = load_shop(config, progress=lambda _line: None)
    started = time.perf_counter()
    frame, split = training.build_training_data(tables, config)
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
        print(f"  {getattr(trained.model, 'chosen_by', '')}")
        print("test:", {k: round(v, 3) for k, v in trained.metrics.items()})
        for name, metrics in trained.baselines.items():
            print(f"  {name}:", {k: round(v, 3) for k, v in metrics.items()})
        for name, why in trained.baseline_failures.items():
            print(f"  {name}: FAILED ({why})")
        key = headline_metrics(target)[0][0]
        summary = training.backtest_summary(trained.backtest)
        print(summary[[("folds", ""), (key, "mean"), (key, "std")]].round(4).to_string())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--target", action="append", choices=list(TARGETS))
    args = parser.parse_args()
    report(args.config, args.target or list(TARGETS))


if __name__ == "__main__":
    main()
