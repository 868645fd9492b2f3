"""Tiny trained projects for tests: a synthetic shop, a real MLflow store, a real release.

The flows' plain stages are called directly (no Prefect), which is what the flows run.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

CONFIG = """
data:
  timezone: Asia/Seoul
  end: 2026-01-01
  tables:
    customers: {{path: shop/customers.parquet}}
    orders: {{path: shop/orders.parquet}}
    order_items: {{path: shop/order_items.parquet}}
    content_views: {{path: shop/content_views.parquet}}
synthetic: {{customers: {customers}, seed: {shop_seed}, out_dir: shop}}
training:
  seed: {training_seed}
  backtest_folds: 1
  lightgbm: {{n_estimators: 60, min_child_samples: 20}}
registry: {{bootstrap_replicates: 200}}
serving: {{max_batch: 50, max_page: 20, reload_seconds: 0.5}}
paths: {{mlruns: mlruns, exports: exports, prefect_home: prefect, bentoml_home: bento}}
"""


def write_project(
    root: Path, customers: int = 3000, shop_seed: int = 11, training_seed: int = 7
) -> Path:
    """A project folder with its config; the shop is generated on first load."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "dangol.yaml"
    path.write_text(
        CONFIG.format(customers=customers, shop_seed=shop_seed, training_seed=training_seed)
    )
    return path


def train_release(config):
    """Train every target and the uplift model (none without campaign logs) and publish one
    release (promoted when better beyond noise); the plots go to the project's folder."""
    from flows import data, training
    from flows.publish import log_and_publish

    tables, _ = data.load_shop(config, progress=lambda _: None)
    frame, split = training.build_training_data(tables, config)
    plots = config.base_dir / "plots"
    plots.mkdir(exist_ok=True)
    trained = [
        training.train_target(frame, split, target, config, plots)
        for target in training.targets_to_train(frame)
    ]
    uplift = training.train_uplift(tables, config, plots)
    return log_and_publish(trained, split, config, data.run_key(tables, config), uplift=uplift)


def score(config, stamp: datetime) -> Path:
    """Score the latest snapshot with the live release and export it; returns the folder."""
    from flows import data, export
    from models import release

    live = export.live_release(config)
    tables, _ = data.load_shop(config, progress=lambda _: None)
    snapshot = export.latest_snapshot(tables, config, None)
    measured = export.measured_uplift(tables, config)
    folder, _sizes = export.score_and_export(
        snapshot, release.load_models(live), config, stamp, live, measured
    )
    return folder
