"""LightGBM classifiers on stacked cutoffs with a time-ordered train / validation / test split.

The validation window (later than training) chooses the number of trees by early stopping;
the test window (later still) is touched only for evaluation. By default the chosen recipe is
then refitted on every cutoff whose labels end by the test window (the validation window
included), so the model learns from the most recent behaviour it may see; with
`training.refit: false` the first fit is kept and calibrated on the validation window instead.
Either way no outcome used for fitting is observed after the test window starts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import lightgbm as lgb
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sklearn.isotonic import IsotonicRegression

from features.snapshot import CALENDAR_FEATURES, feature_columns


class LightGBMParams(BaseModel):
    """Model size is kept modest on purpose: SHAP cost grows with leaves and depth."""

    model_config = ConfigDict(extra="forbid")

    num_leaves: int = Field(15, ge=2)
    max_depth: int = Field(6, ge=-1)
    learning_rate: float = Field(0.05, gt=0, le=1)
    n_estimators: int = Field(400, ge=1)
    min_child_samples: int = Field(50, ge=1)
    subsample: float = Field(0.8, gt=0, le=1)
    subsample_freq: int = Field(1, ge=0)
    colsample_bytree: float = Field(0.8, gt=0, le=1)
    reg_lambda: float = Field(1.0, ge=0)
    num_threads: int = Field(2, ge=1)


class TrainingSettings(BaseModel):
    """How training frames are cut in time and how the classifiers are fitted."""

    model_config = ConfigDict(extra="forbid")

    cutoff_every_days: int = Field(14, gt=0)
    min_history_days: int = Field(90, ge=0)
    validation_cutoffs: int = Field(2, ge=1)
    test_cutoffs: int = Field(2, ge=1)
    # Measured on both shops (docs/benchmarks.md): 25 rounds after the best stop at the same
    # best round as 50 did in all but a few folds, with quality within the backtest spread,
    # and cut the demo's training by a sixth.
    early_stopping_rounds: int = Field(25, ge=1)
    min_positives: int = Field(20, ge=1)
    min_negatives: int = Field(20, ge=1)
    # L2 penalty on BG/NBD's log-parameters (per customer): plain maximum likelihood does not
    # converge on some real logs (STACK_NOTES); 0 gives plain maximum likelihood.
    bgnbd_penalty: float = Field(0.01, ge=0)
    # Test windows of the rolling-origin backtest, the main one included (1 = none extra);
    # each extra fold moves the whole split back by `test_cutoffs` cutoffs and retrains.
    backtest_folds: int = Field(3, ge=1)
    # Refit on every cutoff whose labels end by the test window with the validation-chosen
    # number of trees. Measured (docs/evaluation.md): better ranking and log loss on both the
    # synthetic shop and Online Retail than keeping the first fit with isotonic calibration,
    # most of all on short histories, where the training window alone is a few early months.
    refit: bool = True
    seed: int = 7
    lightgbm: LightGBMParams = LightGBMParams()
    # Targets whose shortfall stops the run (None: the targets' specs decide); any other
    # target without enough data is skipped with a message and the rest are released.
    required_targets: list[str] | None = None

    @field_validator("required_targets")
    @classmethod
    def _known_targets(cls, value: list[str] | None) -> list[str] | None:
        from features.targets import TARGETS

        unknown = sorted(set(value or []) - set(TARGETS))
        if unknown:
            raise ValueError(f"unknown targets {unknown}; known: {', '.join(TARGETS)}")
        return value


class InsufficientDataError(ValueError):
    """A window has too few positives or negatives to fit or judge a model."""


@dataclass(frozen=True)
class TimeSplit:
    """Cutoffs of the three windows, each strictly later than the one before, and `refit`:
    every cutoff whose label horizon ends by the first test cutoff (training, the gap and
    validation), which the final model may be refitted on."""

    train: list[pd.Timestamp]
    validation: list[pd.Timestamp]
    test: list[pd.Timestamp]
    refit: list[pd.Timestamp] = field(default_factory=list)

    def fitted(self, refit: bool) -> list[pd.Timestamp]:
        """The cutoffs the final model is fitted on (`TrainingSettings.refit`)."""
        return self.refit if refit and self.refit else self.train

    def to_dict(self) -> dict[str, list[str]]:
        """The three windows (what a model was fitted on is `fitted`, logged by the caller)."""
        windows = {"train": self.train, "validation": self.validation, "test": self.test}
        return {k: [str(c.date()) for c in v] for k, v in windows.items()}


class TargetModel(Protocol):
    """What every target's model offers: its inputs, a score per row (a probability, or money
    for the value target), its (main) booster, and saving. A model of several boosters also
    offers `contributions(matrix)`, which `models.explain.contributions` prefers."""

    features: list[str]

    @property
    def booster(self) -> lgb.Booster: ...

    def predict(self, frame: pd.DataFrame) -> np.ndarray: ...

    def save(self, directory: Path) -> None: ...


def split_cutoffs(
    cutoffs: list[pd.Timestamp],
    horizon_days: int,
    test_cutoffs: int = 1,
    validation_cutoffs: int = 1,
) -> TimeSplit:
    """Test = the last `test_cutoffs` cutoffs; validation = the latest `validation_cutoffs`
    whose horizons end by the first test cutoff; training = every cutoff whose horizon ends
    by the first validation cutoff."""
    ordered = sorted(cutoffs)
    if not ordered:
        raise InsufficientDataError(
            "no labelled cutoffs: the data is shorter than the history before the first cutoff "
            "(training.min_history_days) plus the horizon"
        )
    horizon = pd.Timedelta(days=horizon_days)
    test = ordered[-test_cutoffs:]
    validation = [c for c in ordered if c + horizon <= test[0]][-validation_cutoffs:]
    if not validation:
        raise InsufficientDataError(
            f"no validation cutoff: need a cutoff at least {horizon_days} days before the "
            f"test window starting {test[0].date()}; the data covers too little time"
        )
    train = [c for c in ordered if c + horizon <= validation[0]]
    if not train:
        raise InsufficientDataError(
            f"no training cutoff: need cutoffs at least {horizon_days} days before the "
            f"validation window starting {validation[0].date()}; the data covers too little time"
        )
    refit = [c for c in ordered if c + horizon <= test[0]]
    return TimeSplit(train=train, validation=validation, test=test, refit=refit)


# the booster of what a conversion is worth, beside a classifier's own (models.worth)
WORTH_FILE = "worth.txt"
# A calibration map that leaves probabilities as they are.
IDENTITY = (np.array([0.0, 1.0]), np.array([0.0, 1.0]))


@dataclass
class CalibratedBooster:
    """A LightGBM booster plus a map from raw to calibrated probability: isotonic from the
    validation window when the first fit is kept, the identity after a refit."""

    booster: lgb.Booster
    calibration_x: np.ndarray
    calibration_y: np.ndarray
    features: list[str] = field(default_factory=list)
    # whether the trees may split on the calendar features (chosen on validation), and the
    # validation losses that chose it
    calendar: bool = True
    chosen_by: dict[str, float] = field(default_factory=dict)
    # what the conversion is worth in money, for a target whose spec names a worth outcome
    # (models.worth); None: the spec's order-value feature is its worth
    worth: lgb.Booster | None = None

    def raw_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self.booster.predict(frame[self.features].to_numpy(dtype="float64"))

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of the positive class for each row."""
        return np.interp(self.raw_proba(frame), self.calibration_x, self.calibration_y)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """The target's score (every target model has it: here the probability)."""
        return self.predict_proba(frame)

    def order_worth(self, frame: pd.DataFrame) -> np.ndarray:
        """The learned worth of each row's conversion in money (NaN without a worth model)."""
        if self.worth is None:
            return np.full(len(frame), np.nan)
        return self.worth.predict(frame[self.features].to_numpy(dtype="float64"))

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(directory / "booster.txt"))
        if self.worth is not None:
            self.worth.save_model(str(directory / WORTH_FILE))
        else:
            (directory / WORTH_FILE).unlink(missing_ok=True)
        calibration = {
            "x": self.calibration_x.tolist(),
            "y": self.calibration_y.tolist(),
            "features": self.features,
            "calendar": self.calendar,
            "chosen_by": self.chosen_by,
        }
        (directory / "calibration.json").write_text(json.dumps(calibration))

    @classmethod
    def load(cls, directory: Path) -> CalibratedBooster:
        calibration = json.loads((directory / "calibration.json").read_text())
        worth = directory / WORTH_FILE
        return cls(
            booster=lgb.Booster(model_file=str(directory / "booster.txt")),
            calibration_x=np.asarray(calibration["x"], dtype="float64"),
            calibration_y=np.asarray(calibration["y"], dtype="float64"),
            features=list(calibration["features"]),
            calendar=bool(calibration.get("calendar", True)),
            chosen_by=dict(calibration.get("chosen_by", {})),
            worth=lgb.Booster(model_file=str(worth)) if worth.exists() else None,
        )


