"""The analyst report (DESIGN §2, §3.5): one self-contained HTML page per pair of model versions.

Metrics against baselines and the gain / calibration plots come from the MLflow run of each
champion version; SHAP views (global, per segment, per customer), segment profiles and the
tier-migration matrix are computed here from the snapshot. Images are embedded as base64, so
the file can be mailed or opened offline.
"""

from __future__ import annotations

import base64
import html
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features.files import write_atomic
from features.targets import (
    TARGETS,
    TargetSpec,
    amount_target,
    explained_targets,
    never_ordered,
    probability_targets,
    ranking_target,
    timing_target,
)
from features.tiers import TierSettings
from models import registry
from models.cohorts import plot_cohorts
from models.explain import (
    BASE_VALUE,
    SCALES,
    _pyplot,
    contributions,
    mean_contributions,
    plot_global,
    plot_segment_means,
)
from models.reasons import format_money
from models.segments import RESELLERS, SegmentSettings
from models.train import TargetModel
from models.value import unseen_season_days

if TYPE_CHECKING:
    from flows.drift import DriftReport

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
    horizon_days: int | None = None
    # the cutoffs the model was fitted on (the run's data_window.json)
    fitted: list[pd.Timestamp] = field(default_factory=list)
    # baselines that could not be computed, and why (the run's baseline.<b>.reason tags)
    failed_baselines: dict[str, str] = field(default_factory=dict)


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
    # the scoring core's per-customer rows (primary segment, scores) for overlaps and campaigns
    scores: pd.DataFrame | None = None
    # why a segment is empty or capped, its action with numbers, targets without a model
    notes: dict[str, str] = field(default_factory=dict)
    actions: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    # the two dates the tier-migration table compares (earlier, later)
    migration_dates: tuple[pd.Timestamp | None, pd.Timestamp | None] = (None, None)
    drift: DriftReport | None = None
    # per first-order month: repeat rate, LTV and tier movement (models.cohorts.cohort_table)
    cohorts: pd.DataFrame | None = None
    psi_alert: float = 0.25
    not_alerting: list[str] = field(default_factory=list)  # drift.not_alerting: age features
    # the campaign what-if per segment with each row's uplift source (models.whatif)
    whatif: pd.DataFrame | None = None


