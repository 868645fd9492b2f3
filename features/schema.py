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
RATE = "float64"  # a share in [0, 1] (e.g. a coupon's discount rate)


@dataclass(frozen=True)
class TableSchema:
    """Required and optional columns of one contract table, with canonical dtypes."""

    name: str
    required: dict[str, str]
    optional: dict[str, str] = field(default_factory=dict)
    key: tuple[str, ...] = ()
    # column -> the only values it may take (compared after strip and lower-casing)
    allowed: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # (earlier, later) time columns: a row whose `later` precedes its `earlier` is rejected
    ordered: tuple[tuple[str, str], ...] = ()
    # time columns that may lie after the data end (planned dates, not events)
    planned: tuple[str, ...] = ()
    # columns on which rows of one key must agree: when they differ, no row of that key can
    # be trusted (a customer both treated and held out), and all of them are rejected
    agreeing: tuple[str, ...] = ()

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

# Campaign logs (DESIGN §3.8): who a campaign reached and who was held out, and the campaign.
TREATED, HOLDOUT = "treated", "holdout"
CONTACTS = TableSchema(
    "contacts",
    required={"campaign_id": ID, "customer_id": ID, "group": ID, "contacted_at": TIME},
    optional={"coupon_id": ID},
    key=("campaign_id", "customer_id"),
    allowed={"group": (TREATED, HOLDOUT)},
    agreeing=("group",),
)
CAMPAIGNS = TableSchema(
    "campaigns",
    required={"campaign_id": ID, "name": ID, "started_at": TIME, "ends_at": TIME},
    # Descriptive and cost columns: a campaign without a coupon leaves them blank.
    optional={"segment": ID, "offer": ID, "coupon_rate": RATE, "coupon_cap": MONEY},
    key=("campaign_id",),
    ordered=(("started_at", "ends_at"),),
    planned=("started_at", "ends_at"),
)

SCHEMAS: dict[str, TableSchema] = {
    s.name: s for s in (CUSTOMERS, ORDERS, ORDER_ITEMS, CONTENT_VIEWS, CONTACTS, CAMPAIGNS)
}


@dataclass
class ShopTables:
    """The contract tables of one shop; optional tables may be None."""

    orders: pd.DataFrame
    customers: pd.DataFrame | None = None
    order_items: pd.DataFrame | None = None
    content_views: pd.DataFrame | None = None
    contacts: pd.DataFrame | None = None
    campaigns: pd.DataFrame | None = None

    def present(self) -> dict[str, pd.DataFrame]:
        """The tables that exist, by contract name."""
        tables = {
            "customers": self.customers,
            "orders": self.orders,
            "order_items": self.order_items,
            "content_views": self.content_views,
            "contacts": self.contacts,
            "campaigns": self.campaigns,
        }
        return {name: df for name, df in tables.items() if df is not None}
