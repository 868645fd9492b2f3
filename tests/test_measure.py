"""Campaign measurement: tests of a difference, CUPED, planted effects, A/A, errors, CLI."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.schema import ShopTables
from features.synthetic import campaign_truth, generate_shop
from flows.cli import main
from models.holdout import assign_groups
from models.measure import MeasurementError, compare_groups, measure_campaign
from models.stats import cuped, resampled_difference, two_proportion_ztest, welch_ttest

END = pd.Timestamp("2026-01-01")
N, SEED = 20_000, 7  # the default shop: generating it takes well under a second


@pytest.fixture(scope="module")
def shop() -> ShopTables:
    return generate_shop(N, SEED)


def test_two_proportion_test_by_hand() -> None:
    d = two_proportion_ztest(30, 100, 20, 100)
    # pooled p = 0.25, se0 = sqrt(.25 * .75 * .02) = 0.061237; z = 1.633; p = 0.1025
    assert d.estimate == pytest.approx(0.10)
    assert d.p_value == pytest.approx(0.1025, abs=2e-4)
    assert d.ci_low < 0 < d.ci_high
    w = welch_ttest(np.array([1.0, 2, 3, 4]), np.array([1.0, 1, 2, 2]))
    assert w.estimate == pytest.approx(1.0)
    assert 0.1 < w.p_value < 0.3


def test_resampled_revenue_test_keeps_its_level_where_welch_does_not() -> None:
    """Spend with no effect at all (70% zeros, a lognormal tail) and a holdout of 60 of
    600: Welch's t calls 14% of such campaigns significant at p < 0.05; the resampled test
    (label shuffles and the bootstrap) about its nominal 5%."""
    rng = np.random.default_rng(1)
    welch, resampled = [], []
    for draw in range(300):
        spend = np.where(rng.uniform(size=600) > 0.7, rng.lognormal(4, 1.2, 600), 0.0)
        held_out = rng.permutation(600) < 60
        a, b = spend[~held_out], spend[held_out]
        welch.append(welch_ttest(a, b).p_value < 0.05)
        found = resampled_difference(a, b, resamples=499, seed=draw)
        resampled.append(found.p_value < 0.05)
        assert (found.p_value < 0.05) == (found.ci_low > 0 or found.ci_high < 0) or abs(
            found.p_value - 0.05
        ) < 0.01  # the interval and p agree (up to a draw or two)
    assert np.mean(welch) > 0.10
    assert np.mean(resampled) <= 0.08


def test_welch_borrows_the_pooled_spread_for_a_constant_group() -> None:
    """Two held-out customers who both spent 0 against a varied treated group: their own
    variance (0) would make the interval the treated group's alone; the pooled spread and
    t(1) make it honest. Used raw by revenue_raw and the cohort LTV comparison."""
    treated, held_out = np.array([10.0, 30, 50, 70, 90, 20, 40]), np.zeros(2)
    d = welch_ttest(treated, held_out)
    squares = 6 * treated.var(ddof=1)
    pooled_se = np.sqrt(squares / 7 * (1 / 7 + 1 / 2))
    assert d.se == pytest.approx(pooled_se)
    assert d.ci_high - d.estimate == pytest.approx(12.706 * pooled_se, rel=1e-3)
    assert d.ci_low < 0 < d.ci_high  # two zeros prove little
    assert welch_ttest(np.zeros(3), np.zeros(3)).ci_low == 0.0  # nothing varies, no difference
    # a constant that is not 0 (three customers with 0.1 each: a variance of 1e-34, not 0)
    tenths = welch_ttest(treated, np.full(3, 0.1))
    assert tenths.ci_low < 0 < tenths.ci_high


def _ab_frame(seed: int, n: int = 4_000, effect: float = 0.05) -> pd.DataFrame:
    """A simulated campaign: pre-period spend drives buying; treatment adds `effect`."""
    rng = np.random.default_rng(seed)
    pre = rng.gamma(0.6, 60_000, n) * (rng.random(n) < 0.6)
    treated = rng.random(n) >= 0.2
    p = 0.08 + 0.25 * (pre > 0) + effect * treated
    buyer = (rng.random(n) < p).astype(float)
    revenue = buyer * (0.8 * pre + rng.gamma(2, 20_000, n))
    return pd.DataFrame(
        {
            "group": np.where(treated, "treated", "holdout"),
            "buyer": buyer,
            "revenue": revenue,
            "pre_spend": pre,
        }
    )


def test_simulated_ab_effect_is_recovered_inside_its_ci() -> None:
    covered, estimates = 0, []
    for seed in range(20):
        stats = compare_groups(_ab_frame(seed, n=10_000))
        c = stats["conversion"]
        covered += c.ci_low < 5.0 < c.ci_high
        estimates.append(c.estimate)
        cc = stats["conversion_cuped"]
        assert cc.ci_low < c.estimate < cc.ci_high
        # CUPED on a covariate that drives the outcome removes much of the variance
        assert stats["variance_reduction"]["revenue"] > 0.1
        assert stats["revenue"].se < stats["revenue_raw"].se
    assert covered >= 17  # 95% intervals: P(fewer than 17 of 20) < 2%
    assert abs(np.mean(estimates) - 5.0) < 0.7  # unbiased (sd of the mean ~0.25)


def test_cuped_interval_is_not_jitter_when_a_group_is_all_buyers_or_none() -> None:
    """100 treated who all bought against 2 held-out who did not: the raw interval is wide
    (34 to 100 pp); the CUPED one must not shrink to the adjustment's jitter (it was 95.2
    to 96.3)."""
    rng = np.random.default_rng(0)
    bought = np.r_[np.ones(100), np.zeros(2)]
    frame = pd.DataFrame(
        {
            "group": ["treated"] * 100 + ["holdout"] * 2,
            "buyer": bought,
            "revenue": rng.gamma(2, 50, 102) * bought,
            "pre_spend": rng.gamma(2, 50, 102),
        }
    )
    stats = compare_groups(frame)
    raw, adjusted = stats["conversion"], stats["conversion_cuped"]
    assert raw.ci_high - raw.ci_low > 50
    assert adjusted == raw  # nothing to adjust: the raw (Newcombe) interval
    assert adjusted.ci_high <= 100
    revenue, raw = stats["revenue"], stats["revenue_raw"]
    # two zeros prove little: resampled (shuffles of the labels, the groups bootstrapped),
    # the interval spans more than the estimate itself, and p is what the shuffles allow
    assert revenue.ci_high - revenue.ci_low > revenue.estimate > 0
    assert revenue.p_value > 0.01
    # CUPED removed almost nothing here: adjusted and raw must tell the same story
    assert revenue.beyond_noise == raw.beyond_noise
    assert raw.ci_high - raw.ci_low == pytest.approx(revenue.ci_high - revenue.ci_low, rel=0.1)


def test_resampling_tiny_constant_groups_gives_an_unbounded_interval_not_a_narrow_one() -> None:
    """Two held out who spent nothing against a few treated with one buyer: the resampled
    groups are often both constant; the interval must not collapse to ±1 standard error
    (a NaN quantile was dropped), and p must agree with it."""
    for treated, held_out in (([5.0, 0, 0, 0, 0, 0], [0.0, 0]), ([10.0, 0, 0], [0.0, 0])):
        found = resampled_difference(np.array(treated), np.array(held_out))
        assert np.isfinite(found.estimate) and not np.isnan(found.ci_low)
        assert found.ci_high - found.estimate > 4 * found.se
        assert not found.beyond_noise


def test_aa_splits_give_about_five_percent_false_positives() -> None:
    population = _ab_frame(2, n=3_000, effect=0.0)
    ids = [f"C{i:07d}" for i in range(len(population))]
    hits = {"conversion": 0, "revenue": 0}
    for split in range(200):
        frame = population.assign(group=assign_groups(ids, f"AA-{split}", 0.5))
        stats = compare_groups(frame)
        hits["conversion"] += stats["conversion"].p_value < 0.05
        hits["revenue"] += stats["revenue"].p_value < 0.05
    for name, count in hits.items():
        assert 0.02 <= count / 200 <= 0.08, (name, count)


def test_cuped_is_exact_on_a_hand_example() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0])
    x = np.array([1.0, 2.0, 3.0, 5.0])
    result = cuped(y, x)
    theta = np.cov(x, y, ddof=0)[0, 1] / x.var()
    assert result.theta == pytest.approx(theta)
    assert result.adjusted.mean() == pytest.approx(y.mean())  # the mean is unchanged
    assert 0 < result.variance_reduction < 1


def test_planted_campaign_effects_are_recovered(shop: ShopTables) -> None:
    truth = campaign_truth(N, SEED)
    inside = 0
    for campaign in shop.campaigns.campaign_id:
        result = measure_campaign(shop, campaign, END)
        planted = truth[truth.campaign_id == campaign]
        true_pp = 100 * (planted.y1 - planted.y0).mean()
        c = result.conversion
        inside += c.ci_low <= true_pp <= c.ci_high
        assert result.treated.customers + result.holdout.customers == len(planted)
    assert inside >= 5  # 95% intervals: at most one of six may miss
    for campaign in ("K2508", "K2510"):  # the two big campaigns with clear planted effects
        result = measure_campaign(shop, campaign, END)
        assert result.conversion.p_value < 0.01 and result.conversion.estimate > 0


def test_cuped_reduces_variance_on_the_synthetic_shop(shop: ShopTables) -> None:
    result = measure_campaign(shop, "K2510", END)
    assert result.variance_reduction["revenue"] > 0.05
    assert result.revenue.se < result.revenue_raw.se


def test_coupon_cost_and_roi(shop: ShopTables) -> None:
    result = measure_campaign(shop, "K2508", END)
    treated_orders = result.treated.orders
    # 15% capped at ₩30,000 per order: positive, and never above the cap per order
    assert 0 < result.coupon_cost <= 30_000 * treated_orders
    assert result.roi == pytest.approx(
        (result.incremental_revenue - result.coupon_cost) / result.coupon_cost
    )
    assert result.verdict.startswith("Campaign K2508 raised conversion")


def test_clear_errors(shop: ShopTables) -> None:
    with pytest.raises(MeasurementError, match="unknown campaign 'NOPE'.*K2405"):
        measure_campaign(shop, "NOPE", END)
    with pytest.raises(MeasurementError, match="window ends .* after the data end"):
        measure_campaign(shop, "K2510", pd.Timestamp("2025-10-15"))
    only_treated = shop.contacts[shop.contacts.group == "treated"]
    tables = ShopTables(orders=shop.orders, contacts=only_treated, campaigns=shop.campaigns)
    with pytest.raises(MeasurementError, match="holdout group has 0 customers"):
        measure_campaign(tables, "K2510", END)
    # planned in the campaigns table, but every contact was rejected (sent at the data end)
    unsent = ShopTables(
        orders=shop.orders,
        contacts=shop.contacts[shop.contacts.campaign_id != "K2510"],
        campaigns=shop.campaigns,
    )
    with pytest.raises(MeasurementError, match="'K2510' is in the campaigns table, but no contact"):
        measure_campaign(unsent, "K2510", END)
    with pytest.raises(MeasurementError, match="no contacts table"):
        measure_campaign(ShopTables(orders=shop.orders), "K2510", END)


def test_default_window_without_a_campaigns_row(shop: ShopTables) -> None:
    tables = ShopTables(orders=shop.orders, contacts=shop.contacts)
    result = measure_campaign(tables, "K2508", END, attribution_days=28)
    assert "28 days from each contacted_at" in result.window
    assert result.roi is None and "no coupon cost" in result.verdict


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("measure-cli")
    (folder / "config.yaml").write_text(
        """
