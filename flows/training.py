"""Training stage: features and labels at every labelled cutoff, one target's model with its
holdout evaluation, baselines and rolling-origin backtest.

Plain functions over the config (no Prefect, no MLflow), wrapped in tasks by the flows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.schema import ShopTables
from features.snapshot import labelled_cutoffs
from features.targets import TARGETS, amount_target
from flows.config import DangolConfig
from flows.data import data_end, first_event, training_frame
from models.evaluate import (
    NOT_COMPARED,
    BaselineResults,
    baseline_rules,
    evaluate_baselines,
    gaps,
    model_metrics,
    plot_backtest,
    plot_calibration,
    plot_days,
    plot_deciles,
    plot_gain,
    plot_importance,
)
from models.explain import feature_importance
from models.timing import train_timing_model
from models.train import (
    CalibratedBooster,
    InsufficientDataError,
    TargetModel,
    TimeSplit,
    check_sufficient,
    split_cutoffs,
    train_classifier,
    window_rows,
)
from models.uplift import UpliftSelection, plot_qini, select_uplift_model
from models.value import (
    RECIPES,
    ValueModel,
    check_spenders,
    decile_table,
    train_value_model,
    unseen_season_days,
)
from models.worth import converted, train_worth, worth_metrics


def time_split(cutoffs: list[pd.Timestamp], horizon_days: int, config: DangolConfig) -> TimeSplit:
    """The train / validation / test split of `cutoffs` by the config's window sizes."""
    return split_cutoffs(
        cutoffs,
        horizon_days,
        test_cutoffs=config.training.test_cutoffs,
        validation_cutoffs=config.training.validation_cutoffs,
    )


def value_horizon(cutoffs: list[pd.Timestamp], config: DangolConfig) -> int | None:
    """The value target's horizon: the longest feature window between H and
    `labels.value_horizon_days` whose training, validation and test windows fit in the data
    (the labelled cutoffs run to data end - H). None when not even H fits. The previous-window
    baseline needs a feature window of the same length, hence windows only."""
    horizon = config.labels.horizon_days
    for days in value_horizon_candidates(config):
        try:
            time_split(value_cutoffs(cutoffs, days, horizon), days, config)
        except InsufficientDataError:
            continue
        return days
    return None


def value_horizon_candidates(config: DangolConfig) -> list[int]:
    """The value horizons to try, longest first: the feature windows between H and
    `labels.value_horizon_days`, and H itself."""
    horizon = config.labels.horizon_days
    windows = config.features.windows()
    wanted = [w for w in windows if horizon <= w <= config.labels.value_horizon_days]
    return sorted({*wanted, horizon}, reverse=True)


def value_horizon_note(cutoffs: list[pd.Timestamp], config: DangolConfig) -> str | None:
    """Why the value target looks over fewer days than `labels.value_horizon_days` allows,
    when it does (None otherwise, and when not even H fits: the target's own message)."""
    if not cutoffs:
        return None
    days = value_horizon(cutoffs, config)
    horizon, wanted = config.labels.horizon_days, config.labels.value_horizon_days
    longest = value_horizon_candidates(config)[0]
    if days is None or days >= longest:
        return None
    spec = amount_target()
    span = (max(cutoffs) + pd.Timedelta(days=horizon) - min(cutoffs)).days
    return (
        f"{spec.name if spec else 'value'} over {days} days, not up to {longest}: a longer "
        "window's training, validation and test labels, which may not overlap, do not fit in "
        f"the {span} days the labelled cutoffs and their horizons cover "
        f"(labels.value_horizon_days {wanted})"
    )


def value_cutoffs(
    cutoffs: list[pd.Timestamp], value_days: int, horizon_days: int
) -> list[pd.Timestamp]:
    """The cutoffs whose value horizon ends by the end of the data (last cutoff + H)."""
    end = max(cutoffs) + pd.Timedelta(days=horizon_days)
    return [c for c in sorted(cutoffs) if c + pd.Timedelta(days=value_days) <= end]


