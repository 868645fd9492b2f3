"""The data fingerprint is stable for equal data and moves with any change."""

from __future__ import annotations

import pandas as pd
import pytest

from features.fingerprint import data_fingerprint
from features.synthetic import generate_shop


@pytest.fixture(scope="module")
def shop():
    return generate_shop(300, seed=2)


def test_equal_data_equal_fingerprint(shop) -> None:
    assert data_fingerprint(shop) == data_fingerprint(generate_shop(300, seed=2))


@pytest.mark.parametrize("change", ["edit", "add", "drop", "drop_table"])
def test_any_change_moves_it(shop, change: str) -> None:
    orders = shop.orders.copy()
    changed = type(shop)(**{**shop.__dict__, "orders": orders})
    if change == "edit":
        orders.loc[0, "amount"] += 1.0
    elif change == "add":
        changed.orders = pd.concat([orders, orders.tail(1)], ignore_index=True)
    elif change == "drop":
        changed.orders = orders.iloc[1:]
    else:
        changed.content_views = None
    assert data_fingerprint(changed) != data_fingerprint(shop)
