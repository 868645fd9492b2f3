"""The scoring service in three layers: logic without a server, ASGI, and `bentoml serve`.

One tiny project (3,000 customers) is trained and scored once for the module, without
Prefect: the flows' plain steps plus the MLflow registry.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import pandas as pd
import pytest

from tests.conftest import REPO

TOKEN = "test-token-0123456789abcdef"
CONFIG = """
data:
  timezone: Asia/Seoul
  end: 2026-01-01
  tables:
    customers: {path: shop/customers.parquet}
    orders: {path: shop/orders.parquet}
    order_items: {path: shop/order_items.parquet}
    content_views: {path: shop/content_views.parquet}
synthetic: {customers: 3000, seed: 11, out_dir: shop}
training:
  lightgbm: {n_estimators: 60, min_child_samples: 20}
serving: {max_batch: 50, max_page: 20, reload_seconds: 0.5}
paths: {mlruns: mlruns, exports: exports, prefect_home: prefect}
"""


def train_and_register(config, stamp: datetime, seed: int = 7) -> dict[str, str]:
    """Train both targets, register them, promote by the gate; returns the new versions."""
    import mlflow

    from flows import steps
    from models import registry

    tables, _ = steps.load_shop(config, progress=lambda _: None)
    frame, split = steps.build_training_data(tables, config)
    mlruns = config.resolve(config.paths.mlruns)
    registry.configure_mlflow(mlruns)
    experiment = registry.ensure_experiment(config.registry.experiment, mlruns)
    config.training.seed = seed
    versions = {}
    for target in steps.TARGETS:
        trained = steps.train_target(frame, split, target, config, steps.scratch_dir())
        name = config.registry.model_names[target]
        with mlflow.start_run(experiment_id=experiment, run_name=target) as run:
            mlflow.log_metrics({f"test.{k}": v for k, v in trained.metrics.items()})
            registry.log_json(split.to_dict(), "data_window.json")
            uri = registry.log_classifier(trained.model, trained.test_rows)
            version = registry.register(uri, name, run.info.run_id)
        # always promote: these tests want a new champion, not the gate's verdict
        decision = registry.PromotionDecision(True, "test", trained.metrics["pr_auc"], None)
        registry.apply_promotion(name, version, decision)
        versions[target] = version
    snapshot = steps.latest_snapshot(tables, config, None)
    models = {t: registry.load_version(config.registry.model_names[t], v) for t, v in versions.items()}
    steps.score_and_export(snapshot, models, config, stamp)
    return versions