data:
  end: 2026-01-01
  tables:
    customers: {path: shop/customers.parquet}
    orders: {path: shop/orders.parquet}
    contacts: {path: shop/contacts.parquet}
    campaigns: {path: shop/campaigns.parquet}
synthetic: {customers: 4000, seed: 7, out_dir: shop}
paths: {mlruns: mlruns, exports: exports, prefect_home: prefect}
"""
    )
    return folder / "config.yaml"


def test_cli_json_and_errors(config_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["measure", "--config", str(config_path), "--campaign", "K2510", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    for key in ("uplift_pp", "ci_low_pp", "ci_high_pp", "p_value", "treated", "holdout"):
        assert key in payload
    assert {"incremental_revenue", "roi"} <= set(payload)
    assert payload["treated"]["customers"] > payload["holdout"]["customers"] > 0
    assert main(["measure", "--config", str(config_path), "--campaign", "K0000"]) == 2
    assert "unknown campaign 'K0000'" in capsys.readouterr().err


def test_cli_metric_names_match_the_models() -> None:
    from flows.cli_measure import METRICS as CLI_METRICS
    from models.change import METRICS

    assert set(CLI_METRICS) == set(METRICS)


def test_cli_change_and_cohorts(
    config_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = ["measure", "--config", str(config_path), "--change-date", "2025-05-01"]
    assert main([*args, "--metric", "first_purchase_rate", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert {"effect_pp", "ci_low_pp", "ci_high_pp", "p_value", "band_pp"} <= set(payload)
    out = tmp_path / "c" / "cohorts.csv"
    cohorts = ["cohorts", "--config", str(config_path), "--out", str(out)]
    assert main([*cohorts, "--change-date", "2025-01-01"]) == 0
    table = pd.read_csv(out)
    assert table.cohort.iloc[0] == "2024-01" and table.repeat_3m.notna().any()
    assert table.repeat_3m.isna().iloc[-1]  # the last cohort is too young
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "cohorts.csv",
        "cohorts_change.csv",
        "cohorts_ltv.png",
        "cohorts_repeat.png",
        "cohorts_tiers.png",
    ]


@pytest.mark.parametrize(
    ("option", "says"),
    [
        (["--margin", "nan"], "argument --margin: a gross margin is a share of revenue in (0, 1]"),
        (["--margin", "-1"], "argument --margin: a gross margin"),
        (["--margin", "0"], "argument --margin: a gross margin"),
        (["--margin", "1.5"], "argument --margin: a gross margin"),
        (["--pre-days", "-30"], "argument --pre-days: must be a positive number of days"),
        (["--pre-days", "0"], "argument --pre-days: must be a positive number of days"),
    ],
)
def test_cli_refuses_margins_and_pre_periods_that_mean_nothing(
    config_path: Path, capsys: pytest.CaptureFixture, option: list[str], says: str
) -> None:
    """A NaN margin made the ROI NaN (and the JSON invalid); a negative pre-period turned
    CUPED off without a word."""
    with pytest.raises(SystemExit) as parsed:
        main(["measure", "--config", str(config_path), "--campaign", "K2510", *option])
    assert parsed.value.code == 2
    assert f"dangol measure: error: {says}" in capsys.readouterr().err


def test_cli_refuses_metric_with_campaign(config_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["measure", "--config", str(config_path), "--campaign", "K2510"]
    assert main([*args, "--metric", "repurchase_rate"]) == 2
    err = capsys.readouterr().err
    assert "dangol measure: error: --metric goes with --change-date" in err
    assert main([*args, "--margin", "0.4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["margin"] == 0.4


def test_json_output_is_strict(capsys: pytest.CaptureFixture) -> None:
    """Non-finite numbers become null: bare NaN is not JSON."""
    from flows.cli_measure import _emit

    payload = {"roi": float("nan"), "ci": [np.float32("inf"), np.float64(0.5)], "n": np.int64(3)}
    _emit({"nested": payload, "when": pd.Timestamp("2025-01-01")}, [], as_json=True)

    def refuse(constant: str) -> None:
        raise AssertionError(f"non-JSON constant {constant}")

    parsed = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert parsed["nested"] == {"roi": None, "ci": [None, 0.5], "n": 3}
    assert parsed["when"] == "2025-01-01 00:00:00"


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ("2030-01-01", "--change-date 2030-01-01 is after the end of the data (2026-01-01)"),
        ("2023-01-01", "--change-date 2023-01-01 is before the first order (2024-01-01)"),
        ("2025-12-01", "--change-date 2025-12-01: no metric can be compared"),
    ],
)
def test_cli_cohorts_refuse_a_change_date_the_data_cannot_judge(
    config_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture, change: str, says: str
) -> None:
    """Not an all-NaN comparison with exit 0."""
    out = tmp_path / "cohorts.csv"
    args = ["cohorts", "--config", str(config_path), "--out", str(out), "--change-date", change]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"dangol cohorts: error: {says}" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_cli_cohort_files_get_the_umask_mode(config_path: Path, tmp_path: Path) -> None:
    """CSV and charts are handed to people: 0644 under umask 022, not mkstemp's 0600."""
    out = tmp_path / "cohorts.csv"
    previous = os.umask(0o022)
    try:
        assert main(["cohorts", "--config", str(config_path), "--out", str(out)]) == 0
    finally:
        os.umask(previous)
    written = sorted(tmp_path.iterdir())
    assert [p.name for p in written] == [
        "cohorts.csv",
        "cohorts_ltv.png",
        "cohorts_repeat.png",
        "cohorts_tiers.png",
    ]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in written)


