"""Cancellations netted into the order lines they cancel, when both fall on the same day.

The contract's orders are confirmed purchases (DESIGN §3.1). A log such as Online Retail
keeps a cancelled invoice beside its original: excluding the cancellation lines alone leaves
the original at full value. There, about half of all the money cancelled was cancelled on
the day it was bought (customer 12346's £77,184 order 16 minutes later).

Only same-day cancellations are netted. Every training and scoring cutoff is a midnight in
the shop's zone or the data's end (no event after it is read, cancellations included), so an
order and a cancellation of the same calendar day are on the same side of every cutoff: no
feature learns of a cancellation that came after its cutoff. A later cancellation is a
return, an event of its own that the contract does not carry: netting it into the original
would tell features before it what happens after them. Those stay gross and are counted.
(A campaign's windows open at its contacts' times: there an order placed in the morning and
cancelled that afternoon counts as never placed, before and after the contact alike.)

A cancellation line takes its units off the same customer's lines of the same product and
the same unit price, placed at or before it that day, the latest first, and never below
zero; units it cannot place are counted, not guessed at (a manual line at another price is
another purchase). A line left with nothing is dropped, and so is an order left with no line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.contract import DayMonthOrder, parse_ids, parse_numbers, parse_times

MATCH_KEYS = ["customer_id", "product_id", "unit_price", "day"]
CANCELLATION_COLUMNS = ["customer_id", "product_id", "ordered_at", "quantity", "unit_price"]


@dataclass(frozen=True)
class Netting:
    """What netting did: the units and money taken off same-day lines, the cancellation
    lines it could not place (later returns, other prices, lines not in the log), those it
    could not read, and the lines, orders and customers nothing was left of."""

    lines: int  # cancellation lines placed, whole or in part
    amount: float
    unplaced_lines: int  # placed in part or not at all
    unplaced_amount: float
    unreadable: int  # without a customer, product, time, quantity or price
    emptied: pd.DataFrame  # the lines nothing was left of, as they were before netting
    cancelled_orders: pd.Index
    cancelled_customers: pd.Index

    def note(self, currency: str) -> str:
        """One line for the load report."""
        unreadable = (
            f"; {self.unreadable:,} could not be matched (no customer, product, time or price)"
            if self.unreadable
            else ""
        )
        return (
            f"netted {self.lines:,} cancellation lines ({self.amount:,.2f} {currency}) into the "
            f"same-day lines they cancel ({len(self.cancelled_orders):,} orders cancelled whole); "
            f"{self.unplaced_lines:,} cancellation lines ({self.unplaced_amount:,.2f} {currency}: "
            "later returns, other prices, or lines not in the log) are not netted or only in "
            f"part, so spend stays gross of them{unreadable}"
        )


def parse_cancellations(
    rows: pd.DataFrame, timezone: str, order: DayMonthOrder, end: pd.Timestamp | None
) -> tuple[pd.DataFrame, int]:
    """Cancellation lines (contract column names, source values) as matchable rows, with the
    count of those left out: who, which product, when (read with the day/month `order` of
    the file's whole time column, as the order lines are), how many units (positive) at
    what price. A row missing any of them, or whose date reads both ways, is left out;
    one at or after the data's `end` is not read at all, like every other event."""
    if rows.empty or any(c not in rows for c in CANCELLATION_COLUMNS):
        empty = pd.DataFrame({c: pd.Series(dtype="float64") for c in CANCELLATION_COLUMNS})
        return empty, len(rows)
    parsed = pd.DataFrame(
        {
            "customer_id": parse_ids(rows["customer_id"]),
            "product_id": parse_ids(rows["product_id"]),
            "ordered_at": parse_times(rows["ordered_at"], timezone, order),
            "quantity": parse_numbers(rows["quantity"]).abs(),
            "unit_price": parse_numbers(rows["unit_price"]).abs(),
        }
    )
    parsed.loc[order.ambiguous, "ordered_at"] = pd.NaT
    if end is not None:
        parsed = parsed[~(parsed["ordered_at"] >= end)]
    readable = parsed.dropna().reset_index(drop=True)
    return readable, len(parsed) - len(readable)


def _candidates(lines: pd.DataFrame, cancels: pd.DataFrame) -> pd.DataFrame:
    """(cancellation, line) pairs that may net: same customer, product, price and day, the
    line at or before the cancellation. Per cancellation, a line of exactly its units first
    (a cancelled line is usually cancelled whole), then the latest first."""
    keyed = lines[["customer_id", "product_id", "unit_price", "ordered_at", "quantity"]].assign(
        line=np.arange(len(lines)), day=lines["ordered_at"].dt.normalize()
    )
    pairs = cancels.assign(cancel=np.arange(len(cancels))).merge(
        keyed.astype({"customer_id": "string", "product_id": "string"}),
        on=MATCH_KEYS,
        suffixes=("", "_line"),
    )
    pairs = pairs[pairs["ordered_at_line"] <= pairs["ordered_at"]]
    pairs = pairs.assign(exact=pairs["quantity_line"] == pairs["quantity"])
    order = ["cancel", "exact", "ordered_at_line", "line"]
    return pairs.sort_values(order, ascending=[True, False, False, False])


def _allocate(
    quantity: np.ndarray, cancels: pd.DataFrame, pairs: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """The units left on each line, and the units each cancellation placed: cancellations in
    time order, each over its candidate lines in `_candidates`' order."""
    left = quantity.astype("float64").copy()
    placed = np.zeros(len(cancels))
    wanted = cancels["quantity"].to_numpy("float64")
    for cancel, group in pairs.groupby("cancel", sort=True):
        need = wanted[cancel]
        for line in group["line"].to_numpy():
            take = min(need, left[line])
            left[line] -= take
            need -= take
            if need <= 0:
                break
        placed[cancel] = wanted[cancel] - need
    return left, placed


def net_same_day(
    lines: pd.DataFrame, cancellations: pd.DataFrame, unreadable: int = 0
) -> tuple[pd.DataFrame, Netting]:
    """The order lines with each same-day cancellation taken off the lines it cancels."""
    lines = lines.reset_index(drop=True)
    if cancellations.empty:
        none = pd.Index([], dtype="string")
        return lines, Netting(0, 0.0, 0, 0.0, unreadable, lines.iloc[:0], none, none)
    cancels = cancellations.astype({"customer_id": "string", "product_id": "string"})
    cancels = cancels.sort_values("ordered_at", kind="stable").reset_index(drop=True)
    cancels["day"] = cancels["ordered_at"].dt.normalize()
    quantity = lines["quantity"].to_numpy("float64")
    left, placed = _allocate(quantity, cancels, _candidates(lines, cancels))
    off = quantity - left
    netted = lines.assign(quantity=left)[left > 0].reset_index(drop=True)
    wanted = cancels["quantity"].to_numpy("float64")
    short = placed < wanted
    price = cancels["unit_price"].to_numpy("float64")

    def gone(column: str) -> pd.Index:
        return pd.Index(lines[column].unique()).difference(netted[column].unique())

    return netted, Netting(
        lines=int((placed > 0).sum()),
        amount=float((off * lines["unit_price"].to_numpy("float64")).sum()),
        unplaced_lines=int(short.sum()),
        unplaced_amount=float(((wanted - placed) * price)[short].sum()),
        unreadable=unreadable,
        emptied=lines[left <= 0],
        cancelled_orders=gone("order_id"),
        cancelled_customers=gone("customer_id"),
    )
