"""The embedded synthetic shop (DESIGN §4): a seeded, vectorised generator of the four tables.

Customers follow planted archetypes (browse-only members, late converters, one-time buyers,
steady, accelerating and fading repeaters, three kinds of VIP, resellers) so that every
signal the features look for exists and the models have something true to learn. Purchases
are renewal processes in "operational time" (seasonality is a time warp), each customer drops
out at a personal time, and all randomness flows from one seed. docs/synthetic_shop.md lists
what is planted and how strongly.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.files import write_atomic
from features.schema import SCHEMAS, ShopTables

Progress = Callable[[str], None]

N_PRODUCTS = 5_000
N_BRANDS = 300
LUXURY_BRANDS = 20  # the last brands carry the high-price segment
HIGH_PRICE_LINE = 1_000_000.0  # DESIGN §1: views and orders at ₩1,000,000+ mean high-price
HIGH_PRICE_SHARE = 0.035  # share of the catalog at or above HIGH_PRICE_LINE
BODY_MEDIAN_PRICE = 30_000.0
CHUNK = 100_000  # customers per chunk: bounds memory at 1M customers, fixes the random streams
PRE_ORDER_VIEW_SHARE = 0.85  # orders preceded by 1-5 views of their products within 7 days
PRE_ORDER_VIEW_DAYS = 7.0
RAMP_DAYS = 30.0  # late converters' views pile up over the 30 days before the first order
RAMP_VIEWS = 8.0  # mean number of such ramp views
HIGH_BROWSE_FOCUS = 0.75  # share of a high-price browser's views that land on ≥ ₩1M products
LINES_P = (0.50, 0.25, 0.13, 0.07, 0.05)  # order lines 1..5
LINE_PRICE_SIGMA = 0.4  # spread of a line's price around the customer's level
QUANTITY_P = (0.86, 0.10, 0.04)  # units 1..3 for ordinary lines
RESELLER_UNITS = (20, 200)  # log-uniform units of the reseller's product per order
# Purchase intensity by calendar month (Jan..Dec): Nov/Dec peak, summer dip; mean 1.
SEASONALITY = np.array([0.95, 0.85, 1.0, 1.0, 1.05, 0.9, 0.8, 0.8, 0.95, 1.05, 1.4, 1.25])
SEASONALITY = SEASONALITY / SEASONALITY.mean()


@dataclass(frozen=True)
class Archetype:
    """One planted kind of customer: its share and the parameters of its behaviour.

    Times are days (gaps and delays in seasonality-adjusted "operational" days), money KRW.
    """

    name: str
    share: float
    max_orders: int  # 0 = never buys, 1 = one order at most
    pre_window: float = 0.3  # share who signed up before the data window (long-standing)
    pre_years: float = 3.0  # those signed up uniformly within this many years before start
    first_delay: float = 10.0  # mean days from sign-up to the first order (new members)
    gap: float = 60.0  # median personal inter-purchase gap
    gap_sigma: float = 0.5  # lognormal spread of personal gaps across customers
    gap_shape: float = 1.0  # gamma shape of each gap (1 = Poisson-like, larger = regular)
    gap_trend: float = 1.0  # each successive gap is multiplied by this (<1 accelerates)
    min_gap: float = 1.0
    life: float = 365.0  # mean days from the first order to dropout (browse-only: browsing)
    stays: float = 0.0  # probability of never dropping out
    price: float = 35_000.0  # median personal price level of order lines
    price_sigma: float = 0.45
    value_trend: float = 1.0  # price level multiplier per successive order
    high_price_orders: float = 0.0  # probability an order's main line is a ≥ ₩1M product
    view_rate: float = 0.03  # background product views per active day
    high_browsers: float = 0.05  # share whose browsing sits on ≥ ₩1M products
    convert_high: float = 1.0  # probability of ever buying, high-price browsers
    convert_low: float = 1.0  # probability of ever buying, everyone else
    reseller: bool = False  # one product in 20-200 units per order


ARCHETYPES: tuple[Archetype, ...] = (
    Archetype(
        "browse_only", 0.33, max_orders=0, pre_window=0.1, life=45.0, price=40_000.0,
        price_sigma=0.8, view_rate=0.12, high_browsers=1 / 3,
    ),
    Archetype(
        "late_converter", 0.11, max_orders=6, pre_window=0.1, first_delay=90.0, gap=90.0,
        gap_shape=1.2, life=150.0, stays=0.05, price=40_000.0, price_sigma=0.8,
        high_price_orders=0.0, view_rate=0.08, high_browsers=0.7, convert_high=0.9,
        convert_low=0.1,
    ),
    Archetype(
        "one_time", 0.17, max_orders=1, pre_window=0.25, life=30.0, price=45_000.0,
        view_rate=0.03,
    ),
    Archetype(
        "one_time_high", 0.02, max_orders=1, pre_window=0.3, first_delay=20.0, life=30.0,
        price=40_000.0, high_price_orders=1.0, view_rate=0.05, high_browsers=0.8,
    ),
    Archetype(
        "steady", 0.211, max_orders=500, first_delay=10.0, gap=50.0, gap_sigma=0.4,
        gap_shape=1.0, min_gap=2.0, life=400.0, stays=0.35,
    ),
    Archetype(
        "accelerating", 0.05, max_orders=500, gap=100.0, gap_sigma=0.4, gap_shape=2.0,
        gap_trend=0.9, min_gap=10.0, life=600.0, stays=0.7, price=30_000.0, value_trend=1.04,
    ),
    Archetype(
        "fading", 0.08, max_orders=500, gap=20.0, gap_sigma=0.4, gap_shape=2.0,
        gap_trend=1.3, life=200.0,
    ),
    Archetype(
        "vip_high_aov", 0.006, max_orders=500, pre_window=0.5, gap=70.0, gap_sigma=0.4,
        gap_shape=1.5, min_gap=3.0, life=700.0, stays=0.6, price=200_000.0, price_sigma=0.4,
        high_price_orders=0.2, view_rate=0.05, high_browsers=0.6,
    ),
    Archetype(
        "vip_new_big", 0.008, max_orders=500, pre_window=0.0, first_delay=5.0, gap=10.0,
        gap_sigma=0.3, gap_shape=2.0, gap_trend=1.35, min_gap=2.0, life=400.0, stays=0.3,
        price=300_000.0, price_sigma=0.4, view_rate=0.05, high_browsers=0.3,
    ),
    Archetype(
        "vip_steady", 0.01, max_orders=500, pre_window=1.0, pre_years=6.0, gap=22.0,
        gap_sigma=0.3, gap_shape=4.0, min_gap=2.0, life=1500.0, stays=0.85,
        price=80_000.0, price_sigma=0.3, view_rate=0.05,
    ),
    Archetype(
        "reseller", 0.005, max_orders=500, pre_window=0.5, gap=90.0, gap_sigma=0.4,
        gap_shape=2.0, min_gap=7.0, life=800.0, stays=0.6, price=6_000.0, price_sigma=0.5,
        view_rate=0.02, reseller=True,
    ),
)  # fmt: skip
ARCHETYPE_NAMES: tuple[str, ...] = tuple(a.name for a in ARCHETYPES)
VIP_ARCHETYPES: tuple[str, ...] = ("vip_high_aov", "vip_new_big", "vip_steady")


# ----------------------------------------------------------------------------- ids and time


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pd.arrays.ArrowStringArray:
    """Zero-padded ids like C0000001, built in Arrow (a Python loop is too slow at 10M rows)."""
    digits = pc.utf8_lpad(pc.cast(pa.array(numbers, pa.int64()), pa.string()), width, "0")
    return pd.array(pc.binary_join_element_wise(prefix, digits, ""), dtype="string")


def customer_ids(n: int) -> pd.arrays.ArrowStringArray:
    """Customer ids C0000001.. in generation order."""
    return _ids("C", np.arange(1, n + 1), 7)


def _rng(seed: int, *stream: int) -> np.random.Generator:
    """An independent random stream per purpose (and per chunk), all derived from `seed`."""
    return np.random.default_rng([seed, *stream])


@dataclass(frozen=True)
class _Clock:
    """Maps calendar days (since `start`) to operational days and back (seasonality warp).

    Purchase processes tick in operational time; busy months stretch it, so the same gaps
    land more densely in Nov/Dec than in summer.
    """

    days: np.ndarray  # calendar grid, days since start
    ops: np.ndarray  # cumulative intensity at each grid point

    @classmethod
    def build(cls, start: pd.Timestamp, window_days: float, back_years: float) -> _Clock:
        first = start - pd.Timedelta(days=int(back_years * 366) + 1)
        last = start + pd.Timedelta(days=int(window_days) + 3 * 366)
        grid = pd.date_range(first, last, freq="D")
        rate = SEASONALITY[grid.month.to_numpy() - 1]
        days = ((grid - start) / pd.Timedelta(days=1)).to_numpy(dtype="float64")
        ops = np.concatenate([[0.0], np.cumsum(rate[:-1])]) + days[0]
        return cls(days, ops)

    def to_ops(self, t: np.ndarray) -> np.ndarray:
        return np.interp(t, self.days, self.ops)

    def to_cal(self, u: np.ndarray) -> np.ndarray:
        # Beyond the grid (far past the window) any value past the end is as good as another.
        return np.interp(u, self.ops, self.days, right=np.inf)


# ----------------------------------------------------------------------------- catalog


@dataclass(frozen=True)
class Catalog:
    """Products: KRW price, brand, and the price-sorted order used to pick 'nearby' items."""

    price: np.ndarray  # by product code (product id = P{code + 1:05d})
    brand: np.ndarray  # brand code by product code
    by_price: np.ndarray  # product codes sorted by price
    sorted_price: np.ndarray
    high: np.ndarray  # product codes priced ≥ HIGH_PRICE_LINE

    def near(self, rng: np.random.Generator, target: np.ndarray) -> np.ndarray:
        """Product codes priced close to each target price (a few neighbours apart)."""
        rank = np.searchsorted(self.sorted_price, target) + rng.integers(-8, 9, target.size)
        return self.by_price[np.clip(rank, 0, self.price.size - 1)]

    def pick_high(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Uniformly chosen high-price products."""
        return self.high[rng.integers(0, self.high.size, n)]


