"""The statistics of measurement (docs/measurement.md): tests of a difference, CUPED, HAC OLS.

Small pure functions over numpy arrays, so that campaign measurement, cohort comparisons and
the no-holdout regression all judge a difference the same way: an estimate, its 95%
interval and a two-sided p-value.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

Z95 = float(stats.norm.ppf(0.975))


@dataclass(frozen=True)
class Difference:
    """An estimated difference (first group minus second) with its interval and p-value."""

    estimate: float
    ci_low: float
    ci_high: float
    p_value: float
    se: float

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    def scaled(self, factor: float) -> Difference:
        """The same difference in other units (e.g. ×100 for percentage points)."""
        lo, hi = sorted((self.ci_low * factor, self.ci_high * factor))
        return Difference(self.estimate * factor, lo, hi, self.p_value, self.se * abs(factor))

    @property
    def significant(self) -> bool:
        return self.p_value < 0.05

    @property
    def beyond_noise(self) -> bool:
        """p < 0.05 and the 95% interval excludes zero: the two can disagree near the edge
        (a z-test's p against Newcombe's interval), and a verdict must not claim an effect
        its own interval allows to be none."""
        return self.significant and (self.ci_low > 0 or self.ci_high < 0)


def wilson_interval(x: float, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion x / n (sound near 0 and 1)."""
    p = x / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * np.sqrt(p * (1 - p) / n + Z95**2 / (4 * n**2)) / (1 + Z95**2 / n)
    return float(centre - half), float(centre + half)


# below this many expected buyers (or non-buyers) in a group, a count test is exact
FEW_EXPECTED = 5


def two_proportion_ztest(x1: float, n1: int, x0: float, n0: int) -> Difference:
    """p1 − p0 for x1 of n1 against x0 of n0.

    The p-value is the two-proportion z-test's (pooled proportion under H0: p1 = p0), or
    Fisher's exact test's when a group expects fewer than `FEW_EXPECTED` buyers or
    non-buyers under H0 (the textbook rule for the normal approximation). The
    95% interval is Newcombe's hybrid score interval, built from the two Wilson intervals:
    unlike the Wald interval it stays honest when a small group has no buyer at all.
    `se` is the unpooled sqrt(p1(1−p1)/n1 + p0(1−p0)/n0).
    """
    if n1 <= 0 or n0 <= 0:
        raise ValueError(f"both groups need customers, got {n1} and {n0}")
    p1, p0 = x1 / n1, x0 / n0
    diff = p1 - p0
    pooled = (x1 + x0) / (n1 + n0)
    se0 = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
    p_value = 1.0 if se0 == 0 else float(2 * stats.norm.sf(abs(diff) / se0))
    if min(pooled, 1 - pooled) * min(n1, n0) < FEW_EXPECTED:
        # too few expected buyers (or non-buyers) for the normal approximation: 3 of 151
        # against 2 of 15 gave z's p = 0.014 where Fisher's exact test says 0.065
        table = [[x1, n1 - x1], [x0, n0 - x0]]
        p_value = float(stats.fisher_exact(np.rint(table).astype(int)).pvalue)
    se = float(np.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0))
    (l1, u1), (l0, u0) = wilson_interval(x1, n1), wilson_interval(x0, n0)
    low = diff - np.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)
    high = diff + np.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)
    return Difference(diff, float(low), float(high), p_value, se)


def is_constant(values: np.ndarray) -> bool:
    """Whether every value is the same (by range: a variance of three equal amounts such as
    0.1 is 1e-34, not 0)."""
    return bool(np.ptp(values) == 0) if len(values) else True


def welch_ttest(a: np.ndarray, b: np.ndarray, borrow_variance: bool = False) -> Difference:
    """mean(a) − mean(b) with Welch's unequal-variance t-test and its 95% interval.

    A group whose values did not vary (everyone spent 0, as two held-out customers may)
    says nothing about its spread: the standard error is then at least the one from the
    groups' pooled within-group variance, with the degrees of freedom of the smaller group
    (min(n) − 1), since that is all that is known about it. `borrow_variance` asks for the
    same when the caller knows the raw outcome was constant but passes adjusted values
    (CUPED) that are not.
    """
    a, b = np.asarray(a, dtype="float64"), np.asarray(b, dtype="float64")
    if a.size < 2 or b.size < 2:
        raise ValueError(f"both groups need at least 2 values, got {a.size} and {b.size}")
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    diff = float(a.mean() - b.mean())
    se = float(np.sqrt(va + vb))
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1)) if se > 0 else 0.0
    if borrow_variance or is_constant(a) or is_constant(b):
        squares = (a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)
        within = squares / (a.size + b.size - 2)
        pooled = float(np.sqrt(within * (1 / a.size + 1 / b.size)))
        if pooled > se:
            se, df = pooled, float(min(a.size, b.size) - 1)
    if se == 0:
        return Difference(diff, diff, diff, 1.0 if diff == 0 else 0.0, 0.0)
    q = float(stats.t.ppf(0.975, df))
    p_value = float(2 * stats.t.sf(abs(diff) / se, df))
    return Difference(diff, diff - q * se, diff + q * se, p_value, se)


