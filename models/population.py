"""The shop-wide numbers the segment rules compare a customer with, on any engine.

A segment rule is mostly about one customer (their tier, their gap, their score), but a few
of its lines are relative to the whole shop: "score at least 1.5x the base rate", "in the
top 20% of scores", "order value 1.5x the VIPs' median", "at most 25% of the scored
customers". On one machine these come from the snapshot in memory; on a cluster each
partition holds only some customers, so the same numbers are computed once over all of them
and handed to every partition.

To keep one definition, a statistic is reduced to three primitives every engine can compute
exactly: a count of the finite values of a column, their mean, and their k-th smallest
values. Medians and percentile lines are built from those here, once (`Stats`); pandas
supplies the primitives in memory (`FrameAggregates`), Spark on the cluster
(models.spark_scoring). A budget (a segment's best `limit` members) is likewise reduced to
its last kept row (`BudgetCut`), which decides membership row by row.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, Protocol

import numpy as np
import pandas as pd

StatisticKind = Literal["count", "mean", "median", "line"]


@dataclass(frozen=True)
class Statistic:
    """One shop-wide number over the finite values of `column`: their count, mean, median,
    or `line`, the lowest value whose percentile rank (share of values at or below it) is
    at least `share`."""

    kind: StatisticKind
    column: str
    share: float | None = None


class Aggregates(Protocol):
    """The three primitives an engine computes over the finite values of a column."""

    def count(self, column: str) -> int: ...

    def mean(self, column: str) -> float: ...

    def smallest(self, column: str, ranks: Sequence[int]) -> list[float]:
        """The k-th smallest values (1-based ranks, each between 1 and the count)."""
        ...


class FrameAggregates:
    """The primitives over a pandas frame in memory."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame = frame
        self._sorted: dict[str, np.ndarray] = {}

    def _finite(self, column: str) -> np.ndarray:
        if column not in self._frame:
            return np.empty(0)
        values = self._frame[column].to_numpy("float64", na_value=np.nan)
        return values[np.isfinite(values)]

    def count(self, column: str) -> int:
        return int(self._finite(column).size)

    def mean(self, column: str) -> float:
        finite = self._finite(column)
        return float(finite.mean()) if finite.size else math.nan

    def smallest(self, column: str, ranks: Sequence[int]) -> list[float]:
        if column not in self._sorted:
            self._sorted[column] = np.sort(self._finite(column))
        ordered = self._sorted[column]
        return [float(ordered[k - 1]) for k in ranks]


def line_rank(count: int, share: float) -> int | None:
    """The fewest values at or below a line that give a percentile rank of at least `share`
    (rank / count, computed as pandas' `rank(pct=True)` does); None when no value reaches it."""
    if count == 0:
        return None
    low = max(1, math.floor(share * count) - 1)
    for rank in range(low, count + 1):
        if rank / count >= share:
            return rank
    return None