def make_catalog(seed: int) -> Catalog:
    """Lognormal KRW body (median ~₩30,000) plus a ₩1M-₩5M tail, with brands."""
    rng = _rng(seed, 2)
    n_high = int(round(N_PRODUCTS * HIGH_PRICE_SHARE))
    body = np.exp(rng.normal(np.log(BODY_MEDIAN_PRICE), 0.9, N_PRODUCTS - n_high))
    body = np.clip(body, 1_000, 900_000)
    # Shop prices end in 900 (₩29,900) above ₩10,000, round hundreds below.
    body = np.where(body >= 10_000, np.ceil(body / 1_000) * 1_000 - 100, np.round(body, -2))
    high = np.exp(rng.normal(np.log(1_600_000), 0.4, n_high))
    high = np.minimum(np.ceil(np.maximum(high, HIGH_PRICE_LINE) / 10_000) * 10_000, 5_000_000)
    price = rng.permutation(np.concatenate([body, high]))  # ids do not reveal price
    is_high = price >= HIGH_PRICE_LINE
    brand = np.where(
        is_high,
        rng.integers(N_BRANDS - LUXURY_BRANDS, N_BRANDS, N_PRODUCTS),
        rng.integers(0, N_BRANDS - LUXURY_BRANDS, N_PRODUCTS),
    )
    by_price = np.argsort(price, kind="stable")
    return Catalog(price, brand, by_price, price[by_price], np.flatnonzero(is_high))


# ----------------------------------------------------------------------------- archetypes


def _assign(customers: int, seed: int) -> np.ndarray:
    """Archetype index per customer (its own random stream, shared by both callers)."""
    shares = np.array([a.share for a in ARCHETYPES])
    return _rng(seed, 0).choice(len(ARCHETYPES), size=customers, p=shares / shares.sum())


def archetypes(customers: int, seed: int) -> pd.Series:
    """The planted archetype of each customer of `generate_shop(customers, seed)`."""
    names = np.array(ARCHETYPE_NAMES, dtype=object)[_assign(customers, seed)]
    index = pd.Index(customer_ids(customers), name="customer_id")
    return pd.Series(pd.array(names, dtype="string"), index=index, name="archetype")


