"""The canonical raw-data contract (DESIGN §3.1): table names, columns and their dtypes.

Every loader maps a user's files onto these frames; everything downstream reads only them.
Ids are strings, times are tz-naive timestamps in the shop's own time zone, money is float64
in the shop's currency.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

ID = "string"
TIME = "datetime64[ns]"
MONEY = "float64"
COUNT = "float64"


@dataclass(frozen=True)
class TableSchema:
    """Required and optional columns of one contract table, with canonical dtypes."""

    name: str
    required: dict[str, str]
    optional: dict[str, str] = field(default_factory=dict)
    key: tuple[str, ...] = ()

    @property
    def columns(self) -> dict[str, str]:
        return {**self.required, **self.optional}


CUSTOMERS = TableSchema(
    "customers",
    required={"customer_id": ID, "signed_up_at": TIME},
    key=("customer_id",),
)
ORDERS = TableSchema(
    "orders",
    required={"order_id": ID, "customer_id": ID, "ordered_at": TIME, "amount": MONEY},
    key=("order_id",),
)
ORDER_ITEMS = TableSchema(
    "order_items",
    required={"order_id": ID, "product_id": ID, "quantity": COUNT, "unit_price": MONEY},
    # With these two an order_items table can stand in for a missing orders table.
    optional={"customer_id": ID, "ordered_at": TIME},
)
CONTENT_VIEWS = TableSchema(
    "content_views",
    required={"customer_id": ID, "viewed_at": TIME, "product_id": ID, "price": MONEY},
    optional={"brand": ID},
)

SCHEMAS: dict[str, TableSchema] = {
    s.name: s for s in (CUSTOMERS, ORDERS, ORDER_ITEMS, CONTENT_VIEWS)
}


@dataclass
class ShopTables:
    """The four contract tables of one shop; optional tables may be None."""

    orders: pd.DataFrame
    customers: pd.DataFrame | None = None
    order_items: pd.DataFrame | None = None
    content_views: pd.DataFrame | None = None

    def present(self) -> dict[str, pd.DataFrame]:
        """The tables that exist, by contract name."""
        tables = {
            "customers": self.customers,
            "orders": self.orders,
            "order_items": self.order_items,
            "content_views": self.content_views,
        }
        return {name: df for name, df in tables.items() if df is not None}
