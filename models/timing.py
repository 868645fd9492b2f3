"""When the next order comes: a learned distribution of the days from the cutoff to a buyer's
next order, given that it comes within the horizon H.

A LightGBM multiclass model over weekly bins (bin k = days [7k, 7k + 7)) is fitted on the
buyers whose next order came within H; it gives, per customer, P(next order in week k | an
order within H). Whether an order comes within H at all is the repurchase model's
probability (one probability per customer, wherever it is shown), so P(next order by day d)
= P(order within H) x the learned conditional distribution up to d. The window shown to
marketing is the 25th-75th percentile of the conditional distribution and its median the
expected day; all of it from the cutoff on, never before. Customers whose probability of an
order within H is below one half get no date ("not expected within H"): their median next
order lies beyond the horizon.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from models.train import (
    InsufficientDataError,
    TimeSplit,
    TrainingSettings,
    booster_params,
    fit_matrix,
    window_rows,
)

TIMING_FILE = "timing.json"
BIN_DAYS = 7
# the window's quantiles of the conditional distribution, and the expected day's
WINDOW = (0.25, 0.75)
MEDIAN = 0.5
# below this probability of an order within H, the median next order lies beyond H
EXPECTED_WITHIN = 0.5
# C-index pairs are counted on at most this many rows (a fixed random subset): O(n^2)
CONCORDANCE_SAMPLE = 4000
# The multiclass model grows one tree per week per round; beyond this many next orders per
# fit a fixed random sample is used. Measured on the synthetic shop's test window: C-index
# 0.608 from 20,000 training rows and 0.606 from all 59,766 (docs/evaluation.md).
FIT_ROWS = 40_000


def bins_for(horizon_days: int) -> int:
    return int(np.ceil(horizon_days / BIN_DAYS))


def day_bin(days: np.ndarray, horizon_days: int) -> np.ndarray:
    return np.minimum((np.asarray(days) // BIN_DAYS).astype(int), bins_for(horizon_days) - 1)


@dataclass
class TimingModel:
    """The conditional distribution of the next order's week; `predict` gives its median in
    days from the cutoff (the target's score)."""

    booster: lgb.Booster
    horizon_days: int
    features: list[str] = field(default_factory=list)

    def distribution(self, frame: pd.DataFrame) -> np.ndarray:
        """P(next order in week k | an order within H), one row per input row."""
        matrix = frame[self.features].to_numpy(dtype="float64")
        return self.booster.predict(matrix).reshape(len(frame), -1)

    def quantile_days(self, frame: pd.DataFrame, quantile: float) -> np.ndarray:
        return distribution_quantile(self.distribution(frame), quantile, self.horizon_days)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.quantile_days(frame, MEDIAN)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(directory / "booster.txt"))
        record = {"horizon_days": self.horizon_days, "features": self.features}
        (directory / TIMING_FILE).write_text(json.dumps(record))

    @classmethod
    def load(cls, directory: Path) -> TimingModel:
        record = json.loads((directory / TIMING_FILE).read_text())
        booster = lgb.Booster(model_file=str(directory / "booster.txt"))
        return cls(booster, int(record["horizon_days"]), list(record["features"]))


def distribution_quantile(probabilities: np.ndarray, quantile: float, horizon: int) -> np.ndarray:
    """The day by which the cumulative probability reaches `quantile`, interpolated linearly
    inside the week it falls in (the last bin ends at the horizon)."""
    edges = np.minimum(np.arange(probabilities.shape[1] + 1) * BIN_DAYS, horizon).astype(float)
    total = probabilities.sum(axis=1)
    cumulative = np.cumsum(probabilities, axis=1) / total[:, None]
    week = np.minimum((cumulative < quantile).sum(axis=1), probabilities.shape[1] - 1)
    before = np.where(week > 0, cumulative[np.arange(len(week)), week - 1], 0.0)
    inside = probabilities[np.arange(len(week)), week] / total
    share = np.clip((quantile - before) / np.maximum(inside, 1e-12), 0, 1)
    return edges[week] + share * (edges[week + 1] - edges[week])


def share_by_day(probabilities: np.ndarray, day: float, horizon: int) -> np.ndarray:
    """P(next order by `day` days from the cutoff | an order within H), per row: the weeks
    wholly before `day` and the covered part of the week it falls in, linear inside a week
    (as `distribution_quantile` reads it); 1 from the horizon on."""
    edges = np.minimum(np.arange(probabilities.shape[1] + 1) * BIN_DAYS, horizon).astype(float)
    widths = np.maximum(np.diff(edges), 1e-12)
    covered = np.clip((float(day) - edges[:-1]) / widths, 0.0, 1.0)
    return (probabilities @ covered) / probabilities.sum(axis=1)


def purchase_windows(
    model: TimingModel, frame: pd.DataFrame, probability_within: np.ndarray
) -> pd.DataFrame:
    """Per row: the expected next order date and its window (dates from the cutoff on), NaT
    where an order within H is less likely than not."""
    return purchase_forecast(model, frame, probability_within).windows


@dataclass(frozen=True)
class PurchaseForecast:
    """One prediction of the timing distribution, read three ways: the model's score
    (median days to the next order, `TimingModel.predict`), the `purchase_windows`, and
    P(next order by `by_day` | one within H) (`share_by_day`; None when no day was asked)."""

    days: np.ndarray
    windows: pd.DataFrame
    share_by_day: np.ndarray | None = None


