"""The `retrain` flow: features -> train both models -> evaluate -> register -> promote.

Nothing is registered until both models are trained and evaluated, so a failure midway leaves
the registry and the champion aliases as they were.
"""

from __future__ import annotations

from dataclasses import dataclass
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
from models.train import TimeSplit


@dataclass(frozen=True)
class TargetOutcome:
    """What the flow reports for one target."""

    target: str
    model_name: str
    version: str
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    decision: registry.PromotionDecision


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
    return trained


def _champion_score(name: str, trained: steps.TrainedTarget, metric: str) -> float | None:
    """The current champion's metric on the challenger's own holdout (None: no champion)."""
    from models.evaluate import probability_metrics

    version = registry.champion_version(name)
    if version is None:
        return None
    try:
        champion = registry.load_version(name, version)
        proba = champion.predict_proba(trained.test_rows)
    except (KeyError, OSError, ValueError) as exc:
        get_run_logger().warning("champion %s v%s cannot be scored: %s", name, version, exc)
        return float("nan")
    return probability_metrics(trained.test_rows[trained.target].to_numpy(), proba)[metric]


def _log_target(trained: steps.TrainedTarget, split: TimeSplit, config: DangolConfig) -> str:
    """Log one target as a child run; returns the logged model's URI."""
    import mlflow

    mlflow.log_params(
        {f"lgbm.{k}": v for k, v in config.training.lightgbm.model_dump().items()}
        | {"target": trained.target, "best_iteration": trained.model.booster.best_iteration}
    )
    mlflow.log_metrics({f"test.{k}": v for k, v in trained.metrics.items() if np.isfinite(v)})
    for baseline, metrics in trained.baselines.items():
        mlflow.log_metrics(
            {f"baseline.{baseline}.{k}": v for k, v in metrics.items() if np.isfinite(v)}
        )
        gap = trained.metrics["roc_auc"] - metrics["roc_auc"]
        mlflow.log_metric(f"gap_vs_{baseline}.roc_auc", gap)
    for plot in trained.plots:
        mlflow.log_artifact(str(plot), artifact_path="plots")
    registry.log_json(split.to_dict(), "data_window.json")
    registry.log_json({"features": trained.model.features}, "features.json")
    importance = trained.model.booster.feature_importance("gain")
    registry.log_json(
        dict(zip(trained.model.features, importance.tolist(), strict=True)),
        "feature_importance.json",
    )
    return registry.log_classifier(trained.model, trained.test_rows)


@task(cache_policy=NO_CACHE)
def register_task(
    trained_targets: list[steps.TrainedTarget], split: TimeSplit, config: DangolConfig
) -> list[TargetOutcome]:
    """Log, register and gate every target inside one parent MLflow run."""
    import mlflow

    uri = registry.configure_mlflow(config.resolve(config.paths.mlruns))
    get_run_logger().info("MLflow store: %s", uri)
    experiment_id = registry.ensure_experiment(
        config.registry.experiment, config.resolve(config.paths.mlruns)
    )
    metric = config.registry.promotion_metric
    outcomes = []
    with mlflow.start_run(experiment_id=experiment_id, run_name="retrain") as parent:
        mlflow.set_tags({"data.window": str(split.to_dict()), "config": str(config.base_dir)})
        for trained in trained_targets:
            name = config.registry.model_names[trained.target]
            with mlflow.start_run(run_name=trained.target, nested=True) as child:
                model_uri = _log_target(trained, split, config)
                champion = _champion_score(name, trained, metric)
                decision = registry.decide_promotion(
                    metric, config.registry.promotion_margin, trained.metrics[metric], champion
                )
                mlflow.set_tags(decision.tags())
                version = registry.register(model_uri, name, child.info.run_id)
                registry.apply_promotion(name, version, decision)
            get_run_logger().info("%s v%s: %s", name, version, decision.reason)
            outcomes.append(
                TargetOutcome(
                    trained.target, name, version, trained.metrics, trained.baselines, decision
                )
            )
        mlflow.set_tag("parent_run", parent.info.run_id)
    return outcomes


def summary_markdown(outcomes: list[TargetOutcome], split: TimeSplit) -> str:
    """The run's summary for the Prefect artifact and the CLI."""
    lines = [f"# retrain\n\nwindows: {split.to_dict()}\n"]
    lines.append("| model | version | ROC-AUC | PR-AUC | lift@10% | baseline ROC-AUC | decision |")
    lines.append("|---|---|---|---|---|---|---|")
    for o in outcomes:
        base = ", ".join(f"{k} {v['roc_auc']:.3f}" for k, v in o.baselines.items())
        lines.append(
            f"| {o.model_name} | {o.version} | {o.metrics['roc_auc']:.3f} | "
            f"{o.metrics['pr_auc']:.3f} | {o.metrics['lift_top_decile']:.2f} | {base} | "
            f"{'promoted' if o.decision.promote else 'kept'}: {o.decision.reason} |"
        )
    return "\n".join(lines)


@flow(name="retrain", log_prints=True)
def retrain_flow(config_path: str) -> list[TargetOutcome]:
    """Retrain both models on the configured data and promote the better ones."""
    config = load_config(config_path)
    # 1. load and validate the raw tables
    tables, _report = load_shop_task(config)
    # 2. point-in-time features and labels at every labelled cutoff
    frame, split = training_data_task(tables, config)
    # 3. train and evaluate each target on the later windows
    plot_dir = steps.scratch_dir()
    trained = [train_task(frame, split, target, config, plot_dir) for target in steps.TARGETS]
    # 4. log, register and promote only once everything above succeeded
    outcomes = register_task(trained, split, config)
    create_markdown_artifact(summary_markdown(outcomes, split), key="retrain-summary")
    return outcomes