def fetch_model_run(target: str, name: str, version: str, directory: Path) -> ModelRun:
    """Metrics and `plots/` artifacts of the run behind a registered version."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    run_id = client.get_model_version(name, version).run_id
    run = client.get_run(run_id)
    metrics = dict(run.data.metrics)
    horizon = run.data.params.get("horizon_days")
    target_dir = directory / f"{target}_v{version}"
    target_dir.mkdir(parents=True, exist_ok=True)
    plots: list[Path] = []
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    if "plots" in artifacts:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="plots", dst_path=str(target_dir)
        )
        plots = sorted(Path(local).glob("*.png"))
    fitted: list[pd.Timestamp] = []
    if "data_window.json" in artifacts:
        window = mlflow.artifacts.load_dict(f"runs:/{run_id}/data_window.json")
        fitted = [pd.Timestamp(c) for c in window.get("fitted", [])]
    _, failed = registry.logged_baselines(metrics, run.data.tags)
    return ModelRun(
        target,
        name,
        version,
        run_id,
        metrics,
        plots,
        int(horizon) if horizon else None,
        fitted,
        failed,
    )


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


# the value model's metrics that are amounts of money (the rest are ratios or ranks)
MONEY_METRICS = frozenset({"mae"})
# the test-window metrics the report shows, by the target's kind
REPORTED_METRICS = {
    "probability": [
        "roc_auc",
        "pr_auc",
        "lift_top_decile",
        "capture_top_decile",
        "log_loss",
        "brier",
    ],
    "amount": [
        "normalized_gini",
        "spearman",
        "capture_top_decile",
        "total_error_pct",
        "max_top5_decile_error_pct",
        "mae",
    ],
    "days": ["c_index", "mae_days", "window_coverage", "mean_window_days"],
}


def _metrics_table(run: ModelRun, currency: str) -> str:
    """Model metrics next to each baseline's, from the run's `test.*` / `baseline.<b>.*`;
    an error in money (the value model's MAE) in the shop's currency."""
    kind = TARGETS[run.target].kind if run.target in TARGETS else None
    names = REPORTED_METRICS.get(kind, [])
    scored, _ = registry.logged_baselines(run.metrics, {})
    baselines = sorted(scored)
    header = "".join(f"<th>{html.escape(b)}</th>" for b in baselines)

    def shown(metric: str, value: float) -> str:
        if kind == "amount" and metric in MONEY_METRICS:
            return html.escape(format_money(value, currency))
        return f"{value:.3f}"

    rows = []
    for metric in names:
        model = run.metrics.get(f"test.{metric}")
        if model is None:
            continue
        cells = "".join(
            f"<td>{shown(metric, scored[b][metric])}</td>" if metric in scored[b] else "<td>-</td>"
            for b in baselines
        )
        rows.append(f"<tr><td>{metric}</td><td><b>{shown(metric, model)}</b></td>{cells}</tr>")
    failed = "".join(
        f"<p>Baseline {html.escape(b)} could not be computed: {html.escape(why)}.</p>"
        for b, why in sorted(run.failed_baselines.items())
    )
    return (
        f"<table><tr><th>metric (test window)</th><th>model</th>{header}</tr>"
        + "".join(rows)
        + "</table>"
        + failed
    )


def _profiles(inputs: ReportInputs) -> pd.DataFrame:
    """Median profile of each segment (sizes, overlaps and actions are in the overview)."""
    by_id = inputs.snapshot.set_index("customer_id")
    rows = {}
    for name, members in inputs.segments.items():
        if members.empty:
            continue
        features = by_id.reindex(members["customer_id"])
        row = {}
        for column in PROFILE_COLUMNS:
            if column in members and members[column].notna().any():
                # a tier is a rank: its median is one of the tiers, never "3.50"
                how = "lower" if column == "tier" else "linear"
                row[column] = members[column].quantile(0.5, interpolation=how)
        for column in PROFILE_FEATURES:
            if column in features and features[column].notna().any():
                row[column] = features[column].median()
        rows[name] = row
    table = pd.DataFrame(rows).T
    table.index.name = "segment (medians)"
    return table


def _overview(inputs: ReportInputs) -> pd.DataFrame:
    """Per segment: members, share of the scored customers, how many have it as their one
    campaign (primary), the segments it shares most members with, action and why it is
    empty or capped."""
    from models.segments import overlap_table, scored_customers

    scored = scored_customers(inputs.scores) if inputs.scores is not None else len(inputs.snapshot)
    primary = (
        inputs.scores.set_index("customer_id")["primary_segment"]
        if inputs.scores is not None and "primary_segment" in inputs.scores
        else pd.Series(dtype="object")
    )
    overlaps = overlap_table(inputs.segments, primary)
    rows = {}
    for name, members in inputs.segments.items():
        shared = overlaps.loc[name].drop(["members", "primary"]) if name in overlaps.index else None
        top = shared[shared > 0].sort_values(ascending=False).head(2) if shared is not None else []
        rows[name] = {
            "members": len(members),
            "share of scored": f"{len(members) / scored:.1%}" if scored else "-",
            "primary": int(overlaps.loc[name, "primary"]) if name in overlaps.index else 0,
            "also in": ", ".join(f"{k.removeprefix('also ')} {v:,}" for k, v in top.items())
            if len(top)
            else "-",
            "action": inputs.actions.get(name, inputs.settings.action(name)),
            "note": inputs.notes.get(name, "") or "-",
        }
    table = pd.DataFrame(rows).T
    table.index.name = "segment"
    return table


def _format_cell(column: str, value: object, currency: str) -> str:
    """Money in the one money format, whole numbers as whole numbers, else two decimals."""
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        if not np.isfinite(value):
            return "-"
        if any(k in column for k in ("value", "spend", "price")):
            return format_money(float(value), currency)
        # 17.9999999 (0.03 x 600) prints as 18, not 18.00; 0.004 keeps its digits
        if abs(value) >= 1 and round(float(value), 2).is_integer():
            return f"{round(float(value)):,}"
        return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.3f}"
    return html.escape(str(value))


def _html_table(frame: pd.DataFrame, currency: str) -> str:
    head = "".join(
        f"<th>{html.escape(str(c).replace('_', ' '))}</th>"
        for c in [frame.index.name or "", *frame]
    )
    body = []
    for index, row in frame.iterrows():
        cells = "".join(f"<td>{_format_cell(str(c), row[c], currency)}</td>" for c in frame)
        body.append(f"<tr><th>{html.escape(str(index))}</th>{cells}</tr>")
    # a wide table scrolls inside its box; the page itself never scrolls sideways
    return f"<div class='wide'><table><tr>{head}</tr>{''.join(body)}</table></div>"


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
        f"<p>SHAP contributions ({SCALES[TARGETS[target].kind]}) of {len(sample):,} sampled "
        "customers of its "
        f"population ({html.escape(TARGETS[target].population_text)}).</p>",
    ]
    parts += [
        _img(path, f"{target} {path.stem}")
        for path in plot_global(contrib, frame, target, directory, SCALES[TARGETS[target].kind])
    ]
    return parts


def _by_customer(contrib: pd.DataFrame, snapshot: pd.DataFrame) -> pd.DataFrame:
    """Contributions indexed by customer id (the core indexes them by snapshot row)."""
    ids = snapshot["customer_id"].to_numpy()[contrib.index.to_numpy()]
    return contrib.set_axis(pd.Index(ids, name="customer_id"))


def _shap_section(inputs: ReportInputs, directory: Path) -> list[str]:
    """Global plots per model and per-segment mean contributions (the scoring core's)."""
    parts = []
    explained = {spec.name for spec in explained_targets()}
    for target in inputs.models:
        if target in explained:  # a timing model's curve over days has no one explanation
            parts += _global_shap(inputs, target, directory)
        if target not in inputs.contributions:
            continue
        contrib = _by_customer(inputs.contributions[target], inputs.snapshot)
        groups = {
            name: pd.Index(inputs.segments[name]["customer_id"].head(inputs.shap_sample))
            for name in _ranked_by(inputs, target)
        }
        if groups:
            path = directory / f"{target}_segment_means.png"
            plot_segment_means(
                mean_contributions(contrib, groups),
                f"{target}: mean SHAP per segment",
                path,
                scale=SCALES[TARGETS[target].kind],
            )
            parts.append(f"<h3>{html.escape(target)}: per segment</h3>")
            parts.append(_img(path, f"{target} per-segment mean SHAP"))
    return parts


def _ranked_by(inputs: ReportInputs, target: str) -> list[str]:
    """The non-empty segments that `target`'s score ranks and its model explains."""
    return [
        name
        for name, members in inputs.segments.items()
        if ranking_target(name).name == target and len(members)
    ]


def _campaign_members(inputs: ReportInputs, name: str) -> pd.DataFrame:
    """A segment's members whose one campaign it is (all members without primary labels)."""
    members = inputs.segments[name]
    if inputs.scores is None or "primary_segment" not in inputs.scores:
        return members
    primary = inputs.scores.set_index("customer_id")["primary_segment"]
    return members[(primary.reindex(members["customer_id"]) == name).to_numpy()]


def _examples_section(inputs: ReportInputs, directory: Path) -> list[str]:
    """The top member of each segment's campaign (its primary members), each customer once:
    a waterfall labelled in words and the reasons of the export."""
    parts: list[str] = []
    shown: set[str] = set()
    by_id = inputs.snapshot.set_index("customer_id", drop=False)
    for target in inputs.models:
        if target not in inputs.contributions:
            continue
        contrib = _by_customer(inputs.contributions[target], inputs.snapshot)
        for name in _ranked_by(inputs, target):
            members = _campaign_members(inputs, name)
            fresh = members[~members["customer_id"].isin(shown)]
            fresh = fresh[fresh["customer_id"].isin(contrib.index)]
            for row in fresh.head(inputs.examples_per_segment).itertuples(index=False):
                customer = str(row.customer_id)
                shown.add(customer)
                parts.append(_example(inputs, name, row, contrib, by_id, directory))
    return parts


def _example(
    inputs: ReportInputs,
    name: str,
    row,
    contrib: pd.DataFrame,
    by_id: pd.DataFrame,
    directory: Path,
) -> str:
    customer = str(row.customer_id)
    title = f"{name} #{row.rank}: {customer}"
    path = directory / f"waterfall_{name}_{customer}.png"
    waterfall_in_words(contrib.loc[customer], by_id.loc[customer], title, path, inputs)
    words = [
        getattr(row, f"reason_{k}")
        for k in range(1, inputs.settings.reasons + 1)
        if isinstance(getattr(row, f"reason_{k}", None), str)
    ]
    direction = getattr(row, "reasons_direction", "raises")
    items = "".join(f"<li>{html.escape(w)}</li>" for w in words)
    target = html.escape(ranking_target(name).name)
    return (
        f"<h3>{html.escape(title)}</h3><p>what {html.escape(str(direction))} its {target} "
        f"score:</p><ol>{items}</ol>{_img(path, title)}"
    )


def waterfall_labels(features: list[str], row: pd.Series, inputs: ReportInputs) -> list[str]:
    """Each feature as the customer's own fact in words, as the reasons say it."""
    from models.reasons import reason_text

    language, window = inputs.settings.language, inputs.tiers.window_days
    return [reason_text(f, row, language, inputs.currency, window) for f in features]


def waterfall_in_words(
    contrib: pd.Series, row: pd.Series, title: str, path: Path, inputs: ReportInputs
) -> Path:
    """shap's waterfall of one customer with every bar labelled by the customer's own fact in
    words ("12 orders in total"), never "value = feature_name"."""
    import shap

    features = [c for c in contrib.index if c != BASE_VALUE]
    labels = waterfall_labels(features, row, inputs)
    explanation = shap.Explanation(
        values=contrib[features].to_numpy(dtype="float64"),
        base_values=float(contrib[BASE_VALUE]),
        feature_names=labels,
    )
    plt = _pyplot()
    plt.figure()
    shap.plots.waterfall(explanation, max_display=10, show=False)
    plt.title(title)
    plt.gcf().set_size_inches(9, 5)
    plt.tight_layout()
    plt.savefig(path, dpi=90, bbox_inches="tight")
    plt.close("all")
    return path


def _first_purchase_section(inputs: ReportInputs, directory: Path) -> list[str]:
    """Members who never ordered: how many, how likely a first order is, and the browsers
    its score ranks (or why there is no model)."""
    spec = ranking_target("high_price_browsers")
    population = spec.in_population(inputs.snapshot, inputs.tiers)
    if not population.any():
        return [
            f"<p>No known member has never ordered ({html.escape(spec.population_text)}), "
            f"so the {html.escape(spec.name)} model has no one to score (an orders-only log "
            "knows customers only through their orders).</p>"
        ]
    parts = [
        f"<p>{population.sum():,} known members have never ordered "
        f"({html.escape(spec.population_text)}). The {html.escape(spec.name)} model scores "
        f"each: the probability that the member {html.escape(spec.title)}.</p>"
    ]
    if spec.name not in inputs.models:
        why = inputs.skipped.get(spec.name, "not in the live release")
        return [*parts, f"<p>No model for target {html.escape(spec.name)}: {html.escape(why)}.</p>"]
    score = (
        inputs.scores[spec.score_column].to_numpy("float64", na_value=np.nan)
        if inputs.scores is not None and spec.score_column in inputs.scores
        else np.array([])
    )
    finite = score[np.isfinite(score)]
    if finite.size:
        parts.append(
            f"<p>Mean probability (the base rate): {finite.mean():.3f}; top decile from "
            f"{np.quantile(finite, 0.9):.3f}; {int((finite >= 2 * finite.mean()).sum()):,} "
            "members at twice the base rate or more.</p>"
        )
    columns = ["rank", "customer_id", spec.score_column, "expected_value"]
    for name in spec.segments:
        members = inputs.segments.get(name, pd.DataFrame())
        if members.empty:
            note = inputs.notes.get(name, "no members")
            parts.append(f"<p>{html.escape(name)}: {html.escape(note)}.</p>")
            continue
        head = members[[c for c in columns if c in members]].head(10).set_index("rank")
        worth = _conversion_worth(inputs, spec) or "no worth known"
        parts.append(
            f"<h3>{html.escape(name)}: top 10 by expected value "
            f"(probability of a first order x {html.escape(worth)})</h3>"
        )
        parts.append(_html_table(head, inputs.currency))
    return parts


def _horizon_of(inputs: ReportInputs, target: str) -> int | None:
    return next((r.horizon_days for r in inputs.runs if r.target == target), None)


def _conversion_worth(inputs: ReportInputs, spec: TargetSpec) -> str | None:
    """What one conversion of the target is worth in its expected value, in words (None:
    nothing values it, neither a learned worth nor the feature in this data)."""
    model = inputs.models.get(spec.name)
    if getattr(model, "worth", None) is not None:
        return "the amount its model of past first orders expects"
    if spec.order_value is None or spec.order_value not in inputs.snapshot:
        return None
    return f"their {spec.order_value.replace('_', ' ')}"


def _unordered_value(inputs: ReportInputs) -> str:
    """How members who never ordered are valued, by the model that values them if any."""
    for spec in probability_targets():
        if spec.population is never_ordered and spec.order_value and spec.name in inputs.models:
            worth = _conversion_worth(inputs, spec)
            if worth is None:
                return (
                    "Members who never ordered get no value: too few first orders to learn "
                    f"one's worth, and no {spec.order_value.replace('_', ' ')} in this data."
                )
            return f"Members who never ordered are valued at P(first order) x {worth}."
    return "Members who never ordered get no value: no model here scores a first order."


def _value_section(inputs: ReportInputs, directory: Path) -> list[str]:
    """Predicted value in money today: its spread over the customers and per segment (how
    well it ranked and how close its deciles came on the test window is in section 1)."""
    spec = amount_target()
    if spec is None or spec.name not in inputs.models or inputs.scores is None:
        why = inputs.skipped.get(spec.name, "not in the live release") if spec else "no target"
        return [
            f"<p>No value model: {html.escape(why)}. Customers are valued at P(next "
            "order) x their average order.</p>"
        ]
    value = inputs.scores[spec.score_column].to_numpy("float64", na_value=np.nan)
    scored = value[np.isfinite(value)]
    horizon = _horizon_of(inputs, spec.name)
    over = f"the next {horizon} days" if horizon else "the value horizon"
    order = np.sort(scored)[::-1]
    top = order[: max(1, len(order) // 10)].sum() / max(order.sum(), 1e-12)
    parts = [
        f"<p>{spec.name} predicts each buyer's spend over {over}: "
        f"{format_money(float(scored.sum()), inputs.currency)} in all for {len(scored):,} "
        f"buyers (median {format_money(float(np.median(scored)), inputs.currency)}); the "
        f"10% with the highest predictions hold {top:.0%} of it. {_unordered_value(inputs)}</p>"
    ]
    rows = {}
    for name, members in inputs.segments.items():
        if name == RESELLERS or members.empty or "expected_value" not in members:
            continue
        money = members["expected_value"].to_numpy("float64", na_value=np.nan)
        rows[name] = {
            "members": len(members),
            "total value": float(np.nansum(money)),
            "mean value": float(np.nanmean(money)) if np.isfinite(money).any() else np.nan,
        }
    parts += _unseen_season_part(inputs, spec.name)
    if rows:
        parts += ["<h3>Value per segment</h3>", _html_table(pd.DataFrame(rows).T, inputs.currency)]
    return parts + _timing_part(inputs)


def _unseen_season_part(inputs: ReportInputs, target: str) -> list[str]:
    """A warning when the days these amounts cover fall at a time of year the value model
    never saw in training (a log of about a year): its level there is extrapolated."""
    run = next((r for r in inputs.runs if r.target == target), None)
    if run is None or not run.fitted or not run.horizon_days:
        return []
    cutoff = pd.Timestamp(inputs.snapshot["cutoff"].iloc[0])
    days = unseen_season_days(run.fitted, run.horizon_days, cutoff)
    if days == 0:
        return []
    tested = run.metrics.get("test.unseen_season_days", float("nan"))
    total = run.metrics.get("test.total_error_pct", float("nan"))
    measured = (
        f" On its test window {tested:.0f} days were unseen this way and the total was off by "
        f"{total:+.0f}%."
        if np.isfinite(tested) and np.isfinite(total)
        else ""
    )
    return [
        f'<p class="warning">{days} of the {run.horizon_days} days after {cutoff.date()} fall '
        "at a time of year that none of the value model's training windows covered "
        f"({run.fitted[0].date()} .. {run.fitted[-1].date()}, each followed by "
        f"{run.horizon_days} days): the spend predicted for them follows the level of other "
        f"seasons, not this one's.{measured} A log that holds a year plus the value horizon "
        "lets the model learn every season's level.</p>"
    ]


def _timing_part(inputs: ReportInputs) -> list[str]:
    """When the next orders are expected: customers per week after the cutoff."""
    spec = timing_target()
    scores = inputs.scores
    if spec is None or spec.name not in inputs.models or "expected_next_purchase" not in scores:
        return ["<p>No next-purchase model: windows follow the last order + median gap.</p>"]
    cutoff = pd.Timestamp(inputs.snapshot["cutoff"].iloc[0])
    expected = pd.to_datetime(scores["expected_next_purchase"])
    dated = expected.notna()
    buyers = int(spec.in_population(inputs.snapshot, inputs.tiers).sum())
    if not dated.any():
        return [
            "<h3>Next purchase</h3>",
            f"<p>None of the {buyers:,} buyers is more likely than not to order again within "
            "the horizon, so nobody has an expected date or window.</p>",
        ]
    width = (
        pd.to_datetime(scores.loc[dated, "next_purchase_to"])
        - pd.to_datetime(scores.loc[dated, "next_purchase_from"])
    ).dt.days
    weeks = ((expected[dated] - cutoff).dt.days // 7).value_counts().sort_index()
    table = pd.DataFrame(
        {"customers": weeks.to_numpy()},
        index=pd.Index([f"week {int(w) + 1}" for w in weeks.index], name="expected"),
    )
    return [
        "<h3>Next purchase</h3>",
        f"<p>{int(dated.sum()):,} of {buyers:,} buyers are expected to order again within "
        f"the horizon (the others are less likely than not to); their 50% windows are "
        f"{width.median():.0f} days wide at the median. Expected next orders per week after "
        f"{cutoff.date()}:</p>",
        _html_table(table, inputs.currency),
    ]


def _cohorts_section(inputs: ReportInputs, directory: Path) -> list[str]:
    """Repeat rate, LTV and tier movement by first-order month (`dangol cohorts` has the
    table as CSV and compares cohorts before and after a change date)."""
    table = inputs.cohorts
    if table is None or table.empty:
        return ["<p>No first-time buyers in this data: no cohorts.</p>"]
    parts = [
        f"<p>{int(table['customers'].sum()):,} first-time buyers in {len(table)} monthly "
        "cohorts: the share who ordered again within 3 and 6 months of their first order, "
        "their mean spend (LTV) over those months, and how their tier moved after 6 and 12 "
        "months (empty where the data does not reach that far yet).</p>"
    ]
    parts += [
        _img(path, f"cohorts {path.stem}") for path in plot_cohorts(table, directory, "cohorts")
    ]
    return parts


def _drift_section(inputs: ReportInputs, directory: Path) -> list[str]:
    """PSI of the scores and the most moved features against the release's last fitted
    cutoff, with a bar plot; the alert line is the score flow's."""
    if inputs.drift is None:
        return ["<p>No drift measured (no reference cutoff for this release).</p>"]
    drift = inputs.drift
    rows = [{"column": f"{t} score", "psi": v} for t, v in drift.scores.items()]
    rows += drift.features.head(15).to_dict("records")
    table = pd.DataFrame(rows).set_index("column")
    table["reading"] = [
        "major shift" if v > 0.25 else "moderate" if v > 0.1 else "stable" for v in table["psi"]
    ]
    # a window longer than the log's history at the reference: the shift is the log's youth
    cut = table.index.isin(drift.cut_short)
    table.loc[cut, "reading"] = table.loc[cut, "reading"] + " (window cut short then)"
    ages = table.index.isin(inputs.not_alerting)
    table.loc[ages, "reading"] = table.loc[ages, "reading"] + " (grows with time; never alerts)"
    # the score flow's rule, so the report and `dangol score` agree on what raised the alert
    table["raises the alert"] = [
        "yes" if psi > inputs.psi_alert and drift.alerting(column, inputs.not_alerting) else ""
        for column, psi in zip(table.index, table["psi"], strict=True)
    ]
    path = directory / "drift_psi.png"
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(table) + 1.5))
    ax.barh(list(table.index)[::-1], table["psi"].to_numpy()[::-1], color="#4a7bb7")
    ax.axvline(inputs.psi_alert, color="#c0392b", linestyle="--", label=f"alert {inputs.psi_alert}")
    ax.set_xlabel("PSI")
    ax.legend(loc="lower right")
    ax.set_title(f"PSI today against {drift.reference_cutoff.date()}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return [
        f"<p>Population stability index of today's snapshot against the release's last fitted "
        f"cutoff, {drift.reference_cutoff.date()} (&lt; 0.1 stable, 0.1-0.25 moderate, &gt; "
        f"0.25 major shift); `dangol score` alerts above {inputs.psi_alert:g} (the "
        '"raises the alert" column). A feature marked "window cut short then" looks further back '
        "than the data went at that cutoff, and one that grows with time (tenure, days since "
        "the first order) shifts as the shop ages: both are measured, but do not raise the "
        "alert.</p>",
        _html_table(table, inputs.currency),
        _img(path, "PSI per score and feature"),
    ]


def _models_section(inputs: ReportInputs, directory: Path) -> list[str]:
    parts = []
    for run in inputs.runs:
        parts.append(f"<h3>{html.escape(run.name)} v{run.version} ({html.escape(run.target)})</h3>")
        parts.append(f"<div class='wide'>{_metrics_table(run, inputs.currency)}</div>")
        parts.extend(_img(p, f"{run.target} {p.stem}") for p in run.plots)
    for target, why in inputs.skipped.items():
        parts.append(f"<p>No model for target {html.escape(target)}: {html.escape(why)}.</p>")
    return parts


def _segments_section(inputs: ReportInputs, directory: Path) -> list[str]:
    return [
        f"<p>No segment lists more than {inputs.settings.max_share:.0%} of the scored "
        "customers. A customer's one campaign is their primary segment, the first of "
        "<code>segments.priority</code> they belong to; "
        f"{html.escape(RESELLERS)} are listed apart and excluded from every other segment.</p>",
        _html_table(_overview(inputs), inputs.currency),
        "<h3>Profiles</h3>",
        _html_table(_profiles(inputs), inputs.currency),
        *_whatif_part(inputs),
    ]


def _whatif_part(inputs: ReportInputs) -> list[str]:
    """The campaign what-if, one row per segment and uplift source."""
    from models.whatif import base_rate_sentence, revenue_text, uplift_text

    if inputs.whatif is None or inputs.whatif.empty:
        return []
    window = (
        f" {base_rate_sentence(inputs.scores, inputs.settings)}"
        if inputs.scores is not None
        else ""
    )
    rows = list(inputs.whatif.itertuples(index=False))
    table = inputs.whatif.assign(
        base_rate=[f"{row.baseline_rate:.1%}" for row in rows],
        uplift=[uplift_text(row) for row in rows],
        extra_revenue=[revenue_text(row, inputs.currency, "en") for row in rows],
    )
    shown = ["source", "members", "base_rate", "uplift", "extra_buyers", "extra_revenue"]
    shown += ["coupon_cost_value", "net_value"]
    table = table.rename(
        columns={
            "coupon_cost": "coupon_cost_value",  # "value" columns print as money
            "net_extra_revenue": "net_value",
        }
    ).set_index("segment")[shown]
    return [
        "<h3>Campaign what-if</h3>",
        "<p>Uplift by source: <i>uplift model</i>, the live release's (mean predicted uplift; "
        "extra buyers = the sum over the members); <i>measured</i>, the latest campaign that "
        "targeted the segment (95% CI; its money is the campaign's measured revenue uplift "
        "and coupon cost per customer, with the revenue's interval); <i>assumed</i>, the fixed "
        "points of <code>segments.whatif.uplifts_pp</code>, shown when neither exists or "
        "beside a measurement wider than they are. Members shared by two segments count in "
        f"both.{window}</p>",
        _html_table(table, inputs.currency),
    ]


def _migration_section(inputs: ReportInputs, directory: Path) -> list[str]:
    then, now = inputs.migration_dates
    dates = (
        f"<p>Customers by tier on {then.date()} (rows; <i>new</i>: not yet known then) and on "
        f"{now.date()} (columns), tier window {inputs.tiers.window_days} days.</p>"
        if then is not None and now is not None
        else ""
    )
    table = inputs.migration
    if then is not None and now is not None:
        table = table.rename_axis(index=f"{then.date()} \u2193 / {now.date()} \u2192")
    return [dates, _html_table(table, inputs.currency)]


@dataclass(frozen=True)
class Section:
    """One numbered section of the page: its heading and the function that writes its
    body. A new section (e.g. a money value target) is one more entry in `SECTIONS`."""

    title: str
    body: Callable[[ReportInputs, Path], list[str]]


SECTIONS: list[Section] = [
    Section("Models against baselines", _models_section),
    Section("Segments: sizes, campaigns and profiles", _segments_section),
    Section("First purchase", _first_purchase_section),
    Section("Customer value and next purchase", _value_section),
    Section("Tier migration", _migration_section),
    Section("Cohorts by first-order month", _cohorts_section),
    Section("Drift", _drift_section),
    Section("SHAP: global and per segment", _shap_section),
    Section("Example explanations (top of each campaign, each customer once)", _examples_section),
]


STYLE = """
body { font-family: sans-serif; margin: 2em auto; padding: 0 1em; max-width: 1100px;
       box-sizing: border-box; }
.wide { max-width: 100%; overflow-x: auto; margin: 0.5em 0 1.5em; }
table { border-collapse: collapse; font-size: 0.85em; }
td, th { border: 1px solid #ccc; padding: 3px 6px; text-align: right; vertical-align: top;
         overflow-wrap: anywhere; }
td:nth-last-child(-n+2) { text-align: left; max-width: 22em; }
img { max-width: 100%; height: auto; display: block; margin: 0.5em 0 1.5em; }
.warning { border-left: 4px solid #d08000; background: #fff6e5; padding: 0.4em 0.8em; }
"""


def render_report(inputs: ReportInputs, directory: Path) -> str:
    """The whole page as one HTML string; plot files are drawn into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    cutoff = str(pd.Timestamp(inputs.snapshot["cutoff"].iloc[0]).date())
    versions = ", ".join(f"{r.name} v{r.version}" for r in inputs.runs)
    body = [
        f"<h1>dangol analyst report, {html.escape(cutoff)}</h1>",
        f"<p>Models: {html.escape(versions)}. {len(inputs.snapshot):,} customers.</p>",
    ]
    for number, section in enumerate(SECTIONS, start=1):
        body.append(f"<h2>{number}. {html.escape(section.title)}</h2>")
        body.extend(section.body(inputs, directory))
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
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
    return write_atomic(
        out_dir / f"{stem}.html", lambda staging: staging.write_text(page, encoding="utf-8")
    )


__all__ = ["BASE_VALUE", "ModelRun", "ReportInputs", "tier_migration", "write_report"]