def purchase_forecast(
    model: TimingModel,
    frame: pd.DataFrame,
    probability_within: np.ndarray,
    by_day: int | None = None,
) -> PurchaseForecast:
    """The `PurchaseForecast` of each row, from one prediction of the distribution."""
    distribution = model.distribution(frame)
    cutoff = pd.to_datetime(frame["cutoff"]).to_numpy("datetime64[ns]")
    expected = np.asarray(probability_within, dtype="float64") >= EXPECTED_WITHIN

    def date(quantile: float) -> np.ndarray:
        days = distribution_quantile(distribution, quantile, model.horizon_days)
        when = cutoff + (days * 86400e9).astype("timedelta64[ns]")
        return np.where(expected, when, np.datetime64("NaT")).astype("datetime64[D]")

    windows = pd.DataFrame(
        {
            "expected_next_purchase": date(MEDIAN),
            "next_purchase_from": date(WINDOW[0]),
            "next_purchase_to": date(WINDOW[1]),
        },
        index=frame.index,
    )
    return PurchaseForecast(
        days=distribution_quantile(distribution, MEDIAN, model.horizon_days),
        windows=windows,
        share_by_day=(
            None if by_day is None else share_by_day(distribution, by_day, model.horizon_days)
        ),
    )


# ----------------------------------------------------------------------------- training


def train_timing_model(
    frame: pd.DataFrame,
    target: str,
    split: TimeSplit,
    settings: TrainingSettings,
    horizon_days: int,
) -> TimingModel:
    """Fit on the training window's buyers with early stopping on the validation window's,
    then refit on every cutoff labelled before the test window (`training.refit`)."""
    from features.snapshot import feature_columns

    train = _capped(window_rows(frame, target, split.train), settings.seed)
    validation = _capped(window_rows(frame, target, split.validation), settings.seed)
    for rows, window in ((train, "training"), (validation, "validation")):
        if len(rows) < settings.min_positives:
            raise InsufficientDataError(
                f"{target}: the {window} window has {len(rows)} next orders within the horizon; "
                f"at least {settings.min_positives} are needed (training.min_positives)"
            )
    features = [c for c in feature_columns(frame) if frame[c].notna().any()]
    params = booster_params(settings) | {
        "objective": "multiclass",
        "metric": "multi_logloss",
        "num_class": bins_for(horizon_days),
    }

    def dataset(rows: pd.DataFrame, reference: lgb.Dataset | None = None) -> lgb.Dataset:
        labels = day_bin(rows[target].to_numpy(), horizon_days)
        return lgb.Dataset(
            fit_matrix(rows, features), labels, reference=reference, free_raw_data=True
        )

    train_set = dataset(train)
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=settings.lightgbm.n_estimators,
        valid_sets=[dataset(validation, train_set)],
        callbacks=[lgb.early_stopping(settings.early_stopping_rounds, verbose=False)],
    )
    fitted = split.fitted(settings.refit)
    if fitted != split.train:
        rounds = max(booster.best_iteration, 1)
        rows = _capped(window_rows(frame, target, fitted), settings.seed)
        booster = lgb.train(params, dataset(rows), rounds)
    return TimingModel(booster, horizon_days, features)


def _capped(rows: pd.DataFrame, seed: int) -> pd.DataFrame:
    """At most FIT_ROWS rows, a fixed random sample (the same on every run)."""
    return rows if len(rows) <= FIT_ROWS else rows.sample(FIT_ROWS, random_state=seed)


# ----------------------------------------------------------------------------- evaluation


def concordance(days: np.ndarray, predicted: np.ndarray, seed: int = 0) -> float:
    """Harrell's C among observed next orders: of the pairs with different days, the share
    whose predictions are in the same order (ties in the prediction count one half)."""
    days = np.asarray(days, dtype="float64")
    predicted = np.asarray(predicted, dtype="float64")
    if len(days) > CONCORDANCE_SAMPLE:
        pick = np.random.default_rng(seed).choice(len(days), CONCORDANCE_SAMPLE, replace=False)
        days, predicted = days[pick], predicted[pick]
    earlier = days[:, None] < days[None, :]
    agree = (predicted[:, None] < predicted[None, :]) & earlier
    tied = (predicted[:, None] == predicted[None, :]) & earlier
    pairs = earlier.sum()
    return float((agree.sum() + 0.5 * tied.sum()) / pairs) if pairs else float("nan")


def coverage(days: np.ndarray, start: np.ndarray, end: np.ndarray) -> float:
    """Share of observed next orders that fell inside their predicted window."""
    return float(np.mean((days >= start) & (days <= end)))


def timing_metrics(model: TimingModel, rows: pd.DataFrame, target: str) -> dict[str, float]:
    """C-index, MAE in days and the window's coverage on the rows' observed next orders."""
    days = rows[target].to_numpy(dtype="float64")
    distribution = model.distribution(rows)
    median = distribution_quantile(distribution, MEDIAN, model.horizon_days)
    start = distribution_quantile(distribution, WINDOW[0], model.horizon_days)
    end = distribution_quantile(distribution, WINDOW[1], model.horizon_days)
    return {
        "c_index": concordance(days, median),
        "mae_days": float(np.mean(np.abs(median - days))),
        "window_coverage": coverage(days, start, end),
        "mean_window_days": float(np.mean(end - start)),
    }


def days_metrics(days: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """What a rule that predicts one day per customer can be judged on."""
    return {
        "c_index": concordance(days, predicted),
        "mae_days": float(np.mean(np.abs(np.asarray(predicted) - days))),
    }
