"""Scoring customers by id from the latest feature snapshot (what the service calls into)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.tiers import TierSettings
from models.segments import SCORE_COLUMNS, score_customers
from models.train import CalibratedBooster


@dataclass
class ScoringState:
    """Champion models, their versions and the snapshot they score, indexed by customer id."""

    models: dict[str, CalibratedBooster]
    versions: dict[str, str]
    snapshot: pd.DataFrame
    tiers: TierSettings

    def __post_init__(self) -> None:
        self.snapshot = self.snapshot.set_index("customer_id", drop=False)

    @property
    def cutoff(self) -> str:
        return str(pd.Timestamp(self.snapshot["cutoff"].iloc[0]).date())

    def score_ids(self, customer_ids: list[str]) -> tuple[list[dict], list[str]]:
        """Score the known ids in request order; returns (scores, unknown ids)."""
        known = [cid for cid in customer_ids if cid in self.snapshot.index]
        unknown = [cid for cid in customer_ids if cid not in self.snapshot.index]
        if not known:
            return [], unknown
        rows = self.snapshot.loc[known].reset_index(drop=True)
        scores = score_customers(rows, self.models, self.tiers)
        records = []
        for row in scores.itertuples(index=False):
            records.append(
                {
                    "customer_id": row.customer_id,
                    "tier": int(row.tier),
                    **{column: _finite(getattr(row, column)) for column in SCORE_COLUMNS.values()},
                    "expected_value": _finite(row.expected_value),
                }
            )
        return records, unknown


def _finite(value: float) -> float | None:
    """JSON has no NaN: a score outside the model's population is null."""
    return float(value) if np.isfinite(value) else None
