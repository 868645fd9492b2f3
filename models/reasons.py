"""Top reasons in plain words: each customer's largest SHAP contributions, phrased for marketers.

A reason is the feature with one of the largest positive-first contributions to the score
(log-odds, from models.explain), written with the customer's own value of that feature:
"3 orders in the last 30 days, faster than their usual cycle", "viewed items of ₩1.2M on
average". English or Korean; money in the shop's currency. Vectorised: the top k are found
with one argpartition over the contribution matrix and the text is formatted per feature.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pandas as pd

from models.explain import BASE_VALUE

SYMBOLS = {"KRW": "₩", "GBP": "£", "USD": "$", "EUR": "€", "JPY": "¥"}


def format_money(value: float, currency: str, language: str = "en") -> str:
    """₩1.2M / ₩35,000 / £1,234 in English; 120만 원 / 1.2억 원 in Korean for KRW."""
    if not np.isfinite(value):
        return "-"
    if language == "ko" and currency == "KRW":
        if abs(value) >= 1e8:
            return f"{value / 1e8:.1f}억 원"
        if abs(value) >= 1e4:
            return f"{value / 1e4:,.0f}만 원"
        return f"{value:,.0f}원"
    symbol = SYMBOLS.get(currency, f"{currency} ")
    if abs(value) >= 1e6:
        return f"{symbol}{value / 1e6:.1f}M"
    decimals = 0 if currency in ("KRW", "JPY") or abs(value) >= 1000 else 2
    return f"{symbol}{value:,.{decimals}f}"


# Templates: {v} number, {m} money, {p} percent, {r} ratio, {w} window days.
TEXTS: dict[str, dict[str, str]] = {
    "orders_w": {"en": "{v} orders in the last {w} days", "ko": "최근 {w}일간 {v}회 주문"},
    "spend_w": {"en": "spent {m} in the last {w} days", "ko": "최근 {w}일간 {m} 구매"},
    "views_w": {
        "en": "{v} product views in the last {w} days",
        "ko": "최근 {w}일간 상품 조회 {v}회",
    },
    "orders_lifetime": {"en": "{v} orders in total", "ko": "누적 주문 {v}회"},
    "spend_lifetime": {"en": "spent {m} in total", "ko": "누적 구매 {m}"},
    "avg_order_value": {"en": "average order of {m}", "ko": "평균 주문 금액 {m}"},
    "max_order_value": {"en": "largest order {m}", "ko": "최대 주문 금액 {m}"},
    "days_since_last_order": {"en": "last order {v} days ago", "ko": "마지막 주문 {v}일 전"},
    "days_since_first_order": {"en": "first order {v} days ago", "ko": "첫 주문 {v}일 전"},
    "tenure_days": {"en": "member for {v} days", "ko": "가입 {v}일째"},
    "spend_prev_90d": {"en": "spent {m} 3-6 months ago", "ko": "3~6개월 전 {m} 구매"},
    "tier_window_spend": {"en": "spent {m} in the last 6 months", "ko": "최근 6개월 {m} 구매"},
    "mean_gap_days": {"en": "buys every {v} days on average", "ko": "평균 {v}일마다 구매"},
    "median_gap_days": {"en": "usually buys every {v} days", "ko": "보통 {v}일마다 구매"},
    "last_gap_days": {"en": "last two orders {v} days apart", "ko": "최근 두 주문 간격 {v}일"},
    "recent_gap_days": {"en": "recent orders {v} days apart", "ko": "최근 주문 간격 {v}일"},
    "earlier_gap_days": {"en": "earlier orders {v} days apart", "ko": "이전 주문 간격 {v}일"},
    "recent_order_value": {"en": "recent orders average {m}", "ko": "최근 주문 평균 {m}"},
    "spend_trend_90d+": {
        "en": "spending more in the last 90 days than the 90 before",
        "ko": "최근 90일 구매액이 직전 90일보다 증가",
    },
    "spend_trend_90d-": {
        "en": "spending less in the last 90 days than the 90 before",
        "ko": "최근 90일 구매액이 직전 90일보다 감소",
    },
    "gap_acceleration+": {
        "en": "buying faster than their usual cycle (gaps x{r})",
        "ko": "평소보다 빠른 구매 주기 (간격 x{r})",
    },
    "gap_acceleration-": {
        "en": "buying slower than before (gaps x{r})",
        "ko": "이전보다 느린 구매 주기 (간격 x{r})",
    },
    "last_gap_vs_median": {
        "en": "last gap x{r} their usual gap",
        "ko": "마지막 구매 간격이 평소의 {r}배",
    },
    "overdue_ratio": {
        "en": "{r}x their usual gap since the last order",
        "ko": "마지막 주문 후 평소 간격의 {r}배 경과",
    },
    "recent_vs_avg_order_value": {
        "en": "recent orders x{r} their average order",
        "ko": "최근 주문 금액이 평균의 {r}배",
    },
    "views_lifetime": {"en": "{v} product views in total", "ko": "누적 상품 조회 {v}회"},
    "days_since_last_view": {
        "en": "last viewed a product {v} days ago",
        "ko": "마지막 조회 {v}일 전",
    },
    "last_viewed_price": {"en": "last viewed an item of {m}", "ko": "최근 {m} 상품 조회"},
    "mean_viewed_price": {"en": "viewed items of {m} on average", "ko": "평균 {m} 상품 조회"},
    "median_viewed_price": {"en": "viewed items of {m} (median)", "ko": "조회 상품 중앙값 {m}"},
    "max_viewed_price": {"en": "viewed items up to {m}", "ko": "최고 {m} 상품까지 조회"},
    "high_price_views": {"en": "{v} views of high-price items", "ko": "고가 상품 조회 {v}회"},
    "high_price_view_share": {
        "en": "{p} of views on high-price items",
        "ko": "조회의 {p}가 고가 상품",
    },
    "last_vs_mean_viewed_price": {
        "en": "latest view x{r} their average viewed price",
        "ko": "최근 조회 가격이 평균의 {r}배",
    },
    "last_vs_median_viewed_price": {
        "en": "latest view x{r} their typical viewed price",
        "ko": "최근 조회 가격이 중앙값의 {r}배",
    },
    "viewed_price_vs_aov": {
        "en": "views items x{r} their average order",
        "ko": "조회 상품 가격이 평균 주문의 {r}배",
    },
    "tier": {"en": "membership tier {v}", "ko": "회원 등급 {v}"},
    "distance_to_next_tier": {"en": "{m} away from the next tier", "ko": "다음 등급까지 {m}"},
    "margin_above_tier_line": {
        "en": "{m} above the downgrade line",
        "ko": "등급 유지선보다 {m} 많음",
    },
    "max_units_one_product": {"en": "bought {v} units of one product", "ko": "한 상품 {v}개 구매"},
    "top_product_spend_share": {
        "en": "{p} of spend on one product",
        "ko": "구매액의 {p}가 한 상품",
    },
    "missing_orders": {"en": "no orders yet", "ko": "구매 이력 없음"},
    "missing_views": {"en": "no product views yet", "ko": "상품 조회 이력 없음"},
    "other": {"en": "{f} = {x}", "ko": "{f} = {x}"},
    "faster": {"en": ", faster than their usual cycle", "ko": ", 평소보다 빠른 주기"},
}
WINDOWED = re.compile(r"^(orders|spend|views)_(\d+)d$")
MISSING_NAMES = {"en": "orders", "ko": "주문"}


def _number(value: float) -> str:
    return f"{value:,.0f}"


def _ratio(value: float) -> str:
    return f"{value:.1f}"


def _texts_for(
    feature: str, values: np.ndarray, extra: dict[str, np.ndarray], language: str, currency: str
) -> list[str]:
    """The phrase for one feature, for every value (one per customer)."""

    def money(x: float) -> str:
        return format_money(x, currency, language)

    windowed = WINDOWED.match(feature)
    template_key, fields = feature, {}
    if windowed:
        template_key, fields = f"{windowed.group(1)}_w", {"w": windowed.group(2)}
    if feature in ("spend_trend_90d", "gap_acceleration"):
        sign = np.where(values > 0 if feature == "spend_trend_90d" else values < 1, "+", "-")
        return [
            TEXTS[f"{feature}{s}"][language].format(r=_ratio(x)) if np.isfinite(x) else ""
            for s, x in zip(sign, values, strict=True)
        ]
    template = TEXTS.get(template_key, TEXTS["other"])[language]
    formatters: dict[str, Callable[[float], str]] = {
        "v": _number,
        "m": money,
        "p": lambda x: f"{100 * x:.0f}%",
        "r": _ratio,
        "x": lambda x: f"{x:.3g}",
    }
    used = [k for k in formatters if "{" + k + "}" in template]
    missing = TEXTS["missing_views" if "view" in feature else "missing_orders"][language]
    out = [
        template.format(f=feature, **fields, **{k: formatters[k](x) for k in used})
        if np.isfinite(x)
        else missing
        for x in values
    ]
    if windowed and windowed.group(1) == "orders" and "gap_acceleration" in extra:
        faster = (extra["gap_acceleration"] < 1) & (values > 0)
        suffix = TEXTS["faster"][language]
        out = [t + suffix if f else t for t, f in zip(out, faster, strict=True)]
    return out


def reason_text(feature: str, row: pd.Series, language: str = "en", currency: str = "KRW") -> str:
    """The phrase for one feature of one customer, as in the exports' reason columns."""

    def value(name: str) -> np.ndarray:
        raw = row.get(name)
        return np.array([float(raw) if pd.notna(raw) else np.nan], dtype="float64")

    extra = {"gap_acceleration": value("gap_acceleration")} if "gap_acceleration" in row else {}
    return _texts_for(feature, value(feature), extra, language, currency)[0]


