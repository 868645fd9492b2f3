"""The one score-and-explain core: live models + snapshot rows -> every target's score, the
expected value, segment memberships, the primary segment and the top reasons in words.

The score flow (exports), the report and the service call these functions and nothing else
to score or explain, so a customer's numbers and words are the same wherever they are read.
A customer's reasons come from the model of the target that ranks their primary segment, in
that segment's direction (what raises the score, or for a risk list what lowers it);
customers in no segment are explained by the first target whose population holds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.targets import (
    TARGETS,
    amount_target,
    probability_targets,
    purchase_targets,
    ranking_target,
    timing_target,
)
from features.tiers import TierSettings
from models.explain import BASE_VALUE, contributions
from models.population import Population
from models.reasons import reason_columns, top_reasons
from models.segments import (
    LOWERS,
    RAISES,
    WINDOW_COLUMNS,
    SegmentSettings,
    build_segments,
    feature_values,
    reason_direction,
)
from models.timing import TimingModel, purchase_forecast
from models.train import CalibratedBooster, TargetModel
from models.uplift import UPLIFT_COLUMN, UPLIFT_MODEL

DIRECTION_WORDS = {1: "raises", -1: "lowers"}
MEMBER_PREFIX = "in_"
PRIMARY = "primary_segment"
EXPLAINED_BY = "explained_by"
DIRECTION = "reasons_direction"
# the worth of each customer's next order in money (order_values): the what-if's value of an
# extra conversion, and with the purchase probability the expected value
ORDER_VALUE = "order_value"
# P(an order within a campaign's window, `segments.holdout.campaign_days`, from the cutoff):
# the what-if's base rate (campaign_probabilities)
CAMPAIGN_PROBABILITY = "campaign_probability"


@dataclass(frozen=True)
class Wording:
    """How reasons are written: how many, in which language and currency, and the tier
    window (so "spent X in the last N days" states the same window as the tier rule)."""

    reasons: int = 3
    language: str = "en"
    currency: str = "KRW"
    tier_window_days: int = 182

    @classmethod
    def of(cls, settings: SegmentSettings, currency: str, tiers: TierSettings) -> Wording:
        return cls(settings.reasons, settings.language, currency, tiers.window_days)


@dataclass
class Scored:
    """Everything one scoring pass produces for a snapshot (row-aligned with it)."""

    scores: pd.DataFrame
    segments: dict[str, pd.DataFrame]
    contributions: dict[str, pd.DataFrame] = field(default_factory=dict)


def score_customers(
    snapshot: pd.DataFrame,
    models: dict[str, TargetModel],
    tiers: TierSettings,
    campaign_days: int | None = None,
) -> pd.DataFrame:
    """Every target's score (NaN outside its population or without a model), the worth of
    one more order (`ORDER_VALUE`), the expected value, with `campaign_days` the probability
    of an order within that many days (`CAMPAIGN_PROBABILITY`) and, when the release carries
    an uplift model (`UPLIFT_MODEL`), each customer's predicted uplift P(buy | contacted) −
    P(buy | not), one row per snapshot row."""
    scores = snapshot[["customer_id", "cutoff", "tier"]].copy()
    timing = timing_target()
    for spec in TARGETS.values():
        scores[spec.score_column] = np.nan
        model = models.get(spec.name)
        if model is not None and len(snapshot) and spec != timing:
            proba = model.predict(snapshot)
            scores[spec.score_column] = np.where(spec.in_population(snapshot, tiers), proba, np.nan)
    scores[ORDER_VALUE] = order_values(snapshot, models, tiers)
    scores["expected_value"] = expected_value(scores)
    uplift = models.get(UPLIFT_MODEL)
    if uplift is not None and len(snapshot):
        scores[UPLIFT_COLUMN] = uplift.predict(snapshot)
    windows, share = next_purchase_windows(snapshot, models, scores, tiers, campaign_days)
    if campaign_days is not None:
        scores[CAMPAIGN_PROBABILITY] = campaign_probabilities(
            snapshot, models, scores, tiers, campaign_days, share
        )
    return scores.join(windows)


def next_purchase_windows(
    snapshot: pd.DataFrame,
    models: dict[str, TargetModel],
    scores: pd.DataFrame,
    tiers: TierSettings,
    by_day: int | None = None,
) -> tuple[pd.DataFrame, np.ndarray | None]:
    """The learned next-order date and window per customer (models.timing), empty without a
    timing model; NaT where an order within the horizon is less likely than not. The timing
    target's score (median days) is filled in `scores` from the same prediction, and left
    empty with the dates: a day count for someone not expected to buy reads as a forecast.
    With `by_day`, also each row's P(next order by that day | one within the horizon)."""
    spec = timing_target()
    model = models.get(spec.name) if spec is not None else None
    if model is None or not len(snapshot):
        return pd.DataFrame(index=scores.index), None
    probability = scores[TARGETS[spec.given].score_column].to_numpy("float64", na_value=np.nan)
    forecast = purchase_forecast(model, snapshot, np.nan_to_num(probability, nan=0.0), by_day)
    dated = forecast.windows["expected_next_purchase"].notna().to_numpy()
    in_population = spec.in_population(snapshot, tiers)
    scores[spec.score_column] = np.where(in_population & dated, forecast.days, np.nan)
    return forecast.windows.set_axis(scores.index), forecast.share_by_day


