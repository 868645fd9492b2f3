"""Who buys *because of* the offer (DESIGN §3.8): uplift models from logged campaigns.

A response model ranks customers by P(buy | treated) and so puts first the "sure things"
who buy anyway, and the "sleeping dogs" who buy less when contacted. An uplift model ranks
by P(buy | treated) − P(buy | not treated), learnt from campaigns with random holdouts:

- T-learner: one LightGBM classifier per group, uplift = μ1(x) − μ0(x);
- X-learner (Künzel et al. 2019): impute each customer's effect with the other group's
  model (D1 = y − μ0(x) for treated, D0 = μ1(x) − y for holdout), regress the imputed
  effects on x per group, and blend τ(x) = e·τ0(x) + (1 − e)·τ1(x), e the treated share.

Features are the project's point-in-time features at each campaign's start
(`features.snapshot.build_features`). Models are judged on a later campaign by the Qini
coefficient and AUUC (defined in `qini_curve`, docs/measurement.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from features.schema import TREATED, ShopTables
from features.snapshot import FeatureSettings, build_features
from features.tiers import TierSettings
from models.measure import (
    MIN_GROUP,
    MeasurementError,
    campaign_outcomes,
    campaign_window,
    revenue_cuped,
    revenue_difference,
)
from models.stats import two_proportion_ztest

Learner = Literal["t", "x"]
LGBM_PARAMS: dict[str, Any] = {
    "n_estimators": 200,
    "learning_rate": 0.03,
    "num_leaves": 15,
    "min_child_samples": 40,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
    "n_jobs": 2,
    "verbose": -1,
    "random_state": 0,
}


# ----------------------------------------------------------------------------- data


def campaign_frame(
    tables: ShopTables,
    campaign_id: str,
    data_end: pd.Timestamp,
    features: FeatureSettings,
    tiers: TierSettings,
    attribution_days: int = 30,
) -> pd.DataFrame:
    """Features at the campaign's start, with `treated` (0/1) and `buyer` (0/1) per contact.

    The cutoff is the earliest window start of the campaign, so every feature predates the
    contact; customers the feature engine does not know yet keep missing features.
    """
    outcomes, _window = campaign_outcomes(tables, campaign_id, data_end, attribution_days)
    cutoff = pd.Timestamp(outcomes["window_start"].min()).floor("D")
    snapshot = build_features(tables, [cutoff], features, tiers).drop(columns="cutoff")
    frame = outcomes[["customer_id", "group", "buyer", "revenue"]].merge(
        snapshot, on="customer_id", how="left"
    )
    frame["treated"] = (frame["group"] == TREATED).astype("int64")
    frame["campaign_id"] = campaign_id
    return frame


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The numeric feature columns of a campaign or snapshot frame."""
    skip = {"customer_id", "cutoff", "group", "buyer", "revenue", "treated", "campaign_id"}
    return [
        c
        for c in frame.columns
        if c not in skip
        and (pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]))
    ]


