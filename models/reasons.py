"""Top reasons in plain words: each customer's largest SHAP contributions, phrased for marketers.

A reason is a feature with one of the largest contributions of the asked sign to the score
(log-odds, or the log of a predicted amount, from models.explain): direction +1 gives what
raises the score, -1 what lowers it. Each is written with the customer's own value of that
feature: "3 orders in the last 30 days, faster than their usual cycle", "viewed items of
₩1.2M on average". English or Korean; money in the shop's currency.

Honesty rules: every model feature has a phrase in both languages (an unknown feature raises
KeyError instead of printing `name = value`); a missing value is phrased from what the row
says about it (no orders at all, one order, too few orders for a cycle, no views); no two
reasons of one customer state the same fact. Vectorised: the ranking is a few argmax passes
over the contribution matrix and the text is formatted per feature for all its rows at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.snapshot import CALENDAR_FEATURES
from models.explain import BASE_VALUE

SYMBOLS = {"KRW": "₩", "GBP": "£", "USD": "$", "EUR": "€", "JPY": "¥"}
LANGUAGES = ("en", "ko")
# what a calendar feature's bar is called in a waterfall (the date's share of a score)
CALENDAR_LABEL = {"en": "time of year (the scoring date)", "ko": "연중 시기 (산출일 기준)"}
# contributions this close to zero carry no direction, so they are never a reason
MIN_CONTRIBUTION = 1e-12
# frame columns that tell how a feature's missing value came about, or refine its phrase
CONTEXT = (
    "orders_lifetime",
    "views_lifetime",
    "gap_acceleration",
    "spend_90d",
    "spend_prev_90d",
    "tier_window_spend",
)


# currencies without minor units (ISO 4217 exponent 0): no cents, whatever the amount
_ZERO_DECIMAL_CODES = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
ZERO_DECIMAL = frozenset(_ZERO_DECIMAL_CODES.split())


def _unsigned_money(value: float, currency: str, language: str) -> str:
    if language == "ko" and currency == "KRW":
        # whole 만 only from 100만 up (at most 0.5% off): 15,000 as "2만 원" was 33% off
        if round(value / 1e4) >= 1e4:  # 99,999,999 is 1.0억, not 10,000만
            return f"{value / 1e8:.1f}억 원"
        if value >= 1e6:
            return f"{value / 1e4:,.0f}만 원"
        if value >= 1e5:
            return f"{value / 1e4:.1f}".removesuffix(".0") + "만 원"
        return f"{value:,.0f}원"
    symbol = SYMBOLS.get(currency, f"{currency} ")
    if value >= 1e6:
        return f"{symbol}{value / 1e6:.1f}M"
    decimals = 0 if currency in ZERO_DECIMAL or value >= 1000 else 2
    return f"{symbol}{value:,.{decimals}f}"


def format_money(value: float, currency: str, language: str = "en") -> str:
    """₩1.2M / ₩35,000 / £1,234 in English; 120만 원 / 1.2억 원 in Korean for KRW.

    The sign comes first ("-₩17.0M", "-£1,234"); an amount that rounds to zero has none.
    """
    if not np.isfinite(value):
        return "-"
    text = _unsigned_money(abs(float(value)), currency, language)
    negative = value < 0 and any(ch in "123456789" for ch in text)
    return f"-{text}" if negative else text


@dataclass(frozen=True)
class Phrase:
    """How one feature is said.

    `en` / `ko` map a form to a template ({v} the formatted value, {w} the window in days).
    Forms: zero / one / many for counts and days, neg_one / neg_many for negative days,
    below / equal / above for ratios around 1, and "solo_" variants used when the customer
    has exactly `solo` orders or views (then several features state one fact, in one text).
    `orders` / `views`: what the feature needs to have a value at all; `exact` says a missing
    value means exactly that the need is not met (else, without context, `unknown` is said).
    `na`: said when the need is met and the value is still missing. `group`: features of one
    group whose shown values are equal state the same fact (e.g. spend over 180 days and
    tier-window spend over 180 days).
    """

    kind: str
    en: dict[str, str]
    ko: dict[str, str]
    orders: int = 0
    views: bool = False
    exact: bool = True
    na: tuple[str, str] = ("value not available", "정보 없음")
    unknown: tuple[str, str] | None = None
    few: tuple[str, str] = ("too few orders so far", "주문 횟수가 적음")
    group: str | None = None
    solo: tuple[str, int] | None = None
    extras: dict[str, tuple[str, str]] = field(default_factory=dict)


NO_ORDERS = ("no orders yet", "구매 이력 없음")
ONE_ORDER = ("only one order so far", "지금까지 주문 1회뿐")
UNDER_TWO = ("fewer than two orders so far", "지금까지 주문 2회 미만")
NO_VIEWS = ("no product views yet", "상품 조회 이력 없음")
FEW_CYCLES = ("too few orders to compare buying cycles", "구매 주기를 비교하기엔 주문이 적음")
FEW_TREND = (
    "too few orders to see a trend in their buying cycle",
    "구매 주기 추세를 보기엔 주문이 적음",
)
NO_USUAL_GAP = ("no usual gap between orders to compare with", "비교할 평소 주문 간격 없음")
NO_ORDER_LINES = ("no order lines recorded", "주문 상품 정보 없음")
FASTER = (", faster than their usual cycle", ", 평소보다 빠른 주기")

# one order: its value, amount and date are what every order-value / order-date feature says
ONLY_ORDER_VALUE = {"solo_many": "their only order was {v}"}
ONLY_ORDER_VALUE_KO = {"solo_many": "유일한 주문 금액 {v}"}
ONLY_ORDER_DAY = {
    "solo_zero": "their only order was less than a day ago",
    "solo_one": "their only order was 1 day ago",
    "solo_many": "their only order was {v} days ago",
}
ONLY_ORDER_DAY_KO = {"solo_zero": "유일한 주문 하루 이내", "solo_many": "유일한 주문 {v}일 전"}
# two orders: one gap, which every gap feature measures
TWO_ORDERS = {
    "solo_zero": "their two orders were less than a day apart",
    "solo_one": "their two orders were 1 day apart",
    "solo_many": "their two orders were {v} days apart",
}
TWO_ORDERS_KO = {"solo_zero": "두 주문 간격 하루 미만", "solo_many": "두 주문 간격 {v}일"}
ONLY_VIEW = {"solo_many": "their only product view was an item of {v}"}
ONLY_VIEW_KO = {"solo_many": "유일한 조회 상품 {v}"}


def _count(en: tuple[str, str, str], ko: tuple[str, str], **kw) -> Phrase:
    return Phrase(
        "count",
        dict(zip(("zero", "one", "many"), en, strict=True)),
        dict(zip(("zero", "many"), ko, strict=True)),
        **kw,
    )


def _days(en: tuple[str, str, str], ko: tuple[str, str], **kw) -> Phrase:
    en_forms = dict(zip(("zero", "one", "many"), en, strict=True)) | kw.pop("en_solo", {})
    ko_forms = dict(zip(("zero", "many"), ko, strict=True)) | kw.pop("ko_solo", {})
    return Phrase("days", en_forms, ko_forms, **kw)


def _money(en: str, ko: str, zero: tuple[str, str] | None = None, **kw) -> Phrase:
    en_forms = {"many": en} | kw.pop("en_solo", {}) | ({"zero": zero[0]} if zero else {})
    ko_forms = {"many": ko} | kw.pop("ko_solo", {}) | ({"zero": zero[1]} if zero else {})
    return Phrase("money", en_forms, ko_forms, **kw)


def _ratio_phrase(en: str, ko: str, **kw) -> Phrase:
    return Phrase("ratio", {"many": en}, {"many": ko}, **kw)


def _pivot(en: tuple[str, str, str], ko: tuple[str, str, str], **kw) -> Phrase:
    names = ("below", "equal", "above")
    return Phrase(
        "pivot", dict(zip(names, en, strict=True)), dict(zip(names, ko, strict=True)), **kw
    )


WINDOWED = re.compile(r"^(orders|spend|views)_(\d+)d$")
WINDOW_PHRASES: dict[str, Phrase] = {
    "orders": _count(
        (
            "no orders in the last {w} days",
            "1 order in the last {w} days",
            "{v} orders in the last {w} days",
        ),
        ("최근 {w}일간 주문 없음", "최근 {w}일간 {v}회 주문"),
        orders=1,
        exact=False,
        na=("orders in the last {w} days unknown", "최근 {w}일 주문 정보 없음"),
        group="orders",
    ),
    # positive amounts only (features.contract): no spend in a window means no order in it
    "spend": _money(
        "spent {v} in the last {w} days",
        "최근 {w}일간 {v} 구매",
        zero=("no orders in the last {w} days", "최근 {w}일간 주문 없음"),
        orders=1,
        exact=False,
        na=("spend in the last {w} days unknown", "최근 {w}일 구매액 정보 없음"),
        group="spend",
    ),
    "views": _count(
        (
            "no product views in the last {w} days",
            "1 product view in the last {w} days",
            "{v} product views in the last {w} days",
        ),
        ("최근 {w}일간 상품 조회 없음", "최근 {w}일간 상품 조회 {v}회"),
        views=True,
        exact=False,
        na=("product views in the last {w} days unknown", "최근 {w}일 상품 조회 정보 없음"),
        group="views",
    ),
}

PHRASES: dict[str, Phrase] = {
    "tenure_days": _days(
        ("customer for less than a day", "customer for 1 day", "customer for {v} days"),
        ("고객이 된 지 하루 미만", "고객이 된 지 {v}일"),
        na=("customer since unknown", "고객 시작일 정보 없음"),
        group="age",
    ),
    "days_since_signup": _days(
        ("signed up less than a day ago", "signed up 1 day ago", "signed up {v} days ago"),
        ("가입 하루 이내", "{v}일 전 가입"),
        na=("no sign-up date on record", "가입일 정보 없음"),
        group="age",
    ),
    "signup_to_first_order_days": Phrase(
        "signed_days",
        {
            "zero": "first order on the day they signed up",
            "one": "first order 1 day after signing up",
            "many": "first order {v} days after signing up",
            "neg_one": "first order 1 day before the recorded sign-up",
            "neg_many": "first order {v} days before the recorded sign-up",
        },
        {
            "zero": "가입 당일 첫 주문",
            "many": "가입 {v}일 후 첫 주문",
            "neg_many": "가입 {v}일 전 첫 주문",
        },
        orders=1,
        exact=False,
        # with an order, only a missing sign-up date leaves this empty
        na=("no sign-up date on record", "가입일 정보 없음"),
        unknown=("time from sign-up to first order unknown", "가입 후 첫 주문까지 기간 정보 없음"),
    ),
    "orders_lifetime": _count(
        ("no orders yet", "only one order so far", "{v} orders in total"),
        ("구매 이력 없음", "누적 주문 {v}회"),
        orders=1,
        group="orders",
        extras={"one": ONE_ORDER},
    ),
    "spend_lifetime": _money(
        "spent {v} in total", "누적 구매 {v}", zero=NO_ORDERS, orders=1, group="spend"
    ),
    "avg_order_value": _money(
        "average order of {v}",
        "평균 주문 금액 {v}",
        orders=1,
        group="order_value",
        solo=("orders_lifetime", 1),
        en_solo=ONLY_ORDER_VALUE,
        ko_solo=ONLY_ORDER_VALUE_KO,
    ),
    "median_order_value": _money(
        "median order of {v}",
        "주문 금액 중앙값 {v}",
        orders=1,
        group="order_value",
        solo=("orders_lifetime", 1),
        en_solo=ONLY_ORDER_VALUE,
        ko_solo=ONLY_ORDER_VALUE_KO,
    ),
    "max_order_value": _money(
        "largest order {v}",
        "최대 주문 금액 {v}",
        orders=1,
        solo=("orders_lifetime", 1),
        en_solo=ONLY_ORDER_VALUE,
        ko_solo=ONLY_ORDER_VALUE_KO,
    ),
    "days_since_last_order": _days(
        ("last order less than a day ago", "last order 1 day ago", "last order {v} days ago"),
        ("마지막 주문 하루 이내", "마지막 주문 {v}일 전"),
        orders=1,
        solo=("orders_lifetime", 1),
        en_solo=ONLY_ORDER_DAY,
        ko_solo=ONLY_ORDER_DAY_KO,
    ),
    "days_since_first_order": _days(
        ("first order less than a day ago", "first order 1 day ago", "first order {v} days ago"),
        ("첫 주문 하루 이내", "첫 주문 {v}일 전"),
        orders=1,
        group="age",
        solo=("orders_lifetime", 1),
        en_solo=ONLY_ORDER_DAY,
        ko_solo=ONLY_ORDER_DAY_KO,
    ),
    "spend_prev_90d": _money(
        "spent {v} 90-180 days ago",
        "90~180일 전 {v} 구매",
        zero=("no orders 90-180 days ago", "90~180일 전 주문 없음"),
        orders=1,
        exact=False,
        na=("spend 90-180 days ago unknown", "90~180일 전 구매액 정보 없음"),
    ),
    "mean_gap_days": _days(
        (
            "buys more than once a day on average",
            "buys about every day on average",
            "buys every {v} days on average",
        ),
        ("평균 하루 1회 이상 구매", "평균 {v}일마다 구매"),
        orders=2,
        group="gap",
        solo=("orders_lifetime", 2),
        en_solo=TWO_ORDERS,
        ko_solo=TWO_ORDERS_KO,
    ),
    "median_gap_days": _days(
        (
            "usually buys more than once a day",
            "usually buys about every day",
            "usually buys every {v} days",
        ),
        ("보통 하루 1회 이상 구매", "보통 {v}일마다 구매"),
        orders=2,
        group="gap",
        solo=("orders_lifetime", 2),
        en_solo=TWO_ORDERS,
        ko_solo=TWO_ORDERS_KO,
    ),
    "last_gap_days": _days(
        (
            "last two orders less than a day apart",
            "last two orders 1 day apart",
            "last two orders {v} days apart",
        ),
        ("최근 두 주문 간격 하루 미만", "최근 두 주문 간격 {v}일"),
        orders=2,
        solo=("orders_lifetime", 2),
        en_solo=TWO_ORDERS,
        ko_solo=TWO_ORDERS_KO,
    ),
    "recent_gap_days": _days(
        (
            "recent orders less than a day apart on average",
            "recent orders 1 day apart on average",
            "recent orders {v} days apart on average",
        ),
        ("최근 주문 평균 간격 하루 미만", "최근 주문 평균 간격 {v}일"),
        orders=2,
        group="gap",
        solo=("orders_lifetime", 2),
        en_solo=TWO_ORDERS,
        ko_solo=TWO_ORDERS_KO,
    ),
    "earlier_gap_days": _days(
        (
            "earlier orders less than a day apart on average",
            "earlier orders 1 day apart on average",
            "earlier orders {v} days apart on average",
        ),
        ("이전 주문 평균 간격 하루 미만", "이전 주문 평균 간격 {v}일"),
        # the gaps before the last three orders need a fifth order (the first has no gap)
        orders=5,
        few=FEW_CYCLES,
    ),
    "gap_slope": Phrase(
        "signed_days",
        {
            "zero": "gaps between orders roughly steady",
            "one": "gaps between orders growing by 1 day per order",
            "many": "gaps between orders growing by {v} days per order",
            "neg_one": "gaps between orders shrinking by 1 day per order",
            "neg_many": "gaps between orders shrinking by {v} days per order",
        },
        {
            "zero": "주문 간격 거의 일정",
            "many": "주문마다 간격 {v}일씩 증가",
            "neg_many": "주문마다 간격 {v}일씩 감소",
        },
        orders=3,
        few=FEW_TREND,
    ),
    "recent_order_value": _money(
        "recent orders average {v}",
        "최근 주문 평균 {v}",
        orders=1,
        group="order_value",
        solo=("orders_lifetime", 1),
        en_solo=ONLY_ORDER_VALUE,
        ko_solo=ONLY_ORDER_VALUE_KO,
    ),
    "spend_trend_90d": Phrase(
        "trend",
        {
            "up": "spending more in the last 90 days than the 90 before",
            "down": "spending less in the last 90 days than the 90 before",
            "flat": "spending unchanged between the last 90 days and the 90 before",
            "none": "no orders in the last 180 days",
            "started": "started buying in the last 90 days, after none in the 90 before",
            "stopped": "no orders in the last 90 days, after buying in the 90 before",
        },
        {
            "up": "최근 90일 구매액이 직전 90일보다 증가",
            "down": "최근 90일 구매액이 직전 90일보다 감소",
            "flat": "최근 90일 구매액이 직전 90일과 같음",
            "none": "최근 180일간 주문 없음",
            "started": "최근 90일에 구매 시작 (직전 90일은 구매 없음)",
            "stopped": "최근 90일간 주문 없음 (직전 90일은 구매)",
        },
        na=("spending trend unknown", "구매 추세 정보 없음"),
    ),
    "gap_acceleration": _pivot(
        (
            "buying faster than their usual cycle (gaps x{v})",
            "buying at the same pace as before",
            "buying slower than before (gaps x{v})",
        ),
        (
            "평소보다 빠른 구매 주기 (간격 x{v})",
            "이전과 비슷한 구매 주기",
            "이전보다 느린 구매 주기 (간격 x{v})",
        ),
        orders=5,
        exact=False,  # also missing when the earlier orders were placed at the same moment
        few=FEW_CYCLES,
        na=("buying cycles not comparable", "구매 주기 비교 불가"),
    ),
    "last_gap_vs_median": _ratio_phrase(
        "last gap x{v} their usual gap",
        "마지막 구매 간격이 평소의 {v}배",
        orders=2,
        exact=False,
        na=NO_USUAL_GAP,
    ),
    "overdue_ratio": _ratio_phrase(
        "{v}x their usual gap since the last order",
        "마지막 주문 후 평소 간격의 {v}배 경과",
        orders=2,
        exact=False,
        na=NO_USUAL_GAP,
    ),
    "gap_vs_peers": _pivot(
        (
            "buys more often than the typical customer (gap x{v})",
            "buys about as often as the typical customer",
            "buys less often than the typical customer (gap x{v})",
        ),
        (
            "일반 고객보다 자주 구매 (간격 x{v})",
            "일반 고객과 비슷한 주기로 구매",
            "일반 고객보다 드물게 구매 (간격 x{v})",
        ),
        orders=2,
        exact=False,
        na=("no peer comparison available", "다른 고객과 비교 불가"),
    ),
    "recent_vs_avg_order_value": _ratio_phrase(
        "recent orders x{v} their average order",
        "최근 주문 금액이 평균의 {v}배",
        orders=1,
    ),
    "views_lifetime": _count(
        ("no product views yet", "only one product view so far", "{v} product views in total"),
        ("상품 조회 이력 없음", "누적 상품 조회 {v}회"),
        views=True,
        group="views",
        extras={"one": ("only one product view so far", "지금까지 상품 조회 1회뿐")},
    ),
    "days_since_last_view": _days(
        (
            "last viewed a product less than a day ago",
            "last viewed a product 1 day ago",
            "last viewed a product {v} days ago",
        ),
        ("마지막 상품 조회 하루 이내", "마지막 상품 조회 {v}일 전"),
        views=True,
    ),
    "last_viewed_price": _money(
        "last viewed an item of {v}",
        "최근 {v} 상품 조회",
        views=True,
        solo=("views_lifetime", 1),
        en_solo=ONLY_VIEW,
        ko_solo=ONLY_VIEW_KO,
    ),
    "mean_viewed_price": _money(
        "viewed items of {v} on average",
        "평균 {v} 상품 조회",
        views=True,
        group="viewed_price",
        solo=("views_lifetime", 1),
        en_solo=ONLY_VIEW,
        ko_solo=ONLY_VIEW_KO,
    ),
    "median_viewed_price": _money(
        "typically viewed items of {v}",
        "조회 상품 가격 중앙값 {v}",
        views=True,
        group="viewed_price",
        solo=("views_lifetime", 1),
        en_solo=ONLY_VIEW,
        ko_solo=ONLY_VIEW_KO,
    ),
    "max_viewed_price": _money(
        "viewed items up to {v}",
        "최고 {v} 상품까지 조회",
        views=True,
        solo=("views_lifetime", 1),
        en_solo=ONLY_VIEW,
        ko_solo=ONLY_VIEW_KO,
    ),
    "high_price_views": _count(
        (
            "no views of high-price items",
            "1 view of a high-price item",
            "{v} views of high-price items",
        ),
        ("고가 상품 조회 없음", "고가 상품 조회 {v}회"),
        views=True,
        exact=False,
        na=("views of high-price items unknown", "고가 상품 조회 정보 없음"),
    ),
    "high_price_view_share": Phrase(
        "share",
        {"many": "{v} of views on high-price items"},
        {"many": "조회의 {v}가 고가 상품"},
        views=True,
    ),
    "last_vs_mean_viewed_price": _ratio_phrase(
        "latest view x{v} their average viewed price",
        "최근 조회 가격이 평균의 {v}배",
        views=True,
        exact=False,
        na=("no average viewed price to compare with", "비교할 평균 조회 가격 없음"),
        group="last_vs_viewed",
    ),
    "last_vs_median_viewed_price": _ratio_phrase(
        "latest view x{v} their typical viewed price",
        "최근 조회 가격이 중앙값의 {v}배",
        views=True,
        exact=False,
        na=("no typical viewed price to compare with", "비교할 조회 가격 중앙값 없음"),
        group="last_vs_viewed",
    ),
    "viewed_price_vs_aov": _ratio_phrase(
        "views items x{v} their average order",
        "조회 상품 가격이 평균 주문의 {v}배",
        orders=1,
        views=True,
        exact=False,
        na=("no viewed prices or orders to compare", "비교할 조회 또는 주문 없음"),
    ),
    "max_units_one_product": _count(
        ("no units bought", "at most 1 unit of any one product", "bought {v} units of one product"),
        ("구매 수량 없음", "한 상품 {v}개 구매"),
        orders=1,
        exact=False,  # also missing when the shop sends no order lines
        na=NO_ORDER_LINES,
        extras={"one": ("at most 1 unit of any one product", "한 상품 최대 1개 구매")},
    ),
    "top_product_spend_share": Phrase(
        "share",
        {"many": "{v} of spend on one product"},
        {"many": "구매액의 {v}가 한 상품"},
        orders=1,
        exact=False,
        na=NO_ORDER_LINES,
    ),
    "max_units_vs_usual": _ratio_phrase(
        "buys one product in x{v} its usual quantity per order",
        "한 상품을 평소 주문 수량의 {v}배로 구매",
        orders=1,
        exact=False,
        na=NO_ORDER_LINES,
    ),
    "tier": Phrase(
        "count",
        {"many": "membership tier {v} (tier 1 is the highest)"},
        {"many": "회원 등급 {v} (1이 최고)"},
        na=("membership tier unknown", "회원 등급 정보 없음"),
    ),
    "distance_to_next_tier": _money(
        "{v} away from the next tier",
        "다음 등급까지 {v}",
        # NaN exactly at the top tier (features.tiers.next_tier_line)
        na=("already in the top tier", "이미 최고 등급"),
    ),
    "margin_above_tier_line": _money(
        "{v} above the spend needed to keep their tier",
        "등급 유지 기준보다 {v} 많음",
        na=("tier margin unknown", "등급 유지 여유 정보 없음"),
        extras={"lowest": ("in the lowest membership tier", "최하위 회원 등급")},
    ),
}
# tier-window spend is said like the spend window of the same length, so the two dedupe
PHRASES["tier_window_spend"] = WINDOW_PHRASES["spend"]


def phrase_for(feature: str) -> tuple[Phrase, str | None]:
    """The phrase of a model feature and its window in days (None for tier_window_spend,
    whose window is the tier setting). KeyError for a feature without a phrase."""
    windowed = WINDOWED.match(feature)
    if windowed:
        return WINDOW_PHRASES[windowed.group(1)], windowed.group(2)
    if feature in PHRASES:
        return PHRASES[feature], None
    raise KeyError(f"no phrase for feature {feature!r}: add one to models.reasons.PHRASES")


FORMS = (
    "zero",
    "one",
    "many",
    "neg_one",
    "neg_many",
    "below",
    "equal",
    "above",
    "lowest",
    "up",
    "down",
    "flat",
    "none",
    "started",
    "stopped",
)
FORM = {name: code for code, name in enumerate(FORMS)}
SOLO = len(FORMS)  # added to a form's code when the solo variant applies
FALLBACK = {"zero": "many", "one": "many", "neg_one": "neg_many"}


def _template(phrase: Phrase, code: int, language: str, window: str) -> str:
    """The template of one form, the Korean "one" form falling back to "many" etc."""
    name, solo = FORMS[code % SOLO], code >= SOLO
    extra = phrase.extras.get(name)
    if extra is not None and not solo:
        return extra[LANGUAGES.index(language)]
    forms = phrase.en if language == "en" else phrase.ko
    candidates = [name, FALLBACK.get(name, "many"), "many"]
    keys = [f"solo_{c}" for c in candidates] if solo else []
    for key in [*keys, *candidates]:
        if key in forms:
            return forms[key].replace("{w}", window)
    raise KeyError(f"no {name} form")  # pragma: no cover - every phrase has "many"


def _each_unique(values: np.ndarray, fmt: Callable[[float], str]) -> np.ndarray:
    """fmt applied once per distinct value (counts and days repeat a lot)."""
    if len(values) == 0:
        return np.empty(0, dtype=object)
    uniq, inverse = np.unique(values, return_inverse=True)
    return np.array([fmt(v) for v in uniq], dtype=object)[inverse.reshape(-1)]


def _ratio(value: float) -> str:
    return f"{value:.1f}" if abs(value) < 10 else f"{value:,.0f}"


def _numbers(
    phrase: Phrase, values: np.ndarray, currency: str, language: str
) -> tuple[np.ndarray, np.ndarray]:
    """(shown value per element, form code per element) for finite values."""
    kind = phrase.kind
    if kind in ("count", "days", "signed_days"):
        # whole numbers first, so 0.4 days is "less than a day" and 1.2 days is "1 day"
        whole = np.rint(values) + 0.0  # + 0.0: no "-0"
        size = np.abs(whole)
        forms = np.select([size == 0, whole == 1], [FORM["zero"], FORM["one"]], FORM["many"])
        if kind != "signed_days":
            # never negative by construction; if it were, the sign is shown, not hidden
            return _each_unique(whole, lambda x: f"{x:,.0f}"), forms
        negative = np.select([whole == -1, whole < 0], [FORM["neg_one"], FORM["neg_many"]], -1)
        # the sign is in the words ("before the recorded sign-up")
        return _each_unique(size, lambda x: f"{x:,.0f}"), np.where(negative >= 0, negative, forms)
    if kind == "money":
        shown = _each_unique(values, lambda x: format_money(x, currency, language))
        return shown, np.where(values == 0, FORM["zero"], FORM["many"])
    if kind == "share":
        return _each_unique(values, lambda x: f"{100 * x:.0f}%"), np.full(len(values), FORM["many"])
    shown = _each_unique(values, _ratio)
    if kind == "pivot":
        # by the shown number, so "x1.0" is never called faster or slower
        equal = shown == "1.0"
        forms = np.select([equal, values < 1], [FORM["equal"], FORM["below"]], FORM["above"])
        return shown, forms
    if kind == "trend":
        forms = np.select([values > 0, values < 0], [FORM["up"], FORM["down"]], FORM["flat"])
        return np.full(len(values), "", dtype=object), forms
    return shown, np.full(len(values), FORM["many"])


def _faster(ratio: np.ndarray) -> np.ndarray:
    """gap_acceleration said as faster: below 1 and not shown as "1.0" (same as its phrase)."""
    return (ratio < 1) & (_each_unique(ratio, _ratio) != "1.0")


def _refine(
    feature: str, phrase: Phrase, values: np.ndarray, forms: np.ndarray, ctx: dict[str, np.ndarray]
) -> np.ndarray:
    """Forms that need other columns of the row: solo variants, the lowest tier, spend trend."""
    if phrase.solo is not None and phrase.solo[0] in ctx:
        column, count = phrase.solo
        forms = np.where(ctx[column] == count, forms + SOLO, forms)
    if feature == "margin_above_tier_line" and "tier_window_spend" in ctx:
        # the downgrade line is 0 only in the lowest tier, where the margin is all the spend
        forms = np.where(values == ctx["tier_window_spend"], FORM["lowest"], forms)
    if phrase.kind == "trend" and "spend_90d" in ctx and "spend_prev_90d" in ctx:
        recent, before = ctx["spend_90d"] > 0, ctx["spend_prev_90d"] > 0
        forms = np.select(
            [~recent & ~before, recent & ~before, ~recent & before],
            [FORM["none"], FORM["started"], FORM["stopped"]],
            forms,
        )
    return forms


def _fill(
    phrase: Phrase, forms: np.ndarray, shown: np.ndarray, language: str, window: str
) -> np.ndarray:
    texts = np.empty(len(forms), dtype=object)
    for code in np.unique(forms):
        rows = forms == code
        template = _template(phrase, int(code), language, window)
        if "{v}" in template:
            before, after = template.split("{v}")
            texts[rows] = before + shown[rows] + after
        else:
            texts[rows] = template
    return texts


def _missing(phrase: Phrase, ctx: dict[str, np.ndarray], size: int, language: str) -> np.ndarray:
    """What a missing value means for each row, from the row's order and view counts."""
    lang = LANGUAGES.index(language)
    texts = np.full(size, phrase.na[lang], dtype=object)
    done = np.zeros(size, dtype=bool)
    if phrase.views:
        views = ctx.get("views_lifetime")
        if views is not None:
            none = ~(views > 0)  # NaN: no view row joined, i.e. none
        else:
            none = np.full(size, phrase.exact and not phrase.orders)
        texts[none], done = NO_VIEWS[lang], none
    if not phrase.orders:
        return texts
    orders = ctx.get("orders_lifetime")
    if orders is None:
        if phrase.exact:
            # the count is unknown but below the need: say only what that implies
            need = {1: NO_ORDERS, 2: UNDER_TWO}.get(phrase.orders, phrase.few)
            texts[~done] = need[lang]
        elif phrase.unknown is not None:
            texts[~done] = phrase.unknown[lang]
        return texts
    count = np.where(orders > 0, orders, 0)  # NaN: no order row joined, i.e. none
    conditions = [count == 0, (count == 1) & (phrase.orders >= 2), count < phrase.orders]
    choices = [NO_ORDERS[lang], ONE_ORDER[lang], phrase.few[lang]]
    return np.where(done, texts, np.select(conditions, choices, texts))