# ----------------------------------------------------------------------------- events


@dataclass
class _Events:
    """Integer-coded events of one chunk, before ids are formatted."""

    order_cust: list[np.ndarray]
    order_time: list[np.ndarray]  # calendar days since start
    order_amount: list[np.ndarray]
    line_order: list[np.ndarray]  # index into this chunk's concatenated orders
    line_no: list[np.ndarray]
    line_product: list[np.ndarray]
    line_qty: list[np.ndarray]
    view_cust: list[np.ndarray]
    view_time: list[np.ndarray]
    view_product: list[np.ndarray]
    n_orders: int = 0

    @classmethod
    def empty(cls) -> _Events:
        return cls(*([] for _ in range(10)))


def _renewal(
    rng: np.random.Generator, a: Archetype, first: np.ndarray, gap: np.ndarray, stop: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Order times (operational days) of a renewal process per customer, cut at `stop`.

    Returns (customer row, order number k, time). Gaps are drawn in blocks only for the
    customers still active, so fast buyers cost more than slow ones and nothing is wasted.
    """
    rows = np.flatnonzero(first < stop)
    out_rows, out_k, out_u = [rows], [np.zeros(rows.size, np.int64)], [first[rows]]
    last, k, block = first[rows], 1, 8
    while rows.size and k < a.max_orders:
        ks = k + np.arange(min(block, a.max_orders - k))
        mean = np.maximum(gap[rows, None] * a.gap_trend ** ks[None, :], a.min_gap)
        noise = rng.gamma(a.gap_shape, 1.0 / a.gap_shape, mean.shape)
        u = last[:, None] + np.cumsum(mean * noise, axis=1)
        keep = u < stop[rows, None]  # a prefix of each row: times increase
        r, c = np.nonzero(keep)
        out_rows.append(rows[r])
        out_k.append(ks[c])
        out_u.append(u[r, c])
        more = keep[:, -1]
        rows, last, k = rows[more], u[more, -1], k + ks.size
    return np.concatenate(out_rows), np.concatenate(out_k), np.concatenate(out_u)


def _lines(
    rng: np.random.Generator,
    a: Archetype,
    catalog: Catalog,
    level: np.ndarray,
    own_product: np.ndarray,
    rows: np.ndarray,
    k: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Order lines of the given orders: (order index, line number, product code, quantity)."""
    n = rows.size
    if a.reseller:
        n_lines = 1 + (rng.random(n) < 0.3)
    else:
        n_lines = 1 + rng.choice(len(LINES_P), size=n, p=LINES_P)
    order = np.repeat(np.arange(n), n_lines)
    starts = np.cumsum(n_lines) - n_lines
    line_no = np.arange(order.size) - np.repeat(starts, n_lines)
    trend = a.value_trend ** np.minimum(k[order], 15)
    target = level[rows[order]] * trend * np.exp(rng.normal(0.0, LINE_PRICE_SIGMA, order.size))
    product = catalog.near(rng, target)
    qty = 1.0 + rng.choice(len(QUANTITY_P), size=order.size, p=QUANTITY_P)
    main = line_no == 0
    high = main & (rng.random(order.size) < a.high_price_orders)
    product[high] = catalog.pick_high(rng, int(high.sum()))
    qty[high] = 1.0
    if a.reseller:
        lo, hi = np.log(RESELLER_UNITS[0]), np.log(RESELLER_UNITS[1])
        product[main] = own_product[rows[order[main]]]
        qty[main] = np.round(np.exp(rng.uniform(lo, hi, int(main.sum()))))
    return order, line_no, product, qty


def _browse(
    rng: np.random.Generator,
    catalog: Catalog,
    level: np.ndarray,
    high_browser: np.ndarray,
    cust: np.ndarray,
) -> np.ndarray:
    """Products viewed by customers `cust` while browsing: near their level, or high-price."""
    target = level[cust] * np.exp(rng.normal(0.0, 0.7, cust.size))
    product = catalog.near(rng, target)
    high = high_browser[cust] & (rng.random(cust.size) < HIGH_BROWSE_FOCUS)
    product[high] = catalog.pick_high(rng, int(high.sum()))
    return product


def _uniform_views(
    rng: np.random.Generator, clock: _Clock, lo: np.ndarray, hi: np.ndarray, rate: float
) -> tuple[np.ndarray, np.ndarray]:
    """Background views: Poisson count per customer over [lo, hi), seasonal like purchases."""
    u_lo, u_hi = clock.to_ops(lo), clock.to_ops(np.maximum(hi, lo))
    counts = rng.poisson(rate * (u_hi - u_lo))
    cust = np.repeat(np.arange(lo.size), counts)
    u = u_lo[cust] + rng.random(cust.size) * (u_hi - u_lo)[cust]
    return cust, np.clip(clock.to_cal(u), lo[cust], np.maximum(hi, lo)[cust])


def _group(
    rng: np.random.Generator,
    a: Archetype,
    catalog: Catalog,
    clock: _Clock,
    window: float,
    cust_global: np.ndarray,
    signup: np.ndarray,
    ev: _Events,
) -> None:
    """Simulate one archetype's customers of one chunk and append their events to `ev`."""
    n = cust_global.size
    begin = np.maximum(signup, 0.0)  # nothing is recorded before the window starts
    u_begin = clock.to_ops(begin)
    u_end = clock.to_ops(np.array([window]))[0]
    level = np.exp(rng.normal(np.log(a.price), a.price_sigma, n))
    high_browser = rng.random(n) < a.high_browsers
    gap = np.exp(rng.normal(np.log(a.gap), a.gap_sigma, n))
    pre = signup < 0
    first_off = rng.exponential(a.first_delay, n)
    # Long-standing members are mid-history at the window start: their next order is a
    # residual gap away (a one-time buyer's single order falls anywhere in the window).
    pre_span = window if a.max_orders == 1 else gap
    first_off[pre] = rng.random(int(pre.sum())) * np.broadcast_to(pre_span, n)[pre]
    u_first = u_begin + first_off
    buys = rng.random(n) < np.where(high_browser, a.convert_high, a.convert_low)
    if a.max_orders == 0:
        buys[:] = False
    u_first[~buys] = np.inf
    life = rng.exponential(a.life, n)
    life[rng.random(n) < a.stays] = np.inf
    # Dropout: the customer stops after a personal lifetime (buy-till-you-die).
    u_death = np.where(buys, u_first, u_begin) + life
    stop = np.minimum(u_death, u_end)

    own_product = catalog.near(rng, level) if a.reseller else np.zeros(n, np.int64)
    if a.max_orders:
        rows, k, u = _renewal(rng, a, u_first, gap, stop)
    else:
        rows, k, u = (np.zeros(0, np.int64),) * 2 + (np.zeros(0),)
    # Clamp the round trip through the clock: never before sign-up, never at the end.
    t = np.clip(clock.to_cal(u), begin[rows], np.nextafter(window, 0))
    order, line_no, product, qty = _lines(rng, a, catalog, level, own_product, rows, k)
    amount = np.bincount(order, weights=qty * catalog.price[product], minlength=rows.size)
    ev.order_cust.append(cust_global[rows])
    ev.order_time.append(t)
    ev.order_amount.append(amount)
    ev.line_order.append(order + ev.n_orders)
    ev.line_no.append(line_no)
    ev.line_product.append(product)
    ev.line_qty.append(qty)
    ev.n_orders += rows.size

    # Views of the purchased products shortly before most orders.
    viewed = np.flatnonzero(rng.random(rows.size) < PRE_ORDER_VIEW_SHARE)
    per = rng.integers(1, 6, viewed.size)
    v_order = np.repeat(viewed, per)
    n_lines = np.bincount(order, minlength=rows.size)
    first_line = np.cumsum(n_lines) - n_lines
    pick = first_line[v_order] + (rng.random(v_order.size) * n_lines[v_order]).astype(np.int64)
    room = np.clip(t[v_order] - begin[rows[v_order]], 0.0, PRE_ORDER_VIEW_DAYS)
    ev.view_cust.append(cust_global[rows[v_order]])
    ev.view_time.append(t[v_order] - rng.random(v_order.size) * room)
    ev.view_product.append(product[pick])

    # Background browsing at the customer's price level while active.
    view_end = np.minimum(clock.to_cal(u_death) + (30.0 if a.max_orders else 0.0), window)
    view_end = np.minimum(view_end, np.nextafter(window, 0))
    vc, vt = _uniform_views(rng, clock, begin, view_end, a.view_rate)
    ev.view_cust.append(cust_global[vc])
    ev.view_time.append(vt)
    ev.view_product.append(_browse(rng, catalog, level, high_browser, vc))

    # Converters' browsing intensifies before the first order (density rising towards it).
    if a.convert_low < 1.0 or a.convert_high < 1.0:
        conv = np.flatnonzero(np.isfinite(u_first) & (u_first < u_end))
        t_first = np.clip(clock.to_cal(u_first[conv]), begin[conv], np.nextafter(window, 0))
        per = rng.poisson(RAMP_VIEWS, conv.size)
        rc = np.repeat(np.arange(conv.size), per)
        room = np.clip(t_first - begin[conv], 0.0, RAMP_DAYS)[rc]
        back = (1.0 - np.sqrt(rng.random(rc.size))) * room
        ev.view_cust.append(cust_global[conv[rc]])
        ev.view_time.append(t_first[rc] - back)
        ev.view_product.append(_browse(rng, catalog, level, high_browser, conv[rc]))


def _signups(rng: np.random.Generator, a: Archetype, n: int, window: float) -> np.ndarray:
    """Sign-up days since start: long-standing members before it, the rest through the window."""
    pre = rng.random(n) < a.pre_window
    return np.where(pre, -rng.random(n) * a.pre_years * 365.0 - 1e-6, rng.random(n) * window)


# ----------------------------------------------------------------------------- campaigns


@dataclass
class _Coded:
    """Integer-coded events of the whole shop (customer codes, days since start)."""

    orders: tuple[np.ndarray, np.ndarray, np.ndarray]  # customer, day, amount
    lines: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # order, line no, product, qty
    views: tuple[np.ndarray, np.ndarray, np.ndarray]  # customer, day, product

    def astuple(self) -> tuple[tuple, tuple, tuple]:
        return self.orders, self.lines, self.views


@dataclass(frozen=True)
class CampaignPlan:
    """One planted past campaign: when (share of the data window), whom, and its offer."""

    name: str
    at: float  # start, as a share of the data window
    segment: str  # a rule of `_segment`, evaluated on the history before the start
    offer: str
    coupon_rate: float
    coupon_cap: float
    holdout_share: float
    days: int = 28  # the attribution window [start, start + days)
    # the `campaigns.segment` logged, when the campaign targeted what a dangol segment names
    # (the what-if matches measured uplift to segments by this name); default: the rule
    logged_segment: str | None = None


CAMPAIGN_PLANS: tuple[CampaignPlan, ...] = (
    CampaignPlan("Come back in spring", 0.17, "lapsed_repeaters", "15% off the next order",
                 0.15, 30_000, 0.15),
    CampaignPlan("First-purchase welcome", 0.34, "browsers_never_bought",
                 "10% off the first order", 0.10, 50_000, 0.20,
                 logged_segment="high_price_browsers"),
    CampaignPlan("Second-order nudge", 0.55, "one_time_buyers", "10% off the second order",
                 0.10, 20_000, 0.10),
    CampaignPlan("VIP thank-you", 0.67, "high_spenders", "gift and 5% coupon pack",
                 0.05, 50_000, 0.15),
    CampaignPlan("Summer reactivation", 0.80, "lapsed_repeaters", "15% off the next order",
                 0.15, 30_000, 0.15),
    CampaignPlan("Autumn for every active buyer", 0.88, "active_last_year",
                 "10% off, this month only", 0.10, 30_000, 0.20, logged_segment="active"),
)  # fmt: skip
PERSONAS: tuple[str, ...] = ("persuadable", "sure_thing", "lost_cause", "sleeping_dog")
# P(persona) by archetype, in PERSONAS order: one persona per customer, for every campaign.
PERSONA_P: dict[str, tuple[float, float, float, float]] = {
    "browse_only": (0.0, 0.0, 1.0, 0.0),
    "late_converter": (0.5, 0.0, 0.5, 0.0),
    "one_time": (0.0, 0.0, 1.0, 0.0),
    "one_time_high": (0.0, 0.0, 1.0, 0.0),
    "steady": (0.35, 0.45, 0.0, 0.2),
    "accelerating": (0.5, 0.5, 0.0, 0.0),
    "fading": (0.8, 0.0, 0.2, 0.0),
    "vip_high_aov": (0.0, 0.6, 0.0, 0.4),
    "vip_new_big": (0.0, 0.6, 0.0, 0.4),
    "vip_steady": (0.0, 0.4, 0.0, 0.6),
    "reseller": (0.0, 0.0, 1.0, 0.0),
}
PERSUADE_P = 0.35  # a treated persuadable places one extra order in the window
SULK_P = 0.6  # a treated sleeping dog postpones its window orders past the window
CONTACT_HOUR = 10.0 / 24.0  # contacts go out at 10:00 on the start day
MIN_CAMPAIGN_CONTACTS = 20


def _segment(
    rule: str, day: float, signup: np.ndarray, events: _Coded, customers: int
) -> np.ndarray:
    """Customer codes matching a campaign's segment rule on the history before `day`."""
    cust, t, amount = events.orders
    before = t < day
    n_before = np.bincount(cust[before], minlength=customers)
    last = np.full(customers, -np.inf)
    np.maximum.at(last, cust[before], t[before])
    since = day - last
    recent = before & (t >= day - 182)
    spend = np.bincount(cust[recent], weights=amount[recent], minlength=customers)
    v_cust, v_t, _ = events.views
    viewed = np.zeros(customers, bool)
    viewed[v_cust[(v_t < day) & (v_t >= day - 60)]] = True
    member = signup < day - 14
    match = {
        "lapsed_repeaters": (n_before >= 2) & (since >= 60) & (since <= 365),
        "browsers_never_bought": (n_before == 0) & viewed & member,
        "one_time_buyers": (n_before == 1) & (since >= 30) & (since <= 180),
        "high_spenders": spend >= 600_000,
        "active_last_year": (n_before >= 1) & (since <= 365),
    }[rule]
    return np.flatnonzero(match & (signup < day))


def _price_level(events: _Coded, customers: int) -> np.ndarray:
    """Each customer's median bought (else viewed) unit price: the level of extra orders."""
    cust, _, _ = events.orders
    l_order, _, l_prod, _ = events.lines
    v_cust, _, v_prod = events.views
    level = np.full(customers, BODY_MEDIAN_PRICE * 1.3)
    for who, product in ((v_cust, v_prod), (cust[l_order], l_prod)):  # bought wins
        if who.size:
            med = pd.Series(product).groupby(who).median()
            level[med.index.to_numpy()] = med.to_numpy()
    return level


@dataclass
class PlantedCampaigns:
    """The events with the campaigns' effects applied, and the logs and truth they leave."""

    events: _Coded
    campaigns: list[dict]
    contacts: pd.DataFrame  # codes: campaign, customer, treated, persona, y0, y1

    def contacts_frame(self, start: pd.Timestamp) -> pd.DataFrame:
        """The contract `contacts` table."""
        c = self.contacts
        ids = pa.array(customer_ids(int(c["customer"].max()) + 1 if len(c) else 0))
        names = np.array([k["campaign_id"] for k in self.campaigns] or [""], dtype=object)
        days = np.array([k["day"] for k in self.campaigns] or [0.0])[c["campaign"]]
        return pd.DataFrame(
            {
                "campaign_id": pd.array(names[c["campaign"]], dtype="string"),
                "customer_id": pd.array(ids.take(pa.array(c["customer"])), dtype="string"),
                "group": pd.array(np.where(c["treated"], "treated", "holdout"), dtype="string"),
                "contacted_at": _to_time(start, _seconds(days + CONTACT_HOUR)),
                "coupon_id": pd.array(names[c["campaign"]], dtype="string") + "-CPN",
            }
        )

    def campaigns_frame(self, start: pd.Timestamp) -> pd.DataFrame:
        """The contract `campaigns` table."""
        k = pd.DataFrame(self.campaigns, columns=[*CAMPAIGN_COLUMNS, "day", "days"])
        frame = pd.DataFrame(
            {
                "campaign_id": pd.array(k["campaign_id"], dtype="string"),
                "name": pd.array(k["name"], dtype="string"),
                "started_at": _to_time(start, _seconds(k["day"].to_numpy(dtype="float64"))),
                "ends_at": _to_time(
                    start, _seconds((k["day"] + k["days"]).to_numpy(dtype="float64"))
                ),
                "segment": pd.array(k["segment"], dtype="string"),
                "offer": pd.array(k["offer"], dtype="string"),
                "coupon_rate": k["coupon_rate"].astype("float64"),
                "coupon_cap": k["coupon_cap"].astype("float64"),
            }
        )
        return frame

    def truth_frame(self, start: pd.Timestamp) -> pd.DataFrame:
        """Per (campaign, customer): group, persona and the potential outcomes y0, y1."""
        contacts = self.contacts_frame(start)
        c = self.contacts
        return pd.DataFrame(
            {
                "campaign_id": contacts["campaign_id"],
                "customer_id": contacts["customer_id"],
                "group": contacts["group"],
                "persona": pd.array(np.array(PERSONAS, dtype=object)[c["persona"]], "string"),
                "y0": c["y0"].to_numpy(dtype="int64"),
                "y1": c["y1"].to_numpy(dtype="int64"),
            }
        )


CAMPAIGN_COLUMNS = ("campaign_id", "name", "segment", "offer", "coupon_rate", "coupon_cap")


def _extra_orders(
    rng: np.random.Generator,
    catalog: Catalog,
    level: np.ndarray,
    who: np.ndarray,
    lo: float,
    hi: float,
    signup: np.ndarray,
) -> tuple[tuple, tuple, tuple]:
    """Orders (with lines and a view of each line the day before) for customers `who`."""
    n = who.size
    t = rng.uniform(lo, hi, n)
    n_lines = 1 + rng.choice(len(LINES_P), size=n, p=LINES_P)
    order = np.repeat(np.arange(n), n_lines)
    line_no = np.arange(order.size) - np.repeat(np.cumsum(n_lines) - n_lines, n_lines)
    target = level[who[order]] * np.exp(rng.normal(0.0, LINE_PRICE_SIGMA, order.size))
    product = catalog.near(rng, target)
    qty = 1.0 + rng.choice(len(QUANTITY_P), size=order.size, p=QUANTITY_P)
    amount = np.bincount(order, weights=qty * catalog.price[product], minlength=n)
    seen = t[order] - rng.random(order.size) * np.clip(
        t[order] - np.maximum(signup[who[order]], 0), 0, 1
    )
    return (who, t, amount), (order, line_no, product, qty), (who[order], seen, product)


def plant_campaigns(
    events: _Coded,
    kind: np.ndarray,
    signup: np.ndarray,
    catalog: Catalog,
    seed: int,
    start: pd.Timestamp,
    window: float,
) -> PlantedCampaigns:
    """Run CAMPAIGN_PLANS in time order on the coded events (docs/synthetic_shop.md).

    Each campaign contacts its segment at its start, holds out a random share, and changes
    the treated customers' orders in its window by persona: a persuadable adds an order with
    P = PERSUADE_P, a sleeping dog puts its window orders off until after the window with
    P = SULK_P (each moves `days` later), sure things and lost causes behave as they would
    have. Potential outcomes are drawn for both groups.
    """
    customers = kind.size
    p = np.array([PERSONA_P[name] for name in ARCHETYPE_NAMES])
    persona_rng = _rng(seed, 3)
    cum = p.cumsum(axis=1)[kind]
    persona = (persona_rng.random(customers)[:, None] >= cum).sum(axis=1).clip(0, 3)
    level = _price_level(events, customers)
    logged, rows = [], []
    for index, plan in enumerate(CAMPAIGN_PLANS):
        day = float(np.floor(plan.at * window))
        if day + plan.days > window - 1:
            continue  # the data window is too short for this campaign
        who = _segment(plan.segment, day, signup, events, customers)
        if who.size < MIN_CAMPAIGN_CONTACTS:
            continue
        rng = _rng(seed, 4, index)
        treated = rng.random(who.size) >= plan.holdout_share
        lo, hi = day + CONTACT_HOUR, day + plan.days
        cust, t, amount = events.orders
        in_window = (t >= day) & (t < hi)
        y0 = np.zeros(customers, bool)
        y0[cust[in_window]] = True
        extra = (persona[who] == 0) & (rng.random(who.size) < PERSUADE_P)
        sulk = (persona[who] == 3) & (rng.random(who.size) < SULK_P)
        y1 = (y0[who] | extra) & ~sulk
        campaign_id = f"K{(start + pd.Timedelta(days=day)):%y%m}"
        if any(k["campaign_id"] == campaign_id for k in logged):  # a short data window
            campaign_id = f"{campaign_id}-{index + 1}"
        logged.append(
            dict(
                zip(
                    CAMPAIGN_COLUMNS,
                    (campaign_id, plan.name, plan.logged_segment or plan.segment, plan.offer,
                     plan.coupon_rate, plan.coupon_cap),
                    strict=True,
                ),
                day=day,
                days=plan.days,
            )
        )  # fmt: skip
        rows.append(
            pd.DataFrame(
                {
                    "campaign": len(logged) - 1,
                    "customer": who,
                    "treated": treated,
                    "persona": persona[who],
                    "y0": y0[who],
                    "y1": y1,
                }
            )
        )
        sulking = np.zeros(customers, bool)
        sulking[who[treated & sulk]] = True
        delay = np.where(in_window & sulking[cust], float(plan.days), 0.0)
        added = _extra_orders(rng, catalog, level, who[treated & extra], lo, hi, signup)
        events = _apply(events, delay, window, added)
    contacts = (
        pd.concat(rows, ignore_index=True)
        if rows
        else pd.DataFrame(
            {"campaign": [], "customer": [], "treated": [], "persona": [], "y0": [], "y1": []}
        ).astype({"campaign": "int64", "customer": "int64", "persona": "int64"})
    )
    return PlantedCampaigns(events, logged, contacts)


def _apply(events: _Coded, delay: np.ndarray, window: float, extra: tuple) -> _Coded:
    """Postpone orders by `delay` days (dropping those pushed past the data end, with their
    lines), then append the `extra` orders."""
    (cust, t, amount), (l_order, l_no, l_prod, l_qty), views = events.astuple()
    t = t + delay
    keep = t < window
    new_index = np.cumsum(keep) - 1
    line_keep = keep[l_order]
    (e_cust, e_t, e_amount), (e_order, e_no, e_prod, e_qty), (ev_cust, ev_t, ev_prod) = extra
    base = int(keep.sum())
    return _Coded(
        orders=(
            np.concatenate([cust[keep], e_cust]),
            np.concatenate([t[keep], e_t]),
            np.concatenate([amount[keep], e_amount]),
        ),
        lines=(
            np.concatenate([new_index[l_order[line_keep]], e_order + base]),
            np.concatenate([l_no[line_keep], e_no]),
            np.concatenate([l_prod[line_keep], e_prod]),
            np.concatenate([l_qty[line_keep], e_qty]),
        ),
        views=(
            np.concatenate([views[0], ev_cust]),
            np.concatenate([views[1], ev_t]),
            np.concatenate([views[2], ev_prod]),
        ),
    )


# ----------------------------------------------------------------------------- assembly


def _seconds(days: np.ndarray) -> np.ndarray:
    """Calendar days since start -> whole seconds since start, floored (keeps order)."""
    return np.floor(days * 86_400.0).astype(np.int64)


def _to_time(start: pd.Timestamp, seconds: np.ndarray) -> np.ndarray:
    """Seconds since start -> tz-naive datetime64[ns]."""
    return (start.asm8.astype("datetime64[s]") + seconds.astype("timedelta64[s]")).astype(
        "datetime64[ns]"
    )


def _cat(parts: list[np.ndarray], dtype: str) -> np.ndarray:
    """Concatenate chunk arrays and empty the list, so the parts are freed (peak memory)."""
    out = np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)
    parts.clear()
    return out