def target_horizon(target: str, cutoffs: list[pd.Timestamp], config: DangolConfig) -> int:
    """The horizon a target's labels look over (the value target's is chosen from the data)."""
    if TARGETS[target].horizon == "horizon_days":
        return config.labels.horizon_days
    days = value_horizon(cutoffs, config)
    if days is None:
        raise InsufficientDataError(
            f"{target}: the data is too short for a value horizon of even "
            f"{config.labels.horizon_days} days (training, validation and test windows)"
        )
    return days


def target_split(frame: pd.DataFrame, target: str, config: DangolConfig) -> TimeSplit:
    """The time split of a target over the cutoffs where its label is observed."""
    cutoffs = sorted(pd.Timestamp(c) for c in frame["cutoff"].unique())
    days = target_horizon(target, cutoffs, config)
    observed = sorted(pd.Timestamp(c) for c in frame.loc[frame[target].notna(), "cutoff"].unique())
    return time_split(observed, days, config)


def span_advice(first: pd.Timestamp, end: pd.Timestamp, config: DangolConfig) -> str:
    """What to change when the data spans too little time for a train/validation/test split."""
    needed = needed_span_days(first, config)
    return (
        f"the data spans {(end - first).days} days; training needs {needed} with these settings "
        "(training.min_history_days before the first cutoff, then three horizons, since "
        "training, validation and test labels may not overlap, plus the validation and test "
        "cutoffs): shorten labels.horizon_days or training.min_history_days, or cut more "
        "often (training.cutoff_every_days)"
    )


def needed_span_days(first: pd.Timestamp, config: DangolConfig) -> int:
    """The shortest span of data from `first` whose labelled cutoffs split into training,
    validation and test windows: found with the split itself, so the advice can never
    disagree with it (the cutoff grid's alignment moves it by up to a step each way)."""
    settings = config.training
    horizon, every = config.labels.horizon_days, settings.cutoff_every_days
    # no span below this fits (min_history, three horizons, the validation and test cutoffs
    # beyond the first of each); the grid's alignment adds less than two steps
    least = settings.min_history_days + 3 * horizon
    least += every * (settings.test_cutoffs + settings.validation_cutoffs - 2)
    for span in range(max(least - 1, 0), least + 2 * every + 2):
        end = first + pd.Timedelta(days=span)
        cutoffs = labelled_cutoffs(first, end, every, horizon, settings.min_history_days)
        try:
            time_split(cutoffs, horizon, config)
            return span
        except InsufficientDataError:
            continue
    return least + 2 * every


def build_training_data(tables: ShopTables, config: DangolConfig) -> tuple[pd.DataFrame, TimeSplit]:
    """Features and labels at every labelled cutoff, and their time split."""
    first, end = first_event(tables), data_end(tables, config)
    cutoffs = labelled_cutoffs(
        first,
        end,
        config.training.cutoff_every_days,
        config.labels.horizon_days,
        config.training.min_history_days,
    )
    try:
        split = time_split(cutoffs, config.labels.horizon_days, config)
    except InsufficientDataError as exc:
        raise InsufficientDataError(f"{exc}; {span_advice(first, end, config)}") from exc
    # every labelled cutoff, not only the split's: the backtest's earlier splits and the
    # value target's own split use the cutoffs between the main split's windows
    used = cutoffs
    value_days = value_horizon(cutoffs, config)
    frame = training_frame(tables, config, used, value_days)
    # spend after a cutoff is only known when its whole value horizon lies in the data
    known = value_cutoffs(cutoffs, value_days, config.labels.horizon_days) if value_days else []
    for spec in TARGETS.values():
        if spec.horizon != "horizon_days":
            frame.loc[~frame["cutoff"].isin(known), spec.name] = np.nan
    return frame, split


@dataclass
class TrainedTarget:
    """One target's model with its holdout evaluation, baselines and backtest."""

    target: str
    model: TargetModel
    test_rows: pd.DataFrame
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    plots: list[Path] = field(default_factory=list)
    baseline_failures: dict[str, str] = field(default_factory=dict)
    backtest: pd.DataFrame | None = None
    # the target's own split and horizon (the value target's differ from the shared ones)
    split: TimeSplit | None = None
    horizon_days: int | None = None
    # each feature's importance and what it measures (models.explain.feature_importance),
    # computed once for the plot and the MLflow record
    importance: tuple[np.ndarray, str] | None = None

    def test_scores(self) -> np.ndarray:
        return self.model.predict(self.test_rows)

    def gaps(self) -> dict[str, dict[str, float]]:
        """Model minus each baseline, per metric both have."""
        return {name: gaps(self.metrics, m) for name, m in self.baselines.items()}


