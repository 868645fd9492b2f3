"""Behavioural model tests on the synthetic shop: directions, planted archetypes, baselines,
calibration. One shop and one set of models per module (a few seconds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.synthetic import archetypes
from flows import data as flow_data
from flows import training
from flows.config import DangolConfig, load_config
from models.evaluate import calibration_table

CUSTOMERS, SEED = 4000, 11
CONFIG = f"""
data:
  timezone: Asia/Seoul
  end: 2026-01-01
  tables:
    customers: {{path: shop/customers.parquet}}
    orders: {{path: shop/orders.parquet}}
    order_items: {{path: shop/order_items.parquet}}
    content_views: {{path: shop/content_views.parquet}}
synthetic: {{customers: {CUSTOMERS}, seed: {SEED}, out_dir: shop}}
training:
  backtest_folds: 2
paths: {{mlruns: mlruns, exports: exports, prefect_home: prefect}}
"""


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> DangolConfig:
    root = tmp_path_factory.mktemp("behaviour")
    (root / "dangol.yaml").write_text(CONFIG)
    return load_config(root / "dangol.yaml")


@pytest.fixture(scope="module")
def data(config: DangolConfig):
    tables, _ = flow_data.load_shop(config, progress=lambda _: None)
    return training.build_training_data(tables, config)


@pytest.fixture(scope="module")
def trained(config: DangolConfig, data, tmp_path_factory) -> dict[str, training.TrainedTarget]:
    frame, split = data
    plots = tmp_path_factory.mktemp("plots")
    return {
        target: training.train_target(frame, split, target, config, plots)
        for target in ("repurchase", "first_purchase")
    }


def _mean_score(model, rows: pd.DataFrame, **updates) -> float:
    """Average prediction after setting columns (a partial-dependence point); a callable
    value is applied to the rows."""
    changed = rows.copy()
    for column, value in updates.items():
        changed[column] = value(changed) if callable(value) else value
    return float(model.predict_proba(changed).mean())


def _with_recency(days: float) -> dict:
    """Last order `days` ago, with the recency ratios that follow from it."""
    return {
        "days_since_last_order": days,
        "overdue_ratio": lambda r: days / r["median_gap_days"],
        "days_since_first_order": lambda r: np.maximum(r["days_since_first_order"], days),
    }


def _with_orders(extra: int) -> dict:
    """`extra` more orders in the last 30 days (every window and the lifetime count)."""
    windows = [f"orders_{w}d" for w in (30, 90, 180, 365)]
    return {c: (lambda r, c=c: r[c] + extra) for c in ["orders_lifetime", *windows]}


@pytest.mark.parametrize(
    ("better", "worse"),
    [
        (_with_recency(10), _with_recency(60)),
        (_with_recency(60), _with_recency(250)),
        (_with_orders(3), _with_orders(0)),
    ],
    ids=["10d-vs-60d", "60d-vs-250d", "more-orders"],
)
def test_more_recent_or_more_frequent_buyers_score_higher(trained, better, worse) -> None:
    result = trained["repurchase"]
    rows = result.test_rows
    assert _mean_score(result.model, rows, **better) > _mean_score(result.model, rows, **worse)


def test_accelerating_buyers_score_above_fading_ones_at_equal_recency(trained) -> None:
    result = trained["repurchase"]
    rows = result.test_rows
    kind = archetypes(CUSTOMERS, SEED).reindex(rows["customer_id"]).to_numpy()
    score = result.test_scores()
    frame = pd.DataFrame({"kind": kind, "score": score, "recency": rows["days_since_last_order"]})
    frame = frame[frame["kind"].isin(["accelerating", "fading"])]
    # compare within recency bands both kinds occupy, so recency cannot explain the gap
    frame["band"] = pd.cut(frame["recency"], [0, 15, 30, 60, 120, 240])
    means = frame.groupby(["band", "kind"], observed=True)["score"].agg(["mean", "size"])
    means = means["mean"].unstack().dropna()
    assert len(means) >= 2
    assert (means["accelerating"] > means["fading"]).all(), means


def test_high_price_browsing_raises_first_purchase_propensity(trained) -> None:
    result = trained["first_purchase"]
    rows = result.test_rows
    score = result.test_scores()
    viewers = rows["views_lifetime"] > 0
    high = viewers & (rows["high_price_view_share"] >= 0.5)
    low = viewers & (rows["high_price_view_share"] < 0.1)
    assert high.sum() > 30 and low.sum() > 30
    assert score[high.to_numpy()].mean() > score[low.to_numpy()].mean()
    # and on the same members: turning their browsing high-price raises the average score
    shift = {"high_price_view_share": 0.8, "high_price_views": lambda r: r["views_lifetime"] * 0.8}
    assert _mean_score(result.model, rows[low], **shift) > _mean_score(result.model, rows[low])


@pytest.mark.parametrize("baseline", ["recency", "rfm", "bgnbd"])
def test_repurchase_model_beats_baselines_on_the_test_window(trained, baseline: str) -> None:
    result = trained["repurchase"]
    assert baseline not in result.baseline_failures
    for metric in ("roc_auc", "pr_auc"):
        assert result.metrics[metric] > result.baselines[baseline][metric], metric
    if baseline == "bgnbd":  # both are probabilities: the model's should be better too
        assert result.metrics["log_loss"] < result.baselines["bgnbd"]["log_loss"]


def test_first_purchase_model_beats_view_rules(trained) -> None:
    result = trained["first_purchase"]
    for rule in ("view_recency", "high_price_views"):
        assert result.metrics["pr_auc"] > result.baselines[rule]["pr_auc"]


@pytest.mark.parametrize("target", ["repurchase", "first_purchase"])
def test_calibration_is_sane_on_later_data(trained, target: str) -> None:
    """Judged on the test window, later than anything the model was fitted on (the default
    refit's own probabilities): the mean is near the base rate and every decile's observed
    rate near its prediction (a seasonal shift between the windows is allowed for)."""
    result = trained[target]
    outcome = result.test_rows[target].to_numpy()
    proba = result.test_scores()
    assert abs(proba.mean() - outcome.mean()) < 0.06 + 0.15 * outcome.mean()
    table = calibration_table(outcome, proba)
    expected_error = float((table["predicted"] - table["observed"]).abs().mean())
    assert expected_error < 0.07
    assert np.corrcoef(table["predicted"], table["observed"])[0, 1] > 0.9


def test_backtest_moves_the_test_window_back(trained, config: DangolConfig) -> None:
    folds = trained["repurchase"].backtest
    starts = folds.drop_duplicates("fold").set_index("fold")["test_start"]
    assert list(starts.index) == [0, 1]
    step = pd.Timedelta(days=config.training.cutoff_every_days * config.training.test_cutoffs)
    assert starts[0] - starts[1] == step
    summary = training.backtest_summary(folds)
    assert summary.loc["model", ("folds", "")] == 2
    assert summary.loc["model", ("roc_auc", "mean")] > summary.loc["recency", ("roc_auc", "mean")]


def test_plots_are_written(trained) -> None:
    names = {Path(p).name for p in trained["repurchase"].plots}
    assert {"repurchase_gain.png", "repurchase_importance.png"} <= names
    assert all(Path(p).stat().st_size > 1000 for p in trained["repurchase"].plots)
