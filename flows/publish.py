"""Publishing stage: log every trained target in one MLflow run, judge the candidate release
against the live one beyond noise, register it, and promote it in one atomic step.

Order of the steps, and what a crash (kill -9) at each leaves behind:
1. the parent run and one child run per target are logged (nothing registered: the next
   retrain marks the dead run KILLED);
2. each target's version is registered, tagged with the parent run's id (not part of any
   release: the next retrain deletes them);
3. the release version is created with its record and decision as tags, in one transaction
   (not live: deleted by the next retrain);
4. if promoted, the release's `live` alias moves: one transaction, the commit point;
5. the targets' `champion` aliases follow (repaired by the next retrain if cut short).
An exception (rather than a kill) rolls back steps 2-3 at once and re-raises.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.fingerprint import code_version
from features.targets import TARGETS
from flows.config import DangolConfig
from flows.training import TrainedTarget, backtest_gaps, backtest_summary
from models import promotion, registry, release
from models.explain import feature_importance
from models.train import TargetModel, TimeSplit
from models.uplift import UpliftSelection
from models.value import decile_table

CRASH_ENV = "DANGOL_CRASH_AT"


def crash_point(name: str) -> None:
    """Die here, as kill -9 would, when DANGOL_CRASH_AT names this point (crash tests)."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class TargetOutcome:
    """What the retrain reports for one target of the candidate release."""

    target: str
    model_name: str
    version: str
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    comparison: promotion.Comparison | None = None
    baseline_failures: dict[str, str] = field(default_factory=dict)
    backtest: pd.DataFrame | None = None


@dataclass(frozen=True)
class RetrainOutcome:
    """The candidate release, whether it went live, and per target what was measured."""

    release: release.Release
    promoted: bool
    reason: str
    targets: list[TargetOutcome]
    skipped: dict[str, str] = field(default_factory=dict)
    unchanged: bool = False
    repairs: list[str] = field(default_factory=list)


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if np.isfinite(v)}


def _log_backtest(trained: TrainedTarget) -> None:
    """Per-fold table as an artifact; mean and spread per scorer and metric as metrics."""
    import mlflow

    if trained.backtest is None or trained.backtest.empty:
        return
    mlflow.log_text(trained.backtest.to_csv(index=False), "backtest/folds.csv")
    summary = backtest_summary(trained.backtest)
    mlflow.log_text(summary.to_csv(), "backtest/summary.csv")
    mlflow.log_metric("backtest.folds", int(trained.backtest["fold"].nunique()))
    for scorer, row in summary.iterrows():
        values = {
            f"backtest.{scorer}.{metric}.{stat}": value
            for (metric, stat), value in row.items()
            if stat in ("mean", "std")
        }
        mlflow.log_metrics(_finite(values))
    for baseline, row in backtest_gaps(trained.backtest).iterrows():
        values = {f"backtest.gap.{baseline}.{m}.{stat}": v for (m, stat), v in row.items()}
        mlflow.log_metrics(_finite(values))


def _span(cutoffs: list[pd.Timestamp]) -> str:
    return f"{cutoffs[0].date()}..{cutoffs[-1].date()} ({len(cutoffs)})"


def data_window(split: TimeSplit, config: DangolConfig) -> dict[str, list[str]]:
    return split.to_dict() | {
        "fitted": [str(c.date()) for c in split.fitted(config.training.refit)]
    }