def campaign_probabilities(
    snapshot: pd.DataFrame,
    models: dict[str, TargetModel],
    scores: pd.DataFrame,
    tiers: TierSettings,
    days: int,
    share_by_day: np.ndarray | None,
) -> np.ndarray:
    """P(an order within `days` of the cutoff), by the purchase target whose population
    holds the customer: the what-if's base rate, since a campaign runs `days` while the
    purchase probabilities cover the horizon H (docs/segments.md, Campaign what-if).

    A buyer's is the repurchase probability times the timing model's share of next orders
    that come by `days` (models.timing.share_by_day); a first order, which has no learned
    timing, assumes an even rate over H: 1 - (1 - p)^(days / H). NaN without a timing model:
    H is then unknown here, and the what-if uses the horizon's probability and says so. A
    campaign longer than H is read as H (no probability reaches past it)."""
    timing = timing_target()
    model = models.get(timing.name) if timing is not None else None
    out = np.full(len(snapshot), np.nan)
    if not isinstance(model, TimingModel) or not len(snapshot):
        return out
    covered = min(days / model.horizon_days, 1.0)
    for spec in purchase_targets():
        if spec.horizon != timing.horizon:  # a probability over another horizon
            continue
        probability = feature_values(scores, spec.score_column)
        if spec.name == timing.given and share_by_day is not None:
            value = probability * share_by_day
        else:
            value = 1.0 - (1.0 - probability) ** covered
        held = spec.in_population(snapshot, tiers) & np.isnan(out)
        out = np.where(held, value, out)
    return out


def order_values(
    snapshot: pd.DataFrame, models: dict[str, TargetModel], tiers: TierSettings
) -> np.ndarray:
    """What one more order of each customer is worth in money, by the purchase target whose
    population holds them: the worth its model learned (models.worth: a first order, for
    members who never ordered), else its spec's order-value feature (a buyer's own average
    order). NaN where neither exists (a member without views on a release without a worth
    model)."""
    worth = np.full(len(snapshot), np.nan)
    if not len(snapshot):
        return worth
    for spec in purchase_targets():
        value = feature_values(snapshot, spec.order_value)
        model = models.get(spec.name)
        if isinstance(model, CalibratedBooster) and model.worth is not None:
            value = model.order_worth(snapshot)
        held = spec.in_population(snapshot, tiers) & np.isnan(worth)
        worth = np.where(held, value, worth)
    return worth


def purchase_probability(scores: pd.DataFrame) -> np.ndarray:
    """Each customer's probability of an order within the horizon, from the purchase target
    whose population holds them (the targets' scores are empty outside their populations,
    which do not overlap); NaN where none scored the customer."""
    probability = np.full(len(scores), np.nan)
    for spec in purchase_targets():
        score = feature_values(scores, spec.score_column)
        probability = np.where(np.isnan(probability), score, probability)
    return probability


def expected_value(scores: pd.DataFrame) -> np.ndarray:
    """A customer's value in money: the value model's predicted spend over its horizon where
    it scored the customer (buyers); otherwise the probability of the next order
    (`purchase_probability`) x what that order is worth (`ORDER_VALUE`, from
    `order_values`: docs/segments.md)."""
    total = purchase_probability(scores) * scores[ORDER_VALUE].to_numpy("float64", na_value=np.nan)
    money = amount_target()
    if money is not None and money.score_column in scores:
        predicted = scores[money.score_column].to_numpy("float64", na_value=np.nan)
        total = np.where(np.isfinite(predicted), predicted, total)
    return total


