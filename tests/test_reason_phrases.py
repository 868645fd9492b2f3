"""Every feature has an honest phrase in English and Korean: plural forms, missing values
said from what the row knows, no fallback `name = value`, and the same words in /explain
(reason_text) as in the exports (top_reasons)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from features.definitions import feature_definitions
from features.snapshot import CALENDAR_FEATURES, FeatureSettings, build_features, feature_columns
from features.synthetic import generate_shop
from features.tiers import TierSettings
from models.explain import BASE_VALUE
from models.reasons import reason_text, top_reasons

HANGUL = re.compile(r"[가-힣]")
WINDOW_SETS = [FeatureSettings().windows_days, [7, 60, 730], [7, 14, 30, 60, 90, 180, 365, 730]]
# values that hit every form: zero, one, plural, fractional days, negative, money, missing
VALUES = [0.0, 0.4, 1.0, 1.3, 2.0, 2.6, 0.55, 1_234_567.0, -3.0, -1.0, np.nan]
CONTEXTS = [
    {},
    {"orders_lifetime": 0.0, "views_lifetime": 0.0},
    {"orders_lifetime": 1.0, "views_lifetime": 1.0},
    {"orders_lifetime": 2.0, "views_lifetime": 5.0},
    {"orders_lifetime": 4.0, "views_lifetime": np.nan},
    {"orders_lifetime": 9.0, "views_lifetime": 30.0, "gap_acceleration": 0.5},
]


def all_features(windows: list[int]) -> list[str]:
    """Every feature a reason can name (the calendar features never are one)."""
    catalogue = feature_definitions(FeatureSettings(windows_days=windows), TierSettings())
    return [f.name for f in catalogue if f.name not in CALENDAR_FEATURES]


def assert_honest_text(text: object, language: str) -> None:
    assert isinstance(text, str) and text, text
    assert " = " not in text and "{" not in text and "nan" not in text.lower(), text
    if language == "en":
        # singular / plural agree with the number ("1 day", "2 days", never "1 days")
        assert not re.search(r"(?<![\d.,-])1 (days|orders|views|units|product views)\b", text), text
        assert not re.search(r"(?<![\d.,-])0 (day|order|view)", text), text
        assert not HANGUL.search(text), text
    else:
        assert HANGUL.search(text), text


@pytest.mark.parametrize("windows", WINDOW_SETS, ids=lambda w: "-".join(map(str, w)))
@pytest.mark.parametrize("language", ["en", "ko"])
def test_every_feature_has_a_phrase_in_both_languages(windows: list[int], language: str) -> None:
    for feature in all_features(windows):
        for context in CONTEXTS:
            for value in VALUES:
                row = pd.Series({**context, feature: value})
                text = reason_text(feature, row, language, "KRW", tier_window_days=182)
                assert_honest_text(text, language)


@pytest.mark.parametrize(
    ("feature", "value", "english"),
    [
        ("days_since_last_order", 1.0, "last order 1 day ago"),
        ("days_since_last_order", 1.4, "last order 1 day ago"),
        ("days_since_last_order", 1.6, "last order 2 days ago"),
        ("days_since_last_order", 0.4, "last order less than a day ago"),
        ("days_since_last_view", 1.0, "last viewed a product 1 day ago"),
        ("days_since_signup", 0.2, "signed up less than a day ago"),
        ("tenure_days", 1.0, "customer for 1 day"),
        ("orders_30d", 1.0, "1 order in the last 30 days"),
        ("orders_30d", 2.0, "2 orders in the last 30 days"),
        ("orders_30d", 0.0, "no orders in the last 30 days"),
        ("views_30d", 1.0, "1 product view in the last 30 days"),
        ("views_lifetime", 1.0, "only one product view so far"),
        ("views_lifetime", 2.0, "2 product views in total"),
        ("high_price_views", 1.0, "1 view of a high-price item"),
        ("last_gap_days", 1.0, "last two orders 1 day apart"),
        ("signup_to_first_order_days", -1.0, "first order 1 day before the recorded sign-up"),
        ("signup_to_first_order_days", 0.3, "first order on the day they signed up"),
        ("gap_slope", -2.2, "gaps between orders shrinking by 2 days per order"),
    ],
)
def test_singular_and_plural(feature: str, value: float, english: str) -> None:
    row = pd.Series({"orders_lifetime": 7.0, "views_lifetime": 9.0, feature: value})
    assert reason_text(feature, row) == english


def test_korean_days_have_no_plural_and_say_within_a_day() -> None:
    row = pd.Series({"days_since_last_order": 1.0, "orders_lifetime": 3.0})
    assert reason_text("days_since_last_order", row, "ko") == "마지막 주문 1일 전"
    row["days_since_last_order"] = 0.4
    assert reason_text("days_since_last_order", row, "ko") == "마지막 주문 하루 이내"


@pytest.mark.parametrize(
    ("feature", "orders", "english", "korean"),
    [
        ("median_gap_days", 0.0, "no orders yet", "구매 이력 없음"),
        ("median_gap_days", np.nan, "no orders yet", "구매 이력 없음"),
        # the /explain bug: a one-order customer's gap is missing, not their orders
        ("median_gap_days", 1.0, "only one order so far", "지금까지 주문 1회뿐"),
        ("last_gap_vs_median", 1.0, "only one order so far", "지금까지 주문 1회뿐"),
        ("gap_vs_peers", 1.0, "only one order so far", "지금까지 주문 1회뿐"),
        ("earlier_gap_days", 1.0, "only one order so far", "지금까지 주문 1회뿐"),
        (
            "earlier_gap_days",
            2.0,
            "too few orders to compare buying cycles",
            "구매 주기를 비교하기엔 주문이 적음",
        ),
        (
            "gap_acceleration",
            4.0,
            "too few orders to compare buying cycles",
            "구매 주기를 비교하기엔 주문이 적음",
        ),
        (
            "gap_slope",
            2.0,
            "too few orders to see a trend in their buying cycle",
            "구매 주기 추세를 보기엔 주문이 적음",
        ),
        ("days_since_last_order", 0.0, "no orders yet", "구매 이력 없음"),
        ("avg_order_value", 0.0, "no orders yet", "구매 이력 없음"),
        ("signup_to_first_order_days", 3.0, "no sign-up date on record", "가입일 정보 없음"),
        ("top_product_spend_share", 3.0, "no order lines recorded", "주문 상품 정보 없음"),
    ],
)
def test_missing_order_values_say_what_the_row_knows(
    feature: str, orders: float, english: str, korean: str
) -> None:
    row = pd.Series({feature: np.nan, "orders_lifetime": orders})
    assert reason_text(feature, row, "en") == english
    assert reason_text(feature, row, "ko") == korean


def test_missing_gap_never_claims_no_orders_without_knowing() -> None:
    # without orders_lifetime a missing gap only says fewer than two orders
    row = pd.Series({"median_gap_days": np.nan})
    assert reason_text("median_gap_days", row) == "fewer than two orders so far"
    assert reason_text("median_gap_days", row, "ko") == "지금까지 주문 2회 미만"


def test_missing_view_values_say_no_views_only_without_views() -> None:
    none = pd.Series({"mean_viewed_price": np.nan, "views_lifetime": 0.0})
    assert reason_text("mean_viewed_price", none) == "no product views yet"
    assert reason_text("mean_viewed_price", none, "ko") == "상품 조회 이력 없음"
    some = pd.Series({"last_vs_mean_viewed_price": np.nan, "views_lifetime": 4.0})
    text = reason_text("last_vs_mean_viewed_price", some)
    assert text != "no product views yet" and "compare" in text
    # viewed price vs average order: views exist, no orders
    row = pd.Series({"viewed_price_vs_aov": np.nan, "views_lifetime": 4.0, "orders_lifetime": 0.0})
    assert reason_text("viewed_price_vs_aov", row) == "no orders yet"


def test_other_missing_values_are_phrased_truthfully() -> None:
    top = pd.Series({"distance_to_next_tier": np.nan})
    assert reason_text("distance_to_next_tier", top) == "already in the top tier"
    assert reason_text("distance_to_next_tier", top, "ko") == "이미 최고 등급"
    signup = pd.Series({"days_since_signup": np.nan})
    assert reason_text("days_since_signup", signup) == "no sign-up date on record"


def test_spend_trend_says_what_happened_when_the_spend_is_known() -> None:
    def said(recent: float, before: float) -> str:
        trend = np.log1p(recent) - np.log1p(before)
        row = pd.Series({"spend_trend_90d": trend, "spend_90d": recent, "spend_prev_90d": before})
        return reason_text("spend_trend_90d", row)

    assert said(0, 0) == "no orders in the last 180 days"  # not "spending less"
    assert said(5e5, 0).startswith("started buying in the last 90 days")
    assert said(0, 5e5).startswith("no orders in the last 90 days")
    assert said(9e5, 5e5) == "spending more in the last 90 days than the 90 before"
    assert said(1e5, 5e5) == "spending less in the last 90 days than the 90 before"


def test_one_order_and_two_order_customers_are_phrased_as_such() -> None:
    one = pd.Series(
        {"avg_order_value": 50_000.0, "days_since_last_order": 30.0, "orders_lifetime": 1}
    )
    assert reason_text("avg_order_value", one) == "their only order was ₩50,000"
    assert reason_text("days_since_last_order", one) == "their only order was 30 days ago"
    two = pd.Series({"mean_gap_days": 21.0, "orders_lifetime": 2.0})
    assert reason_text("mean_gap_days", two) == "their two orders were 21 days apart"
    assert reason_text("mean_gap_days", two, "ko") == "두 주문 간격 21일"


def test_lowest_tier_has_no_downgrade_line() -> None:
    row = pd.Series({"margin_above_tier_line": 80_000.0, "tier_window_spend": 80_000.0})
    assert reason_text("margin_above_tier_line", row) == "in the lowest membership tier"
    row["tier_window_spend"] = 700_000.0
    assert reason_text("margin_above_tier_line", row) == (
        "₩80,000 above the spend needed to keep their tier"
    )


def _reasons(frame: pd.DataFrame, order: list[str], k: int = 3, **kw) -> pd.DataFrame:
    """top_reasons where the contributions rank `order` first to last (all positive)."""
    contrib = pd.DataFrame({f: [1.0 - 0.1 * i] for i, f in enumerate(order)})
    contrib[BASE_VALUE] = 0.0
    return top_reasons(contrib, frame[order], k=k, **kw)


def test_tier_window_spend_and_spend_of_the_same_window_are_one_reason() -> None:
    frame = pd.DataFrame(
        {"spend_180d": [1_800_000.0], "tier_window_spend": [1_800_000.0], "orders_30d": [2.0]}
    )
    order = ["spend_180d", "tier_window_spend", "orders_30d"]
    for language in ("en", "ko"):
        same = _reasons(frame, order, language=language, tier_window_days=180)
        assert same.loc[0, "reason_1_feature"] == "spend_180d"
        assert same.loc[0, "reason_2_feature"] == "orders_30d"  # the next one takes the slot
        assert same.loc[0, "reason_3"] is None
    assert _reasons(frame, order, tier_window_days=180).loc[0, "reason_1"] == (
        "spent ₩1.8M in the last 180 days"
    )
    # another window: equal amounts still say one thing (nothing spent in between)...
    other = _reasons(frame, order, tier_window_days=182)
    assert other.loc[0, "reason_2_feature"] == "orders_30d"
    # ...different amounts are two facts
    frame["tier_window_spend"] = 1_900_000.0
    other = _reasons(frame, order, tier_window_days=182)
    assert other.loc[0, "reason_2"] == "spent ₩1.9M in the last 182 days"


@pytest.mark.parametrize(
    ("values", "kept"),
    [
        # window count equal to the lifetime count: one fact
        ({"orders_lifetime": 3.0, "orders_90d": 3.0, "tenure_days": 400.0}, 2),
        ({"orders_lifetime": 5.0, "orders_90d": 3.0, "tenure_days": 400.0}, 3),
        # mean and median viewed price shown alike
        ({"mean_viewed_price": 50_000.0, "median_viewed_price": 50_000.0, "tenure_days": 4.0}, 2),
        ({"mean_viewed_price": 50_000.0, "median_viewed_price": 42_000.0, "tenure_days": 4.0}, 3),
        # "no orders yet" from three features is said once
        ({"orders_lifetime": 0.0, "days_since_last_order": np.nan, "median_gap_days": np.nan}, 1),
        # one order: its value is the average, median and largest order
        (
            {
                "orders_lifetime": 1.0,
                "avg_order_value": 7e4,
                "median_order_value": 7e4,
                "max_order_value": 7e4,
            },
            2,
        ),
        # two orders: one gap, whichever gap feature says it
        ({"orders_lifetime": 2.0, "mean_gap_days": 9.0, "last_gap_days": 9.0}, 2),
    ],
)
def test_no_two_reasons_state_the_same_fact(values: dict[str, float], kept: int) -> None:
    frame = pd.DataFrame({f: [v] for f, v in values.items()})
    for language in ("en", "ko"):
        out = _reasons(frame, list(values), k=4, language=language)
        texts = [out.loc[0, f"reason_{i}"] for i in range(1, 5)]
        chosen = [t for t in texts if t is not None]
        assert len(chosen) == kept, chosen
        assert len(set(chosen)) == len(chosen)


@pytest.fixture(scope="module")
def shop_frame() -> pd.DataFrame:
    """Real features of a small synthetic shop (every feature, with their real gaps)."""
    tables = generate_shop(400, seed=5)
    features = FeatureSettings(windows_days=[7, 30, 60, 90, 180, 365, 730])
    return build_features(tables, [pd.Timestamp("2025-10-01")], features, TierSettings())


@pytest.mark.parametrize("language", ["en", "ko"])
def test_reason_text_agrees_with_top_reasons_word_for_word(shop_frame, language) -> None:
    frame = shop_frame
    features = feature_columns(frame)
    rng = np.random.default_rng(11)
    contrib = pd.DataFrame(rng.normal(0, 0.3, (len(frame), len(features))), columns=features)
    contrib[BASE_VALUE] = -1.0
    direction = np.where(rng.random(len(frame)) < 0.5, 1, -1)
    k = 6
    out = top_reasons(contrib, frame, k, language, "GBP", direction, tier_window_days=182)
    compared = 0
    for row in range(len(frame)):
        values = frame.iloc[row]
        texts = []
        for i in range(1, k + 1):
            feature, text = out.iloc[row][f"reason_{i}_feature"], out.iloc[row][f"reason_{i}"]
            if feature is None:
                continue
            assert text == reason_text(feature, values, language, "GBP", tier_window_days=182)
            assert np.sign(contrib.iloc[row][feature]) == direction[row]
            assert_honest_text(text, language)
            texts.append(text)
            compared += 1
        assert len(set(texts)) == len(texts)
    assert compared > 300


def test_one_order_customers_never_read_no_orders(shop_frame) -> None:
    frame = shop_frame
    features = feature_columns(frame)
    contrib = pd.DataFrame(1.0, index=frame.index, columns=features)
    contrib[BASE_VALUE] = 0.0
    out = top_reasons(contrib, frame, k=len(features))
    has_orders = frame["orders_lifetime"].to_numpy() > 0
    said = out[[f"reason_{i}" for i in range(1, len(features) + 1)]].to_numpy()
    assert not (said[has_orders] == "no orders yet").any()
    assert (said[~has_orders] == "no orders yet").sum(axis=1).max() == 1


def test_customer_age_stated_twice_is_one_reason() -> None:
    """Sign-up and first sight on the same day: "customer for 3 days" and "signed up 3 days
    ago" state one fact, and only the larger contribution is shown."""
    frame = pd.DataFrame(
        {"tenure_days": [3.2], "days_since_signup": [3.1], "views_lifetime": [4.0]}
    )
    contrib = pd.DataFrame(
        {
            "tenure_days": [0.5],
            "days_since_signup": [0.4],
            "views_lifetime": [0.1],
            "base_value": [0.0],
        }
    )
    reasons = top_reasons(contrib, frame, k=3)
    features = [reasons.iloc[0][f"reason_{k}_feature"] for k in (1, 2, 3)]
    assert features[:2] == ["tenure_days", "views_lifetime"]
