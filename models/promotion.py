"""Promotion beyond noise: a challenger release replaces the live one only when it is better
on the same holdout by more than resampling noise.

Per target, the challenger's and the champion's predictions on the challenger's test rows are
compared with a paired bootstrap over customers (a customer's rows at several cutoffs are
resampled together, since they are not independent): the estimate of the metric difference,
its interval and a verdict. The intervals are family-wise: with k targets each is a
1 - 0.05/k interval (Bonferroni), so a release of three targets is not promoted on noise
alone one time in seven (measured: the same data with another seed had one target "better"
at 95% and none at 98.3%). The release is promoted when no target is worse beyond noise
and at least one is better beyond noise (or new); a change of horizon, tier rule or feature
settings promotes too, since the live release no longer answers the configured question.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    roc_auc_score,
)

from models.value import normalized_gini

Metric = Callable[[np.ndarray, np.ndarray, np.ndarray], float]


def _log_loss(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> float:
    return -float(log_loss(y, np.clip(p, 1e-6, 1 - 1e-6), sample_weight=w, labels=[0, 1]))


# Every metric oriented so that higher is better (losses negated).
METRICS: dict[str, Metric] = {
    "pr_auc": lambda y, p, w: float(average_precision_score(y, p, sample_weight=w)),
    "roc_auc": lambda y, p, w: float(roc_auc_score(y, p, sample_weight=w)),
    "log_loss": _log_loss,
    "brier": lambda y, p, w: -float(brier_score_loss(y, p, sample_weight=w)),
    "normalized_gini": normalized_gini,
    # days off, negated: the timing model's median day against the observed next order
    "mae_days": lambda y, p, w: -float(np.average(np.abs(p - y), weights=w)),
}
# the losses above: their oriented delta (and interval) is the live value minus the new one
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "mae_days"})
BETTER, WORSE, TIE, NEW, UNSCORABLE = "better", "worse", "tie", "new", "unscorable"


@dataclass(frozen=True)
class Comparison:
    """Challenger minus champion on one target's holdout, with its bootstrap interval."""

    target: str
    metric: str
    challenger: float
    champion: float | None
    delta: float | None
    ci_low: float | None
    ci_high: float | None
    verdict: str
    level: float = 0.95

    def describe(self) -> str:
        if self.verdict == NEW:
            return f"{self.target}: new target"
        if self.verdict == UNSCORABLE:
            return f"{self.target}: the live model cannot score this holdout"
        # the delta is oriented (losses negated): for a loss it is the reduction, named so
        lower = self.metric in LOWER_IS_BETTER
        change = "reduction (lower is better)" if lower else "difference"
        return (
            f"{self.target}: {self.metric} {self.challenger:.4f} vs {self.champion:.4f}, "
            f"{change} {self.delta:+.4f} ({100 * self.level:.1f}% CI {self.ci_low:+.4f} .. "
            f"{self.ci_high:+.4f}): "
            f"{self.verdict}"
        )


@dataclass(frozen=True)
class ReleaseDecision:
    """Whether the candidate release goes live, why, and the per-target evidence."""

    promote: bool
    reason: str
    comparisons: tuple[Comparison, ...] = ()

    def to_dict(self) -> dict:
        return {
            "promote": self.promote,
            "reason": self.reason,
            "comparisons": [asdict(c) for c in self.comparisons],
        }


def paired_bootstrap(
    outcome: np.ndarray,
    challenger: np.ndarray,
    champion: np.ndarray,
    groups: np.ndarray,
    metric: str,
    replicates: int = 400,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """Metric(challenger) - metric(champion) on the rows, and the (1 - level) / 2 and
    (1 + level) / 2 quantiles of that difference over `replicates` resamples of whole groups
    (customers)."""
    judge = METRICS[metric]
    outcome = np.asarray(outcome, dtype="float64")
    ones = np.ones(len(outcome))
    estimate = judge(outcome, challenger, ones) - judge(outcome, champion, ones)
    codes, _ = _factorize(groups)
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    rng = np.random.default_rng(seed)
    deltas = []
    for _ in range(replicates):
        counts = np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups)
        weight = counts[codes].astype("float64")
        kept = weight > 0
        y, w = outcome[kept], weight[kept]
        if y.min() == y.max():  # a resample without both classes says nothing
            continue
        deltas.append(judge(y, challenger[kept], w) - judge(y, champion[kept], w))
    tail = (1 - level) / 2
    low, high = np.quantile(deltas, [tail, 1 - tail]) if deltas else (np.nan, np.nan)
    return float(estimate), float(low), float(high)


def _factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    uniques, codes = np.unique(np.asarray(values).astype(str), return_inverse=True)
    return codes, uniques


def compare(
    target: str,
    metric: str,
    outcome: np.ndarray,
    challenger: np.ndarray,
    champion: np.ndarray | None,
    groups: np.ndarray,
    margin: float = 0.0,
    replicates: int = 400,
    level: float = 0.95,
) -> Comparison:
    """The challenger against the champion on one target (None: no live model for it)."""
    oriented = METRICS[metric](np.asarray(outcome, "float64"), challenger, np.ones(len(outcome)))
    if champion is None:
        return Comparison(target, metric, abs(oriented), None, None, None, None, NEW, level)
    if not np.isfinite(champion).all():
        return Comparison(target, metric, abs(oriented), None, None, None, None, UNSCORABLE, level)
    delta, low, high = paired_bootstrap(
        outcome, challenger, champion, groups, metric, replicates, level=level
    )
    verdict = BETTER if low > margin else WORSE if high < 0 else TIE
    champion_value = abs(oriented - delta)
    return Comparison(
        target, metric, abs(oriented), champion_value, delta, low, high, verdict, level
    )


def family_level(targets: int, alpha: float = 0.05) -> float:
    """The per-target interval level that keeps the chance of any false verdict at alpha."""
    return 1 - alpha / max(targets, 1)


def decide(comparisons: list[Comparison], settings_change: str | None) -> ReleaseDecision:
    """Promote when the settings changed, or nothing is worse beyond noise and something is
    better beyond noise (or new, or unscorable by the live release)."""
    evidence = tuple(comparisons)
    details = "; ".join(c.describe() for c in comparisons)
    if settings_change:
        return ReleaseDecision(True, f"{settings_change}; {details}", evidence)
    worse = [c.target for c in comparisons if c.verdict == WORSE]
    gains = [c.target for c in comparisons if c.verdict in (BETTER, NEW, UNSCORABLE)]
    if worse:
        return ReleaseDecision(
            False, f"worse beyond noise on {', '.join(worse)}; {details}", evidence
        )
    if not gains:
        return ReleaseDecision(False, f"no target better beyond noise; {details}", evidence)
    return ReleaseDecision(True, f"better beyond noise on {', '.join(gains)}; {details}", evidence)
