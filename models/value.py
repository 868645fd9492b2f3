"""Customer value in money: spend over the value horizon, by LightGBM regressors built for
zero-inflated, heavy-tailed spend, and the metrics that judge money predictions.

Two recipes are fitted on the training window with early stopping on the validation window,
and the one with the higher normalized Gini on validation is kept (docs/evaluation.md, Value):
- `tweedie`: one booster with the Tweedie objective (a point mass at zero plus a skewed
  positive part, log link), predicting expected spend directly;
- `two_part`: P(any spend) from a binary booster times E[spend | some spend] from a Gamma
  booster fitted on the spenders only (log link).
As for the classifiers, the kept recipe is then refitted on every cutoff whose value horizon
ends by the test window, with the rounds the validation window chose.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy import stats

from models.train import (
    InsufficientDataError,
    TimeSplit,
    TrainingSettings,
    booster_params,
    calendar_params,
    fit_booster,
    fit_matrix,
    window_rows,
)

Recipe = Literal["tweedie", "two_part"]
RECIPES: tuple[Recipe, ...] = ("tweedie", "two_part")
VALUE_FILE = "value.json"
# the two-part recipe's boosters
BUYS, SPEND_IF_BUYS = "buys", "spend_if_buys"
TWEEDIE_POWER = 1.5


@dataclass
class ValueModel:
    """Predicted spend in money for each row, explained by `contributions` to its logarithm;
    `booster` is the spend booster (its size and gain importances are the ones logged)."""

    recipe: Recipe
    boosters: dict[str, lgb.Booster]
    features: list[str] = field(default_factory=list)
    chosen_by: dict[str, float] = field(default_factory=dict)

    @property
    def booster(self) -> lgb.Booster:
        return self.boosters[SPEND_IF_BUYS if self.recipe == "two_part" else "spend"]

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        matrix = frame[self.features].to_numpy(dtype="float64")
        if self.recipe == "two_part":
            return self.boosters[BUYS].predict(matrix) * self.boosters[SPEND_IF_BUYS].predict(
                matrix
            )
        return self.boosters["spend"].predict(matrix)

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        """TreeSHAP contributions to the log of the predicted spend, one column per feature
        and the base last: per row they sum to log(predict), both parts of a two-part model
        included (a Tweedie or Gamma booster's raw margin is already that logarithm)."""
        if self.recipe != "two_part":
            return self.boosters["spend"].predict(matrix, pred_contrib=True)
        buys = self.boosters[BUYS].predict(matrix, pred_contrib=True)
        spend = self.boosters[SPEND_IF_BUYS].predict(matrix, pred_contrib=True)
        return log_probability_contributions(buys) + spend

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for name, booster in self.boosters.items():
            booster.save_model(str(directory / f"{name}.txt"))
        record = {"recipe": self.recipe, "features": self.features, "chosen_by": self.chosen_by}
        (directory / VALUE_FILE).write_text(json.dumps(record))

    @classmethod
    def load(cls, directory: Path) -> ValueModel:
        record = json.loads((directory / VALUE_FILE).read_text())
        names = [BUYS, SPEND_IF_BUYS] if record["recipe"] == "two_part" else ["spend"]
        boosters = {n: lgb.Booster(model_file=str(directory / f"{n}.txt")) for n in names}
        return cls(record["recipe"], boosters, record["features"], record.get("chosen_by", {}))


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def log_probability_contributions(logit: np.ndarray) -> np.ndarray:
    """A binary booster's TreeSHAP contributions (log-odds, base last) moved to the log of
    its probability, so that they add to the log of a product of probability and amount.

    The link is not additive, so each row's contributions are scaled by one factor, the
    secant of log-sigmoid between the base and the row's margin: their sum becomes exactly
    log p - log p(base), every feature keeps its sign and its share of the row's total, and
    the base becomes log p(base). Where the margin equals the base the factor is the slope
    there (the contributions then cancel each other)."""
    base = logit[:, -1]
    step = logit[:, :-1].sum(axis=1)
    gained = _log_sigmoid(base + step) - _log_sigmoid(base)
    slope = 1.0 - 1.0 / (1.0 + np.exp(-base))
    flat = np.abs(step) < 1e-12
    factor = np.where(flat, slope, gained / np.where(flat, 1.0, step))
    out = logit * factor[:, None]
    out[:, -1] = _log_sigmoid(base)
    return out


# ----------------------------------------------------------------------------- metrics


def _lorenz_area(actual: np.ndarray, score: np.ndarray, weight: np.ndarray) -> float:
    """Area between the capture curve (share of spend against share of customers, best
    score first) and the diagonal. Tied scores count at their average: the curve is only
    taken at the end of each group of ties, as a random order inside the group would give."""
    order = np.argsort(-score, kind="stable")
    actual, score, weight = actual[order], score[order], weight[order]
    ends = np.flatnonzero(np.r_[score[1:] != score[:-1], True])
    people = np.r_[0.0, np.cumsum(weight)[ends] / weight.sum()]
    spend = np.r_[0.0, np.cumsum(weight * actual)[ends] / max((weight * actual).sum(), 1e-300)]
    return float(np.sum((people[1:] - people[:-1]) * (spend[1:] + spend[:-1]) / 2) - 0.5)


def normalized_gini(
    actual: np.ndarray, predicted: np.ndarray, weight: np.ndarray | None = None
) -> float:
    """Gini of the ranking by the prediction over the Gini of the perfect ranking: 1 orders
    customers exactly by what they spent, 0 is no better than random."""
    actual = np.asarray(actual, dtype="float64")
    weight = np.ones(len(actual)) if weight is None else np.asarray(weight, dtype="float64")
    best = _lorenz_area(actual, actual, weight)
    if best <= 0:
        return float("nan")
    return _lorenz_area(actual, np.asarray(predicted, dtype="float64"), weight) / best


def top_decile_capture(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Share of all spend made by the 10% of customers with the highest predictions (ties at
    the boundary counted at their average)."""
    order = np.argsort(-predicted, kind="stable")
    n_top = max(1, int(np.ceil(0.1 * len(predicted))))
    threshold = predicted[order[n_top - 1]]
    above = predicted > threshold
    tied = predicted == threshold
    taken = actual[above].sum() + actual[tied].mean() * (n_top - above.sum())
    return float(taken / actual.sum()) if actual.sum() > 0 else float("nan")


def decile_table(
    actual: np.ndarray, predicted: np.ndarray, customers: np.ndarray | None = None
) -> pd.DataFrame:
    """Per decile of the prediction (10 = highest): customers, mean predicted and mean actual
    spend, and the error of the mean prediction relative to the mean actual. With `customers`
    (one id per row), also `error_low` .. `error_high`, the 95% interval of each decile's
    error by a bootstrap over customers (`decile_error_intervals`)."""
    frame = pd.DataFrame({"predicted": predicted, "actual": actual})
    frame["decile"] = 10 - pd.qcut(
        (-frame["predicted"]).rank(method="first"), 10, labels=False
    ).astype(int)
    table = frame.groupby("decile").agg(
        customers=("actual", "size"),
        mean_predicted=("predicted", "mean"),
        mean_actual=("actual", "mean"),
    )
    table["error"] = (
        table["mean_predicted"] / table["mean_actual"].where(table["mean_actual"] > 0) - 1
    )
    if customers is not None:
        frame["customer"] = np.asarray(customers)
        table = table.join(decile_error_intervals(frame))
    return table.sort_index(ascending=False)


DECILE_DRAWS = 1000


def decile_error_intervals(
    frame: pd.DataFrame, draws: int = DECILE_DRAWS, seed: int = 0
) -> pd.DataFrame:
    """The 95% interval of each decile's error (Σ predicted / Σ actual - 1) when the same
    kind of customers had been drawn again: a bootstrap that resamples the decile's customers
    with all their rows (a customer has one row per test cutoff, and those rows move
    together). How far a decile's error can be trusted: on a few hundred heavy-tailed
    spenders the mean actual spend alone moves by tens of percent."""
    rng = np.random.default_rng(seed)
    rows = {}
    for decile, members in frame.groupby("decile"):
        per_customer = members.groupby("customer")[["predicted", "actual"]].sum()
        predicted, actual = _resampled_sums(
            per_customer["predicted"].to_numpy(), per_customer["actual"].to_numpy(), draws, rng
        )
        errors = predicted[actual > 0] / actual[actual > 0] - 1
        low, high = np.quantile(errors, [0.025, 0.975]) if len(errors) else (np.nan, np.nan)
        rows[decile] = {"error_low": low, "error_high": high}
    return pd.DataFrame.from_dict(rows, orient="index")


def _resampled_sums(
    predicted: np.ndarray, actual: np.ndarray, draws: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Σ predicted and Σ actual over `draws` resamples of the rows, drawn 100 at a time (a
    decile of 50,000 customers would otherwise hold 50 million indices at once)."""
    sums = []
    for start in range(0, draws, 100):
        picks = rng.integers(0, len(actual), (min(100, draws - start), len(actual)))
        sums.append((predicted[picks].sum(axis=1), actual[picks].sum(axis=1)))
    return np.concatenate([p for p, _ in sums]), np.concatenate([a for _, a in sums])


def ranking_value_metrics(actual: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """Metrics that only need an ordering (a rank baseline has nothing more)."""
    return {
        "normalized_gini": normalized_gini(actual, score),
        "spearman": float(stats.spearmanr(actual, score).statistic),
        "capture_top_decile": top_decile_capture(actual, score),
    }


def value_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Ranking metrics plus those that judge the amounts: total error, MAE, and the largest
    error of the mean prediction among the five top deciles."""
    actual = np.asarray(actual, dtype="float64")
    predicted = np.asarray(predicted, dtype="float64")
    deciles = decile_table(actual, predicted)
    return {
        **ranking_value_metrics(actual, predicted),
        "total_error_pct": float(100 * (predicted.sum() / actual.sum() - 1)),
        "mae": float(np.mean(np.abs(predicted - actual))),
        "max_top5_decile_error_pct": float(100 * deciles["error"].head(5).abs().max()),
        "mean_actual": float(actual.mean()),
        "mean_prediction": float(predicted.mean()),
    }


# ----------------------------------------------------------------------------- seasons


def _calendar_days(start: pd.Timestamp, days: int) -> np.ndarray:
    """The time of year of each of `days` days from `start`, as month * 32 + day (29
    February counts as the 28th: a leap day is the season of the day before)."""
    dates = pd.date_range(pd.Timestamp(start).normalize(), periods=days, freq="D")
    day = np.where((dates.month == 2) & (dates.day == 29), 28, dates.day)
    return dates.month.to_numpy() * 32 + day


def unseen_season_days(fitted: list[pd.Timestamp], horizon_days: int, start: pd.Timestamp) -> int:
    """How many of the `horizon_days` days from `start` fall at a time of year that no label
    window of the fitted cutoffs ([c, c + horizon)) covered. The model has never seen the
    level of spend on those days, so its amounts for them follow other seasons: on a log of
    a year or less every test window is unseen this way (docs/evaluation.md, Value)."""
    covered = np.zeros(13 * 32, dtype=bool)
    for cutoff in fitted:
        covered[_calendar_days(cutoff, horizon_days)] = True
    return int((~covered[_calendar_days(start, horizon_days)]).sum())


# ----------------------------------------------------------------------------- training


def objective_params(settings: TrainingSettings, objective: str) -> dict[str, object]:
    params = booster_params(settings) | {"objective": objective, "metric": objective}
    if objective == "tweedie":
        params["tweedie_variance_power"] = TWEEDIE_POWER
    return params


def refit_booster(
    rows: pd.DataFrame,
    label: str,
    features: list[str],
    objective: str,
    settings: TrainingSettings,
    rounds: int,
    calendar: bool = True,
) -> lgb.Booster:
    """A booster fitted on all `rows` for `rounds` (chosen earlier on validation), with or
    without the calendar features (`models.train.calendar_params`)."""
    data = lgb.Dataset(fit_matrix(rows, features), rows[label], free_raw_data=True)
    params = calendar_params(objective_params(settings, objective), features, calendar)
    return lgb.train(params, data, num_boost_round=max(rounds, 1))


def _with_parts(rows: pd.DataFrame, target: str) -> pd.DataFrame:
    """The label split for the two-part recipe: whether any spend, and the spend itself."""
    return rows.assign(_buys=(rows[target] > 0).astype("float64"))


# recipe -> the boosters it fits: (name, label column, objective, rows: all or spenders)
PARTS: dict[Recipe, tuple[tuple[str, str, str, bool], ...]] = {
    "tweedie": (("spend", "", "tweedie", False),),
    "two_part": ((BUYS, "_buys", "binary", False), (SPEND_IF_BUYS, "", "gamma", True)),
}


def _rows_for(rows: pd.DataFrame, target: str, spenders_only: bool) -> pd.DataFrame:
    return rows[rows[target] > 0] if spenders_only else rows


def fit_recipe(
    recipe: Recipe,
    train: pd.DataFrame,
    validation: pd.DataFrame,
    target: str,
    features: list[str],
    settings: TrainingSettings,
) -> ValueModel:
    """One recipe fitted on the training rows with early stopping on the validation rows."""
    boosters = {}
    for name, label, objective, spenders in PARTS[recipe]:
        boosters[name] = fit_booster(
            _rows_for(train, target, spenders),
            _rows_for(validation, target, spenders),
            label or target,
            features,
            settings,
            objective_params(settings, objective),
        )
    return ValueModel(recipe, boosters, features)


def refit_recipe(
    model: ValueModel, rows: pd.DataFrame, target: str, settings: TrainingSettings
) -> ValueModel:
    """The same recipe on more rows, each booster for the rounds validation chose for it."""
    boosters = {}
    for name, label, objective, spenders in PARTS[model.recipe]:
        rounds = model.boosters[name].best_iteration or model.boosters[name].current_iteration()
        boosters[name] = refit_booster(
            _rows_for(rows, target, spenders),
            label or target,
            model.features,
            objective,
            settings,
            rounds,
        )
    return ValueModel(model.recipe, boosters, model.features, model.chosen_by)


def check_spenders(rows: pd.DataFrame, target: str, window: str, settings: TrainingSettings):
    """Enough customers who spent and who did not, as for the classifiers."""
    spenders = int((rows[target] > 0).sum())
    others = len(rows) - spenders
    if spenders < settings.min_positives or others < settings.min_negatives:
        raise InsufficientDataError(
            f"{target}: the {window} window has {spenders} customers who spent and {others} "
            f"who did not; at least {settings.min_positives} and {settings.min_negatives} are "
            "needed (training.min_positives / training.min_negatives)"
        )


def train_value_model(
    frame: pd.DataFrame,
    target: str,
    split: TimeSplit,
    settings: TrainingSettings,
    recipes: tuple[Recipe, ...] = RECIPES,
) -> ValueModel:
    """Fit every recipe, keep the best normalized Gini on the validation window, then refit
    it on every cutoff labelled before the test window (`training.refit`). A backtest fold
    passes the main split's recipe alone: the choice is made once."""
    from features.snapshot import feature_columns

    train = _with_parts(window_rows(frame, target, split.train), target)
    validation = _with_parts(window_rows(frame, target, split.validation), target)
    check_spenders(train, target, "training", settings)
    check_spenders(validation, target, "validation", settings)
    features = [c for c in feature_columns(frame) if c != "_buys" and frame[c].notna().any()]
    fitted = [fit_recipe(r, train, validation, target, features, settings) for r in recipes]
    scores = {
        m.recipe: normalized_gini(validation[target].to_numpy(), m.predict(validation))
        for m in fitted
    }
    best = max(fitted, key=lambda m: scores[m.recipe])
    best.chosen_by = {f"validation.{r}.normalized_gini": s for r, s in scores.items()}
    cutoffs = split.fitted(settings.refit)
    if cutoffs == split.train:
        return best
    return refit_recipe(
        best, _with_parts(window_rows(frame, target, cutoffs), target), target, settings
    )
