"""Drift stage: how far today's snapshot and scores are from what the live release was
fitted on (PSI), and what to do about it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from features.schema import ShopTables
from features.snapshot import CALENDAR_FEATURES, add_calendar, build_features
from features.targets import TARGETS
from flows.config import DangolConfig
from models.drift import DriftSettings, drift_table, psi
from models.train import TargetModel


@dataclass
class DriftReport:
    """Feature and score PSI of today's snapshot against the champion's last training cutoff.
    `cut_short`: features whose window reached back before the data's first order at the
    reference cutoff (measured, but they do not raise the alert)."""

    reference_cutoff: pd.Timestamp
    features: pd.DataFrame
    scores: dict[str, float]
    cut_short: list[str] = field(default_factory=list)

    def alerting(self, column: str, not_alerting: list[str] | None = None) -> bool:
        """Whether a feature's shift may raise the alert: not one of `not_alerting` (the
        customer-age features) nor cut short at the reference."""
        return column not in set(not_alerting or []) | set(self.cut_short)

    def worst(self, not_alerting: list[str] | None = None) -> tuple[str, float]:
        """The most shifted score or alerting feature and its PSI."""
        candidates = {
            column: float(value)
            for column, value in zip(self.features["column"], self.features["psi"], strict=True)
            if self.alerting(column, not_alerting)
        }
        candidates |= {f"{target} score": value for target, value in self.scores.items()}
        name = max(candidates, key=candidates.get)
        return name, float(candidates[name])


@dataclass(frozen=True)
class DriftDecision:
    """What the score flow does about drift: the message, and whether to start `retrain`."""

    message: str
    alert: bool
    retrain: bool


def drift_decision(report: DriftReport, settings: DriftSettings, deployed: bool) -> DriftDecision:
    """Alert when a watched feature or a score moves past `psi_alert`; retrain only when
    configured and running as a deployment (there is a retrain deployment to start)."""
    name, value = report.worst(settings.not_alerting)
    found = f"drift: {name} PSI {value:.3f} > {settings.psi_alert}"
    if value <= settings.psi_alert:
        return DriftDecision(
            f"no drift above {settings.psi_alert} (worst watched: {name} {value:.3f})",
            alert=False,
            retrain=False,
        )
    if not settings.retrain_on_drift:
        return DriftDecision(f"{found}; retrain_on_drift is off", alert=True, retrain=False)
    if not deployed:
        return DriftDecision(
            f"{found}; not deployed, run `dangol train` to retrain", alert=True, retrain=False
        )
    return DriftDecision(f"{found}; retraining", alert=True, retrain=True)


@dataclass(frozen=True)
class Reference:
    """What a snapshot is compared with: the features as of the release's last fitted cutoff
    and each model's scores on them at the scored date's time of year (the same for every
    scoring of one release, data version and date, so the score flow caches it)."""

    cutoff: pd.Timestamp
    features: pd.DataFrame
    scores: dict[str, np.ndarray]


def reference_of(
    tables: ShopTables,
    models: dict[str, TargetModel],
    reference_cutoff: pd.Timestamp,
    config: DangolConfig,
    at: datetime | None = None,
) -> Reference:
    features = build_features(tables, [reference_cutoff], config.features, config.tiers)
    seasonal = in_season_of(features, at if at is not None else reference_cutoff)
    scores = {t: model.predict(seasonal) for t, model in models.items() if t in TARGETS}
    return Reference(pd.Timestamp(reference_cutoff), features, scores)


def in_season_of(features: pd.DataFrame, day: datetime) -> pd.DataFrame:
    """The same customers with the calendar features of `day`: their scores then differ
    from the snapshot's only by who the customers are, not by the time of year (which moved
    every score's PSI past 2 between a release's last cutoff and a scoring date)."""
    shifted = features.assign(cutoff=pd.Timestamp(day))
    add_calendar(shifted)
    return shifted.assign(cutoff=features["cutoff"])


def measured_features(models: dict[str, TargetModel]) -> list[str]:
    """The models' inputs whose distribution drift compares: all but the calendar features,
    which are one value per snapshot date (any two dates differ entirely: PSI ~18, always)."""
    used = {f for model in models.values() for f in model.features}
    return sorted(used - set(CALENDAR_FEATURES))


def cut_short_at(
    reference_cutoff: pd.Timestamp, first_order: pd.Timestamp, config: DangolConfig
) -> list[str]:
    """Features whose window looks further back from the reference cutoff than the data
    goes: there every customer's count or sum was cut short, so on a young log today's
    values look shifted whether or not customers changed (a 5-month log's first score had
    orders_90d at PSI 2.1)."""
    from features.definitions import feature_definitions

    history = (pd.Timestamp(reference_cutoff) - pd.Timestamp(first_order)).days
    cut = []
    for feature in feature_definitions(config.features, config.tiers):
        lookback = [int(days) for days in re.findall(r"cutoff - (\d+) d", feature.window)]
        if lookback and max(lookback) > history:
            cut.append(feature.name)
    return cut


def drift_report(
    tables: ShopTables,
    snapshot: pd.DataFrame,
    models: dict[str, TargetModel],
    reference_cutoff: pd.Timestamp,
    config: DangolConfig,
    reference: Reference | None = None,
) -> DriftReport:
    """PSI per model feature and per score, reference = features as of `reference_cutoff`
    (computed here unless given)."""
    models = {t: m for t, m in models.items() if t in TARGETS}  # the uplift model aside
    if reference is None:
        at = snapshot["cutoff"].iloc[0] if len(snapshot) else None
        reference = reference_of(tables, models, reference_cutoff, config, at)
    used = measured_features(models)
    table = drift_table(reference.features, snapshot, used, config.drift.bins)
    scores = {
        target: psi(reference.scores[target], model.predict(snapshot), config.drift.bins)
        for target, model in models.items()
    }
    first_order = tables.orders["ordered_at"].min()
    return DriftReport(
        reference_cutoff, table, scores, cut_short_at(reference_cutoff, first_order, config)
    )
