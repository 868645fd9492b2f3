"""Reasons in words are the customer's largest contributions, phrased with their own values."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from models.explain import BASE_VALUE, contributions
from models.reasons import format_money, reason_text, top_features, top_reasons
from models.train import CalibratedBooster

FEATURES = ["orders_30d", "mean_viewed_price", "days_since_last_order", "gap_acceleration", "x"]


@pytest.fixture(scope="module")
def model_and_frame() -> tuple[CalibratedBooster, pd.DataFrame]:
    rng = np.random.default_rng(3)
    n = 2000
    frame = pd.DataFrame(
        {
            "orders_30d": rng.poisson(1.5, n).astype(float),
            "mean_viewed_price": rng.lognormal(11, 1.2, n),
            "days_since_last_order": rng.exponential(60, n),
            "gap_acceleration": rng.lognormal(0, 0.4, n),
            "x": rng.normal(size=n),
        }
    )
    logit = (
        0.8 * frame["orders_30d"]
        + 0.6 * np.log(frame["mean_viewed_price"] / 60_000)
        - 0.02 * frame["days_since_last_order"]
        - 1.0 * np.log(frame["gap_acceleration"])
    )
    outcome = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_leaves": 7, "seed": 1},
        lgb.Dataset(frame.to_numpy(), outcome),
        num_boost_round=40,
    )
    model = CalibratedBooster(booster, np.array([0.0, 1.0]), np.array([0.0, 1.0]), FEATURES)
    return model, frame


def test_reasons_are_the_three_largest_contributions(model_and_frame) -> None:
    model, frame = model_and_frame
    contrib = contributions(model, frame)
    reasons = top_reasons(contrib, frame, k=3)
    values = contrib.drop(columns=BASE_VALUE).to_numpy()
    for row in range(0, len(frame), 97):
        expected = [FEATURES[i] for i in np.argsort(-values[row], kind="stable")[:3]]
        got = [reasons.iloc[row][f"reason_{k}_feature"] for k in (1, 2, 3)]
        assert got == expected
        # the contributions of the chosen features really are in decreasing order
        chosen = [contrib.iloc[row][f] for f in got]
        assert chosen == sorted(chosen, reverse=True)
        assert values[row].max() == pytest.approx(chosen[0])


def test_top_features_with_ties_and_missing_values() -> None:
    contrib = pd.DataFrame(
        {"a": [0.1, np.nan], "b": [0.5, 0.2], "c": [-0.3, 0.2], BASE_VALUE: [0.0, 0.0]}
    )
    top = top_features(contrib, k=2)
    assert top[0].tolist() == [1, 0]  # b, a
    assert sorted(top[1].tolist()) == [1, 2]  # NaN never chosen over a finite value


def test_texts_carry_the_customers_own_values() -> None:
    frame = pd.DataFrame(
        {
            "orders_60d": [3.0, 1.0],
            "mean_viewed_price": [1_200_000.0, 35_000.0],
            "gap_acceleration": [0.6, 1.4],
            "days_since_last_order": [12.0, np.nan],
        }
    )
    contrib = pd.DataFrame(
        {
            "orders_60d": [0.9, 0.1],
            "mean_viewed_price": [0.5, 0.2],
            "gap_acceleration": [0.1, 0.0],
            "days_since_last_order": [0.0, 0.8],
        }
    )
    en = top_reasons(contrib, frame, k=2, language="en", currency="KRW")
    assert en.loc[0, "reason_1"] == ("3 orders in the last 60 days, faster than their usual cycle")
    assert en.loc[0, "reason_2"] == "viewed items of ₩1.2M on average"
    assert en.loc[1, "reason_1"] == "no orders yet"
    assert en.loc[1, "reason_2"] == "viewed items of ₩35,000 on average"
    ko = top_reasons(contrib, frame, k=2, language="ko", currency="KRW")
    assert ko.loc[0, "reason_1"] == "최근 60일간 3회 주문, 평소보다 빠른 주기"
    assert ko.loc[0, "reason_2"] == "평균 120만 원 상품 조회"
    gbp = top_reasons(contrib, frame, k=2, language="en", currency="GBP")
    assert gbp.loc[1, "reason_2"] == "viewed items of £35,000 on average"


@pytest.mark.parametrize(
    ("value", "currency", "language", "text"),
    [
        (1_234_567, "KRW", "en", "₩1.2M"),
        (35_000, "KRW", "en", "₩35,000"),
        (12.5, "GBP", "en", "£12.50"),
        (2_500, "GBP", "en", "£2,500"),
        (1_200_000, "KRW", "ko", "120만 원"),
        (250_000_000, "KRW", "ko", "2.5억 원"),
        (99, "CHF", "en", "CHF 99.00"),
    ],
)
def test_money_is_currency_aware(value: float, currency: str, language: str, text: str) -> None:
    assert format_money(value, currency, language) == text


def test_one_reason_in_words_uses_the_customers_value_language_and_currency() -> None:
    row = pd.Series({"days_since_last_order": 12.0, "spend_lifetime": 1234.5, "orders_30d": 3.0})
    assert reason_text("days_since_last_order", row) == "last order 12 days ago"
    assert reason_text("spend_lifetime", row, "en", "GBP") == "spent £1,234 in total"
    assert reason_text("spend_lifetime", row, "ko", "KRW") == "누적 구매 1,234원"
    assert reason_text("orders_30d", row) == "3 orders in the last 30 days"
    missing = pd.Series({"days_since_last_order": None})
    assert reason_text("days_since_last_order", missing) == "no orders yet"