def _matrix(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    return frame.reindex(columns=columns).astype("float64").to_numpy()


# ----------------------------------------------------------------------------- models


UPLIFT_FILE = "uplift.json"
# The key of the live release's uplift model among the release's models (models.release),
# and the score column it fills (models.scoring): P(buy | contacted) − P(buy | not).
UPLIFT_MODEL = "uplift"
UPLIFT_COLUMN = "uplift"


@dataclass
class UpliftModel:
    """A fitted T- or X-learner; `predict` gives P(buy | treated) − P(buy | holdout).

    `models` holds LightGBM boosters: μ1, μ0 (binary, so `predict` is a probability) and for
    the X-learner τ1, τ0 (regressions of the imputed effects).
    """

    learner: Learner
    columns: list[str]
    models: dict[str, Any]
    treated_share: float

    @property
    def features(self) -> list[str]:
        """The snapshot columns it reads (as every release model offers)."""
        return self.columns

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        x = _matrix(frame, self.columns)
        if self.learner == "t":
            return self.models["mu1"].predict(x) - self.models["mu0"].predict(x)
        e = self.treated_share
        return e * self.models["tau0"].predict(x) + (1 - e) * self.models["tau1"].predict(x)

    def save(self, directory: Path) -> None:
        """The boosters as LightGBM text files and a record of the rest."""
        directory.mkdir(parents=True, exist_ok=True)
        for name, booster in self.models.items():
            booster.save_model(str(directory / f"{name}.txt"))
        record = {
            "learner": self.learner,
            "columns": self.columns,
            "models": sorted(self.models),
            "treated_share": self.treated_share,
        }
        (directory / UPLIFT_FILE).write_text(json.dumps(record))

    @classmethod
    def load(cls, directory: Path) -> UpliftModel:
        import lightgbm as lgb

        record = json.loads((directory / UPLIFT_FILE).read_text())
        boosters = {
            name: lgb.Booster(model_file=str(directory / f"{name}.txt"))
            for name in record["models"]
        }
        return cls(record["learner"], record["columns"], boosters, record["treated_share"])


@dataclass
class ResponseModel:
    """P(buy | treated): the ranking a campaign uses without an uplift model."""

    columns: list[str]
    model: Any

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.model.predict_proba(_matrix(frame, self.columns))[:, 1]


def _check_groups(frame: pd.DataFrame) -> None:
    counts = frame.groupby("treated")["buyer"].agg(["size", "sum"])
    for t, name in ((1, "treated"), (0, "holdout")):
        if t not in counts.index or counts.loc[t, "sum"] < 5:
            raise MeasurementError(
                f"uplift training data: the {name} group has too few buyers "
                f"({0 if t not in counts.index else int(counts.loc[t, 'sum'])}); log more "
                "campaigns with holdouts first"
            )


def fit_uplift(frame: pd.DataFrame, learner: Learner = "t", **params: Any) -> UpliftModel:
    """Fit a T- or X-learner on campaign frames (`campaign_frame`, possibly stacked)."""
    from lightgbm import LGBMClassifier, LGBMRegressor

    _check_groups(frame)
    columns = feature_columns(frame)
    settings = {**LGBM_PARAMS, **params}
    t = frame["treated"].to_numpy() == 1
    x, y = _matrix(frame, columns), frame["buyer"].to_numpy(dtype="float64")
    if learner not in ("t", "x"):
        raise ValueError(f"learner must be 't' or 'x', got {learner!r}")
    mu1 = LGBMClassifier(**settings).fit(x[t], y[t]).booster_
    mu0 = LGBMClassifier(**settings).fit(x[~t], y[~t]).booster_
    models: dict[str, Any] = {"mu1": mu1, "mu0": mu0}
    if learner == "x":
        d1 = y[t] - mu0.predict(x[t])
        d0 = mu1.predict(x[~t]) - y[~t]
        models["tau1"] = LGBMRegressor(**settings).fit(x[t], d1).booster_
        models["tau0"] = LGBMRegressor(**settings).fit(x[~t], d0).booster_
    return UpliftModel(learner, columns, models, float(t.mean()))


def fit_response(frame: pd.DataFrame, **params: Any) -> ResponseModel:
    """P(buy | treated) from the treated customers of campaign frames."""
    from lightgbm import LGBMClassifier

    columns = feature_columns(frame)
    treated = frame[frame["treated"] == 1]
    model = LGBMClassifier(**{**LGBM_PARAMS, **params}).fit(
        _matrix(treated, columns), treated["buyer"].to_numpy(dtype="float64")
    )
    return ResponseModel(columns, model)


def uplift_scores(model: UpliftModel, snapshot: pd.DataFrame) -> pd.Series:
    """Per-customer uplift (probability points) for a feature snapshot, highest first.

    `snapshot` is one cutoff of `build_features` (e.g. the latest scoring snapshot); the
    result, indexed by customer_id, is what a segment ranks by with `rank_by: uplift`.
    """
    scores = pd.Series(
        model.predict(snapshot), index=pd.Index(snapshot["customer_id"], name="customer_id")
    )
    return scores.rename("uplift").sort_values(ascending=False, kind="stable")


# ----------------------------------------------------------------------------- evaluation


def qini_curve(score: np.ndarray, treated: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    """Cumulative counts and the Qini and uplift curves for customers ranked by `score`.

    For the top k customers (highest score first; ties keep input order): n_t, n_c treated
    and holdout customers, y_t, y_c their buyers. Qini Q(k) = y_t − y_c · n_t / n_c
    (incremental buyers among the treated of the top k; 0 while n_c = 0). Uplift curve
    U(k) = (y_t / n_t − y_c / n_c) · k (0 while either group is empty).
    """
    order = np.argsort(-np.asarray(score, dtype="float64"), kind="stable")
    t = np.asarray(treated, dtype=bool)[order]
    yy = np.asarray(y, dtype="float64")[order]
    n_t, n_c = np.cumsum(t), np.cumsum(~t)
    y_t, y_c = np.cumsum(yy * t), np.cumsum(yy * ~t)
    with np.errstate(divide="ignore", invalid="ignore"):
        qini = np.where(n_c > 0, y_t - y_c * n_t / n_c, y_t)
        rate_gap = np.where((n_t > 0) & (n_c > 0), y_t / n_t - y_c / n_c, 0.0)
    k = np.arange(1, t.size + 1)
    return pd.DataFrame(
        {
            "k": k,
            "n_t": n_t,
            "n_c": n_c,
            "y_t": y_t,
            "y_c": y_c,
            "qini": qini,
            "uplift": rate_gap * k,
        }
    )


def qini_coefficient(score: np.ndarray, treated: np.ndarray, y: np.ndarray) -> float:
    """Area between the Qini curve and the random ranking's straight line, per customer².

    (1/N²) Σ_k [Q(k) − (k/N) Q(N)]: 0 for a random ranking, positive when the ranking puts
    the customers who buy because of the offer first.
    """
    curve = qini_curve(score, treated, y)
    n = len(curve)
    q = curve["qini"].to_numpy()
    return float((q - curve["k"].to_numpy() / n * q[-1]).sum() / n**2)


def auuc(score: np.ndarray, treated: np.ndarray, y: np.ndarray) -> float:
    """Area under the uplift curve, per customer²: (1/N²) Σ_k U(k)."""
    curve = qini_curve(score, treated, y)
    return float(curve["uplift"].sum() / len(curve) ** 2)


def top_share_uplift(
    score: np.ndarray, treated: np.ndarray, y: np.ndarray, share: float = 0.3
) -> float:
    """Measured uplift (treated − holdout buy rate) among the top `share` by score."""
    curve = qini_curve(score, treated, y)
    row = curve.iloc[max(int(np.ceil(share * len(curve))) - 1, 0)]
    if row["n_t"] == 0 or row["n_c"] == 0:
        return float("nan")
    return float(row["y_t"] / row["n_t"] - row["y_c"] / row["n_c"])


# what a measured campaign says per segment: conversion uplift (pp) and what it earned
MEASURED_COLUMNS = (
    "uplift_pp",
    "ci_low_pp",
    "ci_high_pp",
    "p_value",
    "revenue_uplift",
    "revenue_ci_low",
    "revenue_ci_high",
    "coupon_cost_per_treated",
)


def measured_uplift_by_segment(outcomes: pd.DataFrame, segments: pd.DataFrame) -> pd.DataFrame:
    """Measured conversion uplift per segment of a campaign's contacts, for the what-if.

    `outcomes`: `models.measure.campaign_outcomes` rows (customer_id, group, buyer,
    revenue); `segments`: customer_id, segment (a customer may sit in several). Per
    segment: treated and holdout customers, their conversion, uplift in pp with 95% CI and
    p-value (`two_proportion_ztest`: z, or Fisher's with few buyers), revenue per customer
    of each group and, with `pre_spend` and `coupon_cost` (as `campaign_outcomes` gives
    them), the CUPED revenue uplift per customer with its interval and the coupon cost per
    treated customer.
    """
    joined = outcomes.merge(segments[["customer_id", "segment"]], on="customer_id")
    rows = []
    for segment, part in joined.groupby("segment", sort=True):
        t = part[part["group"] == TREATED]
        c = part[part["group"] != TREATED]
        row: dict[str, Any] = {
            "segment": segment,
            "treated": len(t),
            "holdout": len(c),
            "conversion_treated": t["buyer"].mean() if len(t) else np.nan,
            "conversion_holdout": c["buyer"].mean() if len(c) else np.nan,
            "revenue_per_customer_treated": t["revenue"].mean() if len(t) else np.nan,
            "revenue_per_customer_holdout": c["revenue"].mean() if len(c) else np.nan,
        }
        row |= dict.fromkeys(MEASURED_COLUMNS, np.nan)
        if len(t) and len(c):
            d = two_proportion_ztest(t["buyer"].sum(), len(t), c["buyer"].sum(), len(c))
            d = d.scaled(100)
            row |= {"uplift_pp": d.estimate, "ci_low_pp": d.ci_low, "ci_high_pp": d.ci_high}
            row["p_value"] = d.p_value
        if (
            len(t) >= MIN_GROUP
            and len(c) >= MIN_GROUP
            and {"pre_spend", "coupon_cost"} <= set(part)
        ):
            # what the campaign earned, as `dangol measure` prices it: CUPED revenue per
            # customer (resampled interval) and the coupons its treated customers cost
            revenue = revenue_difference(part, revenue_cuped(part))
            row |= {
                "revenue_uplift": revenue.estimate,
                "revenue_ci_low": revenue.ci_low,
                "revenue_ci_high": revenue.ci_high,
                "coupon_cost_per_treated": float(t["coupon_cost"].mean()),
            }
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass
class UpliftEvaluation:
    """Uplift and response models trained on earlier campaigns, judged on a later one."""

    campaign_id: str
    trained_on: list[str]
    train_rows: int
    test_rows: int
    qini: dict[str, float]
    auuc: dict[str, float]
    top30_uplift_pp: dict[str, float]
    # per ranking, its score of each evaluated contact, and their group and outcome: what
    # the bootstrap of `qini_gain` resamples
    scores: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    treated: np.ndarray | None = field(default=None, repr=False)
    buyer: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "campaign_id": self.campaign_id,
            "trained_on": self.trained_on,
            "train_rows": self.train_rows,
            "test_rows": self.test_rows,
            "qini": self.qini,
            "auuc": self.auuc,
            "top30_uplift_pp": self.top30_uplift_pp,
        }

    def report_lines(self) -> list[str]:
        lines = [
            f"uplift models trained on {', '.join(self.trained_on)} ({self.train_rows:,} "
            f"contacts), evaluated on {self.campaign_id} ({self.test_rows:,} contacts)",
            f"{'ranking':<12} {'Qini':>9} {'AUUC':>9} {'uplift in top 30%':>18}",
        ]
        for name in self.qini:
            lines.append(
                f"{name:<12} {self.qini[name]:>9.4f} {self.auuc[name]:>9.4f} "
                f"{self.top30_uplift_pp[name]:>+17.2f} pp"
            )
        best = max(self.qini, key=self.qini.get)
        lines.append(
            f"best ranking by Qini: {best}; response model Qini {self.qini['response']:.4f}"
        )
        return lines


def evaluate_on_campaign(
    tables: ShopTables,
    campaign_id: str,
    data_end: pd.Timestamp,
    features: FeatureSettings,
    tiers: TierSettings,
    attribution_days: int = 30,
    frames: dict[str, pd.DataFrame] | None = None,
) -> UpliftEvaluation:
    """Fit on every campaign whose window closed before `campaign_id` started; score it.

    `frames` caches `campaign_frame` by campaign id (filled here), so a caller that fits on
    the same campaigns afterwards does not rebuild their features.
    """
    frames = {} if frames is None else frames

    def frame_of(k: str) -> pd.DataFrame:
        if k not in frames:
            frames[k] = campaign_frame(tables, k, data_end, features, tiers, attribution_days)
        return frames[k]

    test_window = campaign_window(tables, campaign_id, attribution_days)
    test = frame_of(campaign_id)
    assert tables.contacts is not None
    test_start = test_window.started_at
    if test_start is None:
        contacts = tables.contacts
        test_start = contacts.loc[contacts["campaign_id"] == campaign_id, "contacted_at"].min()
    earlier = []
    for other in sorted(tables.contacts["campaign_id"].dropna().unique()):
        if other == campaign_id:
            continue
        try:
            outcomes, _ = campaign_outcomes(tables, other, data_end, attribution_days)
        except MeasurementError:
            continue  # still open or without a holdout: nothing to learn from
        if outcomes["window_end"].max() <= test_start:
            earlier.append(other)
    if not earlier:
        raise MeasurementError(
            f"no campaign with a holdout ended before {campaign_id} started ({test_start}); "
            "uplift models learn from earlier campaigns"
        )
    train = pd.concat([frame_of(k) for k in earlier], ignore_index=True)
    scores = {
        "t_learner": fit_uplift(train, "t").predict(test),
        "x_learner": fit_uplift(train, "x").predict(test),
        "response": fit_response(train).predict(test),
        "random": np.random.default_rng(0).random(len(test)),
    }
    treated, y = test["treated"].to_numpy(), test["buyer"].to_numpy()
    return UpliftEvaluation(
        campaign_id=campaign_id,
        trained_on=earlier,
        train_rows=len(train),
        test_rows=len(test),
        qini={k: qini_coefficient(s, treated, y) for k, s in scores.items()},
        auuc={k: auuc(s, treated, y) for k, s in scores.items()},
        top30_uplift_pp={k: 100 * top_share_uplift(s, treated, y) for k, s in scores.items()},
        scores=scores,
        treated=treated,
        buyer=y,
    )


# ----------------------------------------------------------------------------- the release's


LEARNERS: dict[str, Learner] = {"t_learner": "t", "x_learner": "x"}
BASELINE = "response"


def finished_outcomes(
    tables: ShopTables, data_end: pd.Timestamp, attribution_days: int = 30
) -> dict[str, pd.DataFrame]:
    """`campaign_outcomes` of every logged campaign with both groups whose attribution window
    closed by `data_end`, oldest window end first (empty without a contacts table)."""
    if tables.contacts is None or tables.contacts.empty:
        return {}
    found = {}
    for campaign_id in sorted(tables.contacts["campaign_id"].dropna().unique()):
        try:
            outcomes, _ = campaign_outcomes(tables, campaign_id, data_end, attribution_days)
        except MeasurementError:
            continue  # still open, or a group is empty: nothing to learn or measure
        found[campaign_id] = outcomes
    ends = {k: pd.Timestamp(v["window_end"].max()) for k, v in found.items()}
    return {k: found[k] for k in sorted(found, key=lambda k: (ends[k], k))}


@dataclass(frozen=True)
class QiniGain:
    """Qini(challenger) − Qini(baseline) on one campaign, with a bootstrap interval."""

    challenger: str
    baseline: str
    delta: float
    ci_low: float
    ci_high: float
    level: float
    replicates: int

    def describe(self) -> str:
        return f"{self.delta:+.4f} ({self.level:.0%} CI {self.ci_low:+.4f}, {self.ci_high:+.4f})"


def qini_gain(
    evaluation: UpliftEvaluation,
    challenger: str,
    baseline: str = BASELINE,
    replicates: int = 400,
    level: float = 0.95,
    seed: int = 0,
) -> QiniGain:
    """The challenger's Qini gain over the baseline on the evaluated campaign, with a
    percentile bootstrap over its contacts: each replicate draws the contacts with
    replacement and scores both rankings on the same draw (a paired comparison)."""
    assert evaluation.treated is not None and evaluation.buyer is not None
    a, b = evaluation.scores[challenger], evaluation.scores[baseline]
    t, y = evaluation.treated, evaluation.buyer
    rng = np.random.default_rng(seed)
    deltas = np.empty(replicates)
    for i in range(replicates):
        draw = rng.integers(0, len(t), len(t))
        deltas[i] = qini_coefficient(a[draw], t[draw], y[draw]) - qini_coefficient(
            b[draw], t[draw], y[draw]
        )
    tail = (1 - level) / 2
    low, high = np.quantile(deltas, [tail, 1 - tail])
    delta = evaluation.qini[challenger] - evaluation.qini[baseline]
    return QiniGain(challenger, baseline, delta, float(low), float(high), level, replicates)


@dataclass
class UpliftSelection:
    """What training decided about the release's uplift model: the learners judged on the
    latest finished campaign, whether the best one won, and (if so) it refitted on every
    finished campaign. `reason` is the one line the run prints."""

    won: bool
    reason: str
    learner: str | None = None
    evaluation: UpliftEvaluation | None = None
    gain: QiniGain | None = None
    model: UpliftModel | None = None
    trained_on: list[str] = field(default_factory=list)
    train_rows: int = 0
    example: pd.DataFrame | None = field(default=None, repr=False)
    plots: list[Path] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        """The release record's `uplift` entry (without the registered version)."""
        record: dict[str, Any] = {"won": self.won, "reason": self.reason}
        if self.learner is not None:
            record["learner"] = self.learner
        if self.evaluation is not None:
            record["evaluated_on"] = self.evaluation.campaign_id
            record["qini"] = {k: round(v, 6) for k, v in self.evaluation.qini.items()}
        if self.gain is not None:
            record["qini_gain"] = {
                "delta": round(self.gain.delta, 6),
                "ci_low": round(self.gain.ci_low, 6),
                "ci_high": round(self.gain.ci_high, 6),
            }
        if self.won:
            record["trained_on"] = self.trained_on
            record["train_rows"] = self.train_rows
        return record

    def metrics(self) -> dict[str, float]:
        """Qini, AUUC and top-30% uplift per ranking and the gain's interval, for MLflow."""
        if self.evaluation is None:
            return {}
        e = self.evaluation
        values = {f"qini.{k}": v for k, v in e.qini.items()}
        values |= {f"auuc.{k}": v for k, v in e.auuc.items()}
        values |= {f"top30_uplift_pp.{k}": v for k, v in e.top30_uplift_pp.items()}
        if self.gain is not None:
            values |= {
                "qini_gain.delta": self.gain.delta,
                "qini_gain.ci_low": self.gain.ci_low,
                "qini_gain.ci_high": self.gain.ci_high,
            }
        return {k: float(v) for k, v in values.items() if np.isfinite(v)}


def select_uplift_model(
    tables: ShopTables,
    data_end: pd.Timestamp,
    features: FeatureSettings,
    tiers: TierSettings,
    attribution_days: int = 30,
    replicates: int = 400,
    level: float = 0.95,
) -> UpliftSelection:
    """Judge T- and X-learners (fitted on the campaigns that ended before the latest finished
    one) against the response model on that latest campaign (`evaluate_on_campaign`). The
    best learner by Qini wins when the bootstrap interval of its Qini gain over the response
    model lies above 0; it is then refitted on every finished campaign. Never raises for
    missing or thin campaign logs: the selection says why there is no model."""
    finished = list(finished_outcomes(tables, data_end, attribution_days))
    if not finished:
        return UpliftSelection(
            False, "no uplift model: no logged campaign with a holdout has finished"
        )
    if len(finished) < 2:
        return UpliftSelection(
            False,
            f"no uplift model: one finished campaign with a holdout ({finished[0]}); it takes "
            "an earlier one to learn from and a later one to judge on",
        )
    latest = finished[-1]
    frames: dict[str, pd.DataFrame] = {}
    try:
        evaluation = evaluate_on_campaign(
            tables, latest, data_end, features, tiers, attribution_days, frames
        )
    except MeasurementError as error:
        return UpliftSelection(False, f"no uplift model: {error}")
    best = max(LEARNERS, key=lambda name: evaluation.qini[name])
    gain = qini_gain(evaluation, best, BASELINE, replicates, level)
    judged = (
        f"{best} Qini {evaluation.qini[best]:.4f} vs response model "
        f"{evaluation.qini[BASELINE]:.4f} on {latest}: gain {gain.describe()}"
    )
    if not gain.ci_low > 0:
        return UpliftSelection(
            False,
            f"uplift model not used: {judged}, not beyond noise",
            best,
            evaluation,
            gain,
        )
    for campaign_id in finished:
        if campaign_id not in frames:
            frames[campaign_id] = campaign_frame(
                tables, campaign_id, data_end, features, tiers, attribution_days
            )
    train = pd.concat([frames[k] for k in finished], ignore_index=True)
    try:
        model = fit_uplift(train, LEARNERS[best])
    except MeasurementError as error:
        return UpliftSelection(False, f"no uplift model: {error}", best, evaluation, gain)
    return UpliftSelection(
        True,
        f"uplift model: {judged}; refitted on {len(finished)} campaigns ({len(train):,} contacts)",
        best,
        evaluation,
        gain,
        model,
        finished,
        len(train),
        example=train[model.columns].head(5),
    )


def plot_qini(evaluation: UpliftEvaluation, path: Path) -> Path:
    """Qini curves of every ranking on the evaluated campaign, random line included."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for name, score in evaluation.scores.items():
        curve = qini_curve(score, evaluation.treated, evaluation.buyer)
        ax.plot(curve["k"] / len(curve), curve["qini"], label=name)
    last = float(curve["qini"].iloc[-1])
    ax.plot([0, 1], [0, last], "k--", linewidth=0.8, label="random (expected)")
    ax.set(
        xlabel="share of contacts, best-ranked first",
        ylabel="incremental buyers (Qini)",
        title=f"Qini curves on {evaluation.campaign_id}",
    )
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def measured_uplift_of_segments(
    tables: ShopTables,
    data_end: pd.Timestamp,
    segment_names: list[str],
    attribution_days: int = 30,
) -> pd.DataFrame:
    """Per segment name, the measured uplift of the latest finished campaign that targeted
    it (`campaigns.segment`): `measured_uplift_by_segment` over its contacts, with
    `campaign_id`. Empty without campaign logs or a campaign naming one of the segments."""
    columns = ["segment", "campaign_id", "treated", "holdout", *MEASURED_COLUMNS]
    if tables.campaigns is None or "segment" not in tables.campaigns:
        return pd.DataFrame(columns=columns)
    targeted = tables.campaigns.dropna(subset=["segment"])
    segment_of = dict(zip(targeted["campaign_id"], targeted["segment"].astype(str), strict=True))
    latest: dict[str, tuple[str, pd.DataFrame]] = {}
    for campaign_id, outcomes in finished_outcomes(tables, data_end, attribution_days).items():
        name = segment_of.get(campaign_id)
        if name in segment_names:
            latest[name] = (campaign_id, outcomes)  # later windows replace earlier ones
    rows = []
    for name, (campaign_id, outcomes) in sorted(latest.items()):
        labelled = pd.DataFrame({"customer_id": outcomes["customer_id"], "segment": name})
        measured = measured_uplift_by_segment(outcomes, labelled).iloc[0]
        rows.append({"campaign_id": campaign_id, **measured.to_dict()})
    return pd.DataFrame(rows, columns=columns) if rows else pd.DataFrame(columns=columns)