def default_explainer(scores: pd.DataFrame) -> np.ndarray:
    """Per row, the first target (registry order) that scored it: who explains a customer in
    no segment (empty string when no target did)."""
    chosen = np.full(len(scores), "", dtype=object)
    for spec in reversed(probability_targets()):
        scored = np.isfinite(scores[spec.score_column].to_numpy("float64", na_value=np.nan))
        chosen[scored] = spec.name
    return chosen


def reasons_for(
    rows: pd.DataFrame,
    contrib: pd.DataFrame,
    direction: int | np.ndarray,
    wording: Wording,
) -> pd.DataFrame:
    """The top reasons of `rows` from one model's contributions (same index)."""
    return top_reasons(
        contrib,
        rows,
        wording.reasons,
        wording.language,
        wording.currency,
        direction=direction,
        tier_window_days=wording.tier_window_days,
    )


def member_columns(segment: str, score_columns: list[str], reasons: int) -> list[str]:
    """A segment list's columns, the same whoever its members are (an empty list, a target
    without a model): rank, the scores, the ranking score, the next-purchase window for
    repurchase prospects, the reasons and which model gave them in which direction."""
    windows = [c for c in WINDOW_COLUMNS if c not in score_columns]
    return [
        "rank",
        *score_columns,
        "rank_score",
        *(windows if segment == "repurchase_prospects" else []),
        *reason_columns(reasons),
        EXPLAINED_BY,
        DIRECTION,
    ]


