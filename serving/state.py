"""The service's state: the live release, the latest export's snapshot, and what the scoring
core (models.scoring) makes of them, indexed for requests.

A state is built once per (release, export) pair with the same `score_and_explain` the score
flow runs, so `/score`, `/explain` and `/segment_members` say what the exports say. The
service swaps whole states on reload: a request sees one consistent release and snapshot.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.targets import TARGETS
from models import release as releases
from models.explain import BASE_VALUE, SCALES
from models.scoring import (
    DIRECTION,
    DIRECTION_WORDS,
    EXPLAINED_BY,
    PRIMARY,
    Scored,
    Wording,
    explain_customer,
    score_and_explain,
    score_customers,
)
from models.segments import WINDOW_COLUMNS, export_settings
from models.train import TargetModel
from models.uplift import UPLIFT_COLUMN
from serving.settings import ServiceContext


class UnknownSegmentError(KeyError):
    """A segment name that the latest export does not hold."""


class UnknownCustomerError(KeyError):
    """A customer id that the latest snapshot does not hold."""


class FeatureRowError(ValueError):
    """A feature row that cannot be scored (missing or unknown feature names)."""


@dataclass
class ScoringState:
    """The live release's models, the snapshot they scored and the core's result."""

    release: releases.Release
    models: dict[str, TargetModel]
    snapshot: pd.DataFrame
    scored: Scored
    wording: Wording
    context: ServiceContext
    export_dir: Path | None
    row_of: dict[str, int]
    records: list[dict[str, Any]]
    _reasons: dict[tuple[int, str], list[str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def cutoff(self) -> str:
        return str(pd.Timestamp(self.snapshot["cutoff"].iloc[0]).date())

    @property
    def versions(self) -> dict[str, str]:
        return self.release.versions()

    @property
    def segments(self) -> dict[str, pd.DataFrame]:
        return self.scored.segments

    @property
    def features(self) -> list[str]:
        """Every feature any model of the release reads, in a stable order."""
        names: dict[str, None] = {}
        for model in self.models.values():
            names.update(dict.fromkeys(model.features))
        return list(names)


def load_release(
    context: ServiceContext,
) -> tuple[releases.Release, dict[str, TargetModel]]:
    """The release to serve: from the Bento's files, else the store's live one (checked
    against the context's horizon, tiers and feature settings)."""
    if context.release_dir is not None:
        live, models = releases.read_release_dir(context.release_dir)
    else:
        uri = f"sqlite:///{context.mlruns / 'mlflow.db'}"
        live = releases.require_live(context.release_name, "<your config>", uri)
        models = None
    releases.check_matches(live, context.horizon_days, context.tiers, context.features)
    if models is None:
        # before loading the models, which a reload would otherwise repeat every tick
        check_latest_fits(context, live)
        models = _load_from_store(live, context)
    return live, models


def _load_from_store(live: releases.Release, context: ServiceContext) -> dict[str, TargetModel]:
    from models import registry

    registry.configure_mlflow(context.mlruns)
    return releases.load_models(live)


def live_release_id(context: ServiceContext) -> str | None:
    """The id of the store's live release (a cheap SQLite read), None without one."""
    if context.release_dir is not None:
        return None
    uri = f"sqlite:///{context.mlruns / 'mlflow.db'}"
    live = releases.live_release(context.release_name, uri)
    return live.id if live is not None else None


def latest_export(context: ServiceContext) -> Path:
    """The folder `exports/latest` points at (resolved, so a swap is visible as a new path)."""
    latest = context.exports / "latest"
    if not (latest / "features.parquet").exists():
        raise FileNotFoundError(f"no scored snapshot at {latest}: run `dangol score` first")
    return latest.resolve()


def build_state(
    context: ServiceContext,
    live: releases.Release,
    models: dict[str, TargetModel],
    snapshot: pd.DataFrame,
    export_dir: Path | None = None,
) -> ScoringState:
    """Run the scoring core over the snapshot and index the result by customer id."""
    snapshot = snapshot.reset_index(drop=True)
    scored = score_and_explain(snapshot, models, context.segments, context.tiers, context.currency)
    wording = Wording.of(context.segments, context.currency, context.tiers)
    row_of = {cid: i for i, cid in enumerate(snapshot["customer_id"].astype(str))}
    return ScoringState(
        live, models, snapshot, scored, wording, context, export_dir, row_of, records(scored)
    )


def load_state(
    context: ServiceContext,
    live: releases.Release,
    models: dict[str, TargetModel],
) -> ScoringState:
    export_dir = latest_export(context)
    check_export_fits(export_dir, live)
    snapshot = pd.read_parquet(export_dir / "features.parquet")
    return build_state(context, live, models, snapshot, export_dir)


def check_latest_fits(context: ServiceContext, live: releases.Release) -> None:
    """`check_export_fits` for `latest`, when there is one (its absence has its own error)."""
    latest = context.exports / "latest"
    if (latest / "features.parquet").exists():
        check_export_fits(latest.resolve(), live)


def check_export_fits(export_dir: Path, live: releases.Release) -> None:
    """Stop when the export's snapshot was built with settings the live release was not
    fitted with (its features would be read as something else). On a reload the service
    keeps serving the previous, consistent state meanwhile."""
    problem = releases.snapshot_mismatch(export_settings(export_dir), live)
    if problem:
        raise releases.ReleaseMismatchError(
            f"the latest export {export_dir.name}: {problem}; run `dangol score` with this "
            "config to score with it"
        )


def _reason_list(row: dict[str, Any]) -> list[str] | None:
    keys = sorted((k for k in row if _is_reason_text(k)), key=lambda k: int(k.split("_")[1]))
    texts = [row.get(k) for k in keys]
    if not row.get(PRIMARY):
        return None  # computed on request (customers in no segment are not explained in bulk)
    return [t for t in texts if isinstance(t, str) and t]


def _is_reason_text(key: str) -> bool:
    parts = key.split("_")
    return len(parts) == 2 and parts[0] == "reason" and parts[1].isdigit()


def score_columns(scores: pd.DataFrame) -> list[str]:
    """The numbers an answer carries: tier, every target's score, the expected value and,
    when the release has an uplift model, the predicted uplift."""
    columns = ["tier", *(s.score_column for s in TARGETS.values()), "expected_value"]
    return [*columns, UPLIFT_COLUMN] if UPLIFT_COLUMN in scores else columns


def records(scored: Scored) -> list[dict[str, Any]]:
    """JSON-ready rows for /score: the `score_columns`, primary segment, who explains the
    customer and (for segment members) the reasons, NaN as None."""
    scores = scored.scores
    columns = ["customer_id", *score_columns(scores), PRIMARY, EXPLAINED_BY, DIRECTION]
    frame = scores[columns].copy()
    frame["customer_id"] = frame["customer_id"].astype(str)
    frame["tier"] = frame["tier"].astype(int)
    reason_columns = [c for c in scores if _is_reason_text(c)]
    out = []
    plain = frame.astype(object).where(frame.notna(), None).to_dict("records")
    reasons = scores[reason_columns].astype(object).where(scores[reason_columns].notna(), None)
    dates = _dates(scores, WINDOW_COLUMNS)
    for row, extra, when in zip(plain, reasons.to_dict("records"), dates, strict=True):
        row.update(when)
        row["reasons"] = _reason_list({**extra, PRIMARY: row[PRIMARY]})
        row[EXPLAINED_BY] = row[EXPLAINED_BY] or None
        row[DIRECTION] = row[DIRECTION] or None
        out.append(row)
    return out


def _reasons_of(state: ScoringState, row: int, record: dict[str, Any]) -> list[str]:
    """The customer's reasons: from the core's pass for segment members, else computed by
    the same core now (and kept for the state's lifetime)."""
    if record["reasons"] is not None or not record[EXPLAINED_BY]:
        return record["reasons"] or []
    key = (row, record[EXPLAINED_BY])
    with state._lock:
        cached = state._reasons.get(key)
    if cached is None:
        _, _, _, reasons = explain_customer(
            state.snapshot.iloc[[row]],
            state.scored.scores.iloc[row],
            state.models,
            record[EXPLAINED_BY],
            state.wording,
        )
        cached = [t for t in reasons.iloc[0][list(_text_columns(reasons))] if isinstance(t, str)]
        with state._lock:
            state._reasons[key] = cached
    return cached


def _text_columns(reasons: pd.DataFrame) -> list[str]:
    return [c for c in reasons.columns if _is_reason_text(c)]


def score_ids(state: ScoringState, customer_ids: list[str]) -> tuple[list[dict], list[str]]:
    """Scores of the known ids in request order, and the unknown ids in request order."""
    scores, unknown = [], []
    for cid in customer_ids:
        row = state.row_of.get(cid)
        if row is None:
            unknown.append(cid)
            continue
        record = state.records[row]
        answer = dict(record)
        answer["reasons"] = _reasons_of(state, row, record)
        if answer[EXPLAINED_BY] and not answer[DIRECTION]:
            answer[DIRECTION] = DIRECTION_WORDS[1]
        scores.append(answer)
    return scores, unknown


def score_rows(state: ScoringState, rows: list[dict[str, float | None]]) -> list[dict]:
    """Score caller-supplied feature rows with the core; every feature must be named."""
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
    frame = pd.DataFrame(
        [[np.nan if row[name] is None else row[name] for name in expected] for row in rows],
        columns=expected,
        dtype="float64",
    )
    frame.insert(0, "customer_id", [f"row-{i}" for i in range(len(rows))])
    frame.insert(1, "cutoff", pd.Timestamp(state.snapshot["cutoff"].iloc[0]))
    scores = score_customers(frame, state.models, state.context.tiers)
    columns = score_columns(scores)
    out = scores[columns].astype(object).where(scores[columns].notna(), None)
    result = out.to_dict("records")
    for record in result:
        record["tier"] = int(record["tier"])
    return result


def _dates(scores: pd.DataFrame, columns: tuple[str, ...]) -> list[dict[str, str | None]]:
    """ISO dates of the columns present, per row (None where empty)."""
    present = [c for c in columns if c in scores]
    text = {
        c: pd.to_datetime(scores[c])
        .dt.strftime("%Y-%m-%d")
        .astype(object)
        .where(scores[c].notna(), None)
        for c in present
    }
    return [{c: text[c].iloc[i] for c in present} for i in range(len(scores))]


def explain(
    state: ScoringState,
    customer_id: str,
    target: str | None,
    top: int | None,
    direction: int | None = None,
) -> dict[str, Any]:
    """One customer's score and reasons for a target (default: the one that explains them in
    the export), each reason with its feature, value and signed contribution (on the
    target's `scale`: log-odds, or the log of a predicted amount)."""
    row = state.row_of.get(customer_id)
    if row is None:
        raise UnknownCustomerError(customer_id)
    wording = state.wording if top is None else replace(state.wording, reasons=top)
    record = state.records[row]
    chosen, direction, contrib, reasons = explain_customer(
        state.snapshot.iloc[[row]],
        state.scored.scores.iloc[row],
        state.models,
        target,
        wording,
        direction,
    )
    values = state.snapshot.iloc[row]
    out = []
    first = reasons.iloc[0]
    for k in range(1, wording.reasons + 1):
        feature = first.get(f"reason_{k}_feature")
        if not isinstance(feature, str):
            break
        value = values[feature]
        out.append(
            {
                "feature": feature,
                "value": float(value) if pd.notna(value) else None,
                "contribution": float(contrib[feature]),
                "text": first[f"reason_{k}"],
            }
        )
    base = float(contrib[BASE_VALUE])
    return {
        "customer_id": customer_id,
        "target": chosen,
        "score": record.get(TARGETS[chosen].score_column),
        "direction": DIRECTION_WORDS[direction],
        "scale": SCALES[TARGETS[chosen].kind],
        "base_value": base,
        "raw_margin": float(contrib.sum()),
        "reasons": out,
    }


def segment_sizes(state: ScoringState) -> dict[str, int]:
    return {name: len(members) for name, members in state.segments.items()}


def segment_page(
    state: ScoringState,
    name: str,
    offset: int,
    limit: int,
    min_score: float | None = None,
    score_field: str | None = None,
    tiers: list[int] | None = None,
    rank_by: str | None = None,
) -> tuple[int, list[dict[str, Any]]]:
    """One page of a segment's members after the filters, in the segment's rank order or by
    `rank_by` (any score column, highest first); returns (matching, page)."""
    members = state.segments.get(name)
    if members is None:
        raise UnknownSegmentError(name)
    mask = np.ones(len(members), dtype=bool)
    if min_score is not None and score_field and score_field in members:
        mask &= (members[score_field] >= min_score).to_numpy()
    if tiers:
        mask &= members["tier"].isin(tiers).to_numpy()
    matching = members[mask]
    if rank_by is not None:
        matching = matching.sort_values(
            [rank_by, "rank"], ascending=[False, True], na_position="last", kind="stable"
        )
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