def applicable(frame: pd.DataFrame, target: str) -> bool:
    """Whether the target has a population at all (first purchase needs members who never
    bought: a log of orders alone has none)."""
    return target in frame and bool(frame[target].notna().any())


def targets_to_train(frame: pd.DataFrame) -> list[str]:
    """Every required target, and each optional one that has a population in this data."""
    return [n for n, spec in TARGETS.items() if spec.required or applicable(frame, n)]


@dataclass
class SplitEvaluation:
    """The recipe's result on one split: model, test rows, metrics and baselines."""

    model: TargetModel
    test_rows: pd.DataFrame
    proba: np.ndarray
    metrics: dict[str, float]
    baselines: BaselineResults


def evaluate_split(
    frame: pd.DataFrame,
    split: TimeSplit,
    target: str,
    config: DangolConfig,
    like: TargetModel | None = None,
) -> SplitEvaluation:
    """Train on the split's training window and judge model and baselines on its test window
    (`like`: the main split's model, whose recipe a backtest fold repeats)."""
    cutoffs = sorted(pd.Timestamp(c) for c in frame["cutoff"].unique())
    horizon = target_horizon(target, cutoffs, config)
    model = fit_model(frame, target, split, config, horizon, like)
    test_rows = window_rows(frame, target, split.test)
    check_test_window(test_rows, target, config)
    rules = baseline_rules(target, horizon, config.training.bgnbd_penalty)
    metrics = model_metrics(target, model, test_rows)
    if TARGETS[target].kind == "amount":
        fitted = split.fitted(config.training.refit)
        metrics["unseen_season_days"] = unseen_season_days(fitted, horizon, split.test[0])
    if isinstance(model, CalibratedBooster):
        metrics |= worth_metrics(frame, target, split, config.training, model)
    return SplitEvaluation(
        model=model,
        test_rows=test_rows,
        proba=model.predict(test_rows),
        metrics=metrics,
        baselines=evaluate_baselines(target, test_rows, rules),
    )


def fit_model(
    frame: pd.DataFrame,
    target: str,
    split: TimeSplit,
    config: DangolConfig,
    horizon: int,
    like: TargetModel | None = None,
) -> TargetModel:
    """The target's model by its kind: classifier (with the worth of its conversion, for a
    spec that names one: models.worth), money regressor (every recipe, or only the recipe of
    `like`) or timing model."""
    kind = TARGETS[target].kind
    if kind == "days":
        return train_timing_model(frame, target, split, config.training, horizon)
    if kind == "amount":
        recipes = (like.recipe,) if isinstance(like, ValueModel) else RECIPES
        return train_value_model(frame, target, split, config.training, recipes)
    calendar = like.calendar if isinstance(like, CalibratedBooster) else None
    model = train_classifier(frame, target, split, config.training, calendar)
    model.worth = train_worth(frame, target, split, config.training, model.features, model.calendar)
    return model


def check_test_window(rows: pd.DataFrame, target: str, config: DangolConfig) -> None:
    kind = TARGETS[target].kind
    if kind == "days":
        if len(rows) < config.training.min_positives:
            raise InsufficientDataError(
                f"{target}: the test window has {len(rows)} next orders within the horizon; "
                f"at least {config.training.min_positives} are needed (training.min_positives)"
            )
        return
    check = check_spenders if kind == "amount" else check_sufficient
    check(rows, target, "test", config.training)


