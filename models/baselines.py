"""Baselines the models must beat on the same test window (DESIGN §3.4).

- recency: the later the last order, the likelier the next (a rule, ranking only);
- RFM: the classic sum of recency, frequency and monetary quintiles (ranking only);
- BG/NBD (Fader, Hardie & Lee 2005): the buy-till-you-die model, fitted per cutoff on the
  customers' (frequency, recency, T) from orders strictly before it, by penalised maximum
  likelihood (MAP with a Gaussian prior on the log-parameters); it gives the expected number
  of purchases in the horizon and P(at least one purchase), a probability;
- spend rank for VIP conversion and view rules for first purchase.

A baseline whose fit fails raises `BaselineFitError`; callers record it as failed with the
reason instead of dropping it silently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, special

PARAMS = ("r", "alpha", "a", "b")


class BaselineFitError(RuntimeError):
    """A baseline could not be fitted on this data (the reason is in the message)."""


# ----------------------------------------------------------------------------- rules


def recency_score(rows: pd.DataFrame) -> np.ndarray:
    """Minus the days since the last order: never-buyers rank last."""
    return -rows["days_since_last_order"].fillna(1e6).to_numpy(dtype="float64")


def _quintile(values: pd.Series) -> np.ndarray:
    """1..5 by rank percentile; ties share a quintile (average rank), so many one-time buyers
    do not get split arbitrarily between quintiles."""
    pct = values.rank(method="average", pct=True).to_numpy(dtype="float64")
    return np.clip(np.ceil(pct * 5), 1, 5)


def rfm_score(rows: pd.DataFrame) -> np.ndarray:
    """R + F + M quintile scores (3..15), quintiles taken within each cutoff."""
    score = np.zeros(len(rows))
    for _, index in rows.groupby("cutoff", sort=False).indices.items():
        part = rows.iloc[index]
        recency = _quintile(-part["days_since_last_order"].fillna(1e6))
        frequency = _quintile(part["orders_lifetime"].fillna(0))
        monetary = _quintile(part["spend_lifetime"].fillna(0))
        score[index] = recency + frequency + monetary
    return score


def spend_rank_score(rows: pd.DataFrame) -> np.ndarray:
    """Current trailing spend: the closer to the VIP line, the likelier the climb."""
    return rows["tier_window_spend"].fillna(0.0).to_numpy(dtype="float64")


def view_recency_score(rows: pd.DataFrame) -> np.ndarray:
    """Minus the days since the last content view; members who never viewed rank last."""
    if "days_since_last_view" not in rows:
        raise BaselineFitError("no content views in this data: the view rule has nothing to rank")
    return -rows["days_since_last_view"].fillna(1e6).to_numpy(dtype="float64")


def high_price_view_score(rows: pd.DataFrame) -> np.ndarray:
    """High-price views first, then view recency as the tie-break (a CRM team's rule)."""
    if "high_price_views" not in rows:
        raise BaselineFitError("no content views in this data: the view rule has nothing to rank")
    recency = view_recency_score(rows)
    # recency lies in (-1e6, 0]: scaling the count by 1e7 makes it the primary key
    return rows["high_price_views"].fillna(0).to_numpy(dtype="float64") * 1e7 + recency


# ----------------------------------------------------------------------------- BG/NBD


@dataclass(frozen=True)
class RepeatHistory:
    """Per customer: repeat purchases x, time of the last one t_x and age T (days since the
    first purchase), all as of the cutoff."""

    x: np.ndarray
    t_x: np.ndarray
    T: np.ndarray

    @classmethod
    def from_features(cls, rows: pd.DataFrame) -> RepeatHistory:
        """From the point-in-time features: orders before the cutoff minus one, and the exact
        (to the second) day counts of the first and last order before it."""
        orders = rows["orders_lifetime"].to_numpy(dtype="float64")
        if (orders < 1).any() or rows["days_since_first_order"].isna().any():
            raise BaselineFitError("BG/NBD needs customers with at least one order")
        first = rows["days_since_first_order"].to_numpy(dtype="float64")
        last = rows["days_since_last_order"].to_numpy(dtype="float64")
        return cls(x=orders - 1, t_x=first - last, T=first)


def bgnbd_log_likelihood(params: np.ndarray, data: RepeatHistory) -> np.ndarray:
    """Per-customer log-likelihood of BG/NBD (Fader, Hardie & Lee 2005, eq. 6)."""
    r, alpha, a, b = params
    x, t_x, T = data.x, data.t_x, data.T
    a1 = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
    a2 = special.betaln(a, b + x) - special.betaln(a, b)
    a3 = -(r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore"):
        a4 = np.where(
            x > 0,
            np.log(a) - np.log(np.maximum(b + x - 1, 1e-300)) - (r + x) * np.log(alpha + t_x),
            -np.inf,
        )
    return a1 + a2 + np.logaddexp(a3, a4)


@dataclass(frozen=True)
class BgNbd:
    """A fitted BG/NBD model (time unit: days)."""

    r: float
    alpha: float
    a: float
    b: float

    def params(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in PARAMS}

    def p_alive(self, data: RepeatHistory) -> np.ndarray:
        """P(still active at T) given the history (FHL 2005, eq. 8)."""
        x, t_x, T = data.x, data.t_x, data.T
        log_ratio = (self.r + x) * (np.log(self.alpha + T) - np.log(self.alpha + t_x))
        odds = np.where(x > 0, self.a / np.maximum(self.b + x - 1, 1e-300) * np.exp(log_ratio), 0.0)
        return 1.0 / (1.0 + odds)

    def p_any_purchase(self, data: RepeatHistory, horizon: float) -> np.ndarray:
        """P(at least one purchase in (T, T + horizon]).

        Alive at T, the rate's posterior is Gamma(r + x, alpha + T) and is independent of the
        dropout probability's, and dropout only happens just after a purchase, so no purchase
        in the horizon has probability ((alpha + T) / (alpha + T + horizon))^(r + x).
        """
        none = np.exp(
            (self.r + data.x)
            * (np.log(self.alpha + data.T) - np.log(self.alpha + data.T + horizon))
        )
        return self.p_alive(data) * (1.0 - none)

    def expected_purchases(self, data: RepeatHistory, horizon: float) -> np.ndarray:
        """E[purchases in (T, T + horizon]] given the history (FHL 2005, eq. 10).

        Valid for any a != 1 (checked against simulated histories with a = 0.4, 0.8 and 2 in
        tests/test_baselines.py); a = 1 exactly is a removable singularity, nudged off.
        """
        x, t_x, T = data.x, data.t_x, data.T
        r, alpha, b = self.r, self.alpha, self.b
        a = self.a if abs(self.a - 1) > 1e-9 else 1 + 1e-9
        z = horizon / (alpha + T + horizon)
        hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, z)
        ratio = np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + T + horizon)))
        numerator = (a + b + x - 1) / (a - 1) * (1 - ratio * hyp)
        odds = np.where(
            x > 0,
            a
            / np.maximum(b + x - 1, 1e-300)
            * np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + t_x))),
            0.0,
        )
        return numerator / (1 + odds)


