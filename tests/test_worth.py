"""What a conversion is worth (models.worth): learned from past conversions, saved with the
classifier, and used for the expected value and the what-if of members who never ordered."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.targets import TARGETS
from features.tiers import TierSettings
from models.scoring import ORDER_VALUE, expected_value, order_values
from models.train import CalibratedBooster, TrainingSettings, split_cutoffs, train_classifier
from models.worth import train_worth, worth_metrics

TARGET = "first_purchase"
OUTCOME = TARGETS[TARGET].worth_outcome
SETTINGS = TrainingSettings(min_positives=20, min_negatives=20)


def _cutoffs(n: int) -> list[pd.Timestamp]:
    return [pd.Timestamp("2024-01-01") + pd.Timedelta(days=14 * k) for k in range(n)]


def _members(n: int, cutoffs: list[pd.Timestamp], seed: int = 0) -> pd.DataFrame:
    """Members who never ordered: a first order's size follows how many products they
    viewed, not the price of what they viewed (which runs the other way, as on a shop where
    the browsers of expensive items buy its cheap ones)."""
    rng = np.random.default_rng(seed)
    parts = []
    for cutoff in cutoffs:
        views = rng.integers(1, 30, n).astype(float)
        viewed_price = rng.lognormal(12, 1, n)
        converts = rng.uniform(size=n) < 1 / (1 + np.exp(-(views - 15) / 5))
        amount = 5_000 * views * rng.gamma(16, 1 / 16, n)
        parts.append(
            pd.DataFrame(
                {
                    "customer_id": [f"M{i}" for i in range(n)],
                    "cutoff": cutoff,
                    "views_lifetime": views,
                    "mean_viewed_price": viewed_price,
                    "orders_lifetime": 0.0,
                    "tier": 5,
                    TARGET: converts.astype(float),
                    OUTCOME: np.where(converts, amount, np.nan),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def _trained(frame: pd.DataFrame, split) -> CalibratedBooster:
    model = train_classifier(frame, TARGET, split, SETTINGS)
    model.worth = train_worth(frame, TARGET, split, SETTINGS, model.features)
    return model


def test_the_worth_model_learns_first_orders_better_than_the_viewed_price() -> None:
    cutoffs = _cutoffs(24)
    split = split_cutoffs(cutoffs, 28, test_cutoffs=2, validation_cutoffs=2)
    frame = _members(600, cutoffs)
    model = _trained(frame, split)
    assert model.worth is not None
    # the worth is never an input: the classifier does not see the outcome's amount
    assert OUTCOME not in model.features
    metrics = worth_metrics(frame, TARGET, split, SETTINGS, model)
    assert metrics["worth_conversions"] > 100
    assert metrics["worth_mae"] < 0.7 * metrics["worth_mean_mae"]
    assert metrics["worth_mae"] < 0.5 * metrics["worth_rule_mae"]
    assert metrics["worth_spearman"] > 0.6 > metrics["worth_rule_spearman"]
    assert abs(metrics["worth_total_error_pct"]) < 10
    assert "worth_mean_spearman" not in metrics  # one number for all ranks nobody


def test_too_few_conversions_leave_the_feature_as_the_worth(tmp_path) -> None:
    cutoffs = _cutoffs(24)
    split = split_cutoffs(cutoffs, 28, test_cutoffs=2, validation_cutoffs=2)
    frame = _members(600, cutoffs)
    scarce = frame.copy()
    scarce[OUTCOME] = np.where(scarce.index % 60 == 0, scarce[OUTCOME], np.nan)
    assert train_worth(scarce, TARGET, split, SETTINGS, ["views_lifetime"]) is None
    model = train_classifier(scarce, TARGET, split, SETTINGS)
    snapshot = frame[frame["cutoff"] == cutoffs[-1]].reset_index(drop=True)
    worth = order_values(snapshot, {TARGET: model}, TierSettings())
    np.testing.assert_allclose(worth, snapshot["mean_viewed_price"])
    assert not worth_metrics(scarce, TARGET, split, SETTINGS, model)


def test_scoring_values_members_at_the_learned_worth_and_buyers_at_their_own_orders(
    tmp_path,
) -> None:
    cutoffs = _cutoffs(24)
    split = split_cutoffs(cutoffs, 28, test_cutoffs=2, validation_cutoffs=2)
    model = _trained(_members(600, cutoffs), split)
    model.save(tmp_path / "model")
    loaded = CalibratedBooster.load(tmp_path / "model")
    members = _members(50, cutoffs[-1:], seed=3).drop(columns=[TARGET, OUTCOME])
    np.testing.assert_allclose(loaded.order_worth(members), model.order_worth(members))
    buyers = members.assign(
        customer_id=[f"B{i}" for i in range(len(members))],
        orders_lifetime=2.0,
        avg_order_value=np.linspace(10_000, 60_000, len(members)),
    )
    snapshot = pd.concat([members, buyers], ignore_index=True)
    worth = order_values(snapshot, {TARGET: loaded}, TierSettings())
    learned = loaded.order_worth(members)
    np.testing.assert_allclose(worth[: len(members)], learned)
    np.testing.assert_allclose(worth[len(members) :], buyers["avg_order_value"])
    # more views, a bigger first order: what the members' amounts were made of
    assert np.corrcoef(members["views_lifetime"], np.log(learned))[0, 1] > 0.8
    scores = snapshot[["customer_id", "cutoff", "tier"]].copy()
    for spec in TARGETS.values():
        scores[spec.score_column] = np.nan
    first = TARGETS[TARGET].score_column
    scores.loc[: len(members) - 1, first] = loaded.predict(members)
    scores[ORDER_VALUE] = worth
    value = expected_value(scores)
    np.testing.assert_allclose(value[: len(members)], loaded.predict(members) * learned)
    assert np.isnan(value[len(members) :]).all()  # buyers: no repurchase score here


@pytest.mark.parametrize("refit", [True, False])
def test_the_worth_booster_is_refitted_with_the_classifier(refit: bool) -> None:
    cutoffs = _cutoffs(24)
    split = split_cutoffs(cutoffs, 28, test_cutoffs=2, validation_cutoffs=2)
    frame = _members(300, cutoffs)
    # first orders grow fivefold after the training window: only a refit knows
    later = frame["cutoff"] > split.train[-1]
    frame.loc[later, OUTCOME] *= 5
    settings = TrainingSettings(min_positives=20, min_negatives=20, refit=refit)
    booster = train_worth(frame, TARGET, split, settings, ["views_lifetime"])
    assert booster is not None
    fitted = frame[frame["cutoff"].isin(split.fitted(refit)) & (frame[TARGET] == 1)]
    # a Gamma booster's mean prediction on its own rows sits near their mean amount
    mean = booster.predict(fitted[["views_lifetime"]].to_numpy("float64")).mean()
    assert mean == pytest.approx(fitted[OUTCOME].mean(), rel=0.1)


@pytest.mark.parametrize("calendar", [True, False])
def test_the_worth_booster_keeps_the_classifiers_calendar_choice(calendar: bool) -> None:
    """A classifier that left the calendar features out (validation showed they hurt) has a
    worth booster that leaves them out too, even where they would explain the amounts."""
    cutoffs = _cutoffs(24)
    split = split_cutoffs(cutoffs, 28, test_cutoffs=2, validation_cutoffs=2)
    frame = _members(300, cutoffs)
    day = frame["cutoff"].dt.dayofyear.to_numpy()
    frame["season_sin"] = np.sin(2 * np.pi * day / 365.25)
    frame[OUTCOME] *= np.exp(frame["season_sin"])
    features = ["views_lifetime", "season_sin"]
    booster = train_worth(frame, TARGET, split, SETTINGS, features, calendar)
    assert booster is not None
    splits = dict(zip(features, booster.feature_importance("split"), strict=True))
    assert (splits["season_sin"] > 0) == calendar
