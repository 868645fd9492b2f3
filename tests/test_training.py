"""Time split, promotion gate and metrics: small, exact behaviour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from features.snapshot import CALENDAR_FEATURES, add_calendar
from models import promotion
from models.evaluate import top_decile
from models.train import (
    CALENDAR_EVIDENCE_SE,
    CalibratedBooster,
    InsufficientDataError,
    TimeSplit,
    TrainingSettings,
    split_cutoffs,
    train_classifier,
)


def _cutoffs(n: int, every: int = 14) -> list[pd.Timestamp]:
    return [pd.Timestamp("2025-01-01") + pd.Timedelta(days=every * k) for k in range(n)]


@pytest.mark.parametrize("window", [1, 3])
def test_split_windows_do_not_overlap_in_time(window: int) -> None:
    split = split_cutoffs(_cutoffs(30), 90, test_cutoffs=window, validation_cutoffs=window)
    horizon = pd.Timedelta(days=90)
    assert split.test == _cutoffs(30)[-window:]
    assert len(split.validation) == window
    # every training label window closes before validation starts, and so on
    assert max(split.train) + horizon <= min(split.validation)
    assert max(split.validation) + horizon <= min(split.test)
    # the refit window is everything labelled before the test window: training, gap, validation
    assert split.refit == [c for c in _cutoffs(30) if c + horizon <= min(split.test)]
    assert set(split.train + split.validation) <= set(split.refit)


def test_split_refuses_short_history() -> None:
    with pytest.raises(InsufficientDataError, match="validation"):
        split_cutoffs(_cutoffs(5), horizon_days=90)


def _comparison(verdict: str) -> promotion.Comparison:
    return promotion.Comparison("t", "pr_auc", 0.5, 0.4, 0.1, 0.05, 0.15, verdict)


def test_the_first_release_and_a_settings_change_go_live() -> None:
    assert promotion.decide([_comparison(promotion.NEW)], "no live release yet").promote
    decision = promotion.decide([_comparison(promotion.TIE)], "horizon 90 -> 30 days")
    assert decision.promote and "horizon" in decision.reason


@pytest.mark.parametrize(
    ("verdicts", "promote"),
    [
        ((promotion.BETTER, promotion.TIE), True),
        ((promotion.TIE, promotion.TIE), False),
        ((promotion.BETTER, promotion.WORSE), False),
        ((promotion.NEW, promotion.TIE), True),
    ],
)
def test_a_release_needs_a_gain_beyond_noise_and_no_loss(verdicts, promote: bool) -> None:
    decision = promotion.decide([_comparison(v) for v in verdicts], None)
    assert decision.promote is promote
    assert "95.0% CI" in decision.reason or promotion.NEW in verdicts


def test_family_level_splits_the_error_rate_over_the_targets() -> None:
    assert promotion.family_level(1) == pytest.approx(0.95)
    assert promotion.family_level(3) == pytest.approx(1 - 0.05 / 3)


def test_top_decile_lift_and_capture() -> None:
    outcome = np.array([1, 1] + [0] * 18)
    score = np.arange(20, 0, -1, dtype=float)  # the two positives score highest
    lift, capture = top_decile(outcome, score)
    assert capture == 1.0
    assert lift == pytest.approx(10.0)


def _frame(positives: int, negatives: int, cutoffs: list[pd.Timestamp]) -> pd.DataFrame:
    """A tiny labelled frame with the same class counts at every cutoff."""
    rng = np.random.default_rng(0)
    n = positives + negatives
    parts = [
        pd.DataFrame(
            {
                "customer_id": [f"C{i}" for i in range(n)],
                "cutoff": cutoff,
                "days_since_last_order": rng.uniform(1, 300, n),
                "repurchase": [1.0] * positives + [0.0] * negatives,
            }
        )
        for cutoff in cutoffs
    ]
    return pd.concat(parts, ignore_index=True)


@pytest.mark.parametrize(("positives", "negatives"), [(5, 200), (200, 5)])
def test_training_refuses_windows_with_too_few_of_a_class(positives: int, negatives: int):
    cutoffs = _cutoffs(30)
    split = split_cutoffs(cutoffs, 90)
    settings = TrainingSettings(min_positives=20, min_negatives=20)
    with pytest.raises(InsufficientDataError) as error:
        train_classifier(_frame(positives, negatives, cutoffs), "repurchase", split, settings)
    message = str(error.value)
    # the single validation cutoff is the first window short of a class
    assert "repurchase" in message and "validation window" in message
    assert f"{positives} positives and {negatives} negatives" in message
    assert "training.min_positives" in message


def test_training_refuses_an_empty_population() -> None:
    cutoffs = _cutoffs(30)
    frame = _frame(50, 50, cutoffs)
    frame["repurchase"] = np.nan  # nobody in the population (a log with no such customers)
    with pytest.raises(InsufficientDataError, match="0 positives and 0 negatives"):
        train_classifier(frame, "repurchase", split_cutoffs(cutoffs, 90), TrainingSettings())


def test_refit_learns_from_the_latest_labelled_cutoffs() -> None:
    """Behaviour that only appears after the training window (label = x > 0.5 from the
    validation window on, noise before) is learnt by the refit, not by the first fit alone."""
    cutoffs = _cutoffs(30)
    split = split_cutoffs(cutoffs, 90, test_cutoffs=2, validation_cutoffs=2)
    rng = np.random.default_rng(1)
    frame = pd.concat(
        [
            pd.DataFrame(
                {
                    "customer_id": [f"C{i}" for i in range(400)],
                    "cutoff": cutoff,
                    "days_since_last_order": (x := rng.uniform(0, 1, 400)),
                    "repurchase": (
                        x > 0.5 if cutoff >= split.validation[0] else rng.uniform(size=400) > 0.5
                    ).astype(float),
                }
            )
            for cutoff in cutoffs
        ],
        ignore_index=True,
    )
    test = frame[frame["cutoff"].isin(split.test)]

    def test_auc(refit: bool) -> float:
        model = train_classifier(frame, "repurchase", split, TrainingSettings(refit=refit))
        return roc_auc_score(test["repurchase"], model.predict_proba(test))

    assert test_auc(refit=True) > 0.9
    assert test_auc(refit=False) < 0.75


def test_backtest_gaps_pair_the_model_with_each_baseline_fold_by_fold() -> None:
    from flows.training import backtest_gaps

    folds = pd.DataFrame(
        {
            "fold": [0, 0, 0, 1, 1, 1],
            "test_start": pd.Timestamp("2025-01-01"),
            "scorer": ["model", "rank", "btyd"] * 2,
            "gini": [0.80, 0.70, 0.78, 0.60, 0.55, 0.57],
            "error": [1.0, np.nan, 3.0, 2.0, np.nan, 5.0],  # a rank has no amounts
            "mean_actual": [7.0] * 6,  # the window's, the same for every scorer: no gap
        }
    )
    gaps = backtest_gaps(folds)
    assert "mean_actual" not in gaps.columns.get_level_values(0)
    # each scorer's own spread is 0.1-0.14; the paired gap to btyd moves by 0.007 only
    assert gaps.loc["btyd", ("gini", "mean")] == pytest.approx(0.025)
    assert gaps.loc["btyd", ("gini", "std")] == pytest.approx(np.std([0.02, 0.03], ddof=1))
    assert gaps.loc["btyd", ("error", "mean")] == pytest.approx(-2.5)
    assert gaps.loc["rank", ("gini", "mean")] == pytest.approx(0.075)
    assert np.isnan(gaps.loc["rank", ("error", "mean")])


def _seasonal_frame(season: str) -> tuple[pd.DataFrame, TimeSplit]:
    """Two years of cutoffs; the label follows a customer feature and, by `season`: the time
    of year too, with the same level every year ("holds": the calendar features carry real
    signal); only in the training window, reversed afterwards ("quirk": one period's
    pattern); or not at all ("none")."""
    cutoffs = _cutoffs(56)
    split = split_cutoffs(cutoffs, 90, test_cutoffs=2, validation_cutoffs=2)
    rng = np.random.default_rng(3)
    parts = []
    for cutoff in cutoffs:
        x = rng.uniform(0, 1, 400)
        summer = np.sin(2 * np.pi * (cutoff.day_of_year - 1) / 365.25) > 0
        if season == "quirk" and cutoff >= split.validation[0]:
            summer = not summer
        chance = 0.15 + 0.5 * x + (0.3 if summer and season != "none" else 0.0)
        parts.append(
            pd.DataFrame(
                {
                    "customer_id": [f"C{i}" for i in range(400)],
                    "cutoff": cutoff,
                    "days_since_last_order": x,
                    "repurchase": (rng.uniform(size=400) < chance).astype(float),
                }
            )
        )
    frame = pd.concat(parts, ignore_index=True)
    add_calendar(frame)
    return frame, split


def _calendar_splits(model: CalibratedBooster) -> int:
    splits = dict(zip(model.features, model.booster.feature_importance("split"), strict=True))
    return int(sum(splits[f] for f in CALENDAR_FEATURES))


@pytest.mark.parametrize("refit", [True, False])
@pytest.mark.parametrize(("season", "kept"), [("holds", True), ("quirk", False), ("none", True)])
def test_a_classifier_leaves_the_calendar_out_only_when_validation_shows_it_hurts(
    season: str, kept: bool, refit: bool
) -> None:
    frame, split = _seasonal_frame(season)
    model = train_classifier(frame, "repurchase", split, TrainingSettings(refit=refit))
    losses = model.chosen_by
    gain = (
        losses["validation.binary_logloss.with_calendar"]
        - losses["validation.binary_logloss.without_calendar"]
    )
    evidence = CALENDAR_EVIDENCE_SE * losses["validation.binary_logloss.difference_se"]
    assert model.calendar is kept
    # left out only on a gain beyond noise; with no seasonal signal at all there is none
    assert (gain > evidence) is (not kept)
    if season == "holds":
        assert gain < 0
    # the model without them never splits on them, although they are among its inputs
    assert (_calendar_splits(model) == 0) is (not kept)


def test_a_backtest_fold_repeats_the_main_splits_calendar_choice(tmp_path) -> None:
    from flows.config import load_config
    from flows.training import fit_model

    frame, split = _seasonal_frame("holds")
    config = load_config(Path(__file__).parents[1] / "configs" / "default.yaml")
    main = train_classifier(frame, "repurchase", split, config.training, calendar=False)
    assert main.calendar is False and main.chosen_by == {}  # told, not chosen
    fold = fit_model(frame, "repurchase", split, config, 90, like=main)
    assert fold.calendar is False and fold.chosen_by == {} and _calendar_splits(fold) == 0
    main.save(tmp_path)
    loaded = CalibratedBooster.load(tmp_path)
    assert loaded.calendar is False
    assert np.allclose(loaded.predict(frame), main.predict(frame))


def test_a_frame_without_calendar_features_has_none_to_use() -> None:
    frame, split = _seasonal_frame("holds")
    model = train_classifier(
        frame.drop(columns=list(CALENDAR_FEATURES)), "repurchase", split, TrainingSettings()
    )
    assert model.calendar is False and model.chosen_by == {}


def test_a_baseline_that_ranks_better_than_the_model_is_named() -> None:
    """A short log's first release goes live whatever it scores; `dangol train` warns when a
    rule ranked the test window better than the model did."""
    from models.registry import baselines_ahead

    metrics = {"roc_auc": 0.579, "pr_auc": 0.7}
    baselines = {"rfm": {"roc_auc": 0.595}, "recency": {"roc_auc": 0.51}, "odd": {}}
    assert baselines_ahead("repurchase", metrics, baselines) == [
        "rfm ranks better than the model on the test window: ROC-AUC 0.595 against 0.579"
    ]
    assert baselines_ahead("repurchase", {**metrics, "roc_auc": 0.6}, baselines) == []


def test_a_model_that_kept_almost_no_rounds_is_named() -> None:
    """A four-month log: early stopping kept one round, every buyer got nearly the same
    score, and the test metrics did not show it."""
    import lightgbm as lgb

    from flows.training import TrainedTarget, barely_learned_note

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    y = (x[:, 0] + rng.normal(size=400) > 0).astype(float)

    def fitted(rounds: int) -> TrainedTarget:
        params = {"objective": "binary", "verbose": -1, "learning_rate": 0.05}
        booster = lgb.train(params, lgb.Dataset(x, y), num_boost_round=rounds)
        model = type("Model", (), {"booster": booster})()
        return TrainedTarget("repurchase", model, pd.DataFrame(), metrics={}, baselines={})

    note = barely_learned_note(fitted(1), 0.05)
    assert note is not None and note.startswith("kept 1 boosting round at learning rate 0.05")
    assert barely_learned_note(fitted(60), 0.05) is None


def test_a_loss_comparison_reads_as_a_reduction() -> None:
    """MAE in days 16.30 against the live 16.44 printed "difference -0.14": the oriented
    delta is an improvement of +0.14, and the line must say which way is better."""
    rng = np.random.default_rng(3)
    days = rng.uniform(1, 90, 600)
    live = days + rng.normal(0, 20, 600)
    new = days + rng.normal(0, 10, 600)
    groups = np.arange(600)
    comparison = promotion.compare("next", "mae_days", days, new, live, groups, replicates=200)
    assert comparison.challenger < comparison.champion  # the new model's MAE is lower
    assert comparison.delta > 0 and comparison.verdict == promotion.BETTER
    text = comparison.describe()
    assert f"reduction (lower is better) +{comparison.delta:.4f}" in text
    assert "difference" in _comparison(promotion.BETTER).describe()


def test_the_decision_names_a_value_horizon_that_moved() -> None:
    """Data grew from one year to two: the value score went from 90 to 180 days and the
    decision said nothing about it."""
    from features.targets import amount_target
    from flows.config import load_config
    from flows.publish import _decide
    from models.release import Release, TargetVersion, settings_record
    from tests.conftest import REPO

    config = load_config(REPO / "configs" / "default.yaml")
    value = amount_target().name
    recorded = settings_record(90, config.tiers, config.features)
    live = Release(
        id="run",
        run_key="key",
        code_version="c",
        data_window={},
        targets={value: TargetVersion("dangol-value", "1", "run", horizon_days=90)},
        version="3",
        **recorded,
    )
    better = promotion.Comparison(value, "normalized_gini", 0.9, 0.8, 0.1, 0.05, 0.15, "better")
    decision = _decide([better], live, config, {value: 180})
    assert decision.promote
    assert decision.reason.endswith(
        f"the candidate's {value} looks over 180 days (the live release v3's: 90)"
    )
    assert "looks over" not in _decide([better], live, config, {value: 90}).reason


def test_logged_baselines_read_what_the_retrain_logs() -> None:
    """One reader of the baselines a target run logged (scored and failed), used by the
    report and by an unchanged retrain, which printed no failed baseline."""
    from models.registry import logged_baselines

    metrics = {"test.roc_auc": 0.8, "baseline.rfm.roc_auc": 0.7, "baseline.rfm.pr_auc": 0.6}
    tags = {
        "baseline.rfm.status": "ok",
        "baseline.previous_window.status": "failed",
        "baseline.previous_window.reason": "no spend_60d feature",
    }
    scored, failed = logged_baselines(metrics, tags)
    assert scored == {"rfm": {"roc_auc": 0.7, "pr_auc": 0.6}}
    assert failed == {"previous_window": "no spend_60d feature"}