def _log_target(trained: TrainedTarget, split: TimeSplit, config: DangolConfig) -> str:
    """Log one target in the active (child) run; returns the logged model's URI."""
    import mlflow

    split = trained.split or split
    mlflow.log_params(
        {f"lgbm.{k}": v for k, v in config.training.lightgbm.model_dump().items()}
        | {
            "target": trained.target,
            "trees": trained.model.booster.num_trees(),
            "refit": config.training.refit,
            "horizon_days": trained.horizon_days or config.labels.horizon_days,
            "model_kind": getattr(trained.model, "recipe", type(trained.model).__name__),
            # classifiers choose on validation; the value and timing models always use them
            "calendar_features": getattr(trained.model, "calendar", True),
            "bgnbd_penalty": config.training.bgnbd_penalty,
            "backtest_folds": config.training.backtest_folds,
            "train_cutoffs": _span(split.train),
            "validation_cutoffs": ",".join(str(c.date()) for c in split.validation),
            "fitted_cutoffs": _span(split.fitted(config.training.refit)),
            "test_cutoffs": ",".join(str(c.date()) for c in split.test),
            "test_rows": len(trained.test_rows),
            "features": len(trained.model.features),
        }
    )
    mlflow.log_metrics(_finite({f"test.{k}": v for k, v in trained.metrics.items()}))
    # what validation chose by: each value recipe's score, each classifier's loss with and
    # without the calendar features
    mlflow.log_metrics(_finite(getattr(trained.model, "chosen_by", {})))
    if TARGETS[trained.target].kind == "amount":
        rows = trained.test_rows
        deciles = decile_table(
            rows[trained.target].to_numpy(), trained.test_scores(), rows["customer_id"].to_numpy()
        )
        mlflow.log_text(deciles.to_csv(), "value/deciles.csv")
    for baseline, metrics in trained.baselines.items():
        mlflow.log_metrics(_finite({f"baseline.{baseline}.{k}": v for k, v in metrics.items()}))
        mlflow.set_tag(f"baseline.{baseline}.status", "ok")
    for baseline, gap in trained.gaps().items():
        mlflow.log_metrics(_finite({f"gap_vs_{baseline}.{k}": v for k, v in gap.items()}))
    for baseline, reason in trained.baseline_failures.items():
        mlflow.set_tags(
            {f"baseline.{baseline}.status": "failed", f"baseline.{baseline}.reason": reason[:4000]}
        )
    _log_backtest(trained)
    for plot in trained.plots:
        mlflow.log_artifact(str(plot), artifact_path="plots")
    registry.log_json(data_window(split, config), "data_window.json")
    registry.log_json({"features": trained.model.features}, "features.json")
    importance, measure = trained.importance or feature_importance(trained.model, trained.test_rows)
    registry.log_json(
        dict(zip(trained.model.features, importance.tolist(), strict=True)),
        "feature_importance.json",
    )
    mlflow.set_tag("feature_importance.measure", measure)
    return registry.log_model(trained.model, trained.test_rows)


def _champion_predictions(
    trained: TrainedTarget, champions: dict[str, TargetModel]
) -> np.ndarray | None:
    """The live model's probabilities on the challenger's test rows (None: no live model for
    the target; NaN: it cannot score these rows)."""
    champion = champions.get(trained.target)
    if champion is None:
        return None
    try:
        return champion.predict(trained.test_rows)
    except (KeyError, ValueError):
        return np.full(len(trained.test_rows), np.nan)


def compare_with_live(
    trained: TrainedTarget,
    champions: dict[str, TargetModel],
    config: DangolConfig,
    level: float = 0.95,
) -> promotion.Comparison:
    """The challenger against the live release's model on the challenger's own holdout."""
    rows = trained.test_rows
    return promotion.compare(
        trained.target,
        config.registry.metric(trained.target),
        rows[trained.target].to_numpy(),
        trained.test_scores(),
        _champion_predictions(trained, champions),
        rows["customer_id"].to_numpy(),
        margin=config.registry.promotion_margin,
        replicates=config.registry.bootstrap_replicates,
        level=level,
    )


def _log_comparison(comparison: promotion.Comparison) -> None:
    import mlflow

    mlflow.set_tags({"promotion.verdict": comparison.verdict})
    values = {
        "promotion.delta": comparison.delta,
        "promotion.ci_low": comparison.ci_low,
        "promotion.ci_high": comparison.ci_high,
    }
    mlflow.log_metrics(_finite({k: v for k, v in values.items() if v is not None}))


def settings_change(live: release.Release | None, config: DangolConfig) -> str | None:
    if live is None:
        return "no live release yet"
    return release.mismatch(live, config.labels.horizon_days, config.tiers, config.features)


