"""Baselines: BG/NBD recovers a known process and predicts its future; rules rank as stated."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.snapshot import FeatureSettings, build_features
from features.synthetic import generate_shop
from features.tiers import TierSettings
from models.baselines import (
    PARAMS,
    BaselineFitError,
    BgNbd,
    GammaGamma,
    OrderValues,
    RepeatHistory,
    fit_bgnbd,
    fit_gamma_gamma,
    high_price_view_score,
    rfm_score,
    simulate_bgnbd,
    simulate_gamma_gamma,
)
from models.evaluate import baseline_rules, evaluate_baselines

KNOWN = [BgNbd(r=0.5, alpha=20.0, a=0.8, b=2.5), BgNbd(r=1.2, alpha=60.0, a=1.5, b=4.0)]


@pytest.mark.parametrize("truth", KNOWN, ids=["fast-churny", "slow-sticky"])
def test_bgnbd_fit_recovers_known_parameters(truth: BgNbd) -> None:
    history, _ = simulate_bgnbd(truth, customers=20_000, seed=3)
    fitted = fit_bgnbd(history, penalty=0.0)
    for name in PARAMS:
        assert getattr(fitted, name) == pytest.approx(getattr(truth, name), rel=0.15), name


def test_bgnbd_predictions_match_simulated_futures() -> None:
    """With the true parameters, P(any purchase) and E[purchases] in the horizon match what
    the process then does, overall and within bands of the prediction."""
    truth = BgNbd(r=0.5, alpha=20.0, a=1.6, b=2.5)
    history, future = simulate_bgnbd(truth, customers=40_000, seed=5, horizon=90.0)
    p_any = truth.p_any_purchase(history, 90.0)
    expected = truth.expected_purchases(history, 90.0)
    assert p_any.mean() == pytest.approx((future > 0).mean(), abs=0.01)
    assert expected.mean() == pytest.approx(future.mean(), rel=0.05)
    for low, high in [(0.0, 0.2), (0.2, 0.5), (0.5, 1.0)]:
        band = (p_any >= low) & (p_any < high)
        assert band.sum() > 1000
        assert p_any[band].mean() == pytest.approx((future[band] > 0).mean(), abs=0.02)


def test_bgnbd_penalty_shrinks_log_parameters_towards_zero() -> None:
    history, _ = simulate_bgnbd(KNOWN[0], customers=5_000, seed=1)
    free = np.log(list(fit_bgnbd(history, penalty=0.0).params().values()))
    shrunk = np.log(list(fit_bgnbd(history, penalty=1.0).params().values()))
    assert np.sum(shrunk**2) < np.sum(free**2)


def test_bgnbd_refuses_data_without_repeat_purchases() -> None:
    history = RepeatHistory(x=np.zeros(50), t_x=np.zeros(50), T=np.full(50, 100.0))
    with pytest.raises(BaselineFitError, match="no customer has a repeat purchase"):
        fit_bgnbd(history)


def test_repeat_history_from_features_matches_orders_before_the_cutoff() -> None:
    """(x, t_x, T) from the feature frame equal a brute-force count over the raw orders."""
    tables = generate_shop(400, seed=2)
    cutoff = pd.Timestamp("2025-06-01")
    frame = build_features(tables, [cutoff], FeatureSettings(), TierSettings())
    buyers = frame[frame["orders_lifetime"] > 0].set_index("customer_id")
    history = RepeatHistory.from_features(buyers)
    before = tables.orders[tables.orders["ordered_at"] < cutoff].groupby("customer_id")
    days = lambda t: (cutoff - t).dt.total_seconds().to_numpy() / 86400  # noqa: E731
    first = before["ordered_at"].min().reindex(buyers.index)
    last = before["ordered_at"].max().reindex(buyers.index)
    np.testing.assert_allclose(history.x, before.size().reindex(buyers.index).to_numpy() - 1)
    np.testing.assert_allclose(history.T, days(first), atol=1e-6)
    np.testing.assert_allclose(history.t_x, days(first) - days(last), atol=1e-6)


def _rows(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    return pd.DataFrame({"cutoff": pd.Timestamp("2025-01-01"), **columns}, index=range(n))


def test_rfm_sums_quintiles_and_ties_share_one() -> None:
    rows = _rows(
        days_since_last_order=[1.0, 5, 10, 20, 40, 80, 160, 200, 300, 400],
        orders_lifetime=[9.0, 8, 7, 6, 5, 4, 1, 1, 1, 1],
        spend_lifetime=[900.0, 800, 700, 600, 500, 400, 300, 200, 100, 50],
    )
    score = rfm_score(rows)
    assert score[0] == 15
    assert np.all(np.diff(score) <= 0)
    # the four tied one-order customers share frequency quintile 2 (average rank 2.5 of 10),
    # so the last scores R 1 + F 2 + M 1, not 3
    assert score[-1] == 4


def test_high_price_view_rule_puts_high_price_browsers_first() -> None:
    rows = _rows(high_price_views=[0.0, 3, 1, 0], days_since_last_view=[1.0, 50, 2, np.nan])
    assert list(np.argsort(-high_price_view_score(rows))) == [1, 2, 0, 3]
    with pytest.raises(BaselineFitError, match="no content views"):
        high_price_view_score(_rows(days_since_last_order=[1.0]))


def test_failed_baseline_is_recorded_with_its_reason_not_dropped() -> None:
    """One-time buyers only: BG/NBD cannot be fitted; the rules are still judged."""
    rng = np.random.default_rng(0)
    n = 200
    rows = _rows(
        days_since_last_order=rng.uniform(1, 300, n),
        days_since_first_order=rng.uniform(300, 400, n),
        orders_lifetime=np.ones(n),
        spend_lifetime=rng.uniform(10, 100, n),
    )
    rows["days_since_first_order"] = rows["days_since_last_order"]
    rows["repurchase"] = (rows["days_since_last_order"] < 100).astype(float)
    results = evaluate_baselines("repurchase", rows, baseline_rules("repurchase", 90, 0.01))
    assert "no customer has a repeat purchase" in results.failures["bgnbd"]
    assert "bgnbd" not in results.metrics
    assert results.metrics["recency"]["roc_auc"] == pytest.approx(1.0)


@pytest.mark.parametrize("a", [0.4, 0.8, 2.0])
def test_bgnbd_expected_purchases_match_simulation_for_any_a(a: float) -> None:
    """The closed form holds for a < 1 too (real shops fit a < 1: the synthetic shop's a is
    about 0.4), overall and in the top fifth of the prediction."""
    truth = BgNbd(r=0.5, alpha=20.0, a=a, b=3.0)
    history, future = simulate_bgnbd(truth, customers=40_000, seed=3, horizon=180.0)
    expected = truth.expected_purchases(history, 180.0)
    assert expected.mean() == pytest.approx(future.mean(), rel=0.04)
    top = expected >= np.quantile(expected, 0.8)
    assert expected[top].mean() == pytest.approx(future[top].mean(), rel=0.06)


def test_gamma_gamma_fit_recovers_parameters_and_customer_means() -> None:
    truth = GammaGamma(p=6.0, q=4.0, gamma=15.0)
    values, true_means = simulate_gamma_gamma(truth, customers=20_000, seed=1)
    fitted = fit_gamma_gamma(values, penalty=0.0)
    assert fitted.p == pytest.approx(truth.p, rel=0.1)
    assert fitted.q == pytest.approx(truth.q, rel=0.1)
    assert fitted.gamma == pytest.approx(truth.gamma, rel=0.15)
    predicted = fitted.expected_order_value(values)
    # shrinking towards the population mean beats the customer's own mean
    assert np.mean((predicted - true_means) ** 2) < np.mean((values.m - true_means) ** 2)


def test_gamma_gamma_fit_is_currency_free() -> None:
    """The same shop in cents gives the same shape and 100x the scale."""
    values, _ = simulate_gamma_gamma(GammaGamma(p=3.0, q=5.0, gamma=40.0), 5_000, seed=2)
    units = fit_gamma_gamma(values)
    cents = fit_gamma_gamma(OrderValues(x=values.x, m=values.m * 100))
    assert cents.p == pytest.approx(units.p, rel=1e-3)
    assert cents.gamma == pytest.approx(100 * units.gamma, rel=1e-3)