def window_rows(frame: pd.DataFrame, target: str, cutoffs: list[pd.Timestamp]) -> pd.DataFrame:
    """Rows of the target's population (label not NaN) at the given cutoffs."""
    rows = frame[frame["cutoff"].isin(cutoffs) & frame[target].notna()]
    return rows.reset_index(drop=True)


def check_sufficient(rows: pd.DataFrame, target: str, window: str, settings: TrainingSettings):
    positives = int(rows[target].sum())
    negatives = int(len(rows) - positives)
    if positives < settings.min_positives or negatives < settings.min_negatives:
        raise InsufficientDataError(
            f"{target}: the {window} window has {positives} positives and {negatives} "
            f"negatives; at least {settings.min_positives} and {settings.min_negatives} are "
            "needed (training.min_positives / training.min_negatives)"
        )


def booster_params(settings: TrainingSettings) -> dict[str, object]:
    """LightGBM's native parameters from the settings (without the number of rounds)."""
    params = settings.lightgbm.model_dump()
    params.pop("n_estimators")
    return params | {
        "objective": "binary",
        "metric": "binary_logloss",
        "seed": settings.seed,
        "deterministic": True,
        "force_row_wise": True,
        "verbose": -1,
        "bagging_fraction": params.pop("subsample"),
        "bagging_freq": params.pop("subsample_freq"),
        "feature_fraction": params.pop("colsample_bytree"),
        "min_data_in_leaf": params.pop("min_child_samples"),
        "lambda_l2": params.pop("reg_lambda"),
    }


