"""The `score` flow: the live release -> features at the cutoff -> scores, segments and reasons
-> atomic exports."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from features.fingerprint import code_version, data_fingerprint
from flows import data, drift, export
from flows.config import DangolConfig, load_config
from flows.tasks import load_shop_task
from models import registry, release
from models.train import TargetModel


@dataclass(frozen=True)
class ScoreOutcome:
    cutoff: str
    customers: int
    export_dir: Path
    segment_sizes: dict[str, int]
    model_versions: dict[str, str]
    drift: str = ""
    release: str = ""
    # summary.json's per-segment entries: primary members, overlaps, note, action
    segments: dict[str, dict] = field(default_factory=dict)
    scored: int = 0  # customers with at least one score: what segment shares are of

    def segment_lines(self) -> list[str]:
        """One line per segment for the CLI: members and share of the scored customers, how
        many have it as their one campaign, what it shares with others, and why it is empty
        or capped."""
        lines = []
        for name, size in self.segment_sizes.items():
            info = self.segments.get(name, {})
            scored = self.scored or self.customers
            share = f" ({size / scored:.1%} of scored)" if scored else ""
            line = f"segment {name}: {size:,}{share}"
            if "primary" in info:
                line += f", primary for {info['primary']:,}"
            overlaps = info.get("overlaps", {})
            if overlaps:
                top = sorted(overlaps.items(), key=lambda kv: -kv[1])[:3]
                line += "; also in " + ", ".join(f"{k} {v:,}" for k, v in top)
            if info.get("note"):
                line += f" [{info['note']}]"
            lines.append(line)
        return lines


def retry_unless_settled(_task, _task_run, state) -> bool:
    """Retry what a second try may pass (a busy SQLite store, a half-written artifact), not
    an answer that stands: no live release, or one made for other settings."""
    try:
        state.result()
    except (registry.NoChampionError, release.ReleaseMismatchError):
        return False
    except Exception:  # anything else may pass on a second try
        return True
    return True


@task(
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=retry_unless_settled,
    cache_policy=NO_CACHE,
)
def load_release_task(
    config: DangolConfig,
) -> tuple[release.Release, dict[str, TargetModel]]:
    """The live release (checked against the config) and its models."""
    live = export.live_release(config)
    get_run_logger().info("scoring with %s: %s", live.label, live.versions())
    return live, release.load_models(live)


# the last tables hashed and their fingerprint: both cache keys of a score run need it
_last_fingerprint: list[tuple[object, str]] = []


def tables_fingerprint(tables) -> str:
    """data_fingerprint, computed once per loaded tables object (≈ 0.2 s on the default
    shop)."""
    if not _last_fingerprint or _last_fingerprint[0][0] is not tables:
        _last_fingerprint[:] = [(tables, data_fingerprint(tables))]
    return _last_fingerprint[0][1]


def _feature_cache_key(kind: str, config: DangolConfig, tables, *parts: object) -> str:
    """`kind-<hash>` of the data version, the settings that shape features, the code that
    computes them and `parts` (what else the cached result depends on)."""
    settings = config.model_dump(mode="json", include={"features", "tiers"})
    payload = json.dumps(
        [*parts, tables_fingerprint(tables), settings, code_version()], sort_keys=True
    )
    return f"{kind}-" + hashlib.sha256(payload.encode()).hexdigest()[:24]


def snapshot_cache_key(context: object, parameters: dict) -> str:
    """Snapshots are keyed by data version, cutoff, the settings that shape features and
    the code that computes them."""
    config: DangolConfig = parameters["config"]
    tables = parameters["tables"]
    cutoff = parameters["cutoff"] or data.data_end(tables, config)
    return _feature_cache_key("snapshot", config, tables, str(pd.Timestamp(cutoff)))


@task(
    cache_key_fn=snapshot_cache_key,
    cache_expiration=timedelta(days=7),
    persist_result=True,
)
def snapshot_task(tables, config: DangolConfig, cutoff: date | None) -> pd.DataFrame:
    snapshot = export.latest_snapshot(tables, config, cutoff)
    get_run_logger().info(
        "snapshot: %s customers at %s", f"{len(snapshot):,}", snapshot["cutoff"].iloc[0]
    )
    return snapshot


def reference_cutoff(live: release.Release) -> pd.Timestamp:
    """The release's last fitted cutoff: what "normal" looked like to its models."""
    window = live.data_window
    return pd.Timestamp(window.get("fitted", window["train"])[-1])


def reference_cache_key(context: object, parameters: dict) -> str:
    """A release's drift reference is keyed by the release, the scored date's time of year,
    the data version, the settings that shape features and the code that computes them."""
    live: release.Release = parameters["live"]
    at = str(pd.Timestamp(parameters["at"])) if parameters.get("at") is not None else None
    return _feature_cache_key("reference", parameters["config"], parameters["tables"], live.id, at)


@task(
    cache_key_fn=reference_cache_key,
    cache_expiration=timedelta(days=7),
    persist_result=True,
)
def reference_task(
    tables, models, live: release.Release, config: DangolConfig, at: pd.Timestamp | None = None
) -> drift.Reference:
    """Features at the release's last fitted cutoff and the release's scores on them at the
    time of year of `at` (the scored date): the drift reference, computed once per release,
    data version and date."""
    return drift.reference_of(tables, models, reference_cutoff(live), config, at)


