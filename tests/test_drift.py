"""PSI: zero for the same distribution, large for a shifted one, missingness counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.drift import drift_table, psi


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(3)


def test_same_distribution_is_stable(rng: np.random.Generator) -> None:
    reference = rng.normal(size=20_000)
    assert psi(reference, rng.normal(size=20_000)) < 0.01
    assert psi(reference, reference) == pytest.approx(0.0, abs=1e-12)


def test_shift_grows_with_its_size(rng: np.random.Generator) -> None:
    reference = rng.normal(size=20_000)
    small = psi(reference, rng.normal(0.2, size=20_000))
    large = psi(reference, rng.normal(1.0, size=20_000))
    assert 0.01 < small < 0.1 < 0.25 < large


def test_values_going_missing_is_drift(rng: np.random.Generator) -> None:
    reference = rng.normal(size=10_000)
    current = reference.copy()
    current[: len(current) // 2] = np.nan
    assert psi(reference, current) > 0.25


def test_drift_table_orders_by_psi_and_skips_absent_columns(rng: np.random.Generator) -> None:
    reference = pd.DataFrame({"a": rng.normal(size=5000), "b": rng.normal(size=5000)})
    current = pd.DataFrame({"a": rng.normal(size=5000), "b": rng.normal(2, size=5000)})
    table = drift_table(reference, current, ["a", "b", "not_there"])
    assert list(table["column"]) == ["b", "a"]


def _report(features: dict[str, float], scores: dict[str, float]):
    from flows.drift import DriftReport

    table = pd.DataFrame({"column": list(features), "psi": list(features.values())})
    return DriftReport(pd.Timestamp("2025-06-13"), table, scores)


def test_a_watched_feature_past_the_line_alerts_and_retrains_only_when_asked() -> None:
    from flows.drift import drift_decision
    from models.drift import DriftSettings

    report = _report({"days_since_last_order": 0.4, "spend_90d": 0.1}, {"repurchase": 0.05})
    quiet = drift_decision(report, DriftSettings(), deployed=True)
    assert quiet.alert and not quiet.retrain
    assert "days_since_last_order PSI 0.400" in quiet.message
    assert "retrain_on_drift is off" in quiet.message
    eager = DriftSettings(retrain_on_drift=True)
    assert drift_decision(report, eager, deployed=True).retrain
    undeployed = drift_decision(report, eager, deployed=False)
    assert undeployed.alert and not undeployed.retrain and "dangol train" in undeployed.message


def test_customer_age_features_are_measured_but_do_not_alert() -> None:
    from flows.drift import drift_decision
    from models.drift import DriftSettings

    report = _report({"days_since_first_order": 0.9, "spend_90d": 0.1}, {"repurchase": 0.05})
    settings = DriftSettings(retrain_on_drift=True)
    decision = drift_decision(report, settings, deployed=True)
    assert not decision.alert and not decision.retrain
    assert "worst watched: spend_90d 0.100" in decision.message
    # the same PSI on a score does alert
    shifted_score = _report({"days_since_first_order": 0.9}, {"repurchase": 0.3})
    assert drift_decision(shifted_score, settings, deployed=True).retrain
    # and the list is the user's: an empty one watches everything
    everything = DriftSettings(not_alerting=[])
    assert drift_decision(report, everything, deployed=True).alert


def test_the_calendar_features_are_not_measured_for_drift() -> None:
    """season_sin/cos hold one value per snapshot date: any two dates differ entirely, so
    they would alert on every score run (PSI ~18 was seen) and retrain for nothing."""
    from types import SimpleNamespace

    from flows.drift import measured_features

    models = {
        "a": SimpleNamespace(features=["spend_90d", "season_sin", "season_cos"]),
        "b": SimpleNamespace(features=["orders_30d", "spend_90d"]),
    }
    assert measured_features(models) == ["orders_30d", "spend_90d"]


def test_the_reference_is_scored_at_the_scored_dates_time_of_year() -> None:
    """Score drift compares who the customers are, not the season: the reference rows keep
    their features and cutoff but take the scored date's calendar features."""
    from features.snapshot import add_calendar
    from flows.drift import in_season_of

    june = pd.DataFrame({"cutoff": pd.to_datetime(["2025-06-01"] * 2), "spend_90d": [1.0, 2.0]})
    add_calendar(june)
    moved = in_season_of(june, pd.Timestamp("2025-12-25"))
    december = june.assign(cutoff=pd.Timestamp("2025-12-25"))
    add_calendar(december)
    assert np.allclose(moved[["season_sin", "season_cos"]], december[["season_sin", "season_cos"]])
    assert (moved["cutoff"] == june["cutoff"]).all()
    assert moved["spend_90d"].tolist() == [1.0, 2.0]
    assert not np.allclose(moved["season_cos"], june["season_cos"])  # it did move


def test_a_window_longer_than_the_history_at_the_reference_does_not_alert() -> None:
    """Six months into a log, a 365-day count was cut short for everyone at the reference
    cutoff: its shift is the log's youth, not the customers'."""
    from flows.config import load_config
    from flows.drift import DriftReport, cut_short_at, drift_decision
    from models.drift import DriftSettings
    from tests.conftest import REPO

    config = load_config(REPO / "configs" / "online_retail.yaml")  # windows 30/90/180/365
    first = pd.Timestamp("2010-12-01")
    young = cut_short_at(pd.Timestamp("2011-06-05"), first, config)
    assert set(young) == {"orders_365d", "spend_365d", "views_365d"}
    assert cut_short_at(pd.Timestamp("2012-01-05"), first, config) == []
    psi = {"orders_365d": 2.2, "spend_90d": 0.1}
    table = pd.DataFrame({"column": list(psi), "psi": list(psi.values())})
    report = DriftReport(pd.Timestamp("2011-06-05"), table, {"repurchase": 0.05}, young)
    decision = drift_decision(report, DriftSettings(), deployed=True)
    assert not decision.alert and "worst watched: spend_90d 0.100" in decision.message
    report.cut_short = []  # a year later the same shift is real
    assert drift_decision(report, DriftSettings(), deployed=True).alert
