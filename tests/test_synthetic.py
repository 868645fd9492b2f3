"""The synthetic shop: deterministic, contract-clean, and carrying the planted behaviour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.schema import SCHEMAS, ShopTables
from features.synthetic import (
    ARCHETYPE_NAMES,
    HIGH_PRICE_LINE,
    VIP_ARCHETYPES,
    archetypes,
    generate_shop,
    make_catalog,
    write_shop,
)

N, SEED = 2_000, 11
START, END = pd.Timestamp("2024-01-01"), pd.Timestamp("2026-01-01")


@pytest.fixture(scope="module")
def shop() -> ShopTables:
    return generate_shop(N, SEED)


@pytest.fixture(scope="module")
def kinds() -> pd.Series:
    return archetypes(N, SEED)


def _of(frame: pd.DataFrame, kinds: pd.Series, name: str) -> pd.DataFrame:
    return frame[frame.customer_id.map(kinds).eq(name)]


def test_same_seed_same_frames_different_seed_differs(shop: ShopTables) -> None:
    again = generate_shop(N, SEED)
    for name, frame in shop.present().items():
        pd.testing.assert_frame_equal(frame, again.present()[name])
    other = generate_shop(N, SEED + 1)
    assert not other.orders.equals(shop.orders)
    assert not other.customers.equals(shop.customers)


def test_dtypes_match_the_contract(shop: ShopTables) -> None:
    for name, frame in shop.present().items():
        schema = SCHEMAS[name]
        assert set(schema.required) <= set(frame.columns)
        assert set(frame.columns) <= set(schema.columns), name
        for column in frame.columns:
            assert str(frame[column].dtype) == schema.columns[column], (name, column)
    assert list(shop.customers.columns) == ["customer_id", "signed_up_at"]


def test_ids_look_like_a_shop(shop: ShopTables) -> None:
    assert shop.customers.customer_id.str.fullmatch(r"C\d{7}").all()
    assert shop.orders.order_id.str.fullmatch(r"O\d{8}").all()
    assert shop.order_items.product_id.str.fullmatch(r"P\d{5}").all()
    assert shop.customers.customer_id.is_unique and shop.orders.order_id.is_unique
    assert len(shop.customers) == N


def test_events_inside_the_window(shop: ShopTables) -> None:
    for times in (shop.orders.ordered_at, shop.content_views.viewed_at):
        assert times.min() >= START and times.max() < END
    assert shop.customers.signed_up_at.max() < END


def test_order_amount_is_sum_of_lines(shop: ShopTables) -> None:
    items = shop.order_items
    lines = (items.quantity * items.unit_price).groupby(items.order_id).sum()
    amount = shop.orders.set_index("order_id").amount
    assert lines.index.sort_values().equals(amount.index.sort_values())
    assert (lines.reindex(amount.index) == amount).all()
    per_order = items.groupby("order_id").size()
    assert per_order.between(1, 5).all()
    # the optional line columns agree with the order they belong to
    joined = items.merge(shop.orders, on="order_id", suffixes=("", "_o"))
    assert (joined.customer_id == joined.customer_id_o).all()
    assert (joined.ordered_at == joined.ordered_at_o).all()


def test_sign_up_precedes_every_event(shop: ShopTables) -> None:
    events = pd.concat(
        [
            shop.orders[["customer_id", "ordered_at"]].set_axis(["customer_id", "t"], axis=1),
            shop.content_views[["customer_id", "viewed_at"]].set_axis(["customer_id", "t"], axis=1),
        ]
    )
    first = events.groupby("customer_id").t.min()
    signed = shop.customers.set_index("customer_id").signed_up_at.reindex(first.index)
    assert (signed <= first).all()
    # both long-standing members and new members joining through the window
    assert (shop.customers.signed_up_at < START).mean() > 0.1
    joined_months = shop.customers.signed_up_at[shop.customers.signed_up_at >= START]
    assert joined_months.dt.to_period("M").nunique() == 24


def test_catalog_has_a_high_price_tail() -> None:
    catalog = make_catalog(SEED)
    assert 20_000 <= np.median(catalog.price) <= 45_000
    assert 0.02 <= (catalog.price >= HIGH_PRICE_LINE).mean() <= 0.06
    assert catalog.price.max() <= 5_000_000


def test_high_price_products_are_viewed_and_bought(shop: ShopTables) -> None:
    assert (shop.content_views.price >= HIGH_PRICE_LINE).sum() > 100
    assert (shop.order_items.unit_price >= HIGH_PRICE_LINE).sum() > 10
    assert shop.content_views.brand.notna().all()


def test_archetypes_match_generation(kinds: pd.Series, shop: ShopTables) -> None:
    assert kinds.index.equals(pd.Index(shop.customers.customer_id))
    assert set(kinds.unique()) == set(ARCHETYPE_NAMES)
    pd.testing.assert_series_equal(kinds, archetypes(N, SEED))
    assert 0.25 < (kinds == "browse_only").mean() < 0.40


def test_browse_only_members_view_and_never_buy(shop: ShopTables, kinds: pd.Series) -> None:
    browse = kinds.index[kinds == "browse_only"]
    assert not shop.orders.customer_id.isin(browse).any()
    views = _of(shop.content_views, kinds, "browse_only")
    assert views.customer_id.nunique() > 0.5 * len(browse)
    high_share = (views.price >= HIGH_PRICE_LINE).groupby(views.customer_id).mean()
    assert 0.2 < (high_share >= 0.5).mean() < 0.5  # about a third browse ≥ ₩1M items


def test_high_price_browsers_convert_more(shop: ShopTables, kinds: pd.Series) -> None:
    late = kinds.index[kinds == "late_converter"]
    views = shop.content_views[shop.content_views.customer_id.isin(late)]
    high = (views.price >= HIGH_PRICE_LINE).groupby(views.customer_id).mean() >= 0.5
    bought = high.index.isin(shop.orders.customer_id)
    assert bought[high.to_numpy()].mean() > 2 * bought[~high.to_numpy()].mean()


def test_one_time_buyers_buy_once(shop: ShopTables, kinds: pd.Series) -> None:
    for name in ("one_time", "one_time_high"):
        counts = _of(shop.orders, kinds, name).groupby("customer_id").size()
        assert len(counts) > 0 and (counts == 1).all()
    high = _of(shop.orders, kinds, "one_time_high")
    assert (high.amount >= HIGH_PRICE_LINE).all()


def _gap_ratios(orders: pd.DataFrame, min_orders: int) -> np.ndarray:
    """Per customer: mean of the later half of their gaps over the mean of the earlier half."""
    orders = orders.sort_values(["customer_id", "ordered_at"])
    gaps = orders.groupby("customer_id").ordered_at.diff().dt.total_seconds() / 86_400
    ratios = []
    for _, g in orders.assign(gap=gaps).dropna(subset=["gap"]).groupby("customer_id").gap:
        if len(g) >= min_orders - 1:
            half = len(g) // 2
            ratios.append(g.iloc[half:].mean() / g.iloc[:half].mean())
    return np.array(ratios)


def test_accelerating_buyers_gaps_shrink(shop: ShopTables, kinds: pd.Series) -> None:
    ratios = _gap_ratios(_of(shop.orders, kinds, "accelerating"), min_orders=6)
    assert len(ratios) > 10
    assert np.median(ratios) < 0.8


def test_fading_buyers_gaps_grow(shop: ShopTables, kinds: pd.Series) -> None:
    ratios = _gap_ratios(_of(shop.orders, kinds, "fading"), min_orders=4)
    assert len(ratios) > 10
    assert np.median(ratios) > 1.3


def test_resellers_buy_one_product_in_bulk(shop: ShopTables, kinds: pd.Series) -> None:
    items = _of(shop.order_items, kinds, "reseller")
    assert items.customer_id.nunique() > 0
    bulk = items[items.quantity >= 20]
    assert (bulk.groupby("customer_id").product_id.nunique() == 1).all()
    assert (items.groupby("customer_id").quantity.max() >= 20).all()
    assert (bulk.groupby("customer_id").size() >= 2).mean() > 0.5  # repeatedly
    others = shop.order_items[~shop.order_items.customer_id.map(kinds).eq("reseller")]
    assert others.quantity.max() < 20


def _max_trailing_spend(orders: pd.DataFrame, days: int = 182) -> pd.Series:
    """Each customer's highest spend over any window of `days` ending at one of their orders."""
    out = {}
    for cid, g in orders.groupby("customer_id"):
        s = g.set_index("ordered_at").sort_index().amount
        out[cid] = s.rolling(f"{days}D").sum().max()
    return pd.Series(out)


