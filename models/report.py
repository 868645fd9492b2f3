"""The analyst report (DESIGN §2, §3.5): one self-contained HTML page per pair of model versions.

Metrics against baselines and the gain / calibration plots come from the MLflow run of each
champion version; SHAP views (global, per segment, per customer), segment profiles and the
tier-migration matrix are computed here from the snapshot. Images are embedded as base64, so
the file can be mailed or opened offline.
"""

from __future__ import annotations

import base64
import html
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.targets import TARGETS, probability_targets, ranking_target
from features.tiers import TierSettings
from models.explain import (
    BASE_VALUE,
    contributions,
    mean_contributions,
    plot_global,
    plot_segment_means,
    plot_waterfall,
)
from models.reasons import format_money
from models.segments import RESELLERS, SegmentSettings
from models.train import TargetModel

PROFILE_COLUMNS = [
    *(spec.score_column for spec in TARGETS.values()),
    "expected_value",
    "tier",
]
PROFILE_FEATURES = [
    "orders_lifetime",
    "avg_order_value",
    "days_since_last_order",
    "tenure_days",
    "tier_window_spend",
    "mean_viewed_price",
]


@dataclass
class ModelRun:
    """A champion version and what its MLflow run recorded."""

    target: str
    name: str
    version: str
    run_id: str
    metrics: dict[str, float]
    plots: list[Path] = field(default_factory=list)


@dataclass
class ReportInputs:
    """Everything the page shows; built by flows (MLflow, data) or directly in tests."""

    runs: list[ModelRun]
    models: dict[str, TargetModel]
    snapshot: pd.DataFrame
    segments: dict[str, pd.DataFrame]
    migration: pd.DataFrame
    settings: SegmentSettings
    currency: str
    shap_sample: int = 2000
    examples_per_segment: int = 1
    contributions: dict[str, pd.DataFrame] = field(default_factory=dict)
    tiers: TierSettings = field(default_factory=TierSettings)