def _decide(
    comparisons: list[promotion.Comparison],
    live: release.Release | None,
    config: DangolConfig,
    horizons: dict[str, int | None] | None = None,
) -> promotion.ReleaseDecision:
    """The release decision; `horizons`: the candidate's own horizon per target, named in
    the reason where it differs from the live release's (a value score that now looks over
    180 days instead of 90 means something else in every export)."""
    change = settings_change(live, config)
    dropped = sorted(set(live.targets) - {c.target for c in comparisons}) if live else []
    decision = promotion.decide(comparisons, change)
    if dropped and not change and decision.promote:
        decision = promotion.ReleaseDecision(
            False,
            f"the candidate lacks {', '.join(dropped)}, which the live release has; "
            + decision.reason,
            decision.comparisons,
        )
    moved = [
        f"the candidate's {target} looks over {days} days (the live {live.label}'s: "
        f"{live.horizon_of(target)})"
        for target, days in (horizons or {}).items()
        if live is not None
        and days
        and TARGETS[target].horizon != "horizon_days"  # H itself: the settings change says it
        and target in live.targets
        and live.horizon_of(target) != days
    ]
    if moved:
        reason = f"{decision.reason}; {'; '.join(moved)}"
        decision = promotion.ReleaseDecision(decision.promote, reason, decision.comparisons)
    return decision


def _log_uplift(uplift: UpliftSelection) -> str | None:
    """Log the uplift judgement in the active (child) run: Qini, AUUC and top-30% uplift per
    ranking, the gain's interval, the Qini plot, and the model if it won (returns its URI)."""
    import mlflow

    mlflow.set_tags({"uplift.won": str(uplift.won), "uplift.reason": uplift.reason[:4000]})
    if uplift.learner is not None:
        mlflow.log_param("learner", uplift.learner)
    if uplift.evaluation is not None:
        mlflow.log_params(
            {
                "evaluated_on": uplift.evaluation.campaign_id,
                "judged_trained_on": ",".join(uplift.evaluation.trained_on),
            }
        )
    mlflow.log_metrics(uplift.metrics())
    for plot in uplift.plots:
        mlflow.log_artifact(str(plot), artifact_path="plots")
    if not uplift.won or uplift.model is None or uplift.example is None:
        return None
    mlflow.log_params({"trained_on": ",".join(uplift.trained_on), "train_rows": uplift.train_rows})
    return registry.log_model(uplift.model, uplift.example)


def log_and_publish(
    trained_targets: list[TrainedTarget],
    split: TimeSplit,
    config: DangolConfig,
    run_key: str,
    log: logging.Logger | logging.LoggerAdapter | None = None,
    uplift: UpliftSelection | None = None,
) -> RetrainOutcome:
    """Log, judge, register and (if it wins) promote the candidate release; see the module
    docstring for what a crash at each step leaves. `uplift`: the uplift model judged on the
    campaign logs, logged in its own child run and registered with the release if it won
    (it does not take part in the promotion decision)."""
    import mlflow

    log = log or logging.getLogger(__name__)
    mlruns = config.resolve(config.paths.mlruns)
    registry.configure_mlflow(mlruns)
    experiment_id = registry.ensure_experiment(config.registry.experiment, mlruns)
    release_name = config.registry.release_name
    live = release.live_release(release_name)
    champions = release.load_models(live) if live is not None else {}
    with mlflow.start_run(experiment_id=experiment_id, run_name="retrain") as parent:
        parent_id = parent.info.run_id
        mlflow.set_tags(
            {
                release.KIND_TAG: release.RETRAIN,
                registry.RUN_KEY_TAG: run_key,
                "code_version": code_version(),
                "data.window": str(split.to_dict()),
                "config": str(config.base_dir),
                "targets": ",".join(t.target for t in trained_targets),
            }
        )
        crash_point("logging")
        logged = []
        for trained in trained_targets:
            # the experiment must be named again: nested runs otherwise land in "Default"
            with mlflow.start_run(
                experiment_id=experiment_id, run_name=trained.target, nested=True
            ) as child:
                model_uri = _log_target(trained, split, config)
                level = promotion.family_level(len(trained_targets))
                comparison = compare_with_live(trained, champions, config, level)
                _log_comparison(comparison)
            logged.append((trained, child.info.run_id, model_uri, comparison))
        uplift_logged = None
        if uplift is not None:
            with mlflow.start_run(
                experiment_id=experiment_id, run_name="uplift", nested=True
            ) as child:
                uplift_logged = (uplift, child.info.run_id, _log_uplift(uplift))
        horizons = {trained.target: trained.horizon_days for trained in trained_targets}
        decision = _decide([item[3] for item in logged], live, config, horizons)
        mlflow.set_tags({"promotion.decision": "promoted" if decision.promote else "kept"})
        mlflow.set_tag("promotion.reason", decision.reason[:4000])
        try:
            published = _register_release(
                logged, parent_id, split, config, run_key, decision, uplift_logged
            )
            crash_point("before_live")
            if decision.promote:
                release.set_live(release_name, published)
                crash_point("before_mirror")
                release.mirror_champions(published)
        except Exception:
            _undo(parent_id, config)
            raise
        crash_point("after_live")
        mlflow.set_tag("dangol.release_version", published.version)
    log.info("%s: %s", published.label, decision.reason)
    outcomes = [
        TargetOutcome(
            t.target,
            published.targets[t.target].registered_name,
            published.targets[t.target].version,
            t.metrics,
            t.baselines,
            comparison,
            t.baseline_failures,
            t.backtest,
        )
        for t, _child, _uri, comparison in logged
    ]
    return RetrainOutcome(published, decision.promote, decision.reason, outcomes)


