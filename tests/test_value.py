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
    log_probability_contributions,
    normalized_gini,
    top_decile_capture,
    train_value_model,
    unseen_season_days,
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


def _heavy_tailed_spend(customers: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each customer's expected spend and a draw of what they spent: 40% spend nothing, the
    rest a lognormal multiple of their level with mean 1 (exp(-0.5 + 1/2))."""
    rng = np.random.default_rng(seed)
    level = rng.lognormal(5, 1.0, customers)
    spent = level * rng.lognormal(-0.5, 1.0, customers) * (rng.uniform(size=customers) < 0.6)
    return 0.6 * level, spent


def test_decile_error_intervals_hold_an_honest_model_and_exclude_a_biased_one() -> None:
    expected, spent = _heavy_tailed_spend(20_000, seed=3)
    ids = np.arange(len(spent))
    honest = decile_table(spent, expected, ids)
    assert ((honest["error_low"] < 0) & (honest["error_high"] > 0)).sum() >= 9
    assert (honest["error_low"] <= honest["error"]).all()
    assert (honest["error"] <= honest["error_high"]).all()
    halved = decile_table(spent, expected / 2, ids)
    assert (halved["error_high"] < 0).all()
    assert ((halved["error_low"] < -0.5) & (halved["error_high"] > -0.5)).sum() >= 9


def test_decile_error_intervals_resample_customers_not_rows() -> None:
    """A customer with a row at each of two test cutoffs is one draw: the interval is the
    same as with one row each, and narrower only if the rows were different customers."""
    expected, spent = _heavy_tailed_spend(3_000, seed=4)
    ids = np.arange(len(spent))
    once = decile_table(spent, expected, ids)
    twice = decile_table(np.r_[spent, spent], np.r_[expected, expected], np.r_[ids, ids])
    assert np.allclose(twice[["error_low", "error_high"]], once[["error_low", "error_high"]])
    strangers = decile_table(
        np.r_[spent, spent], np.r_[expected, expected], np.arange(2 * len(spent))
    )
    width = lambda t: (t["error_high"] - t["error_low"]).to_numpy()  # noqa: E731
    assert (width(strangers) < width(once)).all()


def test_unseen_season_days_counts_the_time_of_year_no_label_window_covered() -> None:
    """A one-year log (weekly cutoffs from January to June, 90-day labels: windows cover
    2 January .. 2 September) has never seen autumn; a second year of cutoffs has."""
    weekly = list(pd.date_range("2011-01-02", "2011-06-05", freq="7D"))
    assert weekly[-1] + pd.Timedelta(days=89) == pd.Timestamp("2011-09-02")
    assert unseen_season_days(weekly, 90, pd.Timestamp("2011-09-04")) == 90
    # 20 August .. 17 November: 20 August .. 2 September were seen, the other 76 days not
    assert unseen_season_days(weekly, 90, pd.Timestamp("2011-08-20")) == 76
    # a later year at a time of year that was covered: nothing unseen
    assert unseen_season_days(weekly, 90, pd.Timestamp("2012-02-01")) == 0
    # 10 December .. 8 March: 10 December .. 1 January (23 days) were never covered
    assert unseen_season_days(weekly, 90, pd.Timestamp("2011-12-10")) == 23
    two_years = list(pd.date_range("2010-01-03", "2011-06-05", freq="7D"))
    assert unseen_season_days(two_years, 90, pd.Timestamp("2011-09-04")) == 0
    # a leap day is the season of 28 February, which the one-year windows covered
    assert unseen_season_days(weekly, 90, pd.Timestamp("2012-02-29")) == 0


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


@pytest.mark.parametrize("recipe", ["tweedie", "two_part"])
def test_value_contributions_add_up_to_the_log_of_the_predicted_money(recipe) -> None:
    """The reasons of a predicted value explain all of it: both parts of a two-part model
    (the spend-if-buys booster alone would miss the chance to buy), and the feature that
    drives spend is a larger reason than the noise."""
    from models.explain import BASE_VALUE, contributions

    cutoffs = list(pd.date_range("2025-01-01", periods=4, freq="30D"))
    frame = planted_frame(2000, cutoffs, seed=4)
    split = TimeSplit(cutoffs[:2], cutoffs[2:3], cutoffs[3:], refit=cutoffs[:3])
    model = train_value_model(frame, VALUE, split, SMALL, recipes=(recipe,))
    assert model.recipe == recipe
    test = frame[frame["cutoff"].isin(split.test)]
    contrib = contributions(model, test)
    assert list(contrib.columns) == [*model.features, BASE_VALUE]
    assert np.allclose(np.exp(contrib.sum(axis=1)), model.predict(test), rtol=1e-6)
    size = contrib.drop(columns=BASE_VALUE).abs().mean()
    assert size["noise"] < size["avg_order_value"] and size["noise"] < size["orders_lifetime"]


def test_log_probability_contributions_keep_each_sign_and_sum_to_the_log_probability() -> None:
    rng = np.random.default_rng(5)
    logit = np.column_stack([rng.normal(0, 1.5, (200, 4)), np.full(200, -0.7)])
    logit[0, :4] = [0.5, -0.5, 0.0, 0.0]  # contributions that cancel: the margin is the base
    moved = log_probability_contributions(logit)
    margin = logit.sum(axis=1)
    assert np.allclose(moved.sum(axis=1), -np.logaddexp(0, -margin), atol=1e-12)
    assert np.allclose(moved[:, -1], -np.logaddexp(0, 0.7))
    assert (np.sign(moved[:, :4]) == np.sign(logit[:, :4])).all()
    # one factor per row: every feature keeps its share of the row's total
    rest, before = moved[1:, :4], logit[1:, :4]
    expected = before / before.sum(axis=1, keepdims=True)
    assert np.allclose(rest / rest.sum(axis=1, keepdims=True), expected, atol=1e-9)
    assert np.isfinite(moved).all() and moved[0, 0] > 0 > moved[0, 1]


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


def test_the_importance_of_a_two_part_model_counts_its_buying_half() -> None:
    """A feature that only decides whether a customer buys hardly moves the amount booster's
    gain, yet it decides much of the predicted money: the importance a person reads must
    show it (models.explain.feature_importance), and say what it measures."""
    from models.explain import GAIN, MEAN_ABS_SHAP, feature_importance

    rng = np.random.default_rng(6)
    cutoffs = list(pd.date_range("2025-01-01", periods=4, freq="30D"))
    parts = []
    for cutoff in cutoffs:
        n = 2000
        browse = rng.normal(size=n)
        order_value = rng.lognormal(4, 0.6, n)
        buys = rng.uniform(size=n) < 1 / (1 + np.exp(-2 * browse))
        parts.append(
            pd.DataFrame(
                {
                    "customer_id": [f"c{i}" for i in range(n)],
                    "cutoff": cutoff,
                    "browse": browse,
                    "avg_order_value": order_value,
                    VALUE: buys * order_value * rng.gamma(4, 0.25, n),
                }
            )
        )
    frame = pd.concat(parts, ignore_index=True)
    split = TimeSplit(cutoffs[:2], cutoffs[2:3], cutoffs[3:], refit=cutoffs[:3])
    model = train_value_model(frame, VALUE, split, SMALL, recipes=("two_part",))
    test = frame[frame["cutoff"].isin(split.test)]
    importance, measure = feature_importance(model, test)
    share = dict(zip(model.features, importance / importance.sum(), strict=True))
    gain = model.booster.feature_importance("gain")
    gain_share = dict(zip(model.features, gain / gain.sum(), strict=True))
    assert measure == MEAN_ABS_SHAP and measure != GAIN
    assert gain_share["browse"] < 0.2 < share["browse"], (gain_share, share)