def test_few_expected_buyers_are_tested_exactly_and_the_verdict_needs_its_interval() -> None:
    """3 of 151 treated against 2 of 15 held out bought: the z-test's p (0.014) claimed a
    drop that Fisher's exact test does not (0.065); and a p just under 0.05 whose interval
    holds zero is no effect, printed with the figures that show it is not 0.050."""
    from models.measure import p_text
    from models.stats import Difference

    rare = two_proportion_ztest(3, 151, 2, 15)
    assert rare.p_value == pytest.approx(0.065, abs=0.002)
    assert not rare.beyond_noise
    common = two_proportion_ztest(300, 1000, 250, 1000)  # plenty expected: the z-test
    assert common.p_value == pytest.approx(0.0121, abs=0.0005)
    edge = Difference(3.38, -0.03, 5.90, 0.0497, 1.7)
    assert edge.significant and not edge.beyond_noise
    assert p_text(0.0497) == "p = 0.0497" and p_text(0.312) == "p = 0.312"
    assert p_text(0.0004) == "p < 0.001"


def test_measured_money_has_the_currencys_symbol_and_minor_units() -> None:
    from models.measure import money

    assert money(688.09, "GBP") == "£688.09"
    assert money(-12345, "KRW") == "-₩12,345"
    assert money(-0.004, "GBP") == "£0.00"
    assert money(float("-inf"), "GBP") == "unbounded"