def _register_release(
    logged: list,
    parent_id: str,
    split: TimeSplit,
    config: DangolConfig,
    run_key: str,
    decision: promotion.ReleaseDecision,
    uplift_logged: tuple[UpliftSelection, str, str | None] | None = None,
) -> release.Release:
    """Register every target's version and the winning uplift model, then the release that
    binds them (not yet live)."""
    import mlflow

    crash_point("before_register")
    versions = {}
    for trained, child_id, model_uri, _comparison in logged:
        name = config.registry.model_name(trained.target)
        tags = {registry.RUN_TAG: parent_id, "run_id": child_id, registry.RUN_KEY_TAG: run_key}
        own = data_window(trained.split or split, config)
        versions[trained.target] = release.TargetVersion(
            name,
            registry.register(model_uri, name, tags),
            child_id,
            _finite(trained.metrics),
            trained.horizon_days,
            own if own != data_window(split, config) else None,
        )
        crash_point("registering")
    uplift_record: dict = {}
    if uplift_logged is not None:
        uplift, child_id, model_uri = uplift_logged
        uplift_record = uplift.record() | {"run_id": child_id}
        if model_uri is not None:
            name = release.uplift_model_name(config.registry.release_name)
            tags = {registry.RUN_TAG: parent_id, "run_id": child_id, registry.RUN_KEY_TAG: run_key}
            uplift_record |= {
                "registered_name": name,
                "version": registry.register(model_uri, name, tags),
            }
    candidate = release.Release(
        id=parent_id,
        run_key=run_key,
        **release.settings_record(config.labels.horizon_days, config.tiers, config.features),
        code_version=code_version(),
        data_window=data_window(split, config),
        targets=versions,
        decision=decision.to_dict(),
        uplift=uplift_record,
    )
    mlflow.log_text(candidate.to_json(), f"release/{release.RECORD_FILE}")
    crash_point("before_release")
    artifact_uri = f"{mlflow.active_run().info.artifact_uri}/release"
    return release.create(config.registry.release_name, candidate, artifact_uri)


def _undo(run_id: str, config: DangolConfig) -> None:
    """After an error: remove what the run registered unless its release already went live
    (then only the mirror aliases may lag, and the next retrain repairs them)."""
    live = release.live_release(config.registry.release_name)
    if live is not None and live.id == run_id:
        return
    names = [config.registry.model_name(t) for t in TARGETS]
    names.append(release.uplift_model_name(config.registry.release_name))
    removed = release.discard_run(run_id, [config.registry.release_name, *names])
    logging.getLogger(__name__).error(
        "registration failed: removed what run %s registered: %s", run_id[:8], removed
    )
