"""Reasons in words are the customer's largest contributions of the asked sign, phrased with
their own values, never two saying the same thing."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from models.explain import BASE_VALUE, contributions
from models.reasons import format_money, reason_and_fact, reason_text, top_features, top_reasons
from models.train import CalibratedBooster

FEATURES = [
    "orders_30d",
    "orders_90d",
    "orders_lifetime",
    "mean_viewed_price",
    "median_viewed_price",
    "days_since_last_order",
    "median_gap_days",
    "gap_acceleration",
    "tenure_days",
]


@pytest.fixture(scope="module")
def model_and_frame() -> tuple[CalibratedBooster, pd.DataFrame]:
    """A small model over features whose phrases can repeat one another (equal order counts
    over two windows, mean = median viewed price, 'no orders yet' from several features)."""
    rng = np.random.default_rng(3)
    n = 2000
    orders_30d = rng.poisson(0.8, n).astype(float)
    orders_90d = orders_30d + rng.poisson(0.6, n)
    orders_lifetime = orders_90d + rng.poisson(0.8, n)
    mean_price = rng.lognormal(11, 1.2, n)
    gap = rng.exponential(40, n)
    frame = pd.DataFrame(
        {
            "orders_30d": orders_30d,
            "orders_90d": orders_90d,
            "orders_lifetime": orders_lifetime,
            "mean_viewed_price": mean_price,
            "median_viewed_price": np.where(rng.random(n) < 0.3, mean_price, mean_price * 0.8),
            "days_since_last_order": np.where(orders_lifetime > 0, rng.exponential(60, n), np.nan),
            "median_gap_days": np.where(orders_lifetime > 1, gap, np.nan),
            "gap_acceleration": np.where(orders_lifetime > 4, rng.lognormal(0, 0.4, n), np.nan),
            "tenure_days": rng.exponential(400, n),
        }
    )
    logit = (
        0.8 * frame["orders_30d"]
        + 0.3 * frame["orders_lifetime"]
        + 0.6 * np.log(frame["mean_viewed_price"] / 60_000)
        - 0.02 * frame["days_since_last_order"].fillna(200)
        - 1.0 * np.log(frame["gap_acceleration"].fillna(1.0))
        - 0.01 * frame["median_gap_days"].fillna(80)
    )
    outcome = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_leaves": 7, "seed": 1},
        lgb.Dataset(frame.to_numpy(), outcome),
        num_boost_round=40,
    )
    model = CalibratedBooster(booster, np.array([0.0, 1.0]), np.array([0.0, 1.0]), FEATURES)
    return model, frame


def ranked(contrib: pd.Series, direction: int) -> list[str]:
    """Features of the asked sign by signed size, ties in column order."""
    features = [f for f in contrib.index if f != BASE_VALUE]
    signed = [(direction * contrib[f], i) for i, f in enumerate(features)]
    return [features[i] for s, i in sorted(signed, key=lambda t: (-t[0], t[1])) if s > 1e-12]


def brute_force(
    contrib: pd.Series, row: pd.Series, k: int, direction: int, language: str = "en"
) -> list[tuple[str, str, float]]:
    """One row the slow way: all features by signed size (ties: column order), skipping any
    whose text or stated fact an earlier reason already has."""
    out: list[tuple[str, str, float]] = []
    seen: set[str] = set()
    for feature in ranked(contrib, direction):
        text, fact = reason_and_fact(feature, row, language)
        if text in seen or fact in seen:
            continue
        seen |= {text, fact}
        out.append((feature, text, contrib[feature]))
        if len(out) == k:
            break
    return out


@pytest.mark.parametrize("direction", [1, -1, "mixed"])
def test_reasons_are_the_largest_contributions_of_the_asked_sign(model_and_frame, direction):
    model, frame = model_and_frame
    contrib = contributions(model, frame)
    if direction == "mixed":
        per_row = np.where(np.arange(len(frame)) % 3 == 0, -1, 1)
    else:
        per_row = np.full(len(frame), direction)
    reasons = top_reasons(
        contrib, frame, k=3, direction=per_row if direction == "mixed" else direction
    )
    assert list(reasons.columns) == [
        f"reason_{i}{suffix}" for i in (1, 2, 3) for suffix in ("", "_feature", "_contribution")
    ]
    assert reasons.index.equals(contrib.index)
    deduped = 0
    for row in range(0, len(frame), 7):
        expected = brute_force(contrib.iloc[row], frame.iloc[row], 3, int(per_row[row]))
        got = reasons.iloc[row]
        for i, (feature, text, value) in enumerate(expected, start=1):
            assert got[f"reason_{i}_feature"] == feature
            assert got[f"reason_{i}"] == text
            assert got[f"reason_{i}_contribution"] == pytest.approx(value)
            assert np.sign(value) == per_row[row]
        for i in range(len(expected) + 1, 4):
            assert got[f"reason_{i}"] is None and got[f"reason_{i}_feature"] is None
            assert np.isnan(got[f"reason_{i}_contribution"])
        texts = [got[f"reason_{i}"] for i in (1, 2, 3) if got[f"reason_{i}"] is not None]
        assert len(set(texts)) == len(texts)
        plain = ranked(contrib.iloc[row], int(per_row[row]))[:3]
        deduped += [e[0] for e in expected] != plain
    # the fixture really exercises the dedupe (else this test would not test it)
    assert deduped > 0


def test_reasons_lower_the_score_with_direction_minus_one() -> None:
    """The user's VIP-at-risk case: the largest driver is -0.55 (days since the last view),
    which a positive-only selection hid behind a small positive one."""
    frame = pd.DataFrame(
        {"days_since_last_view": [64.0], "days_since_last_order": [105.0], "views_30d": [0.0]}
    )
    contrib = pd.DataFrame(
        {
            "days_since_last_view": [-0.55],
            "days_since_last_order": [0.05],
            "views_30d": [-0.2],
            BASE_VALUE: [-1.0],
        }
    )
    down = top_reasons(contrib, frame, k=3, direction=-1)
    assert down.loc[0, "reason_1"] == "last viewed a product 64 days ago"
    assert down.loc[0, "reason_1_contribution"] == pytest.approx(-0.55)
    assert down.loc[0, "reason_2"] == "no product views in the last 30 days"
    assert down.loc[0, "reason_3"] is None  # the positive one never explains a low score
    up = top_reasons(contrib, frame, k=3, direction=1)
    assert up.loc[0, "reason_1"] == "last order 105 days ago"
    assert up.loc[0, "reason_2"] is None


def test_the_calendar_is_never_a_customers_reason() -> None:
    """season_sin/cos describe the date (the same for every customer at a cutoff): even the
    largest contribution is skipped and the customer's own drivers fill the slots."""
    frame = pd.DataFrame({"season_sin": [0.5], "season_cos": [-0.9], "orders_30d": [2.0]})
    contrib = pd.DataFrame(
        {"season_sin": [0.9], "season_cos": [0.8], "orders_30d": [0.1], BASE_VALUE: [-1.0]}
    )
    up = top_reasons(contrib, frame, k=3)
    assert up.loc[0, "reason_1_feature"] == "orders_30d"
    assert up.loc[0, "reason_2"] is None
    assert top_features(contrib, k=1).tolist() == [[2]]
    # a waterfall still shows the date's share, under a name that says what it is
    assert reason_text("season_cos", frame.iloc[0]) == "time of year (the scoring date)"