def fit_bgnbd(data: RepeatHistory, penalty: float = 0.01) -> BgNbd:
    """Penalised maximum likelihood: maximise mean log-likelihood - penalty * ||log params||^2.

    The penalty is a Gaussian prior on the log-parameters centred on 1 (MAP); it keeps the
    fit finite on data where plain maximum likelihood runs off to a boundary (Online Retail
    does: STACK_NOTES). Per customer (mean log-likelihood), so its strength does not depend
    on the number of customers. Raises BaselineFitError when the optimiser fails.
    """
    n = len(data.x)
    if n < 10:
        raise BaselineFitError(f"BG/NBD needs at least 10 customers, got {n}")
    if not (data.x > 0).any():
        raise BaselineFitError("BG/NBD cannot be fitted: no customer has a repeat purchase")

    def objective(log_params: np.ndarray) -> float:
        value = -bgnbd_log_likelihood(np.exp(log_params), data).mean()
        return float(value + penalty * np.sum(log_params**2))

    start = np.log([1.0, max(float(np.mean(data.T)), 1.0), 1.0, 1.0])
    result = optimize.minimize(objective, start, method="L-BFGS-B")
    if not result.success:
        # a rough surface (real logs): derivative-free first, then polish
        result = optimize.minimize(
            objective,
            start,
            method="Nelder-Mead",
            options={"maxiter": 4000, "xatol": 1e-6, "fatol": 1e-10},
        )
        result = optimize.minimize(objective, result.x, method="L-BFGS-B")
    fitted = np.exp(result.x)
    if not np.all(np.isfinite(fitted)) or not np.isfinite(result.fun):
        raise BaselineFitError(f"BG/NBD fit did not converge: {result.message}")
    if np.any(np.abs(result.x) > 15):
        raise BaselineFitError(
            "BG/NBD fit ran off to a boundary "
            f"({', '.join(f'{k}={v:.3g}' for k, v in zip(PARAMS, fitted, strict=True))}); "
            "raise training.bgnbd_penalty"
        )
    return BgNbd(*fitted)


