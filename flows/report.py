"""`dangol report`: the analyst report of the champion versions, on disk and in MLflow."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from flows import steps
from flows.config import DangolConfig
from models import registry
from models.report import ReportInputs, fetch_model_run, tier_migration, write_report
from models.segments import build_segments, explain_members, score_customers


def build_report(config: DangolConfig, progress=print) -> Path:
    """Write the HTML report for the current champions and log it to each champion's run."""
    import mlflow

    registry.configure_mlflow(config.resolve(config.paths.mlruns))
    runs, models = [], {}
    scratch = Path(tempfile.mkdtemp(prefix="dangol-report-"))
    for target in steps.TARGETS:
        name = config.registry.model_names[target]
        version = registry.champion_version(name)
        if version is None:
            raise registry.NoChampionError(
                f"no '{registry.CHAMPION}' alias on registered model {name}: "
                f"run `dangol train --config {config.base_dir}` first"
            )
        runs.append(fetch_model_run(target, name, version, scratch))
        models[target] = registry.load_version(name, version)
    tables, _report = steps.load_shop(config, progress)
    snapshot = steps.latest_snapshot(tables, config, None)
    cutoff = pd.Timestamp(snapshot["cutoff"].iloc[0])
    earlier = steps.latest_snapshot(
        tables, config, cutoff - pd.Timedelta(days=config.tiers.window_days)
    )
    scores = score_customers(snapshot, models, config.tiers)
    segments = build_segments(snapshot, scores, config.segments, config.tiers)
    segments, _ = explain_members(snapshot, segments, models, config.segments, config.data.currency)
    inputs = ReportInputs(
        runs=runs,
        models=models,
        snapshot=snapshot,
        segments=segments,
        migration=tier_migration(earlier, snapshot),
        settings=config.segments,
        currency=config.data.currency,
        shap_sample=config.segments.report.shap_sample,
        examples_per_segment=config.segments.report.examples_per_segment,
    )
    path = write_report(inputs, config.resolve(config.segments.report.out_dir))
    client = mlflow.MlflowClient()
    for run in runs:
        client.log_artifact(run.run_id, str(path), artifact_path="report")
    progress(f"report: {path} (logged to runs {', '.join(r.run_id for r in runs)})")
    return path