def rolling_backtest(
    frame: pd.DataFrame, target: str, config: DangolConfig, first: SplitEvaluation, split: TimeSplit
) -> pd.DataFrame:
    """The same recipe at successive earlier test windows (rolling origin): one row per
    (fold, scorer) with its metrics. Fold 0 is the main split; earlier folds that the data
    cannot support are left out."""
    every = sorted(pd.Timestamp(c) for c in frame["cutoff"].unique())
    horizon = target_horizon(target, every, config)
    cutoffs = sorted(pd.Timestamp(c) for c in frame.loc[frame[target].notna(), "cutoff"].unique())
    step = config.training.test_cutoffs
    folds = [(0, split, first)]
    for fold in range(1, config.training.backtest_folds):
        kept = cutoffs[: len(cutoffs) - fold * step]
        try:
            fold_split = split_cutoffs(
                kept,
                horizon,
                test_cutoffs=step,
                validation_cutoffs=config.training.validation_cutoffs,
            )
            result = evaluate_split(frame, fold_split, target, config, first.model)
            folds.append((fold, fold_split, result))
        except InsufficientDataError:
            break
    rows = []
    for fold, fold_split, result in folds:
        scorers = {"model": result.metrics} | result.baselines.metrics
        for scorer, metrics in scorers.items():
            rows.append(
                {"fold": fold, "test_start": fold_split.test[0], "scorer": scorer} | metrics
            )
    return pd.DataFrame(rows)


def backtest_summary(folds: pd.DataFrame) -> pd.DataFrame:
    """Mean and spread (standard deviation) of each metric per scorer across the folds."""
    metrics = [c for c in folds.columns if c not in ("fold", "test_start", "scorer")]
    summary = folds.groupby("scorer", sort=False)[metrics].agg(["mean", "std"])
    summary.insert(0, ("folds", ""), folds.groupby("scorer", sort=False).size())
    return summary


def backtest_gaps(folds: pd.DataFrame) -> pd.DataFrame:
    """The model minus each baseline, fold by fold, as mean and spread per metric.

    Both scorers see the same customers in a fold, so the spread of the paired gap is the
    noise a claim of "better" must clear; the spread of each scorer's own metric is larger,
    because it also holds how easy each test window happens to be."""
    keys = ("fold", "test_start", "scorer")
    metrics = [c for c in folds.columns if c not in keys and c not in NOT_COMPARED]
    model = folds[folds["scorer"] == "model"].set_index("fold")[metrics]
    rows = {}
    for scorer, part in folds[folds["scorer"] != "model"].groupby("scorer", sort=False):
        gap = (model - part.set_index("fold")[metrics]).dropna(how="all")
        rows[scorer] = gap.agg(["mean", "std"]).unstack()
    return pd.DataFrame(rows).T.dropna(axis=1, how="all")


def train_target(
    frame: pd.DataFrame, split: TimeSplit, target: str, config: DangolConfig, plot_dir: Path
) -> TrainedTarget:
    """Fit one target, evaluate it and its baselines on the test window, and backtest it.
    `split` is the shared split; a target with its own horizon (value) uses its own."""
    spec = TARGETS[target]
    if spec.horizon != "horizon_days":
        split = target_split(frame, target, config)
    cutoffs = sorted(pd.Timestamp(c) for c in frame["cutoff"].unique())
    result = evaluate_split(frame, split, target, config)
    backtest = rolling_backtest(frame, target, config, result, split)
    importance = feature_importance(result.model, result.test_rows)
    return TrainedTarget(
        target=target,
        model=result.model,
        test_rows=result.test_rows,
        metrics=result.metrics,
        baselines=result.baselines.metrics,
        plots=_plots(target, result, backtest, importance, config, plot_dir),
        baseline_failures=result.baselines.failures,
        backtest=backtest,
        split=split,
        horizon_days=target_horizon(target, cutoffs, config),
        importance=importance,
    )


# Below this many rounds x learning rate, boosting has moved the scores only a small step
# from the average: the model hardly tells customers apart (one round at 0.05 on a
# four-month log gave every buyer the same 10-day window).
BARELY_LEARNED_STEP = 0.25


def barely_learned_note(trained: TrainedTarget, learning_rate: float) -> str | None:
    """A warning when early stopping kept so few boosting rounds that the model's scores
    are close to one value for everybody; the test metrics may still look fine, since
    rankings survive tiny differences."""
    boosters = getattr(trained.model, "boosters", None) or {"": trained.model.booster}
    rounds = min(booster.current_iteration() for booster in boosters.values())
    if rounds * learning_rate >= BARELY_LEARNED_STEP:
        return None
    return (
        f"kept {rounds} boosting round{'s' if rounds != 1 else ''} at learning rate "
        f"{learning_rate:g}: the validation window gave it almost nothing to learn beyond the "
        "average, so its scores barely differ between customers; more history, more cutoffs "
        "or a longer horizon give it more to learn from"
    )


