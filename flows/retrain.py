"""The `retrain` flow: validate -> repair -> features -> train every target -> evaluate -> one
release -> promote it if it is better beyond noise.

The store's training lock is held throughout, so the repair step can tell a dead run from a
running one; see flows.publish for what a crash at any step leaves live.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from features.files import scratch_folder
from features.targets import TARGETS, headline_metrics
from flows import data, readiness, training
from flows.config import DangolConfig, load_config
from flows.publish import RetrainOutcome, TargetOutcome, log_and_publish, settings_change
from flows.tasks import load_shop_task
from models import registry, release
from models.train import TimeSplit
from models.uplift import UpliftSelection


@task(cache_policy=NO_CACHE)
def recover_task(config: DangolConfig) -> list[str]:
    """Finish or roll back retrain runs that died midway, before anything else."""
    mlruns = config.resolve(config.paths.mlruns)
    registry.configure_mlflow(mlruns)
    experiment_id = registry.ensure_experiment(config.registry.experiment, mlruns)
    names = [config.registry.model_name(t) for t in TARGETS]
    messages = release.recover(experiment_id, config.registry.release_name, names)
    for message in messages:
        get_run_logger().warning("repair: %s", message)
    return messages


@task(cache_policy=NO_CACHE)
def training_data_task(tables, config: DangolConfig) -> tuple[pd.DataFrame, TimeSplit]:
    started = time.perf_counter()
    frame, split = training.build_training_data(tables, config)
    windows = ", ".join(
        f"{name} {len(cutoffs)} ({cutoffs[0]} .. {cutoffs[-1]})" if cutoffs else f"{name} 0"
        for name, cutoffs in split.to_dict().items()
    )
    get_run_logger().info(
        "training frame: %s rows, %s columns; cutoffs: %s (%.1f s)",
        f"{len(frame):,}",
        frame.shape[1],
        windows,
        time.perf_counter() - started,
    )
    cutoffs = sorted(pd.Timestamp(c) for c in frame["cutoff"].unique())
    note = training.value_horizon_note(cutoffs, config)
    if note:
        get_run_logger().info("value horizon: %s", note)
    return frame, split


@task(cache_policy=NO_CACHE)
def train_task(frame, split, target: str, config: DangolConfig, plot_dir: Path):
    started = time.perf_counter()
    trained = training.train_target(frame, split, target, config, plot_dir)
    get_run_logger().info(
        "%s trained in %.1f s: test %s",
        target,
        time.perf_counter() - started,
        ", ".join(f"{k} {v:.3f}" for k, v in trained.metrics.items()),
    )
    for baseline, reason in trained.baseline_failures.items():
        get_run_logger().warning("%s: baseline %s failed: %s", target, baseline, reason)
    barely = training.barely_learned_note(trained, config.training.lightgbm.learning_rate)
    if barely:
        get_run_logger().warning("%s: %s", target, barely)
    for note in registry.baselines_ahead(trained.target, trained.metrics, trained.baselines):
        get_run_logger().warning("%s: %s", target, note)
    if trained.metrics.get("unseen_season_days", 0) > 0:
        get_run_logger().warning("%s: %s", target, training.unseen_season_note(trained))
    return trained


@task(cache_policy=NO_CACHE)
def uplift_task(tables, config: DangolConfig, plot_dir: Path) -> UpliftSelection:
    """The uplift model that rides with the release, if one wins on the campaign logs."""
    started = time.perf_counter()
    selection = training.train_uplift(tables, config, plot_dir)
    get_run_logger().info("%s (%.1f s)", selection.reason, time.perf_counter() - started)
    return selection


@task(cache_policy=NO_CACHE)
def publish_task(
    trained_targets,
    split: TimeSplit,
    config: DangolConfig,
    run_key: str,
    uplift: UpliftSelection | None = None,
):
    """Log, judge, register and promote the candidate release inside one MLflow run."""
    return log_and_publish(trained_targets, split, config, run_key, get_run_logger(), uplift)


def unchanged_outcome(earlier: release.Release, config: DangolConfig) -> RetrainOutcome:
    """What an earlier run on the same inputs produced: reported, nothing registered. When
    the live release is another one that does not fit this config (its settings were changed
    and then changed back), the earlier release, made from exactly this config, goes live
    again: retraining would only make it a second time, and scoring refuses the live one."""
    targets = [_logged_outcome(target, entry) for target, entry in earlier.targets.items()]
    reason = f"inputs unchanged: {earlier.label} was made from this data, config and code"
    name = config.registry.release_name
    live = release.live_release(name)
    if live is not None and live.version == earlier.version:
        return RetrainOutcome(earlier, False, reason, targets, unchanged=True)
    change = settings_change(live, config)  # also "no live release yet"
    if live is not None and change is None:
        return RetrainOutcome(
            earlier, False, f"{reason}; the live {live.label} stays", targets, unchanged=True
        )
    reason += f", and {change}: {earlier.label} is live again"
    release.put_live_again(name, earlier, reason)
    return RetrainOutcome(earlier, True, reason, targets, unchanged=True)


def _logged_outcome(target: str, entry: release.TargetVersion) -> TargetOutcome:
    """What a target's run logged: its test metrics, baselines and failed baselines."""
    tested, scored, failed = registry.logged_results(entry.run_id)
    return TargetOutcome(
        target, entry.registered_name, entry.version, tested, scored, baseline_failures=failed
    )


