"""The value target: money metrics, the regressors on planted structure, and its labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.targets import amount_target
from models.loading import load_model
from models.train import LightGBMParams, TimeSplit, TrainingSettings
from models.value import (
    ValueModel,
    decile_table,
    normalized_gini,
    top_decile_capture,
    train_value_model,
    value_metrics,
)

VALUE = amount_target().name
SMALL = TrainingSettings(
    early_stopping_rounds=20,
    lightgbm=LightGBMParams(n_estimators=200, learning_rate=0.1, num_threads=1),
)


def test_normalized_gini_is_one_for_the_perfect_order_and_near_zero_for_noise() -> None:
    rng = np.random.default_rng(0)
    spend = rng.lognormal(3, 1.5, 5000) * (rng.uniform(size=5000) < 0.3)
    assert normalized_gini(spend, spend) == pytest.approx(1.0)
    assert normalized_gini(spend, spend + 1) == pytest.approx(1.0)  # only the order counts
    assert abs(normalized_gini(spend, rng.uniform(size=5000))) < 0.05
    assert normalized_gini(spend, -spend) < -0.9


def test_normalized_gini_counts_tied_scores_at_their_average() -> None:
    """A constant score is as good as random whatever the row order; a rank with ties is not
    flattered by the rows happening to be sorted."""
    spend = np.array([100.0, 0, 0, 0, 50, 0, 0, 0, 0, 10])
    assert normalized_gini(spend, np.zeros(10)) == pytest.approx(0.0, abs=1e-12)
    assert normalized_gini(spend, np.zeros(10)) == pytest.approx(
        normalized_gini(spend[::-1], np.zeros(10)), abs=1e-12
    )


def test_weighted_gini_equals_the_gini_of_repeated_rows() -> None:
    rng = np.random.default_rng(1)
    spend, score = rng.exponential(1, 200), rng.normal(size=200)
    weight = rng.integers(0, 3, 200)
    repeated = np.repeat(np.arange(200), weight)
    assert normalized_gini(spend, score, weight.astype(float)) == pytest.approx(
        normalized_gini(spend[repeated], score[repeated])
    )


def test_top_decile_capture_and_decile_table() -> None:
    spend = np.r_[np.full(10, 90.0), np.full(90, 1.0)]
    predicted = np.r_[np.full(10, 80.0), np.full(90, 2.0)]
    assert top_decile_capture(spend, predicted) == pytest.approx(900 / 990)
    table = decile_table(spend, predicted)
    assert list(table.index) == list(range(10, 0, -1))
    assert table.loc[10, "mean_actual"] == 90
    assert table.loc[10, "error"] == pytest.approx(80 / 90 - 1)
    metrics = value_metrics(spend, predicted)
    assert metrics["total_error_pct"] == pytest.approx(100 * ((800 + 180) / 990 - 1))


def planted_frame(customers: int, cutoffs: list[pd.Timestamp], seed: int) -> pd.DataFrame:
    """Spend driven by two features (frequency raises the chance to buy, order value the
    amount), a third pure noise; 60% of customers spend nothing."""
    rng = np.random.default_rng(seed)
    parts = []
    for cutoff in cutoffs:
        frequency = rng.poisson(2, customers) + 1
        order_value = rng.lognormal(4, 0.6, customers)
        noise = rng.normal(size=customers)
        buys = rng.uniform(size=customers) < 1 - np.exp(-0.25 * frequency)
        spend = buys * order_value * rng.gamma(2, 0.5 * frequency / 2, customers)
        parts.append(
            pd.DataFrame(
                {
                    "customer_id": [f"c{i}" for i in range(customers)],
                    "cutoff": cutoff,
                    "orders_lifetime": frequency.astype(float),
                    "avg_order_value": order_value,
                    "noise": noise,
                    VALUE: spend,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def test_value_model_learns_planted_spend_and_survives_a_save() -> None:
    cutoffs = list(pd.date_range("2025-01-01", periods=6, freq="30D"))
    frame = planted_frame(3000, cutoffs, seed=2)
    split = TimeSplit(cutoffs[:3], cutoffs[3:4], cutoffs[5:], refit=cutoffs[:5])
    model = train_value_model(frame, VALUE, split, SMALL)
    assert model.recipe in ("tweedie", "two_part")
    assert set(model.chosen_by) == {
        "validation.tweedie.normalized_gini",
        "validation.two_part.normalized_gini",
    }
    test = frame[frame["cutoff"].isin(split.test)]
    predicted = model.predict(test)
    assert (predicted >= 0).all()
    metrics = value_metrics(test[VALUE].to_numpy(), predicted)
    # the oracle (true expected spend) sets the ceiling; the model gets most of the way
    oracle = (
        (1 - np.exp(-0.25 * test["orders_lifetime"]))
        * test["avg_order_value"]
        * (test["orders_lifetime"] / 2)
    )
    ceiling = normalized_gini(test[VALUE].to_numpy(), oracle.to_numpy())
    assert metrics["normalized_gini"] > 0.85 * ceiling
    assert abs(metrics["total_error_pct"]) < 15
    importance = dict(zip(model.features, model.booster.feature_importance("gain"), strict=True))
    assert importance["noise"] < importance["avg_order_value"]


def test_value_model_round_trips_through_its_files(tmp_path) -> None:
    cutoffs = list(pd.date_range("2025-01-01", periods=4, freq="30D"))
    frame = planted_frame(1000, cutoffs, seed=3)
    split = TimeSplit(cutoffs[:2], cutoffs[2:3], cutoffs[3:], refit=cutoffs[:3])
    model = train_value_model(frame, VALUE, split, SMALL)
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded, ValueModel)
    assert np.allclose(loaded.predict(frame), model.predict(frame))


def _last_bits_apart(frame: pd.DataFrame, columns: list[str], seed: int) -> pd.DataFrame:
    """The same frame with half of each column's values a few float64 steps away (~1e-15
    relative), as two builds of one frame differ when an engine sums in parallel in no fixed
    order. LightGBM itself treats values one step apart as equal, so the steps are 2-4."""
    rng = np.random.default_rng(seed)
    nudged = frame.copy()
    for column in columns:
        values = nudged[column].to_numpy("float64")
        steps = rng.integers(2, 5, len(values)) * (rng.uniform(size=len(values)) < 0.5)
        nudged[column] = values + steps * np.spacing(values)
    return nudged


def test_inputs_that_differ_in_the_last_bits_give_the_same_model() -> None:
    """Fitted on float64 these two frames gave predictions up to 118 apart; the models are
    fitted on float32 (models.train.fit_matrix)."""
    cutoffs = list(pd.date_range("2025-01-01", periods=5, freq="30D"))
    frame = planted_frame(2000, cutoffs, seed=4)
    # an average of whole days: 199 distinct values, each shared by many rows; nudged, they
    # are four times as many, past LightGBM's 255 bins
    days = np.random.default_rng(6).integers(1, 200, len(frame))
    frame["mean_gap_days"] = days / 3
    frame[VALUE] *= 1 + (days % 90) / 90
    split = TimeSplit(cutoffs[:2], cutoffs[2:3], cutoffs[4:], refit=cutoffs[:3])
    nudged = _last_bits_apart(frame, ["orders_lifetime", "avg_order_value", "mean_gap_days"], 5)
    first = train_value_model(frame, VALUE, split, SMALL)
    second = train_value_model(nudged, VALUE, split, SMALL)
    test = frame[frame["cutoff"].isin(split.test)]
    assert first.recipe == second.recipe
    assert np.array_equal(first.predict(test), second.predict(test))