def unseen_season_note(trained: TrainedTarget) -> str:
    """What `unseen_season_days` means for this run's test window, in words."""
    days = int(trained.metrics["unseen_season_days"])
    start = f" {trained.split.test[0].date()}" if trained.split else ""
    total = trained.metrics.get("total_error_pct", float("nan"))
    return (
        f"{days} of the {trained.horizon_days} days after the test cutoff{start} fall at a "
        "time of year that no training label window covers, so the spend level there is "
        f"extrapolated from other seasons (total error on the test window {total:+.0f}%); a "
        "log longer than a year plus the value horizon lets the model learn it"
    )


def _plots(
    target: str,
    result: SplitEvaluation,
    backtest: pd.DataFrame,
    importance: tuple[np.ndarray, str],
    config: DangolConfig,
    plot_dir: Path,
) -> list[Path]:
    """Fit plots by kind (gain and calibration; gain and predicted-vs-actual spend per decile
    for money; predicted against observed day for timing), then importance and backtest."""
    outcome = result.test_rows[target].to_numpy()
    kind = TARGETS[target].kind
    scores = {"model": result.proba} | result.baselines.scores
    path = plot_dir / target
    if kind == "days":
        fit = [
            plot_days(
                outcome, scores, f"{target}: predicted vs observed day", Path(f"{path}_days.png")
            )
        ]
    else:
        fit = [
            plot_gain(
                outcome, scores, f"{target}: gain on the test window", Path(f"{path}_gain.png")
            )
        ]
    if kind == "amount":
        customers = result.test_rows["customer_id"].to_numpy()
        table = decile_table(outcome, result.proba, customers)
        title = f"{target}: predicted vs actual spend by decile"
        fit.append(plot_deciles(table, config.data.currency, title, Path(f"{path}_deciles.png")))
    elif kind == "probability":
        title = f"{target}: calibration"
        fit.append(plot_calibration(outcome, result.proba, title, Path(f"{path}_calibration.png")))
        fit += _worth_plot(target, result, config, path)
    headline = {"amount": "normalized_gini", "days": "c_index"}.get(kind, "roc_auc")
    return [
        *fit,
        plot_importance(
            result.model.features,
            importance[0],
            f"{target}: feature importance",
            Path(f"{path}_importance.png"),
            importance[1],
        ),
        plot_backtest(
            backtest, headline, f"{target}: rolling-origin backtest", Path(f"{path}_backtest.png")
        ),
    ]


def _worth_plot(
    target: str, result: SplitEvaluation, config: DangolConfig, path: Path
) -> list[Path]:
    """Predicted against actual worth of the test window's conversions per decile of the
    prediction (models.worth), for a classifier that learned one."""
    model, outcome = result.model, TARGETS[target].worth_outcome
    if not isinstance(model, CalibratedBooster) or model.worth is None or outcome is None:
        return []
    rows = converted(result.test_rows, target, outcome)
    if len(rows) < 10:  # a decile each
        return []
    actual = rows[outcome].to_numpy("float64")
    table = decile_table(actual, model.order_worth(rows), rows["customer_id"].to_numpy())
    title = f"{target}: predicted vs actual {outcome.replace('_', ' ')} by decile"
    return [plot_deciles(table, config.data.currency, title, Path(f"{path}_worth_deciles.png"))]


def train_uplift(tables: ShopTables, config: DangolConfig, plot_dir: Path) -> UpliftSelection:
    """The release's uplift model from the logged campaigns with holdouts, if one beats the
    response model on the latest finished campaign beyond noise (models.uplift
    `select_uplift_model`); with the Qini-curve plot of that judgement. Without campaign logs
    or with too few holdout buyers the selection holds no model and says why."""
    selection = select_uplift_model(
        tables,
        data_end(tables, config),
        config.features,
        config.tiers,
        config.data.attribution_days,
        config.registry.bootstrap_replicates,
    )
    if selection.evaluation is not None:
        selection.plots.append(plot_qini(selection.evaluation, plot_dir / "uplift_qini.png"))
    return selection
