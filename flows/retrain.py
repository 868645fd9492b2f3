"""The `retrain` flow: features -> train every target -> evaluate -> register -> promote.

Nothing is registered until every model is trained, evaluated and logged, and a failure while
registering rolls back what was registered, so a run that fails midway leaves the registry
and the champion aliases as they were.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows import steps
from flows.config import DangolConfig, load_config
from flows.tasks import load_shop_task
from models import registry
from models.train import InsufficientDataError, TimeSplit


@dataclass(frozen=True)
class TargetOutcome:
    """What the flow reports for one target."""

    target: str
    model_name: str
    version: str
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    decision: registry.PromotionDecision
    baseline_failures: dict[str, str] = field(default_factory=dict)
    backtest: pd.DataFrame | None = None


@task(cache_policy=NO_CACHE)
def training_data_task(tables, config: DangolConfig) -> tuple[pd.DataFrame, TimeSplit]:
    frame, split = steps.build_training_data(tables, config)
    get_run_logger().info(
        "training frame: %s rows, %s features; cutoffs %s",
        f"{len(frame):,}",
        frame.shape[1],
        split.to_dict(),
    )
    return frame, split


@task(cache_policy=NO_CACHE)
def train_task(frame, split, target: str, config: DangolConfig, plot_dir: Path):
    trained = steps.train_target(frame, split, target, config, plot_dir)
    get_run_logger().info("%s: test metrics %s", target, trained.metrics)
    for baseline, reason in trained.baseline_failures.items():
        get_run_logger().warning("%s: baseline %s failed: %s", target, baseline, reason)
    return trained


def _champion_score(name: str, trained: steps.TrainedTarget, metric: str, log) -> float | None:
    """The current champion's metric on the challenger's own holdout (None: no champion)."""
    from models.evaluate import probability_metrics

    version = registry.champion_version(name)
    if version is None:
        return None
    try:
        champion = registry.load_version(name, version)
        proba = champion.predict_proba(trained.test_rows)
    except (KeyError, OSError, ValueError) as exc:
        log.warning("champion %s v%s cannot be scored: %s", name, version, exc)
        return float("nan")
    return probability_metrics(trained.test_rows[trained.target].to_numpy(), proba)[metric]


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if np.isfinite(v)}


def _log_backtest(trained: steps.TrainedTarget) -> None:
    """Per-fold table as an artifact; mean and spread per scorer and metric as metrics."""
    import mlflow

    if trained.backtest is None or trained.backtest.empty:
        return
    mlflow.log_text(trained.backtest.to_csv(index=False), "backtest/folds.csv")
    summary = steps.backtest_summary(trained.backtest)
    mlflow.log_text(summary.to_csv(), "backtest/summary.csv")
    mlflow.log_metric("backtest.folds", int(trained.backtest["fold"].nunique()))
    for scorer, row in summary.iterrows():
        values = {
            f"backtest.{scorer}.{metric}.{stat}": value
            for (metric, stat), value in row.items()
            if stat in ("mean", "std")
        }
        mlflow.log_metrics(_finite(values))


def _span(cutoffs: list[pd.Timestamp]) -> str:
    return f"{cutoffs[0].date()}..{cutoffs[-1].date()} ({len(cutoffs)})"


def _log_target(trained: steps.TrainedTarget, split: TimeSplit, config: DangolConfig) -> str:
    """Log one target in the active (child) run; returns the logged model's URI."""
    import mlflow

    mlflow.log_params(
        {f"lgbm.{k}": v for k, v in config.training.lightgbm.model_dump().items()}
        | {
            "target": trained.target,
            "trees": trained.model.booster.num_trees(),
            "refit": config.training.refit,
            "horizon_days": config.labels.horizon_days,
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
    registry.log_json(
        split.to_dict() | {"fitted": [str(c.date()) for c in split.fitted(config.training.refit)]},
        "data_window.json",
    )
    registry.log_json({"features": trained.model.features}, "features.json")
    importance = trained.model.booster.feature_importance("gain")
    registry.log_json(
        dict(zip(trained.model.features, importance.tolist(), strict=True)),
        "feature_importance.json",
    )
    return registry.log_classifier(trained.model, trained.test_rows)


@dataclass
class _Logged:
    """A target logged in its child run, waiting to be registered."""

    trained: steps.TrainedTarget
    name: str
    run_id: str
    model_uri: str
    decision: registry.PromotionDecision
    previous_champion: str | None


def log_and_register(
    trained_targets: list[steps.TrainedTarget],
    split: TimeSplit,
    config: DangolConfig,
    log: logging.Logger | logging.LoggerAdapter | None = None,
    run_key: str | None = None,
) -> list[TargetOutcome]:
    """Log every target in one parent MLflow run, then register and gate them all.

    Two phases, so a failure midway changes nothing in the registry: first every target is
    logged and judged against its champion (no registration); then each is registered and
    promoted, and if any of that fails, the versions created so far are deleted and the
    aliases put back before the error propagates.
    """
    import mlflow

    log = log or logging.getLogger(__name__)
    mlruns = config.resolve(config.paths.mlruns)
    log.info("MLflow store: %s", registry.configure_mlflow(mlruns))
    experiment_id = registry.ensure_experiment(config.registry.experiment, mlruns)
    metric = config.registry.promotion_metric
    with mlflow.start_run(experiment_id=experiment_id, run_name="retrain") as parent:
        mlflow.set_tags(
            {
                "data.window": str(split.to_dict()),
                "config": str(config.base_dir),
                "targets": ",".join(t.target for t in trained_targets),
            }
        )
        logged = []
        for trained in trained_targets:
            name = config.registry.model_name(trained.target)
            # the experiment must be named again: nested runs otherwise land in "Default"
            with mlflow.start_run(
                experiment_id=experiment_id, run_name=trained.target, nested=True
            ) as child:
                model_uri = _log_target(trained, split, config)
                previous = registry.champion_version(name)
                champion = _champion_score(name, trained, metric, log)
                decision = registry.decide_promotion(
                    metric, config.registry.promotion_margin, trained.metrics[metric], champion
                )
                mlflow.set_tags(decision.tags())
            logged.append(_Logged(trained, name, child.info.run_id, model_uri, decision, previous))
        mlflow.set_tag(registry.RUN_KEY_TAG, run_key or "")
        outcomes = _register_all(logged, log, run_key)
        mlflow.set_tag("parent_run", parent.info.run_id)
    return outcomes


def _register_all(logged: list[_Logged], log, run_key: str | None) -> list[TargetOutcome]:
    """Register and gate every logged target, or none of them."""
    done: list[tuple[_Logged, str | None]] = []
    outcomes = []
    try:
        for item in logged:
            done.append((item, None))
            version = registry.register(item.model_uri, item.name, item.run_id, run_key)
            done[-1] = (item, version)
            registry.apply_promotion(item.name, version, item.decision)
            log.info("%s v%s: %s", item.name, version, item.decision.reason)
            t = item.trained
            outcomes.append(
                TargetOutcome(
                    t.target,
                    item.name,
                    version,
                    t.metrics,
                    t.baselines,
                    item.decision,
                    t.baseline_failures,
                    t.backtest,
                )
            )
    except Exception:
        for item, version in reversed(done):
            registry.rollback(item.name, version, item.previous_champion)
        log.error("registration failed: rolled back %s", [item.name for item, _ in done])
        raise
    return outcomes


@task(cache_policy=NO_CACHE)
def register_task(
    trained_targets: list[steps.TrainedTarget],
    split: TimeSplit,
    config: DangolConfig,
    run_key: str,
) -> list[TargetOutcome]:
    """Log, register and gate every target inside one parent MLflow run."""
    return log_and_register(trained_targets, split, config, get_run_logger(), run_key)


def _already_registered(config: DangolConfig, run_key: str) -> list[TargetOutcome] | None:
    """The outcomes of an earlier run on the same inputs, or None if any target lacks one."""
    registry.configure_mlflow(config.resolve(config.paths.mlruns))
    metric = config.registry.promotion_metric
    outcomes = []
    for target in steps.TARGETS:
        name = config.registry.model_name(target)
        version = registry.version_with_run_key(name, run_key)
        if version is None:
            return None
        logged = registry.version_metrics(name, version)
        metrics = {k.removeprefix("test."): v for k, v in logged.items() if k.startswith("test.")}
        baselines: dict[str, dict[str, float]] = {}
        for key, value in logged.items():
            if key.startswith("baseline."):
                _, baseline, measure = key.split(".", 2)
                baselines.setdefault(baseline, {})[measure] = value
        reason = f"already registered as v{version} for this data and configuration"
        decision = registry.PromotionDecision(
            False, reason, metrics.get(metric, float("nan")), None
        )
        outcomes.append(TargetOutcome(target, name, version, metrics, baselines, decision))
    return outcomes


def _backtest_cell(backtest: pd.DataFrame | None, scorer: str) -> str:
    if backtest is None or backtest.empty:
        return "n/a"
    values = backtest.loc[backtest["scorer"] == scorer, "roc_auc"]
    if len(values) < 2:
        return f"{values.mean():.3f} (1 window)"
    return f"{values.mean():.3f} ± {values.std():.3f} ({len(values)})"


def summary_markdown(outcomes: list[TargetOutcome], split: TimeSplit) -> str:
    """The run's summary for the Prefect artifact and the CLI."""
    lines = [f"# retrain\n\nwindows: {split.to_dict()}\n"]
    lines.append(
        "| model | version | ROC-AUC | PR-AUC | lift@10% | baseline ROC-AUC | "
        "backtest ROC-AUC mean ± sd (folds) | decision |"
    )
    lines.append("|---|---|---|---|---|---|---|---|")
    for o in outcomes:
        base = ", ".join(f"{k} {v['roc_auc']:.3f}" for k, v in o.baselines.items())
        base += "".join(f", {k} failed: {reason}" for k, reason in o.baseline_failures.items())
        backtest = ", ".join(
            f"{scorer} {_backtest_cell(o.backtest, scorer)}" for scorer in ["model", *o.baselines]
        )
        lines.append(
            f"| {o.model_name} | {o.version} | {o.metrics['roc_auc']:.3f} | "
            f"{o.metrics['pr_auc']:.3f} | {o.metrics['lift_top_decile']:.2f} | {base} | "
            f"{backtest} | {'promoted' if o.decision.promote else 'kept'}: {o.decision.reason} |"
        )
    return "\n".join(lines)


@flow(name="retrain", log_prints=True)
def retrain_flow(config_path: str) -> list[TargetOutcome]:
    """Retrain every target on the configured data and promote the better models."""
    config = load_config(config_path)
    # 1. load and validate the raw tables
    tables, _report = load_shop_task(config)
    # 2. the same data and configuration again: report what was registered, register nothing
    run_key = steps.run_key(tables, config)
    if (earlier := _already_registered(config, run_key)) is not None:
        get_run_logger().info("inputs unchanged (run key %s): nothing to retrain", run_key)
        return earlier
    # 3. point-in-time features and labels at every labelled cutoff
    frame, split = training_data_task(tables, config)
    # 4. train and evaluate each target on the later windows
    plot_dir = steps.scratch_dir()
    targets = steps.targets_to_train(frame)
    for target in sorted(set(steps.OPTIONAL_TARGETS) - set(targets)):
        get_run_logger().info("%s not trained: no customer of its population in this data", target)
    trained = []
    for target in targets:
        try:
            trained.append(train_task(frame, split, target, config, plot_dir))
        except InsufficientDataError as exc:
            if target in steps.TARGETS:
                raise
            get_run_logger().warning("optional target %s skipped: %s", target, exc)
    # 5. log, register and promote only once everything above succeeded
    outcomes = register_task(trained, split, config, run_key)
    create_markdown_artifact(summary_markdown(outcomes, split), key="retrain-summary")
    return outcomes
