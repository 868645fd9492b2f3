"""Cancellations netted into the order lines they cancel, when both fall on the same day.

The contract's orders are confirmed purchases (DESIGN §3.1). A log such as Online Retail
keeps a cancelled invoice beside its original: excluding the cancellation lines alone leaves
the original at full value. There, 787 lines cancelled £309,725 on the day they were bought
(customer 12346's £77,184 order 16 minutes later), half of all the money cancelled.

Only same-day cancellations are netted. Every cutoff is a midnight in the shop's zone, so an
order and a cancellation of the same calendar day are on the same side of every cutoff: no
feature at any cutoff learns of a cancellation that came after it. A later cancellation is a
return, an event of its own that the contract does not carry: netting it into the original
would tell features before it what happens after them. Those stay gross and are counted.
(A window that opens mid-day, a campaign contact's, sees a morning order cancelled that
afternoon as never placed, which is what it was.)

A cancellation line is matched to the same customer's latest line of the same product at or
before it on its day, and takes its quantity off that line (never below zero); a line left
with nothing is dropped, and so is an order left with no line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.contract import parse_ids, parse_numbers, parse_times

MATCH_KEYS = ["customer_id", "product_id"]


@dataclass(frozen=True)
class Netting:
    """What netting did: cancellation lines and money taken off same-day lines, the later
    cancellations left as they are, and the orders nothing was left of."""

    lines: int
    amount: float
    later_lines: int
    later_amount: float
    cancelled_orders: pd.Index
    # customers with no line left at all
    cancelled_customers: pd.Index
    # the lines nothing was left of (as they were before netting)
    emptied: pd.DataFrame

    def note(self, currency: str) -> str:
        """One line for the load report."""
        return (
            f"netted {self.lines:,} cancellation lines ({self.amount:,.2f} {currency}) into the "
            f"same-day lines they cancel ({len(self.cancelled_orders):,} orders cancelled whole); "
            f"{self.later_lines:,} other cancellation lines ({self.later_amount:,.2f} "
            f"{currency}: later returns, or of lines not in the log) are not netted, so spend "
            "stays gross of them"
        )


def parse_cancellations(rows: pd.DataFrame, timezone: str) -> pd.DataFrame:
    """Cancellation lines (contract column names, source values) as matchable rows: who,
    which product, when, how many units (positive) at what price; rows missing any are
    left out (they cancel nothing that can be found)."""
    columns = [*MATCH_KEYS, "ordered_at", "quantity", "unit_price"]
    if rows.empty or any(c not in rows for c in columns):
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
    parsed = pd.DataFrame(
        {
            "customer_id": parse_ids(rows["customer_id"]),
            "product_id": parse_ids(rows["product_id"]),
            "ordered_at": parse_times(rows["ordered_at"], timezone),
            "quantity": parse_numbers(rows["quantity"]).abs(),
            "unit_price": parse_numbers(rows["unit_price"]).abs(),
        }
    )
    return parsed.dropna().reset_index(drop=True)


def net_same_day(lines: pd.DataFrame, cancellations: pd.DataFrame) -> tuple[pd.DataFrame, Netting]:
    """The order lines with each same-day cancellation taken off the line it cancels."""
    lines = lines.reset_index(drop=True)
    if cancellations.empty:
        none = pd.Index([], dtype="string")
        nothing = Netting(0, 0.0, 0, 0.0, none, none, lines.iloc[:0])
        return lines, nothing
    originals = (
        lines[[*MATCH_KEYS, "ordered_at"]]
        .astype({k: "string" for k in MATCH_KEYS})
        .rename(columns={"ordered_at": "original_at"})
        .assign(line=np.arange(len(lines)))
        .sort_values("original_at", kind="stable")
    )
    cancels = cancellations.astype({k: "string" for k in MATCH_KEYS}).sort_values(
        "ordered_at", kind="stable"
    )
    matched = pd.merge_asof(
        cancels,
        originals,
        left_on="ordered_at",
        right_on="original_at",
        by=MATCH_KEYS,
        direction="backward",
    )
    same_day = matched["original_at"].notna() & (
        matched["ordered_at"].dt.normalize() == matched["original_at"].dt.normalize()
    )
    taken = matched[same_day].groupby("line")["quantity"].sum()
    quantity = lines["quantity"].to_numpy("float64")
    off = np.zeros(len(lines))
    off[taken.index.to_numpy(dtype=int)] = taken.to_numpy()
    off = np.minimum(off, quantity)
    later = matched[~same_day]
    left = quantity - off
    netted = lines.assign(quantity=left)[left > 0].reset_index(drop=True)

    def gone(column: str) -> pd.Index:
        return pd.Index(lines[column].unique()).difference(netted[column].unique())

    return netted, Netting(
        lines=int(same_day.sum()),
        amount=float((off * lines["unit_price"].to_numpy("float64")).sum()),
        later_lines=len(later),
        later_amount=float((later["quantity"] * later["unit_price"]).sum()),
        cancelled_orders=gone("order_id"),
        cancelled_customers=gone("customer_id"),
        emptied=lines[left <= 0],
    )
