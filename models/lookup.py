"""What the scoring service answers, as plain functions over an immutable state.

The state is built once per champion/export pair: every customer of the latest snapshot is
scored up front, so a lookup by id is a dictionary hit, not a model call. The service swaps
whole states on reload, so a request always sees one consistent set of models and data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.tiers import TierSettings
from models.explain import BASE_VALUE, contributions
from models.reasons import reason_text
from models.segments import SCORE_COLUMNS, score_customers
from models.train import CalibratedBooster

SEGMENT_PREFIX = "segment_"
SCORE_FIELDS = ("repurchase_score", "vip_score", "expected_value")


class UnknownSegmentError(KeyError):
    """A segment name that the latest export does not hold."""


class UnknownCustomerError(KeyError):
    """A customer id that the latest snapshot does not hold."""


class FeatureRowError(ValueError):
    """A feature row that cannot be scored (missing or unknown feature names)."""


@dataclass(frozen=True)
class ModelCard:
    """One champion: where it came from and how it did on its test window."""

    target: str
    registered_name: str
    version: str
    run_id: str
    store_tag: str
    training_window: dict[str, list[str]] = field(default_factory=dict)
    test_metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoringState:
    """Champions, the snapshot they scored, its scores and the export's segments."""

    models: dict[str, CalibratedBooster]
    cards: dict[str, ModelCard]
    snapshot: pd.DataFrame
    scores: pd.DataFrame
    segments: dict[str, pd.DataFrame]
    tiers: TierSettings
    export_dir: Path | None
    row_of: dict[str, int]
    records: list[dict[str, Any]]

    @property
    def cutoff(self) -> str:
        return str(pd.Timestamp(self.snapshot["cutoff"].iloc[0]).date())

    @property
    def versions(self) -> dict[str, str]:
        return {target: card.version for target, card in self.cards.items()}

    @property
    def features(self) -> list[str]:
        """Every feature any champion reads, in a stable order."""
        names: dict[str, None] = {}
        for model in self.models.values():
            names.update(dict.fromkeys(model.features))
        return list(names)


def build_state(
    models: dict[str, CalibratedBooster],
    cards: dict[str, ModelCard],
    snapshot: pd.DataFrame,
    segments: dict[str, pd.DataFrame],
    tiers: TierSettings,
    export_dir: Path | None = None,
) -> ScoringState:
    """Score the whole snapshot once and index it by customer id."""
    snapshot = snapshot.reset_index(drop=True)
    scores = score_customers(snapshot, models, tiers)
    records = score_records(scores)
    row_of = {cid: i for i, cid in enumerate(snapshot["customer_id"].astype(str))}
    return ScoringState(
        models, cards, snapshot, scores, segments, tiers, export_dir, row_of, records
    )