@pytest.mark.parametrize("name", VIP_ARCHETYPES)
def test_vip_archetypes_reach_the_vip_line(shop: ShopTables, kinds: pd.Series, name: str) -> None:
    peak = _max_trailing_spend(_of(shop.orders, kinds, name))
    assert len(peak) >= 5
    assert (peak >= 2_000_000).mean() >= 0.5


def test_most_orders_are_preceded_by_views(shop: ShopTables) -> None:
    items = shop.order_items[["order_id", "customer_id", "product_id", "ordered_at"]]
    views = shop.content_views[["customer_id", "product_id", "viewed_at"]]
    pairs = items.merge(views, on=["customer_id", "product_id"])
    lead = pairs.ordered_at - pairs.viewed_at
    near = pairs[(lead >= pd.Timedelta(0)) & (lead <= pd.Timedelta(days=7))]
    assert near.order_id.nunique() / len(shop.orders) > 0.75


def test_purchases_peak_in_november_december(shop: ShopTables) -> None:
    month = shop.orders.ordered_at.dt.month.value_counts()
    assert month[[11, 12]].mean() > 1.2 * month[[7, 8]].mean()


def test_recency_predicts_repurchase(shop: ShopTables) -> None:
    cutoff = pd.Timestamp("2025-07-01")
    before = shop.orders[shop.orders.ordered_at < cutoff]
    after = shop.orders[shop.orders.ordered_at.between(cutoff, cutoff + pd.Timedelta(days=90))]
    last = before.groupby("customer_id").ordered_at.max()
    again = last.index.isin(after.customer_id)
    recent = (cutoff - last).dt.days.to_numpy() <= 90
    assert again[recent].mean() > 2 * again[~recent].mean()
    assert 0.15 < again.mean() < 0.45


def test_write_shop_writes_all_tables_atomically(shop: ShopTables, tmp_path: Path) -> None:
    paths = write_shop(shop, tmp_path / "out")
    assert set(paths) == {
        "customers",
        "orders",
        "order_items",
        "content_views",
        "contacts",
        "campaigns",
    }
    for name, path in paths.items():
        assert path.name == f"{name}.parquet"
        assert len(pd.read_parquet(path)) == len(shop.present()[name])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        p.name for p in paths.values()
    )  # no temp files left behind
