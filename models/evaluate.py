"""Metrics, baselines and plots on a held-out window (DESIGN §3.4)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score


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
    return -rows["days_since_last_order"].fillna(1e6).to_numpy()


def spend_rank_baseline(rows: pd.DataFrame) -> np.ndarray:
    """Current trailing spend: the closer to the VIP line, the likelier the climb."""
    return rows["tier_window_spend"].fillna(0.0).to_numpy()


BASELINES: dict[str, dict[str, Callable[[pd.DataFrame], np.ndarray]]] = {
    "repurchase": {"recency": recency_baseline},
    "vip_conversion": {"spend_rank": spend_rank_baseline},
}


def baseline_metrics(target: str, rows: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Ranking metrics of each baseline of the target on the same rows."""
    outcome = rows[target].to_numpy()
    return {name: ranking_metrics(outcome, rule(rows)) for name, rule in BASELINES[target].items()}


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