# draws of each resampling; a 95% quantile is then set by ~100 draws beyond it
RESAMPLES = 1999
# values drawn per block of draws (bounds the memory: 4M float64 = 32 MB)
_BLOCK_VALUES = 4_000_000


def _abs_t(ra: np.ndarray, rb: np.ndarray, centre: float, borrow_variance: bool) -> np.ndarray:
    """|mean(ra) − mean(rb) − centre| / se per row of two stacks of groups, se by the rule
    of `welch_ttest` (a group that came out constant borrows the pooled spread)."""
    na, nb = ra.shape[1], rb.shape[1]
    va, vb = ra.var(axis=1, ddof=1), rb.var(axis=1, ddof=1)
    se = np.sqrt(va / na + vb / nb)
    pooled = np.sqrt(((na - 1) * va + (nb - 1) * vb) / (na + nb - 2) * (1 / na + 1 / nb))
    flat = (np.ptp(ra, axis=1) == 0) | (np.ptp(rb, axis=1) == 0)
    se = np.where(borrow_variance | flat, np.maximum(se, pooled), se)
    gap = np.abs(ra.mean(axis=1) - rb.mean(axis=1) - centre)
    safe = np.where(se > 0, se, 1.0)
    return np.where(se > 0, gap / safe, np.where(gap > 0, np.inf, 0.0))


def _bootstrap_t(a, b, centre, borrow_variance, draws, rng) -> np.ndarray:
    """|t*| of each group resampled on its own, around the observed difference."""
    ra = a[rng.integers(0, a.size, (draws, a.size))]
    rb = b[rng.integers(0, b.size, (draws, b.size))]
    return _abs_t(ra, rb, centre, borrow_variance)


def _permutation_t(a, b, centre, borrow_variance, draws, rng) -> np.ndarray:
    """|t| of the labels shuffled (no difference but chance), `centre` unused (0)."""
    pooled = np.concatenate([a, b])
    shuffled = rng.permuted(np.broadcast_to(pooled, (draws, pooled.size)), axis=1)
    return _abs_t(shuffled[:, : a.size], shuffled[:, a.size :], 0.0, borrow_variance)