def median_ranks(count: int) -> list[int]:
    """The 1-based ranks whose mean is the median (one for an odd count, two for even)."""
    return [(count + 1) // 2] if count % 2 else [count // 2, count // 2 + 1]


def evaluate(statistic: Statistic, aggregates: Aggregates) -> float:
    """A statistic from an engine's primitives (NaN when the column has no finite value)."""
    count = aggregates.count(statistic.column)
    if statistic.kind == "count":
        return float(count)
    if count == 0:
        return math.nan
    if statistic.kind == "mean":
        return aggregates.mean(statistic.column)
    if statistic.kind == "median":
        middle = aggregates.smallest(statistic.column, median_ranks(count))
        return middle[0] if len(middle) == 1 else (middle[0] + middle[1]) / 2
    rank = line_rank(count, float(statistic.share))
    if rank is None:
        return math.inf
    return aggregates.smallest(statistic.column, [rank])[0]


class Stats:
    """Shop-wide statistics, each computed once on first use (from `aggregates`) or given
    (`known`, computed elsewhere, e.g. on a cluster)."""

    def __init__(
        self,
        aggregates: Aggregates | None = None,
        known: Mapping[Statistic, float] | None = None,
    ) -> None:
        self._aggregates = aggregates
        self._values: dict[Statistic, float] = dict(known or {})

    def value(self, statistic: Statistic) -> float:
        if statistic not in self._values:
            if self._aggregates is None:
                raise KeyError(f"statistic {statistic} was not computed for this population")
            self._values[statistic] = evaluate(statistic, self._aggregates)
        return self._values[statistic]

    def count(self, column: str) -> int:
        return int(self.value(Statistic("count", column)))

    def mean(self, column: str) -> float:
        return self.value(Statistic("mean", column))

    def median(self, column: str) -> float:
        return self.value(Statistic("median", column))

    def line(self, column: str, share: float) -> float:
        return self.value(Statistic("line", column, share))

    @property
    def values(self) -> dict[Statistic, float]:
        return dict(self._values)


class BudgetCut(NamedTuple):
    """The last member a budget keeps: rows rank by `rank_score` (NaN last) then customer
    id, and a row is kept when it ranks at or before this one."""

    rank_score: float
    customer_id: object


# a budget of zero members: a cut no row reaches (rank scores are finite or missing)
KEEP_NONE = BudgetCut(math.inf, None)


def sortable(rank_score: np.ndarray) -> np.ndarray:
    """Rank scores as they are ordered: a missing one ranks last."""
    return np.nan_to_num(np.asarray(rank_score, dtype="float64"), nan=-np.inf)


def budget_cut(
    mask: np.ndarray, rank_score: np.ndarray, customer_ids: pd.Series, limit: int
) -> BudgetCut | None:
    """Where `mask` must be cut to keep its `limit` best-ranked rows (None: all fit)."""
    rows = np.flatnonzero(mask)
    if len(rows) <= limit:
        return None
    if limit <= 0:
        return KEEP_NONE
    order = pd.DataFrame(
        {"score": sortable(rank_score)[rows], "id": customer_ids.to_numpy()[rows]}
    ).sort_values(["score", "id"], ascending=[False, True])
    last = order.iloc[limit - 1]
    return BudgetCut(float(last["score"]), last["id"])


def within_cut(
    mask: np.ndarray, rank_score: np.ndarray, customer_ids: pd.Series, cut: BudgetCut | None
) -> np.ndarray:
    """The rows of `mask` a cut keeps (all of them without a cut)."""
    if cut is None:
        return mask
    if cut.rank_score == math.inf:
        return np.zeros_like(mask)
    score = sortable(rank_score)
    ids = customer_ids.to_numpy()
    ahead = (score > cut.rank_score) | ((score == cut.rank_score) & (ids <= cut.customer_id))
    return mask & ahead


@dataclass
class Population:
    """What a scoring pass needs to know about the whole shop: its statistics and, per
    segment, where its budget cuts (`cuts`; a segment absent from it is cut here, over the
    rows at hand, which is the whole shop on one machine)."""

    stats: Stats
    cuts: dict[str, BudgetCut | None] | None = None
    scored: int = 0
    known_cuts: bool = field(init=False)

    def __post_init__(self) -> None:
        self.known_cuts = self.cuts is not None
        self.cuts = dict(self.cuts or {})

    def within_budget(
        self,
        segment: str,
        mask: np.ndarray,
        rank_score: np.ndarray,
        customer_ids: pd.Series,
        limit: int,
    ) -> np.ndarray:
        """`mask` cut to its `limit` best-ranked rows of the whole shop."""
        assert self.cuts is not None
        if segment not in self.cuts:
            if self.known_cuts:
                raise KeyError(f"no budget cut was computed for segment {segment}")
            self.cuts[segment] = budget_cut(mask, rank_score, customer_ids, limit)
        return within_cut(mask, rank_score, customer_ids, self.cuts[segment])
