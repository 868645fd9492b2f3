"""Drift stage: how far today's snapshot and scores are from what the live release was
fitted on (PSI), and what to do about it."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from features.schema import ShopTables
from features.snapshot import build_features
from features.targets import TARGETS
from flows.config import DangolConfig
from models.drift import DriftSettings, drift_table, psi
from models.train import TargetModel


@dataclass
class DriftReport:
    """Feature and score PSI of today's snapshot against the champion's last training cutoff."""

    reference_cutoff: pd.Timestamp
    features: pd.DataFrame
    scores: dict[str, float]

    def worst(self, not_alerting: list[str] | None = None) -> tuple[str, float]:
        """The most shifted score or feature (leaving out `not_alerting`) and its PSI."""
        skip = set(not_alerting or [])
        candidates = {
            column: float(value)
            for column, value in zip(self.features["column"], self.features["psi"], strict=True)
            if column not in skip
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


def drift_report(
    tables: ShopTables,
    snapshot: pd.DataFrame,
    models: dict[str, TargetModel],
    reference_cutoff: pd.Timestamp,
    config: DangolConfig,
) -> DriftReport:
    """PSI per model feature and per score, reference = features as of `reference_cutoff`."""
    reference = build_features(tables, [reference_cutoff], config.features, config.tiers)
    models = {t: m for t, m in models.items() if t in TARGETS}  # the uplift model aside
    used = sorted({f for model in models.values() for f in model.features})
    table = drift_table(reference, snapshot, used, config.drift.bins)
    scores = {
        target: psi(model.predict(reference), model.predict(snapshot), config.drift.bins)
        for target, model in models.items()
    }
    return DriftReport(reference_cutoff, table, scores)
