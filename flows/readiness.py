"""`dangol check`: what a shop's data supports before anything is trained.

Tables found, date span, customers and orders per customer, history against the horizon,
positives per window per target, which targets and segments can be built, and what to change.
The same window counts decide, in `dangol train`, which targets are trained and which are
skipped with the message shown here (`shortfall`), so the check and the training agree.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.schema import ShopTables
from features.snapshot import build_features, labelled_cutoffs
from features.targets import TARGETS, TargetSpec, ranking_target
from flows.config import DangolConfig
from flows.training import (
    build_training_data,
    span_advice,
    target_split,
    time_split,
    value_horizon_note,
)
from models.reasons import format_money
from models.segments import (
    RULE_NEEDS_FEATURE,
    RULE_NEEDS_SCORE,
    SEGMENT_NAMES,
    VIP_SEGMENTS,
    table_of,
)
from models.train import InsufficientDataError, TimeSplit, window_rows

WINDOWS = ("training", "validation", "test")


@dataclass(frozen=True)
class WindowCount:
    """Labelled rows of one target in one time window of the split."""

    target: str
    window: str
    cutoffs: int
    positives: int
    negatives: int


def outcome_counts(rows: pd.DataFrame, target: str) -> tuple[int, int]:
    """What the training checks count, by the target's kind: positives and negatives of a
    probability; customers who spent and who did not for money; observed next orders (both
    numbers) for timing, which learns from those only."""
    kind = TARGETS[target].kind
    if kind == "days":
        return len(rows), len(rows)
    positives = int((rows[target] > 0).sum()) if len(rows) else 0
    return positives, len(rows) - positives


def window_counts(
    frame: pd.DataFrame, split: TimeSplit, target: str, config: DangolConfig | None = None
) -> list[WindowCount]:
    """Positives and negatives of `target` in the training, validation and test windows (a
    target with its own horizon, the value target, in its own split)."""
    if config is not None and TARGETS[target].horizon != "horizon_days":
        split = target_split(frame, target, config)
    counts = []
    for window, cutoffs in zip(WINDOWS, (split.train, split.validation, split.test), strict=True):
        rows = window_rows(frame, target, cutoffs) if target in frame else frame.iloc[:0]
        positives, negatives = outcome_counts(rows, target)
        counts.append(WindowCount(target, window, len(cutoffs), positives, negatives))
    return counts


def _vip_target() -> TargetSpec:
    return ranking_target("rising_vip")


def shortfall(
    frame: pd.DataFrame, split: TimeSplit, target: str, config: DangolConfig
) -> str | None:
    """Why `target` cannot be trained on this frame and what to change (None: it can)."""
    if target not in frame or not frame[target].notna().any():
        return "no customer of its population in this data"
    settings = config.training
    try:
        counts = window_counts(frame, split, target, config)
    except InsufficientDataError as exc:
        return str(exc)
    for count in counts:
        if count.positives >= settings.min_positives and count.negatives >= settings.min_negatives:
            continue
        return _advice(count, config)
    return None


def _advice(count: WindowCount, config: DangolConfig) -> str:
    """One sentence: what is short in which window, and what to change."""
    settings = config.training
    horizon = config.labels.horizon_days
    window = f"the {count.window} window ({count.cutoffs} cutoffs, {horizon}-day horizon)"
    if count.positives < settings.min_positives:
        needed = f"{count.positives} positives, {settings.min_positives} needed"
        if count.target == _vip_target().name and config.tiers.basis == "absolute":
            line = format_money(config.tiers.vip_line, config.data.currency)
            return (
                f"VIP line {line}: {count.positives} customers cross it in {window}, "
                f"{settings.min_positives} needed — lower the line (tiers.thresholds) or use "
                "quantile tiers (tiers.basis: quantile)"
            )
        return (
            f"{window} has {needed} — use more history, a longer horizon "
            "(labels.horizon_days), more cutoffs (training.cutoff_every_days) or lower "
            "training.min_positives"
        )
    return (
        f"{window} has {count.negatives} negatives, {settings.min_negatives} needed — "
        "the outcome is near certain here; lower training.min_negatives or shorten the horizon"
    )


def required_targets(config: DangolConfig) -> list[str]:
    """Targets that must train (`training.required_targets`, default: the targets' specs)."""
    listed = config.training.required_targets
    if listed is not None:
        return list(listed)
    return [name for name, spec in TARGETS.items() if spec.required]


@dataclass
class Readiness:
    """What `dangol check` found; `lines()` is the printed report."""

    tables: dict[str, int]
    missing_tables: list[str]
    first: pd.Timestamp
    end: pd.Timestamp
    customers: int
    buyers: int
    orders: int
    orders_per_buyer: pd.Series
    cutoffs: int
    split_problem: str | None
    counts: list[WindowCount] = field(default_factory=list)
    targets: dict[str, str | None] = field(default_factory=dict)
    required: list[str] = field(default_factory=list)
    segments: dict[str, str | None] = field(default_factory=dict)
    advice: list[str] = field(default_factory=list)
    # why the value target looks over fewer days than configured (None: as configured)
    value_horizon: str | None = None

    @property
    def ready(self) -> bool:
        """Every required target can be trained."""
        return self.split_problem is None and all(
            self.targets.get(name) is None for name in self.required
        )

    def lines(self) -> list[str]:
        span = (self.end - self.first).days
        per = self.orders_per_buyer
        out = ["tables:"]
        out += [f"  {name}: {rows:,} rows" for name, rows in self.tables.items()]
        out += [f"  {name}: missing" for name in self.missing_tables]
        out += [
            f"dates: {self.first.date()} .. {self.end.date()} ({span:,} days)",
            f"customers: {self.customers:,} known, {self.buyers:,} with an order; "
            f"{self.orders:,} orders",
            f"orders per buyer: median {per.median():.0f}, mean {per.mean():.1f}; "
            f"{(per >= 2).mean():.0%} ordered twice or more",
            f"history: {self.cutoffs} labelled cutoffs"
            + (f"; {self.split_problem}" if self.split_problem else ""),
        ]
        if self.value_horizon:
            out.append(f"value horizon: {self.value_horizon}")
        if self.counts:
            out.append("positives / negatives per window:")
            labelled = [c for c in self.counts if c.positives + c.negatives]
            for target in dict.fromkeys(c.target for c in labelled):
                # a timing target learns from observed next orders only: one number
                timing = TARGETS[target].kind == "days"
                cells = ", ".join(
                    f"{c.window} {c.positives:,} next orders"
                    if timing
                    else f"{c.window} {c.positives:,} / {c.negatives:,}"
                    for c in self.counts
                    if c.target == target
                )
                out.append(f"  {target}: {cells}")
        out.append("targets:")
        for name, why in self.targets.items():
            role = "required" if name in self.required else "optional"
            state = "can be trained" if why is None else f"cannot be trained: {why}"
            out.append(f"  {name} ({role}): {state}")
        out.append("segments:")
        for name, why in self.segments.items():
            out.append(f"  {name}: {'can be built' if why is None else why}")
        if self.advice:
            out.append("to change:")
            out += [f"  - {line}" for line in self.advice]
        verdict = "ready" if self.ready else "not ready"
        trainable = [n for n, why in self.targets.items() if why is None]
        out.append(f"{verdict}: `dangol train` would train {', '.join(trainable) or 'nothing'}")
        return out


def _segment_gaps(
    present: set[str], targets: dict[str, str | None], any_vip: bool, config: DangolConfig
) -> dict[str, str | None]:
    """Per segment: None when it can be built, else why not."""
    gaps: dict[str, str | None] = {}
    for name in SEGMENT_NAMES:
        feature = RULE_NEEDS_FEATURE.get(name)
        table = table_of(feature) if feature else None
        target = ranking_target(name).name
        if table is not None and table not in present:
            gaps[name] = f"needs {table}, which this data has not"
        elif name in RULE_NEEDS_SCORE and targets.get(target) is not None:
            gaps[name] = f"no model for target {target}"
        elif name in VIP_SEGMENTS and not any_vip:
            gaps[name] = (
                f"no customer reaches a VIP tier (tiers.vip_tiers {config.tiers.vip_tiers}) at "
                "the data's end"
            )
        else:
            gaps[name] = None
    return gaps


def check_readiness(tables: ShopTables, config: DangolConfig) -> Readiness:
    """Everything `dangol check` reports, from the loaded tables and the config."""
    from flows.data import data_end, first_event

    present = tables.present()
    optional = ("customers", "order_items", "content_views", "contacts", "campaigns")
    first, end = first_event(tables), data_end(tables, config)
    orders = tables.orders
    per_buyer = orders.groupby("customer_id").size()
    latest = build_features(tables, [end], config.features, config.tiers)
    cutoffs = labelled_cutoffs(
        first,
        end,
        config.training.cutoff_every_days,
        config.labels.horizon_days,
        config.training.min_history_days,
    )
    report = Readiness(
        tables={name: len(frame) for name, frame in present.items()},
        missing_tables=[name for name in optional if name not in present],
        first=first,
        end=end,
        customers=len(latest),
        buyers=int(per_buyer.size),
        orders=len(orders),
        orders_per_buyer=per_buyer,
        cutoffs=len(cutoffs),
        split_problem=None,
        required=required_targets(config),
    )
    try:
        split = time_split(cutoffs, config.labels.horizon_days, config)
    except InsufficientDataError as exc:
        report.split_problem = str(exc)
        report.advice.append(span_advice(first, end, config))
        report.targets = {name: "the data covers too little time" for name in TARGETS}
    else:
        frame, split = build_training_data(tables, config)
        report.value_horizon = value_horizon_note(cutoffs, config)
        for name in TARGETS:
            why = shortfall(frame, split, name, config)
            if name in frame and frame[name].notna().any():
                # a target whose own split does not fit has no counts: `why` says so
                with suppress(InsufficientDataError):
                    report.counts += window_counts(frame, split, name, config)
            report.targets[name] = why
            if why is not None and why != "no customer of its population in this data":
                report.advice.append(f"{name}: {why}")
    any_vip = bool(np.isin(latest["tier"].to_numpy(), config.tiers.vip_tiers).any())
    report.segments = _segment_gaps(set(present), report.targets, any_vip, config)
    for name in report.required:
        if report.targets.get(name) is not None:
            report.advice.append(
                f"{name} is required (training.required_targets): `dangol train` stops until "
                "it can be trained; list only the targets you need there"
            )
    return report


def plan_targets(
    frame: pd.DataFrame, split: TimeSplit, config: DangolConfig
) -> tuple[list[str], dict[str, str]]:
    """The targets this data can train, and the others with why and what to change (the
    messages of `dangol check`). A short target is skipped so the others still release,
    unless it is required (`training.required_targets`, default: the targets' specs): then
    the run stops here, before any training, with one message."""
    required = required_targets(config)
    wanted, skipped = [], {}
    for name in TARGETS:
        why = shortfall(frame, split, name, config)
        if why is None:
            wanted.append(name)
        else:
            skipped[name] = why
    short = {name: why for name, why in skipped.items() if name in required}
    if short:
        raise InsufficientDataError(
            "; ".join(
                f"required target {name} cannot be trained: {why}" for name, why in short.items()
            )
            + " (training.required_targets lists the targets that must train; "
            "`dangol check` shows what the data supports)"
        )
    if not wanted:
        raise InsufficientDataError(
            "no target can be trained: "
            + "; ".join(f"{name}: {why}" for name, why in skipped.items())
        )
    return wanted, skipped
