"""Uplift targeting: Qini and AUUC by hand, learners against a response model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.snapshot import FeatureSettings
from features.synthetic import generate_shop
from features.tiers import TierSettings
from models.uplift import (
    auuc,
    evaluate_on_campaign,
    fit_response,
    fit_uplift,
    measured_uplift_by_segment,
    qini_coefficient,
    qini_curve,
    uplift_scores,
)

SCORE = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
TREATED = np.array([1, 0, 1, 0, 1, 0])
BOUGHT = np.array([1, 0, 1, 1, 0, 0])


def test_qini_and_auuc_by_hand() -> None:
    curve = qini_curve(SCORE, TREATED, BOUGHT)
    # k:      1  2  3  4  5    6
    # Q(k):   1  1  2  1  0.5  1     (y_t − y_c · n_t / n_c; y_t while n_c = 0)
    # U(k):   0  2  3  2  5/6  2     ((y_t/n_t − y_c/n_c) · k)
    assert curve["qini"].tolist() == pytest.approx([1, 1, 2, 1, 0.5, 1])
    assert curve["uplift"].tolist() == pytest.approx([0, 2, 3, 2, 5 / 6, 2])
    # Σ Q = 6.5, random line Σ (k/6) · 1 = 3.5 → (6.5 − 3.5) / 36
    assert qini_coefficient(SCORE, TREATED, BOUGHT) == pytest.approx(3 / 36)
    assert auuc(SCORE, TREATED, BOUGHT) == pytest.approx((2 + 3 + 2 + 5 / 6 + 2) / 36)
    # reversing the ranking puts the non-responders first: a worse Qini
    assert qini_coefficient(-SCORE, TREATED, BOUGHT) < qini_coefficient(SCORE, TREATED, BOUGHT)


def _heterogeneous(seed: int, n: int = 4_000) -> pd.DataFrame:
    """x1 > 0 are persuadables (+25 pp); x2 > 0 are sure things (buy anyway, no effect)."""
    rng = np.random.default_rng(seed)
    x1, x2, x3 = rng.normal(size=(3, n))
    treated = (rng.random(n) < 0.5).astype("int64")
    p = 0.05 + 0.6 * (x2 > 0) + 0.25 * treated * (x1 > 0) * (x2 <= 0)
    buyer = (rng.random(n) < p).astype("float64")
    return pd.DataFrame(
        {
            "customer_id": [f"C{i}" for i in range(n)],
            "x1": x1,
            "x2": x2,
            "x3": x3,
            "treated": treated,
            "buyer": buyer,
            "group": np.where(treated == 1, "treated", "holdout"),
            "revenue": buyer * 10_000,
        }
    )


def test_learners_beat_the_response_model_on_planted_heterogeneity() -> None:
    train, test = _heterogeneous(1), _heterogeneous(2)
    t, y = test["treated"].to_numpy(), test["buyer"].to_numpy()
    response = qini_coefficient(fit_response(train, n_estimators=100).predict(test), t, y)
    for learner in ("t", "x"):
        model = fit_uplift(train, learner, n_estimators=100)
        assert qini_coefficient(model.predict(test), t, y) > response + 0.01
    scores = uplift_scores(fit_uplift(train, "t", n_estimators=100), test)
    assert scores.index.name == "customer_id" and scores.is_monotonic_decreasing
    top = test.set_index("customer_id").loc[scores.index[:500]]
    assert ((top.x1 > 0) & (top.x2 <= 0)).mean() > 0.8  # persuadables ranked first


def test_measured_uplift_by_segment() -> None:
    frame = _heterogeneous(3)
    segments = pd.DataFrame(
        {
            "customer_id": frame["customer_id"],
            "segment": np.where(frame["x1"] > 0, "persuadable-ish", "other"),
        }
    )
    out = measured_uplift_by_segment(frame, segments).set_index("segment")
    assert out.loc["persuadable-ish", "uplift_pp"] > 5
    assert out.loc["other", "ci_low_pp"] < 0 < out.loc["other", "ci_high_pp"]
    assert out.loc["other", "treated"] + out.loc["other", "holdout"] == (frame.x1 <= 0).sum()


@pytest.mark.slow
def test_uplift_beats_response_on_the_synthetic_shops_later_campaign() -> None:
    shop = generate_shop(20_000, 7)
    result = evaluate_on_campaign(
        shop, "K2510", pd.Timestamp("2026-01-01"), FeatureSettings(), TierSettings()
    )
    assert result.trained_on == ["K2405", "K2409", "K2502", "K2505", "K2508"]
    assert result.qini["t_learner"] > result.qini["response"] + 0.003
    assert result.qini["x_learner"] > result.qini["response"] + 0.003