def test_direction_must_be_plus_or_minus_one_per_row() -> None:
    contrib = pd.DataFrame({"tenure_days": [0.1, -0.2], BASE_VALUE: [0.0, 0.0]})
    frame = pd.DataFrame({"tenure_days": [3.0, 4.0]})
    with pytest.raises(ValueError, match="direction"):
        top_reasons(contrib, frame, direction=0)
    with pytest.raises(ValueError, match="direction"):
        top_reasons(contrib, frame, direction=np.array([1, -1, 1]))
    out = top_reasons(contrib, frame, k=1, direction=pd.Series([1, -1]))
    assert out["reason_1_contribution"].tolist() == [0.1, -0.2]


def test_top_features_with_ties_signs_and_missing_values() -> None:
    contrib = pd.DataFrame(
        {"a": [0.1, np.nan], "b": [0.5, 0.2], "c": [-0.3, 0.2], BASE_VALUE: [0.0, 0.0]}
    )
    top = top_features(contrib, k=3)
    assert top[0].tolist() == [1, 0, -1]  # b, a; the negative c is not a positive reason
    assert top[1].tolist() == [1, 2, -1]  # a tie goes to the earlier column; NaN never chosen
    down = top_features(contrib, k=2, direction=-1)
    assert down.tolist() == [[2, -1], [-1, -1]]
    tiny = pd.DataFrame({"a": [1e-13], "b": [-1e-13], BASE_VALUE: [0.0]})
    assert top_features(tiny, k=1).tolist() == [[-1]]  # no sign, no reason


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
        (15_000, "KRW", "ko", "15,000원"),  # not "2만 원": a third off
        (56_100, "KRW", "ko", "56,100원"),
        (134_000, "KRW", "ko", "13.4만 원"),
        (130_000, "KRW", "ko", "13만 원"),
        (99_999_999, "KRW", "ko", "1.0억 원"),  # not "10,000만 원"
        (250_000_000, "KRW", "ko", "2.5억 원"),
        (99, "CHF", "en", "CHF 99.00"),
        (950, "VND", "en", "VND 950"),  # no minor unit: never cents
        # the sign goes before the currency symbol
        (-17_000_000, "KRW", "en", "-₩17.0M"),
        (-1_234, "GBP", "en", "-£1,234"),
        (-12.5, "GBP", "en", "-£12.50"),
        (-35_000, "KRW", "en", "-₩35,000"),
        (-1_200_000, "KRW", "ko", "-120만 원"),
        (-99, "CHF", "en", "-CHF 99.00"),
        (-0.001, "GBP", "en", "£0.00"),  # rounds to zero: no sign
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


def test_unknown_feature_raises_naming_it() -> None:
    row = pd.Series({"loyalty_points": 3.0})
    with pytest.raises(KeyError, match="loyalty_points"):
        reason_text("loyalty_points", row)
    contrib = pd.DataFrame({"tenure_days": [0.1], "loyalty_points": [0.5], BASE_VALUE: [0.0]})
    frame = pd.DataFrame({"tenure_days": [3.0], "loyalty_points": [3.0]})
    # even when the unknown feature would not be chosen
    with pytest.raises(KeyError, match="loyalty_points"):
        top_reasons(contrib, frame, k=1, direction=-1)