def _laid_out(members: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """`members` with exactly `columns`; an absent reason is None (text) or NaN."""
    out = members.reindex(columns=columns)
    for column in columns:
        if column not in members and not column.endswith("_contribution"):
            out[column] = pd.Series(None, index=out.index, dtype=object)
    return out


def memberships(scores: pd.DataFrame, segments: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One boolean `in_<segment>` column per segment, row-aligned with `scores`."""
    ids = pd.Index(scores["customer_id"])
    flags = {}
    for name, members in segments.items():
        flag = np.zeros(len(scores), dtype=bool)
        flag[ids.get_indexer(members["customer_id"])] = True
        flags[f"{MEMBER_PREFIX}{name}"] = flag
    return pd.DataFrame(flags, index=scores.index)


def primary_segments(flags: pd.DataFrame, priority: list[str]) -> np.ndarray:
    """Each row's first segment in priority order (None: in no segment)."""
    primary = np.full(len(flags), None, dtype=object)
    for name in reversed(priority):
        column = f"{MEMBER_PREFIX}{name}"
        if column in flags:
            primary[flags[column].to_numpy()] = name
    return primary


def _explained_members(
    snapshot: pd.DataFrame,
    segments: dict[str, pd.DataFrame],
    models: dict[str, TargetModel],
    wording: Wording,
    score_columns: list[str],
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Every segment's members with the reasons of the segment's ranking model, and the
    contributions per model (computed once per model for the union of its members); each
    list laid out as `member_columns`."""
    row_of = pd.Index(snapshot["customer_id"])
    needed: dict[str, list[np.ndarray]] = {}
    for name, members in segments.items():
        spec = ranking_target(name)
        if spec.name in models and len(members):
            needed.setdefault(spec.name, []).append(row_of.get_indexer(members["customer_id"]))
    contrib_by_model = {}
    for target, parts in needed.items():
        rows = np.unique(np.concatenate(parts))
        contrib_by_model[target] = contributions(models[target], snapshot.iloc[rows])
    explained = {}
    for name, members in segments.items():
        spec = ranking_target(name)
        if spec.name not in contrib_by_model or not len(members):
            explained[name] = members.assign(**{EXPLAINED_BY: spec.name, DIRECTION: ""})
            continue
        rows = row_of.get_indexer(members["customer_id"])
        direction = reason_direction(name)
        contrib = contrib_by_model[spec.name].loc[snapshot.index[rows]]
        reasons = reasons_for(snapshot.iloc[rows], contrib, direction, wording)
        reasons = reasons.reset_index(drop=True).set_index(members.index)
        explained[name] = pd.concat([members, reasons], axis=1).assign(
            **{EXPLAINED_BY: spec.name, DIRECTION: DIRECTION_WORDS[direction]}
        )
    laid_out = {
        name: _laid_out(members, member_columns(name, score_columns, wording.reasons))
        for name, members in explained.items()
    }
    return laid_out, contrib_by_model


def score_and_explain(
    snapshot: pd.DataFrame,
    models: dict[str, TargetModel],
    settings: SegmentSettings,
    tiers: TierSettings,
    currency: str,
    population: Population | None = None,
    scores: pd.DataFrame | None = None,
) -> Scored:
    """Scores, segments with reasons, and per customer the memberships, the primary segment
    and its reasons: the rows of scores.parquet, the segment files, the service's answers.

    On a cluster the snapshot is one partition of the shop: `population` then carries the
    whole shop's statistics and budget cuts (models.spark_scoring), so every row gets the
    memberships and reasons it gets on one machine, and `scores` the partition's
    `score_customers` when they were computed before (the statistics need them). The
    segments' `rank` is then the order within the partition."""
    snapshot = snapshot.reset_index(drop=True)
    wording = Wording.of(settings, currency, tiers)
    if scores is None:
        scores = score_customers(snapshot, models, tiers, settings.holdout.campaign_days)
    scores = scores.reset_index(drop=True)
    members = build_segments(snapshot, scores, settings, tiers, population)
    segments, contrib = _explained_members(snapshot, members, models, wording, list(scores))
    flags = memberships(scores, segments)
    # text with gaps as object (None = in no segment), whatever the rows at hand hold
    scores[PRIMARY] = pd.Series(primary_segments(flags, settings.priority), dtype=object)
    explainer = default_explainer(scores)
    scores[EXPLAINED_BY] = explainer
    scores[DIRECTION] = np.where(explainer != "", DIRECTION_WORDS[RAISES], "")
    reasons = reason_columns(wording.reasons)
    for column in reasons:
        scores[column] = None if not column.endswith("_contribution") else np.nan
    for name, members in segments.items():
        rows = np.flatnonzero(scores[PRIMARY].to_numpy() == name)
        if not len(rows):
            continue
        by_id = members.set_index("customer_id")
        picked = by_id.loc[scores["customer_id"].iloc[rows]]
        for column in [EXPLAINED_BY, DIRECTION, *reasons]:
            scores.iloc[rows, scores.columns.get_loc(column)] = picked[column].to_numpy()
    scores = pd.concat([scores, flags], axis=1)
    return Scored(scores=scores, segments=segments, contributions=contrib)


class NotScoredError(ValueError):
    """The target asked to explain a customer it does not score (outside its population):
    there is no score, so no reasons."""


def explain_customer(
    snapshot_row: pd.DataFrame,
    scores_row: pd.Series,
    models: dict[str, TargetModel],
    target: str | None,
    wording: Wording,
    direction: int | None = None,
) -> tuple[str, int, pd.Series, pd.DataFrame]:
    """One customer's explanation for `target` (default: who explains them in the export).

    The direction, unless asked: what the export says (their primary segment's when that
    segment is ranked by `target`; "raises" for the target that explains a customer in no
    segment), so the reasons are those of the export and `/score`. For any other target,
    the way its score went from the model's starting point (its expected raw margin): a
    customer valued at ₩35 against a starting point of ₩59,000 is explained by what brought
    the value down, not by the small factors that nudged it up. Returns (target, direction,
    contributions, reasons); NotScoredError when the target does not score the customer.
    """
    primary = _text(scores_row.get(PRIMARY))
    explained_by = _text(scores_row.get(EXPLAINED_BY))
    target = target or explained_by or next(iter(models))
    score = scores_row.get(TARGETS[target].score_column)
    if score is None or not np.isfinite(float(score)):
        raise NotScoredError(
            f"{target} does not score this customer: it scores {TARGETS[target].population_text}"
        )
    contrib = contributions(models[target], snapshot_row)
    if direction is None and primary and ranking_target(primary).name == target:
        direction = reason_direction(primary)
    if direction is None and target == explained_by:
        direction = RAISES
    if direction is None:
        moved = float(contrib.drop(columns=BASE_VALUE).iloc[0].sum())
        direction = RAISES if moved >= 0 else LOWERS
    reasons = reasons_for(snapshot_row, contrib, direction, wording)
    return target, direction, contrib.iloc[0], reasons


def _text(value: object) -> str | None:
    """A label from a scores row (pandas stores a missing one as NaN): None when absent."""
    return value if isinstance(value, str) and value else None