def fit_matrix(rows: pd.DataFrame, features: list[str]) -> np.ndarray:
    """The rows' inputs as every model is fitted on them: float32. The feature engine's
    parallel sums differ between runs in the last bits of a float64 (~1e-15), and LightGBM's
    bin edges follow the distinct values, so float64 inputs made two builds of the same frame
    give different models (Online Retail's value model: normalized Gini 0.7329 vs 0.7318);
    float32 rounds that noise away, bins the same way, and halves the conversion."""
    return rows[features].to_numpy("float32")


def fit_booster(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    target: str,
    features: list[str],
    settings: TrainingSettings,
    params: dict[str, object] | None = None,
) -> lgb.Booster:
    """Boost on the training rows until the validation loss stops improving (the binary
    objective's unless `params`, the full parameter set, says otherwise)."""
    train_set = lgb.Dataset(fit_matrix(train, features), train[target], free_raw_data=True)
    valid_set = lgb.Dataset(
        fit_matrix(validation, features), validation[target], reference=train_set
    )
    return _early_stopped(params or booster_params(settings), train_set, valid_set, settings)


def _early_stopped(
    params: dict[str, object],
    train_set: lgb.Dataset,
    valid_set: lgb.Dataset,
    settings: TrainingSettings,
) -> lgb.Booster:
    """Boost until the validation loss has not improved for `early_stopping_rounds`."""
    return lgb.train(
        params,
        train_set,
        num_boost_round=settings.lightgbm.n_estimators,
        valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(settings.early_stopping_rounds, verbose=False)],
    )


# The calendar features say when a cutoff is: the same for every customer at it. They let the
# trees learn each season's level (the value model needs them), but over a year of training
# cutoffs they also single cutoffs out, and a target can then learn one period's quirks: on
# the synthetic shop first_purchase lost 0.033-0.038 PR-AUC in every backtest fold with them
# (docs/evaluation.md). So each classifier is fitted both ways and leaves them out only when
# that lowers the validation log loss beyond noise: the paired per-row difference must exceed
# this many standard errors. Two validation cutoffs are a small sample, and a choice that
# flipped between weekly retrains on noise would be worse than either.
CALENDAR_EVIDENCE_SE = 2.0


def _has_calendar(features: list[str]) -> bool:
    return bool(set(CALENDAR_FEATURES) & set(features))


def calendar_choices(features: list[str], calendar: bool | None) -> tuple[bool, ...]:
    """Whether to fit with the calendar features, without, or both and choose (None); a frame
    without them has nothing to use (False)."""
    if not _has_calendar(features):
        return (False,)
    return (True, False) if calendar is None else (calendar,)


def calendar_params(
    params: dict[str, object], features: list[str], calendar: bool
) -> dict[str, object]:
    """`params` as they are, or keeping the calendar features out of every split: LightGBM
    multiplies a feature's split gain by its `feature_contri`, so 0 leaves it unused while the
    binned Dataset (all columns) stays shared between the fits."""
    if calendar or not _has_calendar(features):
        return params
    return params | {"feature_contri": [0.0 if f in CALENDAR_FEATURES else 1.0 for f in features]}


@dataclass(frozen=True)
class FirstFit:
    """The early-stopped fit kept, whether it used the calendar features, and the validation
    numbers that chose it (empty when there was no choice)."""

    booster: lgb.Booster
    calendar: bool
    chosen_by: dict[str, float]


def _row_log_loss(booster: lgb.Booster, matrix: np.ndarray, outcome: np.ndarray) -> np.ndarray:
    probability = booster.predict(matrix, num_iteration=booster.best_iteration)
    probability = np.clip(probability, 1e-15, 1 - 1e-15)
    return -(outcome * np.log(probability) + (1 - outcome) * np.log1p(-probability))