def _phrases(
    feature: str,
    values: np.ndarray,
    ctx: dict[str, np.ndarray],
    language: str,
    currency: str,
    tier_window_days: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(text, fact) of one feature for every element of `values` (one per customer).

    The fact is what dedupe compares besides the text: features of one group with the same
    shown value (e.g. mean and median viewed price both ₩50,000) share it.
    """
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {LANGUAGES}, got {language!r}")
    phrase, window = phrase_for(feature)
    window = window or str(tier_window_days)
    finite = np.isfinite(values)
    texts = np.empty(len(values), dtype=object)
    facts = np.empty(len(values), dtype=object)
    if (~finite).any():
        sub = {k: v[~finite] for k, v in ctx.items()}
        missing = _missing(phrase, sub, int((~finite).sum()), language)
        texts[~finite] = np.array([t.replace("{w}", window) for t in missing], dtype=object)
        facts[~finite] = texts[~finite]
    if finite.any():
        own = values[finite]
        sub = {k: v[finite] for k, v in ctx.items()}
        shown, forms = _numbers(phrase, own, currency, language)
        forms = _refine(feature, phrase, own, forms, sub)
        said = _fill(phrase, forms, shown, language, window)
        if WINDOWED.match(feature) and feature.startswith("orders_") and "gap_acceleration" in sub:
            faster = (np.rint(own) > 0) & _faster(sub["gap_acceleration"])
            said[faster] = said[faster] + FASTER[LANGUAGES.index(language)]
        texts[finite] = said
        facts[finite] = f"#{phrase.group}:" + shown if phrase.group else said
    return texts, facts


def _context_of_row(row: pd.Series) -> dict[str, np.ndarray]:
    return {name: _value_of(row, name) for name in CONTEXT if name in row}


def _value_of(row: pd.Series, name: str) -> np.ndarray:
    raw = row.get(name)
    return np.array([float(raw) if pd.notna(raw) else np.nan], dtype="float64")


def reason_and_fact(
    feature: str,
    row: pd.Series,
    language: str = "en",
    currency: str = "KRW",
    tier_window_days: int = 180,
) -> tuple[str, str]:
    """The phrase of one feature of one customer and the fact it states (for dedupe)."""
    text, fact = _phrases(
        feature, _value_of(row, feature), _context_of_row(row), language, currency, tier_window_days
    )
    return str(text[0]), str(fact[0])


def reason_text(
    feature: str,
    row: pd.Series,
    language: str = "en",
    currency: str = "KRW",
    tier_window_days: int = 180,
) -> str:
    """The phrase for one feature of one customer, word for word as in top_reasons (the
    calendar features, never a reason, are named as the time of year, e.g. in a waterfall)."""
    if feature in CALENDAR_FEATURES:
        return CALENDAR_LABEL[language]
    return reason_and_fact(feature, row, language, currency, tier_window_days)[0]


def _signed(contrib: pd.DataFrame, direction: float | np.ndarray | pd.Series) -> np.ndarray:
    """Contributions times the direction; those not strictly of that sign, and the calendar
    features (the date, not the customer), become -inf."""
    features = contrib.drop(columns=BASE_VALUE, errors="ignore")
    shown = ~features.columns.isin(CALENDAR_FEATURES)
    values = features.to_numpy(dtype="float64")
    sign = np.asarray(direction, dtype="float64")
    if sign.ndim == 0:
        sign = np.full(len(values), float(sign))
    if sign.shape != (len(values),) or not np.isin(sign, (1.0, -1.0)).all():
        raise ValueError("direction must be +1 or -1, or one of those per row")
    signed = values * sign[:, None]
    return np.where((signed > MIN_CONTRIBUTION) & shown, signed, -np.inf)  # NaN never does


def _next_best(signed: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Each row's largest remaining column (first of ties), or -1 when none is left; taken
    columns are set to -inf so the next call gives the next one."""
    if signed.shape[1] == 0:
        return np.full(len(rows), -1, dtype="int64")
    # all rows: argmax in place, without copying the matrix
    best = (signed if len(rows) == len(signed) else signed[rows]).argmax(axis=1)
    found = np.isfinite(signed[rows, best])
    signed[rows, best] = -np.inf
    return np.where(found, best, -1)


def top_features(
    contrib: pd.DataFrame, k: int = 3, direction: float | np.ndarray | pd.Series = 1
) -> np.ndarray:
    """Column indices of each row's k largest contributions of the given sign, largest first
    (n x k; -1 where a row has fewer than k of that sign). Ties go to the earlier column."""
    signed = _signed(contrib, direction)
    out = np.full((len(signed), k), -1, dtype="int64")
    rows = np.arange(len(signed))
    for position in range(k):
        out[rows, position] = best = _next_best(signed, rows)
        rows = rows[best >= 0]
    return out


def top_reasons(
    contrib: pd.DataFrame,
    frame: pd.DataFrame,
    k: int = 3,
    language: str = "en",
    currency: str = "KRW",
    direction: float | np.ndarray | pd.Series = 1,
    tier_window_days: int = 180,
) -> pd.DataFrame:
    """`reason_i` (text), `reason_i_feature` and `reason_i_contribution` (signed, on the
    model's scale) for i = 1..k, for each row of `contrib` (same index).

    `frame` holds the features' values, row-aligned with `contrib`. direction +1: the largest
    positive contributions (what raises the score); -1: the most negative (what lowers it);
    a scalar or one per row. Only contributions of that sign count, so a row may get fewer
    than k reasons (None / NaN after them). A candidate whose text or fact repeats an earlier
    reason of the row is skipped and the next one takes the slot.
    """
    features = [c for c in contrib.columns if c != BASE_VALUE]
    for name in set(features) - set(CALENDAR_FEATURES):
        phrase_for(name)  # every feature, not only those chosen, so a new one fails early
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {LANGUAGES}, got {language!r}")
    signed = _signed(contrib, direction)
    n = len(signed)
    texts = np.full((n, k), None, dtype=object)
    facts = np.full((n, k), None, dtype=object)
    chosen = np.full((n, k), -1, dtype="int64")
    filled = np.zeros(n, dtype="int64")
    columns: dict[int, np.ndarray] = {}
    ctx = {c: frame[c].to_numpy("float64", na_value=np.nan) for c in CONTEXT if c in frame}
    # one pass per candidate rank, over the rows still short of k reasons: a row whose
    # candidate repeats an earlier reason stays for the next pass (usually k passes in all)
    rows = np.arange(n) if k > 0 else np.empty(0, dtype="int64")
    while len(rows):
        best = _next_best(signed, rows)
        rows, best = rows[best >= 0], best[best >= 0]
        text, fact = _candidates(
            best, rows, features, frame, columns, ctx, language, currency, tier_window_days
        )
        repeated = np.zeros(len(rows), dtype=bool)
        for position in range(k):
            repeated |= (texts[rows, position] == text) | (facts[rows, position] == fact)
        take, slot = rows[~repeated], filled[rows[~repeated]]
        texts[take, slot], facts[take, slot] = text[~repeated], fact[~repeated]
        chosen[take, slot] = best[~repeated]
        filled[take] += 1
        rows = rows[filled[rows] < k]
    return _reason_frame(contrib, features, chosen, texts)


def _candidates(
    best: np.ndarray,
    rows: np.ndarray,
    features: list[str],
    frame: pd.DataFrame,
    columns: dict[int, np.ndarray],
    ctx: dict[str, np.ndarray],
    language: str,
    currency: str,
    tier_window_days: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(text, fact) of each row's candidate feature, formatted per feature for its rows."""
    text = np.empty(len(rows), dtype=object)
    fact = np.empty(len(rows), dtype=object)
    for index in np.unique(best):
        mine = best == index
        at = rows[mine]
        if index not in columns:
            columns[index] = frame[features[index]].to_numpy("float64", na_value=np.nan)
        sub = {name: values[at] for name, values in ctx.items()}
        text[mine], fact[mine] = _phrases(
            features[index], columns[index][at], sub, language, currency, tier_window_days
        )
    return text, fact


def reason_columns(k: int) -> list[str]:
    """The columns `top_reasons` gives for k reasons, in order: per position the text, the
    feature and its contribution."""
    columns = []
    for position in range(1, k + 1):
        name = f"reason_{position}"
        columns += [name, f"{name}_feature", f"{name}_contribution"]
    return columns


def _reason_frame(
    contrib: pd.DataFrame, features: list[str], chosen: np.ndarray, texts: np.ndarray
) -> pd.DataFrame:
    """The reason columns; a position without a reason has None and a NaN contribution."""
    values = np.column_stack(
        [contrib[features].to_numpy(dtype="float64"), np.full(len(chosen), np.nan)]
    )
    names = np.asarray([*features, None], dtype=object)  # -1 (no reason) picks None / NaN
    rows = np.arange(len(chosen))
    parts: list[pd.Series] = []
    for position in range(chosen.shape[1]):
        picked = chosen[:, position]
        # object columns: pandas would turn None into NaN in an inferred string column
        parts += [
            pd.Series(texts[:, position], contrib.index, dtype=object),
            pd.Series(names[picked], contrib.index, dtype=object),
            pd.Series(values[rows, picked], contrib.index),
        ]
    names_in_order = reason_columns(chosen.shape[1])
    return pd.DataFrame(dict(zip(names_in_order, parts, strict=True)), index=contrib.index)