def bgnbd_score(rows: pd.DataFrame, horizon_days: int, penalty: float) -> np.ndarray:
    """P(at least one order in the horizon), BG/NBD fitted separately at each cutoff on the
    histories before it (the same information the model sees)."""
    score = np.zeros(len(rows))
    for _, index in rows.groupby("cutoff", sort=False).indices.items():
        history = RepeatHistory.from_features(rows.iloc[index])
        model = fit_bgnbd(_sample(history, FIT_SAMPLE), penalty)
        score[index] = model.p_any_purchase(history, float(horizon_days))
    return score


# Four parameters are pinned down long before this many customers; a cap keeps the fit at
# a few seconds on millions of customers (it is linear in customers per iteration).
FIT_SAMPLE = 200_000


def _sample(history: RepeatHistory, size: int) -> RepeatHistory:
    """A fixed random subset of at most `size` customers (deterministic)."""
    if len(history.x) <= size:
        return history
    pick = np.random.default_rng(0).choice(len(history.x), size, replace=False)
    return RepeatHistory(x=history.x[pick], t_x=history.t_x[pick], T=history.T[pick])


def simulate_bgnbd(
    model: BgNbd, customers: int, seed: int, max_age: float = 365.0, horizon: float = 0.0
) -> tuple[RepeatHistory, np.ndarray]:
    """Histories drawn from a known BG/NBD (gamma rates, beta dropout after each purchase, ages
    uniform in (max_age / 4, max_age)) and each customer's purchases in (T, T + horizon].
    Used to test that the fit recovers the model and that its predictions match outcomes."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(model.r, 1.0 / model.alpha, customers)
    dropout = rng.beta(model.a, model.b, customers)
    age = rng.uniform(max_age / 4, max_age, customers)
    x = np.zeros(customers)
    t_x = np.zeros(customers)
    future = np.zeros(customers)
    now = np.zeros(customers)
    active = np.ones(customers, dtype=bool)
    while active.any():
        idx = np.flatnonzero(active)
        now[idx] += rng.exponential(1.0 / np.maximum(rate[idx], 1e-12))
        in_history = now[idx] < age[idx]
        in_future = ~in_history & (now[idx] <= age[idx] + horizon)
        past, later = idx[in_history], idx[in_future]
        x[past] += 1
        t_x[past] = now[past]
        future[later] += 1
        bought = idx[in_history | in_future]
        active[idx] = False
        active[bought] = rng.uniform(size=len(bought)) >= dropout[bought]
    return RepeatHistory(x=x, t_x=t_x, T=age), future


# ----------------------------------------------------------------------------- Gamma-Gamma


@dataclass(frozen=True)
class OrderValues:
    """Per customer: the number of orders x and their mean value m (both as of the cutoff)."""

    x: np.ndarray
    m: np.ndarray

    @classmethod
    def from_features(cls, rows: pd.DataFrame) -> OrderValues:
        """From the point-in-time features: every order before the cutoff and its mean value.
        (The textbook fit uses repeat orders only; with the first order included every
        buyer has a mean, which the one-order majority of a shop needs.)"""
        x = rows["orders_lifetime"].to_numpy(dtype="float64")
        m = rows["avg_order_value"].to_numpy(dtype="float64")
        if (x < 1).any() or not np.isfinite(m).all():
            raise BaselineFitError("Gamma-Gamma needs customers with at least one order")
        return cls(x=x, m=m)


def gamma_gamma_log_likelihood(params: np.ndarray, data: OrderValues) -> np.ndarray:
    """Per-customer log-likelihood of the mean order value under Gamma-Gamma (Fader, Hardie &
    Lee 2005, "RFM and CLV", the spend model: order values ~ Gamma(p, nu), nu ~ Gamma(q, gamma)),
    up to terms that do not depend on the parameters."""
    p, q, gamma = params
    px = p * data.x
    return (
        special.gammaln(px + q)
        - special.gammaln(px)
        - special.gammaln(q)
        + q * np.log(gamma)
        + (px - 1) * np.log(data.m)
        + px * np.log(data.x)
        - (px + q) * np.log(data.x * data.m + gamma)
    )


@dataclass(frozen=True)
class GammaGamma:
    """A fitted Gamma-Gamma spend model (money in the shop's currency)."""

    p: float
    q: float
    gamma: float

    def expected_order_value(self, data: OrderValues) -> np.ndarray:
        """E[value of a future order | x orders with mean m]: a weighted mean of the
        population mean and the customer's own mean (needs q > 1)."""
        if self.q <= 1:
            raise BaselineFitError(f"Gamma-Gamma needs q > 1; the fit gave q = {self.q:.3f}")
        weight = self.p * data.x / (self.p * data.x + self.q - 1)
        population = self.p * self.gamma / (self.q - 1)
        return (1 - weight) * population + weight * data.m


def fit_gamma_gamma(data: OrderValues, penalty: float = 0.01) -> GammaGamma:
    """Penalised maximum likelihood on the log-parameters (as fit_bgnbd), on the customers
    with a positive mean order value. Money is rescaled to the median order for the fit, so
    the penalty means the same in any currency."""
    keep = data.m > 0
    if keep.sum() < 10:
        raise BaselineFitError(f"Gamma-Gamma needs 10 customers with spend, got {keep.sum()}")
    scale = float(np.median(data.m[keep]))
    fitted_on = OrderValues(x=data.x[keep], m=data.m[keep] / scale)

    def objective(log_params: np.ndarray) -> float:
        value = -gamma_gamma_log_likelihood(np.exp(log_params), fitted_on).mean()
        return float(value + penalty * np.sum(log_params**2))

    result = optimize.minimize(
        objective,
        np.log([1.0, 2.0, 1.0]),
        method="Nelder-Mead",
        options={"maxiter": 4000, "xatol": 1e-7, "fatol": 1e-10},
    )
    result = optimize.minimize(objective, result.x, method="L-BFGS-B")
    p, q, gamma = np.exp(result.x)
    if not np.all(np.isfinite([p, q, gamma])) or np.any(np.abs(result.x) > 15):
        raise BaselineFitError(f"Gamma-Gamma fit did not converge: {result.message}")
    return GammaGamma(p=float(p), q=float(q), gamma=float(gamma * scale))


def simulate_gamma_gamma(
    model: GammaGamma, customers: int, seed: int, max_orders: int = 10
) -> tuple[OrderValues, np.ndarray]:
    """Customers' order counts (uniform 1..max_orders), the mean of their order values drawn
    from the model, and their true mean order value p / nu (for tests of the fit)."""
    rng = np.random.default_rng(seed)
    nu = rng.gamma(model.q, 1.0 / model.gamma, customers)
    x = rng.integers(1, max_orders + 1, customers).astype("float64")
    totals = rng.gamma(model.p * x, 1.0 / nu)
    return OrderValues(x=x, m=totals / x), model.p / nu


def bgnbd_gamma_gamma_spend(rows: pd.DataFrame, horizon_days: int, penalty: float) -> np.ndarray:
    """Expected spend over the horizon: BG/NBD's expected orders x Gamma-Gamma's expected order
    value, both fitted separately at each cutoff on the histories before it."""
    spend = np.zeros(len(rows))
    for _, index in rows.groupby("cutoff", sort=False).indices.items():
        part = rows.iloc[index]
        history = RepeatHistory.from_features(part)
        orders = fit_bgnbd(_sample(history, FIT_SAMPLE), penalty)
        values = OrderValues.from_features(part)
        spend_model = fit_gamma_gamma(values, penalty)
        spend[index] = orders.expected_purchases(history, float(horizon_days)) * (
            spend_model.expected_order_value(values)
        )
    return spend


def previous_window_spend(rows: pd.DataFrame, horizon_days: int) -> np.ndarray:
    """The customer's own spend in the window of the same length just before the cutoff."""
    column = f"spend_{horizon_days}d"
    if column not in rows:
        raise BaselineFitError(
            f"no {column} feature: the previous-window rule needs a feature window as long as "
            f"the value horizon (add {horizon_days} to features.windows_days)"
        )
    return rows[column].fillna(0.0).to_numpy(dtype="float64")


# ----------------------------------------------------------------------------- next order


def median_gap_days(rows: pd.DataFrame) -> np.ndarray:
    """The rule in use before the timing model: last order + the customer's median gap (the
    median customer's at that cutoff for one-order customers), in days from the cutoff, and
    never before it."""
    gap = rows["median_gap_days"].astype("float64")
    peers = gap.groupby(rows["cutoff"]).transform("median")
    gap = gap.fillna(peers).fillna(30.0).to_numpy()
    return np.maximum(gap - rows["days_since_last_order"].to_numpy(dtype="float64"), 0.0)


def bgnbd_median_days(rows: pd.DataFrame, horizon_days: int, penalty: float) -> np.ndarray:
    """BG/NBD's median day of the next order given one within the horizon: the first day d
    with P(a purchase by d) >= half of P(a purchase by H), fitted at each cutoff."""
    days = np.arange(1, horizon_days + 1, dtype="float64")
    median = np.zeros(len(rows))
    for _, index in rows.groupby("cutoff", sort=False).indices.items():
        history = RepeatHistory.from_features(rows.iloc[index])
        model = fit_bgnbd(_sample(history, FIT_SAMPLE), penalty)
        by_day = np.stack([model.p_any_purchase(history, d) for d in days], axis=1)
        reached = by_day >= 0.5 * by_day[:, -1:]
        median[index] = days[np.argmax(reached, axis=1)]
    return median
