"""Metrics, baselines and plots on a held-out window (DESIGN §3.4)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from features.targets import TARGETS
from models import baselines
from models.explain import GAIN


def top_decile(outcome: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """Lift and capture of the 10% highest scores: positive rate there over the base rate, and
    the share of all positives found there."""
    n_top = max(1, int(np.ceil(0.1 * len(score))))
    # stable sort on -score keeps ties in input order, so the result is deterministic
    top = np.argsort(-score, kind="stable")[:n_top]
    positives = outcome.sum()
    if positives == 0:
        return float("nan"), float("nan")
    lift = outcome[top].mean() / outcome.mean()
    return float(lift), float(outcome[top].sum() / positives)


def ranking_metrics(outcome: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """Metrics that only need an ordering: any score, probability or not."""
    lift, capture = top_decile(outcome, score)
    return {
        "roc_auc": float(roc_auc_score(outcome, score)),
        "pr_auc": float(average_precision_score(outcome, score)),
        "lift_top_decile": lift,
        "capture_top_decile": capture,
    }


def probability_metrics(outcome: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Ranking metrics plus those that judge the probabilities themselves."""
    clipped = np.clip(proba, 1e-6, 1 - 1e-6)
    return {
        **ranking_metrics(outcome, proba),
        "log_loss": float(log_loss(outcome, clipped, labels=[0, 1])),
        "brier": float(brier_score_loss(outcome, proba)),
        "base_rate": float(outcome.mean()),
        "mean_prediction": float(proba.mean()),
    }


def recency_baseline(rows: pd.DataFrame) -> np.ndarray:
    """The classic rule: the more recent the last order, the likelier the next."""
    return baselines.recency_score(rows)


def spend_rank_baseline(rows: pd.DataFrame) -> np.ndarray:
    """Current trailing spend: the closer to the VIP line, the likelier the climb."""
    return baselines.spend_rank_score(rows)


Rule = Callable[[pd.DataFrame], np.ndarray]

# Rules that need no fitting, by name; which target uses which is features.targets.
BASELINES: dict[str, Rule] = {
    "recency": recency_baseline,
    "rfm": baselines.rfm_score,
    "spend_rank": spend_rank_baseline,
    "view_recency": baselines.view_recency_score,
    "high_price_views": baselines.high_price_view_score,
}
# Baselines whose scores are probabilities (judged with log loss and Brier too), or money
# (judged with the amount metrics too); the others only rank.
PROBABILISTIC = frozenset({"bgnbd"})
MONEY = frozenset({"bgnbd_gamma_gamma", "previous_window"})
DAYS = frozenset({"median_gap", "bgnbd_timing"})


def baseline_rules(target: str, horizon_days: int, bgnbd_penalty: float) -> dict[str, Rule]:
    """Every baseline the target's spec names; the fitted ones need the target's horizon (and
    the BTYD fits their penalty)."""
    fitted = {
        "bgnbd": partial(baselines.bgnbd_score, horizon_days=horizon_days, penalty=bgnbd_penalty),
        "bgnbd_gamma_gamma": partial(
            baselines.bgnbd_gamma_gamma_spend, horizon_days=horizon_days, penalty=bgnbd_penalty
        ),
        "previous_window": partial(baselines.previous_window_spend, horizon_days=horizon_days),
        "bgnbd_timing": partial(
            baselines.bgnbd_median_days, horizon_days=horizon_days, penalty=bgnbd_penalty
        ),
        "median_gap": baselines.median_gap_days,
    }
    return {name: fitted.get(name) or BASELINES[name] for name in TARGETS[target].baselines}


def model_metrics(target: str, model, rows: pd.DataFrame) -> dict[str, float]:
    """The metrics of a target's model on its test rows: money metrics for the value target,
    C-index and window coverage for the timing target, probability metrics for the others."""
    from models.timing import timing_metrics
    from models.value import value_metrics

    kind = TARGETS[target].kind
    if kind == "days":
        return timing_metrics(model, rows, target)
    judge = value_metrics if kind == "amount" else probability_metrics
    return judge(rows[target].to_numpy(), model.predict(rows))


def _baseline_judge(target: str, name: str) -> Callable[[np.ndarray, np.ndarray], dict]:
    from models.timing import days_metrics
    from models.value import ranking_value_metrics, value_metrics

    kind = TARGETS[target].kind
    if kind == "days":
        return days_metrics
    if kind == "amount":
        return value_metrics if name in MONEY else ranking_value_metrics
    return probability_metrics if name in PROBABILISTIC else ranking_metrics


@dataclass
class BaselineResults:
    """Each baseline's scores and metrics on the rows, and the ones that failed, with why."""

    scores: dict[str, np.ndarray] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


def evaluate_baselines(target: str, rows: pd.DataFrame, rules: dict[str, Rule]) -> BaselineResults:
    """Score and judge every baseline on the same rows; a failed fit is recorded, not hidden."""
    outcome = rows[target].to_numpy()
    results = BaselineResults()
    for name, rule in rules.items():
        try:
            score = rule(rows)
        except (baselines.BaselineFitError, FloatingPointError, ValueError) as exc:
            results.failures[name] = str(exc)
            continue
        judge = _baseline_judge(target, name)
        results.scores[name] = score
        results.metrics[name] = judge(outcome, score)
    return results


# what describes the test window (or the scorer's level), not how well it ranks: no gap
NOT_COMPARED = frozenset({"base_rate", "mean_prediction", "mean_actual"})


def gaps(model: dict[str, float], baseline: dict[str, float]) -> dict[str, float]:
    """Model minus baseline for every metric both have (higher is better except for log loss
    and Brier, where a negative gap means the model is better)."""
    return {k: model[k] - v for k, v in baseline.items() if k in model and k not in NOT_COMPARED}