def top_features(contrib: pd.DataFrame, k: int = 3) -> np.ndarray:
    """Column indices of each row's k largest contributions, largest first (n x k)."""
    values = contrib.drop(columns=BASE_VALUE, errors="ignore").to_numpy(dtype="float64")
    values = np.where(np.isfinite(values), values, -np.inf)
    k = min(k, values.shape[1])
    part = np.argpartition(-values, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(values, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def top_reasons(
    contrib: pd.DataFrame,
    frame: pd.DataFrame,
    k: int = 3,
    language: str = "en",
    currency: str = "KRW",
) -> pd.DataFrame:
    """`reason_1..k` (text) and `reason_1..k_feature` for each row of `contrib` (same index).

    `frame` holds the features' values, row-aligned with `contrib`.
    """
    features = [c for c in contrib.columns if c != BASE_VALUE]
    top = top_features(contrib, k)
    out = pd.DataFrame(index=contrib.index)
    extra = {}
    if "gap_acceleration" in frame:
        extra["gap_acceleration"] = frame["gap_acceleration"].to_numpy("float64", na_value=np.nan)
    for position in range(top.shape[1]):
        chosen = top[:, position]
        texts = np.empty(len(chosen), dtype=object)
        names = np.asarray(features, dtype=object)[chosen]
        for index in np.unique(chosen):
            rows = np.flatnonzero(chosen == index)
            feature = features[index]
            values = frame[feature].to_numpy("float64", na_value=np.nan)[rows]
            sub_extra = {key: arr[rows] for key, arr in extra.items()}
            texts[rows] = _texts_for(feature, values, sub_extra, language, currency)
        out[f"reason_{position + 1}"] = texts
        out[f"reason_{position + 1}_feature"] = names
    return out