def _draw(kind, a, b, centre, borrow_variance, resamples, rng) -> np.ndarray:
    block = max(1, _BLOCK_VALUES // (a.size + b.size))
    return np.concatenate(
        [
            kind(a, b, centre, borrow_variance, min(block, resamples - done), rng)
            for done in range(0, resamples, block)
        ]
    )


def resampled_difference(
    a: np.ndarray,
    b: np.ndarray,
    borrow_variance: bool = False,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Difference:
    """mean(a) − mean(b) with Welch's standard error, its interval and p-value calibrated by
    resampling instead of Student's t: Δ ± q·se, where q is the larger 95% quantile of |t|
    (a) over the labels shuffled, the studentized permutation test (exact when the groups
    do not differ, and valid for equal means with unequal spreads: Janssen 1997), and (b)
    over each group resampled on its own, the symmetric bootstrap-t (Hall 1988), which
    carries the groups' own skew; p is the larger of the two tests' p-values, so p < 0.05
    when the interval excludes zero (up to one draw).

    For spend, whose tail is a few big buyers, Welch's t is far from Student's when a group
    is small: in label shuffles of the synthetic shop's campaigns Welch called up to 9.8%
    significant at p < 0.05 and 2.8% at p < 0.01 (docs/measurement.md). A fixed seed keeps
    one answer per data.
    """
    welch = welch_ttest(a, b, borrow_variance)
    if welch.se == 0:
        return welch
    a, b = np.asarray(a, dtype="float64"), np.asarray(b, dtype="float64")
    rng = np.random.default_rng(seed)
    observed = abs(welch.estimate) / welch.se
    q, p_value = 0.0, 0.0
    for kind in (_permutation_t, _bootstrap_t):
        spread = _draw(kind, a, b, welch.estimate, borrow_variance, resamples, rng)
        # "higher": an order statistic, so a quantile among infinite draws (both resampled
        # groups constant) is infinite, not inf - inf = NaN
        q = max(q, float(np.quantile(spread, 0.95, method="higher")))
        p_value = max(p_value, (1 + np.count_nonzero(spread >= observed)) / (resamples + 1))
    low, high = welch.estimate - q * welch.se, welch.estimate + q * welch.se
    return Difference(welch.estimate, low, high, float(p_value), welch.se)


@dataclass(frozen=True)
class Cuped:
    """A CUPED-adjusted outcome: y − θ(x − mean x), θ = cov(x, y) / var(x) on pooled data."""

    adjusted: np.ndarray
    theta: float
    variance_reduction: float  # 1 − var(adjusted) / var(y): the share of variance removed


def cuped(y: np.ndarray, x: np.ndarray) -> Cuped:
    """Remove from `y` the part explained by a pre-period covariate `x`.

    θ is estimated on treated and holdout together; since treatment is random, x is
    independent of it and the adjusted difference stays unbiased, with smaller variance
    (by the squared correlation of x and y).
    """
    y, x = np.asarray(y, dtype="float64"), np.asarray(x, dtype="float64")
    var_x = x.var()
    if var_x == 0 or y.var() == 0:
        return Cuped(y.copy(), 0.0, 0.0)
    theta = float(np.mean((x - x.mean()) * (y - y.mean())) / var_x)
    adjusted = y - theta * (x - x.mean())
    return Cuped(adjusted, theta, float(1 - adjusted.var() / y.var()))


@dataclass(frozen=True)
class OlsFit:
    """Least squares with t-based inference; each standard error the larger of the
    conventional and the Newey-West (HAC) one (`ols_hac`)."""

    coef: np.ndarray
    se: np.ndarray
    df: int
    lags: int
    residuals: np.ndarray

    def difference(self, column: int) -> Difference:
        """Coefficient `column` as an effect with its 95% interval and p-value."""
        b, se = float(self.coef[column]), float(self.se[column])
        q = float(stats.t.ppf(0.975, self.df))
        p_value = float(2 * stats.t.sf(abs(b) / se, self.df)) if se > 0 else 1.0
        return Difference(b, b - q * se, b + q * se, p_value, se)


def newey_west_lags(n: int) -> int:
    """The usual automatic lag length floor(4 (n/100)^(2/9)) (Newey and West 1994)."""
    return int(np.floor(4 * (n / 100) ** (2 / 9)))


def ols_hac(y: np.ndarray, design: np.ndarray, lags: int | None = None) -> OlsFit:
    """OLS of y on the design matrix; standard errors the larger of the conventional and
    the HAC (Newey-West, Bartlett weights, small-sample factor n / (n − k)) ones.

    Monthly rates are autocorrelated, which Newey-West allows for; in short series it is
    too small on its own (below).
    """
    y, X = np.asarray(y, dtype="float64"), np.asarray(design, dtype="float64")
    n, k = X.shape
    if n <= k:
        raise ValueError(f"regression needs more observations ({n}) than parameters ({k})")
    lags = newey_west_lags(n) if lags is None else lags
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    u = y - X @ coef
    bread = np.linalg.pinv(X.T @ X)
    scores = X * u[:, None]
    meat = scores.T @ scores
    for lag in range(1, lags + 1):
        weight = 1 - lag / (lags + 1)
        gamma = scores[lag:].T @ scores[:-lag]
        meat += weight * (gamma + gamma.T)
    hac = bread @ meat @ bread * n / (n - k)
    # HAC alone is far too small in short series: a step with 1-3 months after the date fits
    # them almost exactly, their residuals vanish from the meat, and noise came out
    # "significant" in 20-50% of placebo series. The larger of the conventional and the
    # robust error is the usual small-sample guard (Angrist and Pischke 2009, §8.1).
    conventional = bread * float(u @ u) / (n - k)
    se = np.sqrt(np.clip(np.maximum(np.diag(hac), np.diag(conventional)), 0, None))
    return OlsFit(coef, se, n - k, lags, u)