def generate_shop(
    customers: int,
    seed: int,
    start: str = "2024-01-01",
    end: str = "2026-01-01",
    progress: Progress | None = None,
) -> ShopTables:
    """The synthetic shop's contract tables, identical for identical arguments.

    Orders, order lines, views and customers, plus the logged campaigns (`campaigns`,
    `contacts`) whose planted effects are already in the orders.
    """
    return _generate(customers, seed, start, end, progress)[0]


def campaign_truth(
    customers: int, seed: int, start: str = "2024-01-01", end: str = "2026-01-01"
) -> pd.DataFrame:
    """The planted truth of `generate_shop(customers, seed, start, end)`'s campaigns.

    One row per (campaign, contacted customer): group, persona, and the potential outcomes
    `y0` (bought in the window without the campaign) and `y1` (bought if treated); the true
    uplift of a set of customers is mean(y1 − y0). Not part of the contract tables.
    """
    return _generate(customers, seed, start, end, None)[1]


def _generate(
    customers: int, seed: int, start: str, end: str, progress: Progress | None
) -> tuple[ShopTables, pd.DataFrame]:
    """The shop and its campaigns' truth (see generate_shop and campaign_truth)."""
    if customers <= 0:
        raise ValueError(f"customers must be positive, got {customers}")
    t0, t1 = pd.Timestamp(start), pd.Timestamp(end)
    if t1 <= t0:
        raise ValueError(f"end {end} must be after start {start}")
    window = (t1 - t0) / pd.Timedelta(days=1)
    say = progress or (lambda _msg: None)
    catalog = make_catalog(seed)
    clock = _Clock.build(t0, window, max(a.pre_years for a in ARCHETYPES))
    kind = _assign(customers, seed)
    signup = np.empty(customers)
    cust, o_time, o_amount, l_order, l_no, l_prod, l_qty = ([] for _ in range(7))
    v_cust, v_time, v_prod = [], [], []
    offset = 0
    n_chunks = -(-customers // CHUNK)
    for c in range(n_chunks):
        lo, hi = c * CHUNK, min((c + 1) * CHUNK, customers)
        rng = _rng(seed, 1, c)
        ev = _Events.empty()
        for i, a in enumerate(ARCHETYPES):
            members = lo + np.flatnonzero(kind[lo:hi] == i)
            signup[members] = _signups(rng, a, members.size, window)
            _group(rng, a, catalog, clock, window, members, signup[members], ev)
        cust += ev.order_cust
        o_time += ev.order_time
        o_amount += ev.order_amount
        l_order += [x + offset for x in ev.line_order]
        l_no += ev.line_no
        l_prod += ev.line_product
        l_qty += ev.line_qty
        v_cust += ev.view_cust
        v_time += ev.view_time
        v_prod += ev.view_product
        offset += ev.n_orders
        say(f"synthetic shop: chunk {c + 1}/{n_chunks} ({hi:,} customers, {offset:,} orders)")
    events = _Coded(
        orders=(_cat(cust, "int64"), _cat(o_time, "float64"), _cat(o_amount, "float64")),
        lines=(_cat(l_order, "int64"), _cat(l_no, "int64"), _cat(l_prod, "int64"),
               _cat(l_qty, "float64")),
        views=(_cat(v_cust, "int64"), _cat(v_time, "float64"), _cat(v_prod, "int64")),
    )  # fmt: skip
    planted = plant_campaigns(events, kind, signup, catalog, seed, t0, window)
    say(f"synthetic shop: {len(planted.campaigns)} campaigns, {len(planted.contacts):,} contacts")
    tables = _assemble(t0, catalog, signup, *planted.events.astuple())
    tables.contacts, tables.campaigns = planted.contacts_frame(t0), planted.campaigns_frame(t0)
    return tables, planted.truth_frame(t0)


def _assemble(
    start: pd.Timestamp,
    catalog: Catalog,
    signup: np.ndarray,
    orders: tuple[np.ndarray, np.ndarray, np.ndarray],
    lines: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    views: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> ShopTables:
    """Sort the coded events, format ids, and build frames with the contract dtypes."""
    cids = pa.array(customer_ids(signup.size))
    pids = pa.array(_ids("P", np.arange(1, N_PRODUCTS + 1), 5))
    brands = pa.array(_ids("B", np.arange(1, N_BRANDS + 1), 3))

    def take(ids: pa.Array, codes: np.ndarray) -> pd.arrays.ArrowStringArray:
        return pd.array(ids.take(pa.array(codes)), dtype="string")

    n_cust = signup.size
    o_cust, o_days, o_amount = orders
    o_sec = _seconds(o_days)
    o_time = _to_time(start, o_sec)
    # Order ids follow time (ties by customer), as a shop's order numbers would. One int64
    # key and a stable sort beat a multi-key lexsort by far at millions of rows.
    o_sort = np.argsort(o_sec * n_cust + o_cust, kind="stable")
    rank = np.empty_like(o_sort)
    rank[o_sort] = np.arange(o_sort.size)
    oids = pa.array(_ids("O", np.arange(1, o_sort.size + 1), 8))
    orders_df = pd.DataFrame(
        {
            "order_id": pd.array(oids, dtype="string"),
            "customer_id": take(cids, o_cust[o_sort]),
            "ordered_at": o_time[o_sort],
            "amount": o_amount[o_sort],
        }
    )
    l_order, l_no, l_prod, l_qty = lines
    l_rank = rank[l_order]
    l_sort = np.argsort(l_rank * 8 + l_no, kind="stable")  # at most 5 lines per order
    items_df = pd.DataFrame(
        {
            "order_id": take(oids, l_rank[l_sort]),
            "product_id": take(pids, l_prod[l_sort]),
            "quantity": l_qty[l_sort],
            "unit_price": catalog.price[l_prod[l_sort]],
            "customer_id": take(cids, o_cust[l_order[l_sort]]),
            "ordered_at": o_time[l_order[l_sort]],
        }
    )
    v_cust, v_days, v_prod = views
    v_sec = _seconds(v_days)
    v_time = _to_time(start, v_sec)
    v_sort = np.argsort(v_sec * n_cust + v_cust, kind="stable")
    views_df = pd.DataFrame(
        {
            "customer_id": take(cids, v_cust[v_sort]),
            "viewed_at": v_time[v_sort],
            "product_id": take(pids, v_prod[v_sort]),
            "price": catalog.price[v_prod[v_sort]],
            "brand": take(brands, catalog.brand[v_prod[v_sort]]),
        }
    )
    customers_df = pd.DataFrame(
        {
            "customer_id": pd.array(cids, dtype="string"),
            "signed_up_at": _to_time(start, _seconds(signup)),
        }
    )
    tables = ShopTables(
        orders=orders_df, customers=customers_df, order_items=items_df, content_views=views_df
    )
    for name, frame in tables.present().items():
        expected = SCHEMAS[name].columns
        assert all(str(frame[c].dtype) == expected[c] for c in frame), name
    return tables


# ----------------------------------------------------------------------------- output


def write_shop(tables: ShopTables, out_dir: Path) -> dict[str, Path]:
    """Write each table as <name>.parquet atomically (temp file in the same dir, then rename)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, frame in tables.present().items():
        final = out_dir / f"{name}.parquet"
        paths[name] = write_atomic(
            final, lambda staging, f=frame: f.to_parquet(staging, index=False)
        )
    return paths


# ----------------------------------------------------------------------------- realism


def _trailing_spend_at_orders(orders: pd.DataFrame, window_days: int) -> pd.DataFrame:
    """Each order with its customer's spend over [ordered_at - window, ordered_at]."""
    o = orders.sort_values(["customer_id", "ordered_at"], kind="stable")
    code = pd.factorize(o["customer_id"])[0].astype(np.int64)
    secs = o["ordered_at"].to_numpy().astype("datetime64[s]").astype(np.int64)
    span = 10 * 366 * 86_400  # keys keep customers apart: longer than any history
    key = code * span + (secs - secs.min())
    left = np.searchsorted(key, key - window_days * 86_400, side="left")
    cum = np.concatenate([[0.0], np.cumsum(o["amount"].to_numpy())])
    o = o.assign(trailing=cum[np.arange(len(o)) + 1] - cum[left])
    return o


def _top_share(orders: pd.DataFrame, top: float = 0.1) -> float:
    """Share of sales made by the top `top` fraction of the buying customers (DESIGN §1)."""
    total = orders.groupby("customer_id").amount.sum().sort_values(ascending=False)
    return float(total.iloc[: int(np.ceil(top * len(total)))].sum() / total.sum())


def realism(
    tables: ShopTables,
    cutoff: str,
    horizon_days: int = 90,
    vip_line: float = 2_000_000.0,
    window_days: int = 182,
) -> dict[str, float]:
    """Headline rates of the shop at one cutoff, to check it against real-shop targets."""
    t = pd.Timestamp(cutoff)
    h = t + pd.Timedelta(days=horizon_days)
    orders, views, cust = tables.orders, tables.content_views, tables.customers
    assert views is not None and cust is not None
    before, after = (
        orders[orders.ordered_at < t],
        orders[orders.ordered_at.between(t, h, inclusive="left")],
    )
    buyers = pd.Index(before.customer_id.unique())
    bought_again = buyers.isin(after.customer_id.unique())
    # VIP conversion: known, non-VIP members whose trailing spend reaches the line in [t, t+H).
    known = pd.Index(cust.customer_id[cust.signed_up_at < t])
    spend = before[before.ordered_at >= t - pd.Timedelta(days=window_days)]
    spend = spend.groupby("customer_id").amount.sum()
    vip_now = pd.Index(spend.index[spend >= vip_line])
    at = _trailing_spend_at_orders(orders, window_days)
    reached = at[
        at.ordered_at.between(t, h, inclusive="left") & (at.trailing >= vip_line)
    ].customer_id
    non_vip = known.difference(vip_now)
    converted = non_vip.isin(reached.unique())
    # First purchase by browsing price level: members with no order yet, viewing before t.
    vb = views[views.viewed_at < t]
    never = known.difference(buyers)
    share_high = (vb.price >= HIGH_PRICE_LINE).groupby(vb.customer_id).mean()
    share_high = share_high.reindex(never).dropna()
    first = share_high.index.isin(after.customer_id.unique())
    high_b = (share_high >= 0.5).to_numpy()
    year = orders[orders.ordered_at >= orders.ordered_at.max() - pd.Timedelta(days=365)]
    return {
        "customers": float(len(cust)),
        "orders": float(len(orders)),
        "order_items": float(len(tables.order_items) if tables.order_items is not None else 0),
        "content_views": float(len(views)),
        "buyers_before_cutoff": float(len(buyers)),
        "repurchase_rate": float(bought_again.mean()),
        "non_vip_known": float(len(non_vip)),
        "vip_now": float(len(vip_now)),
        "vip_conversions": float(converted.sum()),
        "vip_conversion_rate": float(converted.mean()),
        "first_purchase_rate_high_browsers": float(first[high_b].mean()),
        "first_purchase_rate_other_browsers": float(first[~high_b].mean()),
        "top10_share_of_sales": _top_share(orders),
        "top10_share_of_sales_last_12m": _top_share(year),
    }


def main(argv: list[str] | None = None) -> None:
    """Generate a shop, report timing and realism numbers (and optionally write it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--start", default="2024-01-01")
    parser.add_argument("--end", default="2026-01-01")
    parser.add_argument("--cutoff", default=None, help="default: six months before --end")
    parser.add_argument("--out", type=Path, default=None, help="also write the Parquet files")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    tables = generate_shop(args.customers, args.seed, args.start, args.end, progress=print)
    print(f"generated in {time.perf_counter() - began:.1f} s")
    cutoff = args.cutoff or str((pd.Timestamp(args.end) - pd.DateOffset(months=6)).date())
    print(f"realism at cutoff {cutoff}:")
    for key, value in realism(tables, cutoff).items():
        print(f"  {key:36s} {value:,.4g}")
    if args.out is not None:
        for path in write_shop(tables, args.out).values():
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