def fetch_model_run(target: str, name: str, version: str, directory: Path) -> ModelRun:
    """Metrics and `plots/` artifacts of the run behind a registered version."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    run_id = client.get_model_version(name, version).run_id
    metrics = dict(client.get_run(run_id).data.metrics)
    target_dir = directory / f"{target}_v{version}"
    target_dir.mkdir(parents=True, exist_ok=True)
    plots: list[Path] = []
    if any(a.path == "plots" for a in client.list_artifacts(run_id)):
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="plots", dst_path=str(target_dir)
        )
        plots = sorted(Path(local).glob("*.png"))
    return ModelRun(target, name, version, run_id, metrics, plots)


def tier_migration(earlier: pd.DataFrame, later: pd.DataFrame) -> pd.DataFrame:
    """Customers by tier at the earlier date (rows, 'new' if unknown then) and the later one."""
    merged = later[["customer_id", "tier"]].merge(
        earlier[["customer_id", "tier"]], on="customer_id", how="left", suffixes=("", "_before")
    )
    before = merged["tier_before"].map(lambda t: "new" if pd.isna(t) else f"tier {int(t)}")
    after = merged["tier"].map(lambda t: f"tier {int(t)}")
    table = pd.crosstab(before, after)
    table.index.name, table.columns.name = "before", "after"
    return table


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _metrics_table(run: ModelRun) -> str:
    """Model metrics next to each baseline's, from the run's `test.*` / `baseline.<b>.*`."""
    names = ["roc_auc", "pr_auc", "lift_top_decile", "capture_top_decile", "log_loss", "brier"]
    baselines = sorted(
        {k.split(".")[1] for k in run.metrics if k.startswith("baseline.") and k.count(".") >= 2}
    )
    header = "".join(f"<th>{html.escape(b)}</th>" for b in baselines)
    rows = []
    for metric in names:
        model = run.metrics.get(f"test.{metric}")
        if model is None:
            continue
        cells = "".join(
            f"<td>{run.metrics[f'baseline.{b}.{metric}']:.3f}</td>"
            if f"baseline.{b}.{metric}" in run.metrics
            else "<td>-</td>"
            for b in baselines
        )
        rows.append(f"<tr><td>{metric}</td><td><b>{model:.3f}</b></td>{cells}</tr>")
    return (
        f"<table><tr><th>metric (test window)</th><th>model</th>{header}</tr>"
        + "".join(rows)
        + "</table>"
    )


def _profiles(inputs: ReportInputs) -> pd.DataFrame:
    """Size and median profile of each segment."""
    by_id = inputs.snapshot.set_index("customer_id")
    rows = {}
    for name, members in inputs.segments.items():
        features = by_id.reindex(members["customer_id"])
        row = {"members": len(members), "action": inputs.settings.action(name)}
        for column in PROFILE_COLUMNS:
            if column in members:
                row[f"median {column}"] = members[column].median()
        for column in PROFILE_FEATURES:
            if column in features:
                row[f"median {column}"] = features[column].median()
        rows[name] = row
    return pd.DataFrame(rows).T


def _format_cell(column: str, value: object, currency: str) -> str:
    if isinstance(value, float | np.floating):
        if not np.isfinite(value):
            return "-"
        money = any(k in column for k in ("value", "spend", "price"))
        return format_money(float(value), currency) if money else f"{value:,.2f}"
    return html.escape(str(value))


def _html_table(frame: pd.DataFrame, currency: str) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in [frame.index.name or "", *frame])
    body = []
    for index, row in frame.iterrows():
        cells = "".join(f"<td>{_format_cell(str(c), row[c], currency)}</td>" for c in frame)
        body.append(f"<tr><th>{html.escape(str(index))}</th>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _global_shap(inputs: ReportInputs, target: str, directory: Path) -> list[str]:
    """shap's beeswarm and bar plots over a sample of the target's population."""
    model = inputs.models[target]
    population = inputs.snapshot[TARGETS[target].in_population(inputs.snapshot, inputs.tiers)]
    if population.empty:
        return []
    sample = population.sample(min(inputs.shap_sample, len(population)), random_state=0)
    frame = sample.set_index("customer_id", drop=False)
    contrib = contributions(model, frame)
    parts = [
        f"<h3>{html.escape(target)}: what drives the score overall</h3>",
        f"<p>SHAP contributions (log-odds) of {len(sample):,} sampled customers of its "
        f"population ({html.escape(TARGETS[target].population_text)}).</p>",
    ]
    parts += [
        _img(path, f"{target} {path.stem}")
        for path in plot_global(contrib, frame, target, directory)
    ]
    return parts


def _by_customer(contrib: pd.DataFrame, snapshot: pd.DataFrame) -> pd.DataFrame:
    """Contributions indexed by customer id (the core indexes them by snapshot row)."""
    ids = snapshot["customer_id"].to_numpy()[contrib.index.to_numpy()]
    return contrib.set_axis(pd.Index(ids, name="customer_id"))


def _shap_section(inputs: ReportInputs, directory: Path) -> tuple[list[str], list[str]]:
    """Global plots per model, per-segment means, and waterfalls with the export's reasons.

    Per-segment views and examples use the contributions and reasons of the scoring core, so
    the words are the exported ones; each example customer is shown once.
    """
    parts, examples = [], []
    by_id = inputs.snapshot.set_index("customer_id", drop=False)
    shown: set[str] = set()
    explained = {spec.name for spec in probability_targets()}
    for target in inputs.models:
        if target in explained:  # money and timing models are shown in their own sections
            parts += _global_shap(inputs, target, directory)
        if target not in inputs.contributions:
            continue
        contrib = _by_customer(inputs.contributions[target], inputs.snapshot)
        names = [
            n
            for n, members in inputs.segments.items()
            if ranking_target(n).name == target and len(members)
        ]
        groups = {
            n: pd.Index(inputs.segments[n]["customer_id"].head(inputs.shap_sample)) for n in names
        }
        if groups:
            path = directory / f"{target}_segment_means.png"
            plot_segment_means(
                mean_contributions(contrib, groups), f"{target}: mean SHAP per segment", path
            )
            parts.append(f"<h3>{html.escape(target)}: per segment</h3>")
            parts.append(_img(path, f"{target} per-segment mean SHAP"))
        for name in names:
            examples += _examples(inputs, name, contrib, by_id, directory, shown)
    return parts, examples


def _examples(
    inputs: ReportInputs,
    name: str,
    contrib: pd.DataFrame,
    by_id: pd.DataFrame,
    directory: Path,
    shown: set[str],
) -> list[str]:
    """The top-ranked members of a segment not shown yet: waterfall and reasons in words."""
    out = []
    members = inputs.segments[name]
    fresh = members[~members["customer_id"].isin(shown)].head(inputs.examples_per_segment)
    for row in fresh.itertuples(index=False):
        customer = str(row.customer_id)
        shown.add(customer)
        title = f"{name} #{row.rank}: {customer}"
        path = directory / f"waterfall_{name}_{customer}.png"
        plot_waterfall(contrib, by_id, customer, title, path)
        words = [
            getattr(row, f"reason_{k}")
            for k in range(1, inputs.settings.reasons + 1)
            if isinstance(getattr(row, f"reason_{k}", None), str)
        ]
        direction = getattr(row, "reasons_direction", "raises")
        items = "".join(f"<li>{html.escape(w)}</li>" for w in words)
        target = html.escape(ranking_target(name).name)
        out.append(
            f"<h3>{html.escape(title)}</h3><p>what {html.escape(direction)} its {target} "
            f"score:</p><ol>{items}</ol>{_img(path, title)}"
        )
    return out


STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 1100px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
img { max-width: 100%; display: block; margin: 0.5em 0 1.5em; }
"""


