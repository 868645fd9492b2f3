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

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from features.schema import TREATED, ShopTables
from features.snapshot import FeatureSettings, build_features
from features.tiers import TierSettings
from models.measure import MeasurementError, campaign_outcomes, campaign_window
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


@dataclass
class UpliftModel:
    """A fitted T- or X-learner; `predict` gives P(buy | treated) − P(buy | holdout)."""

    learner: Learner
    columns: list[str]
    models: dict[str, Any]
    treated_share: float

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        x = _matrix(frame, self.columns)
        if self.learner == "t":
            return (
                self.models["mu1"].predict_proba(x)[:, 1]
                - self.models["mu0"].predict_proba(x)[:, 1]
            )
        e = self.treated_share
        return e * self.models["tau0"].predict(x) + (1 - e) * self.models["tau1"].predict(x)


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
    mu1 = LGBMClassifier(**settings).fit(x[t], y[t])
    mu0 = LGBMClassifier(**settings).fit(x[~t], y[~t])
    models: dict[str, Any] = {"mu1": mu1, "mu0": mu0}
    if learner == "x":
        d1 = y[t] - mu0.predict_proba(x[t])[:, 1]
        d0 = mu1.predict_proba(x[~t])[:, 1] - y[~t]
        models["tau1"] = LGBMRegressor(**settings).fit(x[t], d1)
        models["tau0"] = LGBMRegressor(**settings).fit(x[~t], d0)
    elif learner != "t":
        raise ValueError(f"learner must be 't' or 'x', got {learner!r}")
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


def measured_uplift_by_segment(outcomes: pd.DataFrame, segments: pd.DataFrame) -> pd.DataFrame:
    """Measured conversion uplift per segment of a campaign's contacts, for the what-if.

    `outcomes`: `models.measure.campaign_outcomes` rows (customer_id, group, buyer,
    revenue); `segments`: customer_id, segment (a customer may sit in several). Per
    segment: treated and holdout customers, their conversion, uplift in pp with 95% CI and
    p-value (two-proportion z-test), and revenue per customer of each group.
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
        if len(t) and len(c):
            d = two_proportion_ztest(t["buyer"].sum(), len(t), c["buyer"].sum(), len(c))
            d = d.scaled(100)
            row |= {"uplift_pp": d.estimate, "ci_low_pp": d.ci_low, "ci_high_pp": d.ci_high}
            row["p_value"] = d.p_value
        else:
            row |= dict.fromkeys(("uplift_pp", "ci_low_pp", "ci_high_pp", "p_value"), np.nan)
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
) -> UpliftEvaluation:
    """Fit on every campaign whose window closed before `campaign_id` started; score it."""
    test_window = campaign_window(tables, campaign_id, attribution_days)
    test = campaign_frame(tables, campaign_id, data_end, features, tiers, attribution_days)
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
    train = pd.concat(
        [campaign_frame(tables, k, data_end, features, tiers, attribution_days) for k in earlier],
        ignore_index=True,
    )
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
    )