def summary_markdown(outcome: RetrainOutcome) -> str:
    """The run's summary for the Prefect artifact."""
    state = "live" if outcome.promoted else "kept (not live)"
    lines = [f"# retrain: {outcome.release.label}, {state}\n\n{outcome.reason}\n"]
    # each target's interval is 1 - 0.05/k: 95% for the release as a whole
    lines.append("| target | model | version | test metrics | vs live (interval) |")
    lines.append("|---|---|---|---|---|")
    for o in outcome.targets:
        versus = o.comparison.describe() if o.comparison else "-"
        shown = ", ".join(
            f"{label} {o.metrics[key]:.3f}"
            for key, label in headline_metrics(o.target)
            if key in o.metrics
        )
        lines.append(f"| {o.target} | {o.model_name} | {o.version} | {shown} | {versus} |")
    for target, why in outcome.skipped.items():
        lines.append(f"\n{target} skipped: {why}")
    if outcome.release.uplift.get("reason"):
        lines.append(f"\n{outcome.release.uplift['reason']}")
    return "\n".join(lines)


def train_targets(
    frame, split, config: DangolConfig, plot_dir: Path
) -> tuple[list, dict[str, str]]:
    """Every target the data supports; one without enough data is skipped with what to
    change, unless it is required (flows.readiness.plan_targets)."""
    log = get_run_logger()
    wanted, skipped = readiness.plan_targets(frame, split, config)
    trained = [train_task(frame, split, target, config, plot_dir) for target in wanted]
    for target, why in skipped.items():
        log.warning("target %s skipped: %s", target, why)
    return trained, skipped


@flow(name="retrain", log_prints=True)
def retrain_flow(config_path: str, engine: str | None = None) -> RetrainOutcome:
    """Retrain every target on the configured data as one release; promote it if better.
    `engine` overrides the config's (duckdb or spark) for this run."""
    config = load_config(config_path).with_engine(engine)
    # 1. load and validate the raw tables (bad input stops here, before anything is written)
    tables, _report = load_shop_task(config)
    with release.training_lock(config.resolve(config.paths.mlruns)):
        # 2. finish or roll back whatever a killed run left, before touching the registry
        repairs = recover_task(config)
        # 3. the same data, configuration and code again: report, register nothing
        run_key = data.run_key(tables, config)
        earlier = release.release_with_run_key(config.registry.release_name, run_key)
        if earlier is not None:
            get_run_logger().info("inputs unchanged (run key %s): nothing to retrain", run_key)
            outcome = unchanged_outcome(earlier, config)
            outcome = RetrainOutcome(**{**outcome.__dict__, "repairs": repairs})
            create_markdown_artifact(summary_markdown(outcome), key="retrain-summary")
            return outcome
        # 4. point-in-time features and labels at every labelled cutoff
        frame, split = training_data_task(tables, config)
        # plots live in a temporary folder until they are logged to MLflow, then go
        with scratch_folder(config.resolve(config.paths.mlruns), "plots") as plots:
            # 5. train and evaluate each target on the later windows
            trained, skipped = train_targets(frame, split, config, Path(plots))
            # 6. an uplift model from the campaign logs, kept only if it beats the response
            # model beyond noise; it rides with the release (no campaign logs: none)
            uplift = uplift_task(tables, config, Path(plots))
            # 7. one candidate release, promoted only if better beyond noise
            outcome = publish_task(trained, split, config, run_key, uplift)
    outcome = RetrainOutcome(**{**outcome.__dict__, "skipped": skipped, "repairs": repairs})
    create_markdown_artifact(summary_markdown(outcome), key="retrain-summary")
    return outcome