def gain_curve(outcome: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Share of customers contacted (best first) against share of positives captured."""
    order = np.argsort(-score, kind="stable")
    captured = np.cumsum(outcome[order]) / max(outcome.sum(), 1)
    contacted = np.arange(1, len(score) + 1) / len(score)
    return np.concatenate([[0.0], contacted]), np.concatenate([[0.0], captured])


def calibration_table(outcome: np.ndarray, proba: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Mean predicted against observed rate in equal-count bins of the prediction."""
    frame = pd.DataFrame({"predicted": proba, "observed": outcome})
    frame["bin"] = pd.qcut(frame["predicted"].rank(method="first"), bins, labels=False)
    return frame.groupby("bin")[["predicted", "observed"]].mean()


def plot_gain(outcome: np.ndarray, scores: dict[str, np.ndarray], title: str, path: Path) -> Path:
    """Gain curves of the model and its baselines in one picture."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for name, score in scores.items():
        x, y = gain_curve(outcome, score)
        ax.plot(x, y, label=name)
    ax.plot([0, 1], [0, 1], "k--", linewidth=0.8, label="random")
    ax.set(xlabel="share of customers contacted", ylabel="share of buyers captured", title=title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_calibration(outcome: np.ndarray, proba: np.ndarray, title: str, path: Path) -> Path:
    """Reliability diagram: predicted probability against the observed rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = calibration_table(outcome, proba)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.plot(table["predicted"], table["observed"], "o-", label="model")
    top = float(max(table["predicted"].max(), table["observed"].max(), 0.01))
    ax.plot([0, top], [0, top], "k--", linewidth=0.8, label="perfect")
    ax.set(xlabel="mean predicted probability", ylabel="observed rate", title=title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_importance(
    features: list[str],
    gain: np.ndarray,
    title: str,
    path: Path,
    measure: str = GAIN,
) -> Path:
    """The 20 most important features as horizontal bars, by `measure` (split gain unless
    said: models.explain.feature_importance)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = np.argsort(gain)[::-1][:20][::-1]
    share = gain / max(float(gain.sum()), 1e-12)
    fig, ax = plt.subplots(figsize=(6.5, 0.28 * len(order) + 1.2))
    ax.barh([features[i] for i in order], share[order])
    ax.set(xlabel=measure, title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_backtest(folds: pd.DataFrame, metric: str, title: str, path: Path) -> Path:
    """The metric of the model and each baseline at each test window of the backtest."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for scorer, part in folds.groupby("scorer", sort=False):
        ax.plot(part["test_start"], part[metric], "o-", label=scorer)
    ax.set(xlabel="first test cutoff", ylabel=metric, title=title)
    ax.legend(loc="best", fontsize="small")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_deciles(table: pd.DataFrame, currency: str, title: str, path: Path) -> Path:
    """Mean predicted against mean actual spend per decile of the prediction, with the error
    of each decile's mean written above its bars; when the table has the errors' 95%
    intervals (`models.value.decile_table` with customers), a second panel draws each error
    with its interval, so a miss can be told from the noise of a few big spenders."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    intervals = {"error_low", "error_high"} <= set(table.columns)
    fig, axes = plt.subplots(
        2 if intervals else 1,
        1,
        figsize=(6.5, 6.2 if intervals else 4.2),
        sharex=True,
        gridspec_kw={"height_ratios": [3, 2]} if intervals else None,
        squeeze=False,
    )
    ax = axes[0, 0]
    x = np.arange(len(table))
    ax.bar(x - 0.2, table["mean_predicted"], 0.4, label="mean predicted")
    ax.bar(x + 0.2, table["mean_actual"], 0.4, label="mean actual")
    for i, error in enumerate(table["error"]):
        if np.isfinite(error):
            top = max(table["mean_predicted"].iloc[i], table["mean_actual"].iloc[i])
            ax.annotate(f"{100 * error:+.0f}%", (i, top), ha="center", va="bottom", fontsize=7)
    ax.set(ylabel=f"spend ({currency})", title=title)
    ax.legend(loc="upper right")
    if intervals:
        _plot_decile_errors(axes[1, 0], x, table)
    axes[-1, 0].set_xticks(x, [str(d) for d in table.index])
    axes[-1, 0].set_xlabel("decile of predicted value (10 = highest)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_decile_errors(ax, x: np.ndarray, table: pd.DataFrame) -> None:
    """Each decile's error in percent with its 95% interval (bootstrap over customers)."""
    error = 100 * table["error"].to_numpy("float64")
    below = error - 100 * table["error_low"].to_numpy("float64")
    above = 100 * table["error_high"].to_numpy("float64") - error
    ax.axhline(0, color="black", linewidth=0.8)
    ax.errorbar(x, error, yerr=np.vstack([below, above]), fmt="o", capsize=3, color="C3")
    ax.set_ylabel("error of the mean (%)\nwith its 95% interval")


def plot_days(days: np.ndarray, predictions: dict[str, np.ndarray], title: str, path: Path) -> Path:
    """Mean observed day of the next order against the mean predicted day, per decile of
    each prediction (a good one lies on the diagonal and spreads along it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    top = float(np.nanmax(days)) if len(days) else 1.0
    for name, predicted in predictions.items():
        frame = pd.DataFrame({"predicted": predicted, "observed": days})
        frame["bin"] = pd.qcut(frame["predicted"].rank(method="first"), 10, labels=False)
        table = frame.groupby("bin")[["predicted", "observed"]].mean()
        ax.plot(table["predicted"], table["observed"], "o-", label=name)
    ax.plot([0, top], [0, top], "k--", linewidth=0.8, label="perfect")
    ax.set(xlabel="mean predicted day", ylabel="mean observed day", title=title)
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