def score_records(scores: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready rows (customer_id, tier, scores) with NaN as None."""
    frame = pd.DataFrame(
        {
            "customer_id": scores["customer_id"].astype(str),
            "tier": scores["tier"].astype(int),
            **{column: scores[column] for column in SCORE_FIELDS if column in scores},
        }
    )
    frame = frame.astype(object).where(frame.notna(), None)
    return frame.to_dict("records")


def read_segments(export_dir: Path) -> dict[str, pd.DataFrame]:
    """Every `segment_<name>.parquet` of an export folder, by name, in rank order."""
    segments = {}
    for path in sorted(export_dir.glob(f"{SEGMENT_PREFIX}*.parquet")):
        frame = pd.read_parquet(path)
        if "rank" in frame:
            frame = frame.sort_values("rank", kind="stable", ignore_index=True)
        segments[path.stem.removeprefix(SEGMENT_PREFIX)] = frame
    return segments


def score_ids(state: ScoringState, customer_ids: list[str]) -> tuple[list[dict], list[str]]:
    """Scores of the known ids in request order, and the unknown ids in request order."""
    scores, unknown = [], []
    for cid in customer_ids:
        row = state.row_of.get(cid)
        if row is None:
            unknown.append(cid)
        else:
            scores.append(state.records[row])
    return scores, unknown


def score_rows(state: ScoringState, rows: list[dict[str, float | None]]) -> list[dict]:
    """Score caller-supplied feature rows; every champion feature must be named (null = missing).

    Same result as `score_customers` on a frame, without pandas and with one LightGBM thread:
    for a few rows, frame building and OpenMP start-up cost more than the trees.
    """
    expected = state.features
    known = set(expected)
    for i, row in enumerate(rows):
        missing = [name for name in expected if name not in row]
        extra = sorted(set(row) - known)
        if missing:
            raise FeatureRowError(
                f"rows[{i}].features: missing {missing[:5]} (give null if unknown)"
            )
        if extra:
            raise FeatureRowError(f"rows[{i}].features: unknown feature names {extra[:5]}")
        if row["tier"] is None:
            raise FeatureRowError(f"rows[{i}].features.tier: required to pick the populations")
    matrix = np.array(
        [[np.nan if row[name] is None else row[name] for name in expected] for row in rows],
        dtype="float64",
    )
    column = {name: i for i, name in enumerate(expected)}
    tier = matrix[:, column["tier"]]
    populations = {
        "repurchase": matrix[:, column["orders_lifetime"]] > 0,
        "vip_conversion": ~np.isin(tier, state.tiers.vip_tiers),
    }
    scores = {"customer_id": [None] * len(rows), "tier": tier}
    for target, model in state.models.items():
        inputs = matrix[:, [column[name] for name in model.features]]
        raw = model.booster.predict(inputs, num_threads=1)
        proba = np.interp(raw, model.calibration_x, model.calibration_y)
        scores[SCORE_COLUMNS[target]] = np.where(populations[target], proba, np.nan)
    scores["expected_value"] = scores["repurchase_score"] * matrix[:, column["avg_order_value"]]
    return score_records(pd.DataFrame(scores))


def explain(
    state: ScoringState,
    customer_id: str,
    target: str,
    top: int,
    language: str = "en",
    currency: str = "KRW",
) -> dict[str, Any]:
    """The score of one customer and the features that move it most (TreeSHAP, log-odds),
    each with its phrase in plain words."""
    row = state.row_of.get(customer_id)
    if row is None:
        raise UnknownCustomerError(customer_id)
    model = state.models[target]
    frame = state.snapshot.iloc[[row]]
    contrib = contributions(model, frame).iloc[0]
    base = float(contrib.pop(BASE_VALUE))
    order = np.argsort(-np.abs(contrib.to_numpy()), kind="stable")
    values = frame.iloc[0]
    reasons = []
    for i in order[:top]:
        name = contrib.index[i]
        value = values[name]
        reasons.append(
            {
                "feature": name,
                "value": float(value) if pd.notna(value) else None,
                "contribution": float(contrib.iloc[i]),
                "text": reason_text(name, values, language, currency),
            }
        )
    record = state.records[row]
    return {
        "customer_id": customer_id,
        "target": target,
        "score": record.get(SCORE_COLUMNS[target]),
        "base_value": base,
        "raw_margin": base + float(contrib.sum()),
        "reasons": reasons,
    }


def segment_sizes(state: ScoringState) -> dict[str, int]:
    return {name: len(members) for name, members in state.segments.items()}


def segment_page(
    state: ScoringState,
    name: str,
    offset: int,
    limit: int,
    min_score: float | None = None,
    score_field: str = "repurchase_score",
    tiers: list[int] | None = None,
) -> tuple[int, list[dict[str, Any]]]:
    """One page of a segment's ranked members after the filters; returns (matching, page)."""
    members = state.segments.get(name)
    if members is None:
        raise UnknownSegmentError(name)
    mask = np.ones(len(members), dtype=bool)
    if min_score is not None and score_field in members:
        mask &= (members[score_field] >= min_score).to_numpy()
    if tiers:
        mask &= members["tier"].isin(tiers).to_numpy()
    matching = members[mask]
    page = matching.iloc[offset : offset + limit]
    page = page.astype(object).where(page.notna(), None)
    return len(matching), [_jsonable(row) for row in page.to_dict("records")]


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in row.items():
        if isinstance(value, pd.Timestamp):
            value = str(value.date()) if value == value.normalize() else value.isoformat()
        elif isinstance(value, np.generic):
            value = value.item()
        out[str(key)] = value
    return out
