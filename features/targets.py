"""The prediction targets: one spec per target, and the only place a target is named.

Training, the registry, the score flow, the report, the service's schemas and the CLI all
iterate over `TARGETS`; the segments ask `ranking_target` which target ranks and explains
them. Adding a target is one spec here plus its outcome in `features.snapshot` and tests
(tests/test_targets.py fails if a target's name is spelled out in any other module).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from features.tiers import TierSettings

# probability: a calibrated P(outcome); amount: money (spend over the target's horizon);
# days: when the next order comes (days from the cutoff, given one within the horizon)
Kind = Literal["probability", "amount", "days"]
# which setting of `labels:` gives a target's horizon (LabelSettings attribute names)
Horizon = Literal["horizon_days", "value_horizon_days"]
Population = Callable[[pd.DataFrame, TierSettings], np.ndarray]


def _numbers(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame:
        return np.full(len(frame), np.nan)
    return frame[column].to_numpy(dtype="float64", na_value=np.nan)


def has_ordered(frame: pd.DataFrame, tiers: TierSettings) -> np.ndarray:
    """Customers with at least one order before the cutoff."""
    return _numbers(frame, "orders_lifetime") > 0


def never_ordered(frame: pd.DataFrame, tiers: TierSettings) -> np.ndarray:
    """Known members (signed up or seen) without any order before the cutoff."""
    return ~has_ordered(frame, tiers)


def not_vip(frame: pd.DataFrame, tiers: TierSettings) -> np.ndarray:
    """Customers whose tier at the cutoff is not a VIP tier."""
    return ~frame["tier"].isin(tiers.vip_tiers).to_numpy()


@dataclass(frozen=True)
class TargetSpec:
    """What one target predicts, for whom, how it is judged, named and used.

    `outcome` names the per-(customer, cutoff) outcome column that `features.snapshot`
    computes over [cutoff, cutoff + H); the label is that outcome inside `population`, NaN
    outside it. `order_value` (probability targets) names the feature that values one
    conversion in money: score x that value is the customer's expected value. `worth_outcome`
    names an outcome that measures what a conversion was worth (the amount of the order it
    placed): the target's model then learns that worth (`models.worth`) and the feature is
    only its fallback.
    """

    name: str
    kind: Kind
    title: str
    population_text: str
    population: Population
    outcome: str
    score_column: str
    registered_name: str
    baselines: tuple[str, ...]
    promotion_metric: str
    segments: tuple[str, ...] = ()
    order_value: str | None = None
    # a required target must train on every run (segments and scoring need it); an optional
    # one is trained when the data holds its population and skipped with a message otherwise
    required: bool = True
    # the `labels:` setting that gives the horizon its outcome is observed over
    horizon: Horizon = "horizon_days"
    # a target modelled given another's outcome: the probability that outcome happens
    # comes from that target's model (one probability per customer wherever it is shown)
    given: str | None = None
    worth_outcome: str | None = None

    def in_population(self, frame: pd.DataFrame, tiers: TierSettings) -> np.ndarray:
        return np.asarray(self.population(frame, tiers), dtype=bool)

    def label(self, outcomes: pd.DataFrame, tiers: TierSettings) -> pd.Series:
        """The label column of a frame holding features and outcomes (NaN outside)."""
        value = outcomes[self.outcome].astype("float64")
        return value.where(self.in_population(outcomes, tiers))


TARGETS: dict[str, TargetSpec] = {
    spec.name: spec
    for spec in (
        TargetSpec(
            name="repurchase",
            kind="probability",
            title="buys again within the horizon",
            population_text="customers with at least one order before the cutoff",
            population=has_ordered,
            outcome="bought",
            score_column="repurchase_score",
            registered_name="dangol-repurchase",
            baselines=("recency", "rfm", "bgnbd"),
            promotion_metric="pr_auc",
            segments=(
                "active",
                "vip_high_order_value",
                "vip_new_big_spender",
                "vip_steady",
                "vip_at_risk",
                "repurchase_prospects",
                "suspected_resellers",
            ),
            order_value="avg_order_value",
        ),
        TargetSpec(
            name="vip_conversion",
            kind="probability",
            title="reaches a VIP tier within the horizon",
            population_text="customers not in a VIP tier at the cutoff",
            population=not_vip,
            outcome="vip_reached",
            score_column="vip_score",
            registered_name="dangol-vip-conversion",
            baselines=("spend_rank",),
            promotion_metric="pr_auc",
            segments=("rising_vip",),
            # a VIP line few customers cross (a small or young shop) must not stop the
            # repurchase model: skipped with what to change, unless training.required_targets
            required=False,
        ),
        TargetSpec(
            name="first_purchase",
            kind="probability",
            title="places a first order within the horizon",
            population_text="known members without any order before the cutoff",
            population=never_ordered,
            outcome="bought",
            score_column="first_purchase_score",
            registered_name="dangol-first-purchase",
            baselines=("view_recency", "high_price_views"),
            promotion_metric="pr_auc",
            segments=("high_price_browsers",),
            # a first order is worth what first orders are: a browser's mean viewed price is
            # 2.3x its first order on the synthetic shop on average, a low viewer's 1/6
            # (docs/evaluation.md, First-order worth)
            order_value="mean_viewed_price",
            worth_outcome="first_order_amount",
            required=False,
        ),
        TargetSpec(
            name="customer_value",
            kind="amount",
            title="spend over the value horizon",
            population_text="customers with at least one order before the cutoff",
            population=has_ordered,
            outcome="spend",
            score_column="predicted_value",
            registered_name="dangol-customer-value",
            baselines=("bgnbd_gamma_gamma", "previous_window", "rfm"),
            promotion_metric="normalized_gini",
            required=False,
            horizon="value_horizon_days",
        ),
        TargetSpec(
            name="next_purchase",
            kind="days",
            title="days from the cutoff to the next order, given one within the horizon",
            population_text="customers with at least one order before the cutoff (trained "
            "on those whose next order came within the horizon)",
            population=has_ordered,
            outcome="days_to_next_order",
            score_column="next_purchase_days",
            registered_name="dangol-next-purchase",
            baselines=("median_gap", "bgnbd_timing"),
            promotion_metric="mae_days",
            required=False,
            given="repurchase",
        ),
    )
}
LABELS = tuple(TARGETS)
# outcomes kept beside the labels for the worth models: never model inputs
WORTH_OUTCOMES = tuple(s.worth_outcome for s in TARGETS.values() if s.worth_outcome)
SCORE_COLUMNS = {spec.name: spec.score_column for spec in TARGETS.values()}


def probability_targets() -> list[TargetSpec]:
    """The targets whose score is a probability (the money target is not one)."""
    return [spec for spec in TARGETS.values() if spec.kind == "probability"]


def purchase_targets() -> list[TargetSpec]:
    """The targets whose score is the probability of a customer's next order, one per
    population (buyers, members who never ordered): the specs that name what that order is
    worth. Scoring's order value, expected value and campaign probability come from them."""
    return [spec for spec in TARGETS.values() if spec.order_value is not None]