def render_report(inputs: ReportInputs, directory: Path) -> str:
    """The whole page as one HTML string; plot files are drawn into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    cutoff = str(pd.Timestamp(inputs.snapshot["cutoff"].iloc[0]).date())
    versions = ", ".join(f"{r.name} v{r.version}" for r in inputs.runs)
    body = [
        f"<h1>dangol analyst report, {html.escape(cutoff)}</h1>",
        f"<p>Models: {html.escape(versions)}. {len(inputs.snapshot):,} customers.</p>",
        "<h2>1. Models against baselines</h2>",
    ]
    for run in inputs.runs:
        body.append(f"<h3>{html.escape(run.name)} v{run.version} ({html.escape(run.target)})</h3>")
        body.append(_metrics_table(run))
        body.extend(_img(p, f"{run.target} {p.stem}") for p in run.plots)
    body.append("<h2>2. Segments: sizes and profiles</h2>")
    body.append(_html_table(_profiles(inputs), inputs.currency))
    body.append(
        f"<p>{html.escape(RESELLERS)} are listed apart and excluded from every other segment.</p>"
    )
    body.append("<h2>3. Tier migration</h2>")
    body.append(_html_table(inputs.migration, inputs.currency))
    shap_parts, examples = _shap_section(inputs, directory)
    body.append("<h2>4. SHAP: global and per segment</h2>")
    body.extend(shap_parts)
    body.append("<h2>5. Example explanations (top-ranked member of each segment)</h2>")
    body.extend(examples)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>dangol report {html.escape(cutoff)}</title><style>{STYLE}</style></head>"
        f"<body>{''.join(body)}</body></html>"
    )


def write_report(inputs: ReportInputs, out_dir: Path) -> Path:
    """Render and write `report_<versions>.html` atomically; returns its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "report_" + "_".join(f"{r.target}-v{r.version}" for r in inputs.runs)
    # the page embeds its images, so their files go once it is rendered
    with tempfile.TemporaryDirectory(prefix=f".{stem}-plots-", dir=out_dir) as plots:
        page = render_report(inputs, Path(plots))
    final = out_dir / f"{stem}.html"
    temporary = out_dir / f".{stem}.html.tmp"
    temporary.write_text(page, encoding="utf-8")
    os.replace(temporary, final)
    return final


__all__ = ["BASE_VALUE", "ModelRun", "ReportInputs", "tier_migration", "write_report"]
