"""A shop that logs orders and nothing else (no members, order lines or views) still gets
money and timing predictions that beat its baselines (issue: defaults that travel)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from features.targets import amount_target, timing_target
from flows import data, training
from flows.config import load_config

CONFIG = """
data:
  timezone: Asia/Seoul
  end: 2026-01-01
  tables:
    orders: {path: shop/orders.parquet}
synthetic: {customers: 3000, seed: 5, out_dir: shop}
training:
  backtest_folds: 1
  lightgbm: {n_estimators: 80, min_child_samples: 20}
paths: {mlruns: mlruns, exports: exports, prefect_home: prefect}
"""


@pytest.fixture(scope="module")
def orders_only(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("orders-only")
    (root / "dangol.yaml").write_text(CONFIG)
    config = load_config(root / "dangol.yaml")
    tables, _ = data.load_shop(config, progress=lambda _: None)
    assert list(tables.present()) == ["orders"]
    frame, split = training.build_training_data(tables, config)
    return config, frame, split, root


def _train(orders_only, target: str) -> training.TrainedTarget:
    config, frame, split, root = orders_only
    plots = Path(root) / "plots"
    plots.mkdir(exist_ok=True)
    return training.train_target(frame, split, target, config, plots)


def test_an_orders_only_log_trains_value_and_timing(orders_only) -> None:
    _config, frame, _split, _root = orders_only
    wanted = training.targets_to_train(frame)
    assert amount_target().name in wanted and timing_target().name in wanted
    assert not any(c.startswith("views_") for c in frame.columns)  # really orders only


def test_value_on_orders_only_ranks_spend_better_than_its_baselines(orders_only) -> None:
    trained = _train(orders_only, amount_target().name)
    gini = trained.metrics["normalized_gini"]
    assert np.isfinite(trained.metrics["total_error_pct"])
    for baseline in ("previous_window", "rfm"):
        assert gini > trained.baselines[baseline]["normalized_gini"], baseline
    assert (trained.test_scores() >= 0).all()


def test_timing_on_orders_only_orders_buyers_better_than_the_median_gap(orders_only) -> None:
    trained = _train(orders_only, timing_target().name)
    assert trained.metrics["c_index"] > trained.baselines["median_gap"]["c_index"]
    assert 0.3 < trained.metrics["window_coverage"] < 0.7  # a 50% window holds about half
