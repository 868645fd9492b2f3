"""The `score` flow: features at the cutoff -> champion scores -> segments -> atomic exports."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows import steps
from flows.config import DangolConfig, load_config
from flows.tasks import load_shop_task
from models import registry
from models.train import CalibratedBooster


@dataclass(frozen=True)
class ScoreOutcome:
    cutoff: str
    customers: int
    export_dir: Path
    segment_sizes: dict[str, int]
    model_versions: dict[str, str]


@task(retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def load_champions_task(
    config: DangolConfig,
) -> tuple[dict[str, CalibratedBooster], dict[str, str]]:
    registry.configure_mlflow(config.resolve(config.paths.mlruns))
    models, versions = {}, {}
    for target in steps.TARGETS:
        name = config.registry.model_names[target]
        version = registry.champion_version(name)
        if version is None:
            raise registry.NoChampionError(
                f"no '{registry.CHAMPION}' alias on registered model {name}: "
                f"run `dangol train --config {config.base_dir}` first"
            )
        models[target] = registry.load_version(name, version)
        versions[target] = version
    return models, versions


@task(cache_policy=NO_CACHE)
def snapshot_task(tables, config: DangolConfig, cutoff: date | None) -> pd.DataFrame:
    snapshot = steps.latest_snapshot(tables, config, cutoff)
    get_run_logger().info(
        "snapshot: %s customers at %s", f"{len(snapshot):,}", snapshot["cutoff"].iloc[0]
    )
    return snapshot


@task(cache_policy=NO_CACHE)
def export_task(snapshot, models, config: DangolConfig) -> tuple[Path, dict[str, int]]:
    return steps.score_and_export(snapshot, models, config, datetime.now())


def _whatif_markdown(export_dir: Path) -> str:
    """The export's what-if table for the run's artifact (empty if the summary is absent)."""
    summary = export_dir / "summary.md"
    if not summary.exists():
        return ""
    text = summary.read_text(encoding="utf-8")
    return "\n\n" + text[text.find("## Campaign what-if") :] if "## Campaign" in text else ""


@flow(name="score", log_prints=True)
def score_flow(config_path: str, cutoff: date | None = None) -> ScoreOutcome:
    """Score every customer at the cutoff with the champions and export ranked segments."""
    config = load_config(config_path)
    # 1. the champions first: without them there is nothing to score
    models, versions = load_champions_task(config)
    # 2. load and validate the raw tables
    tables, _report = load_shop_task(config)
    # 3. point-in-time features at the cutoff
    snapshot = snapshot_task(tables, config, cutoff)
    # 4. scores, segments, and the export that `latest` moves to only when complete
    export_dir, sizes = export_task(snapshot, models, config)
    outcome = ScoreOutcome(
        cutoff=str(snapshot["cutoff"].iloc[0].date()),
        customers=len(snapshot),
        export_dir=export_dir,
        segment_sizes=sizes,
        model_versions=versions,
    )
    table = "\n".join(f"| {name} | {size:,} |" for name, size in sizes.items())
    create_markdown_artifact(
        f"# score {outcome.cutoff}\n\n{outcome.customers:,} customers scored with "
        f"{versions}; export: `{export_dir}`\n\n| segment | members |\n|---|---|\n{table}"
        + _whatif_markdown(export_dir),
        key="score-summary",
    )
    return outcome