@task(cache_policy=NO_CACHE)
def drift_task(
    tables, snapshot, models, live, config: DangolConfig, reference: drift.Reference | None = None
) -> drift.DriftDecision:
    """PSI against the champion's last fitted cutoff, logged to MLflow and to the run's
    artifacts; warns when it crosses the alert line (before the export, so a failed export
    does not hide it)."""
    import mlflow

    report = drift.drift_report(tables, snapshot, models, reference_cutoff(live), config, reference)
    mlruns = config.resolve(config.paths.mlruns)
    experiment = registry.ensure_experiment(config.registry.experiment, mlruns)
    cutoff = snapshot["cutoff"].iloc[0].date()
    with mlflow.start_run(experiment_id=experiment, run_name=f"score {cutoff}"):
        mlflow.set_tags({"kind": "score", "reference_cutoff": str(report.reference_cutoff.date())})
        mlflow.log_params({f"champion.{t}": v for t, v in live.versions().items()})
        mlflow.set_tag("release", live.id)
        mlflow.log_metrics({f"psi.{row.column}": row.psi for row in report.features.itertuples()})
        mlflow.log_metrics({f"psi.score.{t}": v for t, v in report.scores.items()})
        mlflow.log_text(report.features.to_csv(index=False), "drift/feature_psi.csv")
    rows = [
        {"column": f"{t} score", "psi": round(v, 4), "alerts": True}
        for t, v in report.scores.items()
    ]
    top = report.features.head(15).round(4)
    top["alerts"] = [report.alerting(c, config.drift.not_alerting) for c in top["column"]]
    rows += top.to_dict("records")
    create_table_artifact(
        rows, key="drift", description=f"PSI against {report.reference_cutoff.date()}"
    )
    decision = drift.drift_decision(report, config.drift, deployed=_deployed())
    message = f"{decision.message} (against {report.reference_cutoff.date()})"
    get_run_logger().log(logging.WARNING if decision.alert else logging.INFO, message)
    return decision


def _deployed() -> bool:
    """Whether this flow run belongs to a deployment (there is a retrain one to start)."""
    from prefect.runtime import deployment

    return deployment.id is not None


def _act_on_drift(decision: drift.DriftDecision) -> str:
    """Trigger the retrain deployment when the drift decision says so; returns what was
    done."""
    if not decision.retrain:
        return decision.message
    from prefect.deployments import run_deployment

    from flows.names import RETRAIN_DEPLOYMENT

    run = run_deployment(RETRAIN_DEPLOYMENT, timeout=0, as_subflow=False)
    return f"{decision.message}: triggered {RETRAIN_DEPLOYMENT} run {run.id}"


@task(cache_policy=NO_CACHE)
def export_task(
    snapshot, models, live, config: DangolConfig, measured=None
) -> tuple[Path, dict[str, int]]:
    return export.score_and_export(snapshot, models, config, datetime.now(), live, measured)


def _segments_markdown(export_dir: Path) -> str:
    """The export's segment and what-if tables for the run's artifact (empty without one)."""
    summary = export_dir / "summary.md"
    if not summary.exists():
        return ""
    text = summary.read_text(encoding="utf-8")
    return text[text.find("| segment") :] if "| segment" in text else ""


@flow(name="score", log_prints=True)
def score_flow(
    config_path: str, cutoff: date | None = None, engine: str | None = None
) -> ScoreOutcome:
    """Score every customer at the cutoff with the champions and export ranked segments.
    `engine` overrides the config's (duckdb or spark) for this run."""
    config = load_config(config_path).with_engine(engine)
    # 1. the live release first: without it there is nothing to score
    live, models = load_release_task(config)
    versions = live.versions()
    # 2. load and validate the raw tables
    tables, _report = load_shop_task(config)
    # 3. point-in-time features at the cutoff
    snapshot = snapshot_task(tables, config, cutoff)
    # 4. how far today is from what the champions were trained on
    at = snapshot["cutoff"].iloc[0] if len(snapshot) else None
    reference = reference_task(tables, models, live, config, at)
    drifted = drift_task(tables, snapshot, models, live, config, reference)
    # 5. scores, segments, and the export that `latest` moves to only when complete (the
    # what-if uses the measured uplift of past campaigns that targeted a segment)
    measured = export.measured_uplift(tables, config)
    export_dir, sizes = export_task(snapshot, models, live, config, measured)
    # 6. retrain on drift, if configured (only after a good export)
    drift_action = _act_on_drift(drifted)
    summary_file = export_dir / "summary.json"
    summary = json.loads(summary_file.read_text(encoding="utf-8")) if summary_file.exists() else {}
    outcome = ScoreOutcome(
        cutoff=str(snapshot["cutoff"].iloc[0].date()),
        customers=len(snapshot),
        export_dir=export_dir,
        segment_sizes=sizes,
        model_versions=versions,
        drift=drift_action,
        release=live.label,
        segments=summary.get("segments", {}),
        scored=summary.get("scored", 0),
    )
    create_markdown_artifact(
        f"# score {outcome.cutoff}\n\n{outcome.customers:,} customers scored with "
        f"{live.label} {versions}; export: `{export_dir}`\n\n{drift_action}\n\n"
        + _segments_markdown(export_dir),
        key="score-summary",
    )
    return outcome
