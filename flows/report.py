"""`dangol report`: the analyst report of the live release, on disk and in MLflow."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.files import scratch_folder
from features.targets import TARGETS
from flows import data, drift, export
from flows.config import DangolConfig
from flows.score import reference_cutoff
from models import release
from models.cohorts import cohort_customers, cohort_table
from models.report import ReportInputs, fetch_model_run, tier_migration, write_report
from models.whatif import campaign_whatif, segment_actions


def build_report(config: DangolConfig, progress=print) -> Path:
    """Write the HTML report for the live release and log it to each of its models' runs."""
    import mlflow

    live = export.live_release(config)
    models = release.load_models(live)
    tables, _report = data.load_shop(config, progress)
    snapshot = export.latest_snapshot(tables, config, None)
    cutoff = pd.Timestamp(snapshot["cutoff"].iloc[0])
    then = cutoff - pd.Timedelta(days=config.tiers.window_days)
    # one tier window back, for the migration table: on a shorter log no one yet ("new")
    earlier = data.build_features(tables, config, [then])
    scored = export.score_snapshot(snapshot, models, config)
    notes = export.export_notes(snapshot, scored, config)
    actions = segment_actions(scored.segments, snapshot, config.segments, config.data.currency)
    whatif = campaign_whatif(
        scored.segments, scored.scores, config.segments, export.measured_uplift(tables, config)
    )
    skipped = {
        target: f"not in the live {live.label}" for target in TARGETS if target not in live.targets
    }
    measured = drift.drift_report(tables, snapshot, models, reference_cutoff(live), config)
    cohorts = cohort_table(cohort_customers(tables, data.data_end(tables, config), config.tiers))
    with scratch_folder(config.resolve(config.paths.reports), "report") as scratch:
        runs = [
            fetch_model_run(target, entry.registered_name, entry.version, Path(scratch))
            for target, entry in live.targets.items()
        ]
        inputs = ReportInputs(
            runs=runs,
            models=models,
            snapshot=snapshot.reset_index(drop=True),
            segments=scored.segments,
            migration=tier_migration(earlier, snapshot),
            settings=config.segments,
            currency=config.data.currency,
            shap_sample=config.segments.report.shap_sample,
            examples_per_segment=config.segments.report.examples_per_segment,
            contributions=scored.contributions,
            tiers=config.tiers,
            scores=scored.scores,
            notes=notes,
            actions=actions,
            skipped=skipped,
            migration_dates=(then, cutoff),
            drift=measured,
            cohorts=cohorts,
            psi_alert=config.drift.psi_alert,
            not_alerting=config.drift.not_alerting,
            whatif=whatif,
        )
        path = write_report(inputs, config.resolve(config.paths.reports))
    client = mlflow.MlflowClient()
    for run in runs:
        client.log_artifact(run.run_id, str(path), artifact_path="report")
    progress(f"report: {path} ({live.label}; logged to runs {', '.join(r.run_id for r in runs)})")
    return path
