"""What one conversion is worth in money, learned from the conversions the shop has seen.

A probability target's expected value is P(conversion) x the worth of that conversion. For a
buyer that worth is their own average order; a member who never ordered has none, and a
feature such as their mean viewed price is a poor stand-in: on the synthetic shop first
orders came to 0.44x the viewed price on average, from 6x for members who viewed cheap
products to 0.23x for those who viewed expensive ones, and members without views got no
value at all (docs/evaluation.md, First-order worth). So a target whose spec names a
`worth_outcome` carries a second booster beside its classifier: E[amount of the order it
converts with | features], a Gamma regressor (log link, heavy-tailed positive amounts)
fitted on the conversions of the training window with early stopping on the validation
window and refitted like the classifier. Too few conversions to fit it leave the target
with the feature as its worth, as before.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy import stats

from features.targets import TARGETS
from models.train import (
    CalibratedBooster,
    TimeSplit,
    TrainingSettings,
    calendar_params,
    fit_booster,
    window_rows,
)
from models.value import normalized_gini, objective_params, refit_booster


def converted(rows: pd.DataFrame, target: str, outcome: str) -> pd.DataFrame:
    """The rows where the target's outcome happened with an amount."""
    return rows[(rows[target] == 1) & (rows[outcome] > 0)].reset_index(drop=True)


def conversion_rows(
    frame: pd.DataFrame, target: str, outcome: str, cutoffs: list[pd.Timestamp]
) -> pd.DataFrame:
    """The rows at the cutoffs where the target's outcome happened with an amount."""
    return converted(window_rows(frame, target, cutoffs), target, outcome)


def train_worth(
    frame: pd.DataFrame,
    target: str,
    split: TimeSplit,
    settings: TrainingSettings,
    features: list[str],
    calendar: bool = True,
) -> lgb.Booster | None:
    """The worth booster of `target` (its spec's `worth_outcome`), or None when the training
    or validation window holds fewer conversions than `training.min_positives`. `calendar`:
    whether it may split on the calendar features, as its classifier chose."""
    outcome = TARGETS[target].worth_outcome
    if outcome is None or outcome not in frame:
        return None
    train = conversion_rows(frame, target, outcome, split.train)
    validation = conversion_rows(frame, target, outcome, split.validation)
    if min(len(train), len(validation)) < settings.min_positives:
        return None
    params = calendar_params(objective_params(settings, "gamma"), features, calendar)
    booster = fit_booster(train, validation, outcome, features, settings, params)
    fitted = split.fitted(settings.refit)
    if fitted == split.train:
        return booster
    rows = conversion_rows(frame, target, outcome, fitted)
    rounds = booster.best_iteration or booster.current_iteration()
    return refit_booster(rows, outcome, features, "gamma", settings, rounds, calendar)


def worth_metrics(
    frame: pd.DataFrame,
    target: str,
    split: TimeSplit,
    settings: TrainingSettings,
    model: CalibratedBooster,
) -> dict[str, float]:
    """The worth booster against what it replaced, on the test window's conversions: the
    spec's feature (the rule; no value where the feature is missing, as scoring gives) and
    the mean conversion of the fitted window (one number for everybody). Keys `worth_<metric>`
    for the model, `worth_rule_<metric>` and `worth_mean_<metric>`; empty without a worth
    booster."""
    spec = TARGETS[target]
    if model.worth is None or spec.worth_outcome is None:
        return {}
    test = conversion_rows(frame, target, spec.worth_outcome, split.test)
    if len(test) < settings.min_positives:
        return {}
    actual = test[spec.worth_outcome].to_numpy("float64")
    fitted = conversion_rows(frame, target, spec.worth_outcome, split.fitted(settings.refit))
    rule = test[spec.order_value].to_numpy("float64") if spec.order_value in test else None
    scorers = {
        "worth": model.order_worth(test),
        "worth_rule": np.nan_to_num(rule, nan=0.0) if rule is not None else None,
        "worth_mean": np.full(len(test), fitted[spec.worth_outcome].mean()),
    }
    metrics = {"worth_conversions": float(len(test))}
    for prefix, predicted in scorers.items():
        if predicted is not None:
            metrics |= {f"{prefix}_{k}": v for k, v in _judged(actual, predicted).items()}
    return metrics


def _judged(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Mean absolute error and total error of the amounts; Spearman and normalized Gini of
    the ordering, unless every prediction is the same number (which orders nobody)."""
    judged = {
        "mae": float(np.mean(np.abs(predicted - actual))),
        "total_error_pct": float(100 * (predicted.sum() / actual.sum() - 1)),
    }
    if np.ptp(predicted) > 0:
        judged["spearman"] = float(stats.spearmanr(actual, predicted).statistic)
        judged["normalized_gini"] = normalized_gini(actual, predicted)
    return judged
