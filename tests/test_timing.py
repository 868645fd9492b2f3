"""The next-purchase timing model: its distribution, windows and metrics on planted timing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.targets import timing_target
from models.loading import load_model
from models.timing import (
    TimingModel,
    concordance,
    distribution_quantile,
    purchase_windows,
    share_by_day,
    timing_metrics,
    train_timing_model,
)
from models.train import LightGBMParams, TimeSplit, TrainingSettings

TIMING = timing_target().name
HORIZON = 90


def test_quantiles_of_a_uniform_distribution_are_linear_in_days() -> None:
    uniform = np.full((1, 13), 1 / 13)
    # 13 weeks, the last cut at day 90: quantile q lies at the matching share of the weeks
    assert distribution_quantile(uniform, 0.5, HORIZON)[0] == pytest.approx(45.5, abs=0.01)
    assert distribution_quantile(uniform, 0.25, HORIZON)[0] == pytest.approx(22.75, abs=0.01)
    one_week = np.zeros((1, 13))
    one_week[0, 3] = 1.0
    assert 21 <= distribution_quantile(one_week, 0.25, HORIZON)[0] <= 28
    assert distribution_quantile(one_week, 0.75, HORIZON)[0] <= 28


def test_share_by_day_is_the_inverse_of_the_quantiles() -> None:
    """P(next order by day d | one within H) read from the weekly distribution the same way
    the window's quantiles are: the share at a quantile's day is that quantile."""
    rng = np.random.default_rng(3)
    distribution = rng.dirichlet(np.full(13, 0.5), size=200)
    for quantile in (0.1, 0.25, 0.5, 0.9):
        days = distribution_quantile(distribution, quantile, HORIZON)
        shares = np.array(
            [share_by_day(distribution[i : i + 1], d, HORIZON)[0] for i, d in enumerate(days)]
        )
        assert np.allclose(shares, quantile, atol=1e-6)
    assert np.allclose(share_by_day(distribution, 0, HORIZON), 0.0)
    assert np.allclose(share_by_day(distribution, HORIZON, HORIZON), 1.0)
    assert np.allclose(share_by_day(distribution, 400, HORIZON), 1.0)
    uniform = np.full((1, 13), 1 / 13)
    assert share_by_day(uniform, 30, HORIZON)[0] == pytest.approx(30 / 91, abs=0.01)


def test_concordance_orders_and_ties() -> None:
    days = np.array([1.0, 5, 9, 20])
    assert concordance(days, days) == 1.0
    assert concordance(days, -days) == 0.0
    assert concordance(days, np.zeros(4)) == 0.5


def planted_frame(customers: int, cutoffs: list[pd.Timestamp], seed: int) -> pd.DataFrame:
    """Each customer's next order comes after about their usual gap minus the days since the
    last order; a noise column carries nothing."""
    rng = np.random.default_rng(seed)
    parts = []
    for cutoff in cutoffs:
        gap = rng.uniform(10, 80, customers)
        since = rng.uniform(0, 1, customers) * gap
        due = np.maximum(gap - since, 0) + rng.exponential(12, customers)
        parts.append(
            pd.DataFrame(
                {
                    "customer_id": [f"c{i}" for i in range(customers)],
                    "cutoff": cutoff,
                    "orders_lifetime": 3.0,
                    "median_gap_days": gap,
                    "days_since_last_order": since,
                    "noise": rng.normal(size=customers),
                    TIMING: np.where(due < HORIZON, due, np.nan),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def fitted() -> tuple[TimingModel, pd.DataFrame]:
    cutoffs = list(pd.date_range("2025-01-01", periods=5, freq="14D"))
    frame = planted_frame(1500, cutoffs, seed=1)
    split = TimeSplit(cutoffs[:3], cutoffs[3:4], cutoffs[4:], refit=cutoffs[:4])
    small = LightGBMParams(n_estimators=150, learning_rate=0.1, num_threads=1)
    settings = TrainingSettings(early_stopping_rounds=20, lightgbm=small)
    model = train_timing_model(frame, TIMING, split, settings, HORIZON)
    return model, frame[frame["cutoff"].isin(split.test) & frame[TIMING].notna()]


def test_timing_model_learns_planted_days_with_honest_windows(fitted) -> None:
    model, test = fitted
    metrics = timing_metrics(model, test, TIMING)
    assert metrics["c_index"] > 0.8
    # the 25th-75th percentile window holds about half the observed next orders
    assert 0.4 <= metrics["window_coverage"] <= 0.6
    rule = np.maximum(test["median_gap_days"] - test["days_since_last_order"], 0)
    assert metrics["mae_days"] < np.mean(np.abs(rule - test[TIMING])) + 2


def test_the_share_of_next_orders_by_a_day_matches_what_happened(fitted) -> None:
    """What the what-if's base rate rests on: of the next orders that came within H, the
    share predicted to come by day 30 is about the share that did, and those that did had
    the higher shares."""
    model, test = fitted
    share = share_by_day(model.distribution(test), 30, HORIZON)
    came = test[TIMING].to_numpy() < 30
    assert share.mean() == pytest.approx(came.mean(), abs=0.05)
    assert share[came].mean() > share[~came].mean() + 0.3


def test_a_campaigns_base_rate_by_population(fitted) -> None:
    """A buyer's chance of an order in a campaign's 30 days is their repurchase probability x
    the timing model's share by day 30; a member who never ordered, with no learned timing,
    gets an even rate over H; a campaign longer than H gets the horizon's probability; and
    without a timing model H is not known, so there is none."""
    from features.targets import TARGETS
    from features.tiers import TierSettings
    from models.scoring import campaign_probabilities

    model, test = fitted
    snapshot = test.reset_index(drop=True)
    never = np.arange(len(snapshot)) % 2 == 1
    snapshot["orders_lifetime"] = np.where(never, 0.0, 3.0)
    scores = pd.DataFrame(
        {
            TARGETS["repurchase"].score_column: np.where(never, np.nan, 0.6),
            TARGETS["first_purchase"].score_column: np.where(never, 0.3, np.nan),
        }
    )
    models = {TIMING: model}
    distribution = model.distribution(snapshot)

    def rates(days: int, with_models=models) -> np.ndarray:
        share = share_by_day(distribution, days, HORIZON)
        return campaign_probabilities(snapshot, with_models, scores, TierSettings(), days, share)

    month = rates(30)
    share = share_by_day(distribution, 30, HORIZON)
    assert np.allclose(month[~never], 0.6 * share[~never])
    assert np.allclose(month[never], 1 - 0.7 ** (30 / HORIZON))
    assert month[~never].std() > 0.05  # the timing model's, customer by customer
    assert np.allclose(rates(200)[~never], 0.6) and np.allclose(rates(200)[never], 0.3)
    assert np.isnan(rates(30, {})).all()


def test_windows_never_start_before_the_cutoff_and_unlikely_buyers_get_none(fitted) -> None:
    model, test = fitted
    probability = np.where(np.arange(len(test)) % 2 == 0, 0.9, 0.2)
    windows = purchase_windows(model, test, probability)
    cutoff = pd.to_datetime(test["cutoff"]).to_numpy("datetime64[D]")
    likely = probability >= 0.5
    assert (windows["next_purchase_from"].to_numpy()[likely] >= cutoff[likely]).all()
    shown = windows[likely]
    assert (shown["next_purchase_from"] <= shown["expected_next_purchase"]).all()
    assert (shown["expected_next_purchase"] <= shown["next_purchase_to"]).all()
    assert shown.notna().all().all()
    assert windows.loc[~likely, "expected_next_purchase"].isna().all()


def test_timing_model_round_trips(fitted, tmp_path) -> None:
    model, test = fitted
    model.save(tmp_path / "t")
    loaded = load_model(tmp_path / "t")
    assert isinstance(loaded, TimingModel)
    assert np.allclose(loaded.predict(test), model.predict(test))


def test_scores_carry_no_days_for_customers_not_expected_within_the_horizon(fitted) -> None:
    """The score column (median days) is empty with the dates: '29 days' next to a 0.3%
    chance of buying reads as a forecast."""
    from features.targets import TARGETS
    from features.tiers import TierSettings
    from models.scoring import next_purchase_windows

    model, test = fitted
    spec = timing_target()
    given = TARGETS[spec.given].score_column
    scores = pd.DataFrame({given: np.where(np.arange(len(test)) % 2 == 0, 0.9, 0.2)})
    snapshot = test.reset_index(drop=True)
    windows, _ = next_purchase_windows(snapshot, {spec.name: model}, scores, TierSettings())
    dated = windows["expected_next_purchase"].notna().to_numpy()
    days = scores[spec.score_column].to_numpy("float64")
    assert dated.sum() == (scores[given] >= 0.5).sum() > 0
    assert np.isfinite(days[dated]).all()
    assert np.isnan(days[~dated]).all()
    assert np.allclose(days[dated], model.predict(snapshot)[dated])
