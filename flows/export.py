"""Scoring stage: the live release, the snapshot at the cutoff, and the atomic export.

Scores, segments and reasons come from the one core (models.scoring) so the exported rows
equal what the report and the service say for the same release and snapshot.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pandas as pd

from features.engine import spark_for, write_scored_partitions
from features.files import process_alive
from features.schema import ShopTables
from flows.config import DangolConfig
from flows.data import build_features, data_end, refuse_after_end, refuse_unknown_cutoffs
from models import registry, release
from models.scoring import Scored, score_and_explain
from models.segments import (
    PRIMARY_COLUMN,
    SEGMENT_NAMES,
    SNAPSHOT_SETTINGS,
    CampaignPlan,
    export_cutoff,
    segment_notes,
    unmeasurable_campaigns,
    with_primary,
    write_export,
)
from models.train import TargetModel
from models.uplift import measured_uplift_of_segments
from models.whatif import segment_summary


def live_release(config: DangolConfig) -> release.Release:
    """The live release of the config's store, checked against the config's settings."""
    registry.configure_mlflow(config.resolve(config.paths.mlruns))
    live = release.require_live(config.registry.release_name, str(config.file or "<config>"))
    release.check_matches(live, config.labels.horizon_days, config.tiers, config.features)
    return live


def latest_snapshot(
    tables: ShopTables, config: DangolConfig, cutoff: datetime | None
) -> pd.DataFrame:
    """Features of every known customer at the scoring cutoff (default: the data's end).
    A cutoff after the data's end is refused: every customer would look silent since the
    data stopped, and the lists would read as current."""
    end = data_end(tables, config)
    when = pd.Timestamp(cutoff) if cutoff is not None else end
    why = f", so every customer would look silent since then; score at {end.date()} or earlier"
    refuse_after_end(when, end, "cutoff", why)
    snapshot = build_features(tables, config, [when])
    refuse_unknown_cutoffs(snapshot, [when], tables)
    return snapshot


def measured_uplift(tables: ShopTables, config: DangolConfig) -> pd.DataFrame:
    """Per segment name, the measured uplift of the latest finished campaign that targeted
    it (`campaigns.segment`), for the what-if; empty without campaign logs."""
    return measured_uplift_of_segments(
        tables, data_end(tables, config), list(SEGMENT_NAMES), config.data.attribution_days
    )


def score_snapshot(
    snapshot: pd.DataFrame, models: dict[str, TargetModel], config: DangolConfig
) -> Scored:
    """The core's scores, segments and reasons for the config's rules and wording."""
    return score_and_explain(snapshot, models, config.segments, config.tiers, config.data.currency)


@contextmanager
def scored_on_engine(
    snapshot: pd.DataFrame, models: dict[str, TargetModel], config: DangolConfig
) -> Iterator[tuple[Scored, Callable[[], None]]]:
    """The core's result on the config's engine, and what writes the scored rows to
    `spark.export_path` (nothing to do without one). On Spark the core runs per partition on
    the cluster (models.spark_scoring) and the rows go to the lake from there; the session
    lives until the caller is done."""
    if config.engine != "spark":
        yield score_snapshot(snapshot, models, config), lambda: None
        return
    from models.spark_scoring import score_and_explain_on_spark

    with spark_for(config.spark) as spark:
        result = score_and_explain_on_spark(
            spark, snapshot, models, config.segments, config.tiers, config.data.currency
        )

        def to_lake() -> None:
            if config.spark.export_path is not None:
                write_scored_partitions(result.rows, config.spark, config.base_dir)

        try:
            yield result.scored, to_lake
        finally:
            result.release()


def score_and_export(
    snapshot: pd.DataFrame,
    models: dict[str, TargetModel],
    config: DangolConfig,
    stamp: datetime,
    live: release.Release | None = None,
    measured: pd.DataFrame | None = None,
) -> tuple[Path, dict[str, int]]:
    """Scores, segments and the atomic export; returns the export folder and segment sizes.
    `measured`: measured uplift per segment name for the what-if (`measured_uplift`)."""
    with scored_on_engine(snapshot, models, config) as (scored, to_lake):
        folder = _export(snapshot, scored, config, stamp, live, measured)
        to_lake()
    return folder, {name: len(members) for name, members in scored.segments.items()}


def campaign_plan(
    snapshot: pd.DataFrame, config: DangolConfig, offers: dict[str, str] | None = None
) -> CampaignPlan:
    """How the lists of this snapshot become campaigns (ids from its cutoff)."""
    return CampaignPlan(pd.Timestamp(snapshot["cutoff"].iloc[0]), config.segments, offers)


def export_notes(snapshot: pd.DataFrame, scored: Scored, config: DangolConfig) -> dict[str, str]:
    """Per segment, why its list is empty, capped or its campaign unmeasurable: what the
    CLI, summary.json/md and the report say (one home for both)."""
    notes = segment_notes(snapshot, scored.scores, scored.segments, config.segments, config.tiers)
    lists = with_primary(scored.segments, scored.scores)
    for name, why in unmeasurable_campaigns(lists, campaign_plan(snapshot, config)).items():
        notes[name] = "; ".join(filter(None, [notes.get(name), why]))
    return notes


def _export(
    snapshot: pd.DataFrame,
    scored: Scored,
    config: DangolConfig,
    stamp: datetime,
    live: release.Release | None,
    measured: pd.DataFrame | None,
) -> Path:
    """The export folder of a scoring pass: lists, campaigns, summary (atomic)."""
    versions = live.versions() if live is not None else {}
    notes = export_notes(snapshot, scored, config)
    primary = scored.scores.set_index("customer_id")[PRIMARY_COLUMN]
    summary, markdown = segment_summary(
        scored.segments,
        snapshot,
        scored.scores,
        config.segments,
        config.data.currency,
        versions,
        notes=notes,
        primary=primary,
        measured=measured,
    )
    offers = {name: info["action"] for name, info in summary["segments"].items()}
    summary[SNAPSHOT_SETTINGS] = release.snapshot_settings(config.tiers, config.features)
    if live is not None:
        # what each score looks over: predicted_value's horizon is the value target's own
        horizons = {t: live.horizon_of(t) for t in live.targets}
        summary["release"] = {
            "id": live.id,
            "version": live.version,
            "models": versions,
            "horizon_days": horizons,
        }
        if live.uplift:
            summary["release"]["uplift"] = live.uplift.get("reason", "")
        markdown += "\nHorizons: " + ", ".join(f"{t} {d} days" for t, d in horizons.items())
        markdown += "\n"
    exports = config.resolve(config.paths.exports)
    remove_stale_staging(exports)
    folder = write_export(
        exports,
        snapshot,
        scored.scores,
        scored.segments,
        stamp,
        summary=summary,
        summary_markdown=markdown,
        campaigns=campaign_plan(snapshot, config, offers),
    )
    if not moved_latest(folder):
        print(f"export: {where_exported(folder)}")
    return folder


def moved_latest(folder: Path) -> bool:
    return (folder.parent / "latest").resolve() == folder.resolve()


def where_exported(folder: Path) -> str:
    """Where an export went, and whether `latest` moved to it (a backfill of an earlier
    cutoff leaves `latest` on the later one)."""
    latest = folder.parent / "latest"
    if moved_latest(folder):
        return f"{folder} (and {latest})"
    held = export_cutoff(latest)
    at = f" (cutoff {held:%Y-%m-%d})" if held is not None else ""
    return f"{folder}; {latest} stays on {latest.resolve().name}{at}, a later cutoff"


# What write_export stages beside the exports, named after the writing process's id.
STAGING_PATTERNS = (".staging-*-*", ".latest-*")


def remove_stale_staging(exports_dir: Path) -> list[Path]:
    """Remove what a killed export left (its staging folder, its half-made `latest` link):
    entries whose writing process is gone. A running export's entries are kept."""
    if not exports_dir.is_dir():
        return []
    removed = []
    for pattern in STAGING_PATTERNS:
        for entry in exports_dir.glob(pattern):
            pid = entry.name.rsplit("-", 1)[-1]
            if not pid.isdigit() or _alive(int(pid)):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process is not exporting yet: what it left earlier is stale
    return process_alive(pid)