# The metrics a person reads first for a target's kind (key, label), in the CLI, summaries
# and the report; the first is the one baselines are compared on.
HEADLINE_METRICS: dict[str, tuple[tuple[str, str], ...]] = {
    "probability": (("roc_auc", "ROC-AUC"), ("pr_auc", "PR-AUC"), ("brier", "Brier")),
    "amount": (
        ("normalized_gini", "Gini"),
        ("capture_top_decile", "top-10% capture"),
        ("total_error_pct", "total error %"),
    ),
    "days": (("c_index", "C-index"), ("mae_days", "MAE days"), ("window_coverage", "coverage")),
}


def headline_metrics(name: str) -> tuple[tuple[str, str], ...]:
    return HEADLINE_METRICS[target(name).kind]


def explained_targets() -> list[TargetSpec]:
    """The targets whose scores come with reasons on request (`/explain`, the report's SHAP
    plots): the probabilities and the predicted value; a timing model's scores are a curve
    over days, which no one set of contributions explains."""
    return [spec for spec in TARGETS.values() if spec.kind in ("probability", "amount")]


def timing_target() -> TargetSpec | None:
    """The target that predicts when the next order comes, if the registry has one."""
    return next((spec for spec in TARGETS.values() if spec.kind == "days"), None)


def amount_target() -> TargetSpec | None:
    """The target that predicts money, if the registry has one."""
    return next((spec for spec in TARGETS.values() if spec.kind == "amount"), None)


def target(name: str) -> TargetSpec:
    """The spec of a target, with a message listing the known ones."""
    try:
        return TARGETS[name]
    except KeyError:
        raise KeyError(f"unknown target {name!r} (known: {', '.join(TARGETS)})") from None


def ranking_target(segment: str) -> TargetSpec:
    """The target whose score ranks a segment and whose model explains its members."""
    for spec in TARGETS.values():
        if segment in spec.segments:
            return spec
    raise KeyError(f"no target ranks segment {segment!r}")


def by_score_column(column: str) -> TargetSpec:
    for spec in TARGETS.values():
        if spec.score_column == column:
            return spec
    raise KeyError(f"no target scores into {column!r}")