def _choose_first_fit(
    fits: dict[bool, lgb.Booster], validation: np.ndarray, outcome: np.ndarray
) -> FirstFit:
    """The fit with the calendar features, unless the one without has a lower validation log
    loss by more than `CALENDAR_EVIDENCE_SE` standard errors of the paired difference."""
    if len(fits) == 1:
        [(calendar, booster)] = fits.items()
        return FirstFit(booster, calendar, {})
    with_calendar, without = (
        _row_log_loss(fits[use], validation, outcome) for use in (True, False)
    )
    gain = with_calendar - without  # > 0 where leaving them out did better
    standard_error = float(gain.std(ddof=1) / np.sqrt(len(gain)))
    calendar = not bool(gain.mean() > CALENDAR_EVIDENCE_SE * standard_error)
    chosen_by = {
        "validation.binary_logloss.with_calendar": float(with_calendar.mean()),
        "validation.binary_logloss.without_calendar": float(without.mean()),
        "validation.binary_logloss.difference_se": standard_error,
    }
    return FirstFit(fits[calendar], calendar, chosen_by)


def _fit_and_refit(
    rows: pd.DataFrame,
    target: str,
    features: list[str],
    split: TimeSplit,
    settings: TrainingSettings,
    calendar: bool | None,
) -> tuple[lgb.Booster, FirstFit]:
    """The refit on every row of `rows` (the refit cutoffs, which hold the training and the
    validation windows) for the rounds a first fit on the training window chose by early
    stopping on the validation window. The rows are converted and binned once and the two
    windows are subsets of that Dataset (measured in docs/benchmarks.md: converting and
    binning again for the refit was ~3 s of ~20 s at 1M snapshots); float32 (`fit_matrix`)."""
    params = booster_params(settings)
    labels = rows[target].to_numpy("float64")
    data = lgb.Dataset(
        fit_matrix(rows, features), labels, params=params, free_raw_data=True
    ).construct()
    cutoffs = rows["cutoff"]
    in_validation = cutoffs.isin(split.validation).to_numpy()
    train_set = data.subset(np.flatnonzero(cutoffs.isin(split.train).to_numpy()))
    valid_set = data.subset(np.flatnonzero(in_validation))
    fits = {
        use: _early_stopped(calendar_params(params, features, use), train_set, valid_set, settings)
        for use in calendar_choices(features, calendar)
    }
    validation = fit_matrix(rows.loc[in_validation], features)
    first = _choose_first_fit(fits, validation, labels[in_validation])
    final_params = calendar_params(params, features, first.calendar)
    rounds = max(first.booster.best_iteration, 1)
    return lgb.train(final_params, data, num_boost_round=rounds), first


def _fit_calibration(raw: np.ndarray, outcome: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    iso = IsotonicRegression(out_of_bounds="clip", y_min=1e-4, y_max=1 - 1e-4)
    iso.fit(raw, outcome)
    return iso.X_thresholds_.astype("float64"), iso.y_thresholds_.astype("float64")


def train_classifier(
    frame: pd.DataFrame,
    target: str,
    split: TimeSplit,
    settings: TrainingSettings,
    calendar: bool | None = None,
) -> CalibratedBooster:
    """Fit on the training window with early stopping on the validation window; then refit on
    every cutoff labelled before the test window (`settings.refit`, the default: the booster's
    own probabilities, from a proper scoring objective, are the output) or keep the first fit
    and calibrate it on the validation window (isotonic). `calendar`: use the calendar
    features (True), not (False), or choose on validation (None, `calendar_choices`)."""
    train = window_rows(frame, target, split.train)
    validation = window_rows(frame, target, split.validation)
    check_sufficient(train, target, "training", settings)
    check_sufficient(validation, target, "validation", settings)
    features = [c for c in feature_columns(frame) if frame[c].notna().any()]
    fitted = split.fitted(settings.refit)
    if fitted != split.train:
        rows = window_rows(frame, target, fitted)
        final, first = _fit_and_refit(rows, target, features, split, settings, calendar)
        return CalibratedBooster(
            final, IDENTITY[0], IDENTITY[1], features, first.calendar, first.chosen_by
        )
    params = booster_params(settings)
    fits = {
        use: fit_booster(
            train, validation, target, features, settings, calendar_params(params, features, use)
        )
        for use in calendar_choices(features, calendar)
    }
    outcome = validation[target].to_numpy("float64")
    first = _choose_first_fit(fits, fit_matrix(validation, features), outcome)
    model = CalibratedBooster(
        first.booster, IDENTITY[0], IDENTITY[1], features, first.calendar, first.chosen_by
    )
    x, y = _fit_calibration(model.raw_proba(validation), outcome)
    model.calibration_x, model.calibration_y = x, y
    return model
