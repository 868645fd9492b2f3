"""The one score-and-explain core (models.scoring) run per partition on Apache Spark.

Scores and explanations are row by row, but a few segment lines are relative to the whole
shop (a base rate, a percentile line, the VIPs' median order, a budget of the scored
customers) and a list's rank is its place in the whole shop. So the work runs in four steps:

1. per partition, `score_customers` and the values the shop-wide statistics are taken over
   (models.segments.population_inputs);
2. on the cluster, those statistics (models.population's counts, means and k-th smallest
   values), then per partition each segment's rule and ranking score, and on the cluster
   each budget's last kept row (`BudgetCut`);
3. per partition, `score_and_explain` with that population: memberships, the primary
   segment and the reasons are those the whole shop in memory would give;
4. the members of each segment (at most its budget) come to the driver and are ranked.

The models go to the executors inside the functions (pickled with them), which works on a
cluster and on Spark Connect alike. The scored rows stay a Spark frame (`SparkScored.rows`)
for the Parquet export; the driver gets only what the export folder needs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from features.tiers import TierSettings
from models.population import KEEP_NONE, BudgetCut, Population, Stats, evaluate, sortable
from models.scoring import (
    DIRECTION,
    EXPLAINED_BY,
    MEMBER_PREFIX,
    PRIMARY,
    Scored,
    member_columns,
    score_and_explain,
    score_customers,
)
from models.segments import (
    RESELLERS,
    SEGMENT_NAMES,
    WINDOW_COLUMNS,
    SegmentSettings,
    population_inputs,
    population_scored,
    ranked_members,
    segment_limit,
    segment_rules,
    statistics_needed,
)
from models.train import TargetModel

if TYPE_CHECKING:
    from pyspark.sql import Column, SparkSession
    from pyspark.sql import DataFrame as SparkFrame
    from pyspark.sql.types import StructType

INPUT_PREFIX = "__population__"
MASK_PREFIX, RANK_PREFIX = "__rule__", "__rank__"
SEGMENT = "__segment__"


@dataclass
class SparkScored:
    """A Spark scoring pass: `scored` as on one machine (the scores rows on the driver and
    every segment ranked; no contributions, which stay on the executors) and `rows`, the
    same scores rows as a Spark frame for the Parquet export."""

    scored: Scored
    rows: SparkFrame
    population: Population
    cached: list[SparkFrame]

    def release(self) -> None:
        """Free the executors' cached partitions of this pass."""
        for frame in self.cached:
            frame.unpersist()


# ----------------------------------------------------------------------------- schemas

REASON_TEXT = re.compile(r"reason_\d+(_feature)?$")
TEXT_COLUMNS = {PRIMARY, EXPLAINED_BY, DIRECTION, SEGMENT}


def _type_by_name(column: str):
    """The Spark type of the columns a partition may leave empty (None: by dtype)."""
    from pyspark.sql import types as T

    if column in TEXT_COLUMNS or REASON_TEXT.match(column):
        return T.StringType()
    if column == "rank":
        return T.LongType()
    if column == "rank_score" or column.endswith("_contribution"):
        return T.DoubleType()
    if column in WINDOW_COLUMNS:
        return T.TimestampType()
    if column.startswith(MEMBER_PREFIX) or column.startswith(MASK_PREFIX):
        return T.BooleanType()
    return None


def _schema(frame: pd.DataFrame) -> StructType:
    from features.spark import spark_schema

    return spark_schema(frame, _type_by_name)


def _conform(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """A partition's output with exactly `columns` (absent ones empty), text as object."""
    out = frame.reindex(columns=columns)
    for column in columns:
        if out[column].dtype == "string" or out[column].dtype.kind == "O":
            out[column] = out[column].astype(object).where(out[column].notna(), None)
    return out


# ----------------------------------------------------------------------------- step 1


def _scored_part(
    part: pd.DataFrame,
    models: dict[str, TargetModel],
    tiers: TierSettings,
    campaign_days: int,
) -> pd.DataFrame:
    """A partition's snapshot rows with their scores and the population's input values."""
    scores = score_customers(part.reset_index(drop=True), models, tiers, campaign_days)
    inputs = population_inputs(part.reset_index(drop=True), scores, tiers)
    extra = scores.drop(columns=[c for c in scores if c in part])
    return pd.concat([part.reset_index(drop=True), extra, inputs.add_prefix(INPUT_PREFIX)], axis=1)


def _split(part: pd.DataFrame, snapshot_columns: list[str], score_columns: list[str]):
    """(snapshot rows, scores rows) of a scored partition, as the core made them."""
    return part[snapshot_columns].reset_index(drop=True), part[score_columns].reset_index(drop=True)


# ----------------------------------------------------------------------------- step 2


class SparkAggregates:
    """models.population's primitives over a Spark frame's column (finite values only)."""

    def __init__(self, frame: SparkFrame, columns: list[str]) -> None:
        from pyspark.sql import functions as F

        self._frame = frame
        aggregates = []
        for column in columns:
            aggregates += [
                F.count(self._finite(column)).alias(f"n{len(aggregates)}"),
                F.avg(self._finite(column)).alias(f"m{len(aggregates)}"),
            ]
        row = frame.agg(*aggregates).first() if columns else None
        self._count = {c: int(row[2 * i]) for i, c in enumerate(columns)} if row else {}
        self._mean = {c: row[2 * i + 1] for i, c in enumerate(columns)} if row else {}

    @staticmethod
    def _finite(column: str) -> Column:
        from pyspark.sql import functions as F

        value = F.col(f"`{INPUT_PREFIX}{column}`")
        finite = value.isNotNull() & ~F.isnan(value) & (F.abs(value) != float("inf"))
        return F.when(finite, value)

    def count(self, column: str) -> int:
        return self._count[column]

    def mean(self, column: str) -> float:
        value = self._mean[column]
        return math.nan if value is None else float(value)

    def smallest(self, column: str, ranks: list[int]) -> list[float]:
        from pyspark.sql import functions as F

        low, high = min(ranks), max(ranks)
        value = self._finite(column).alias("v")
        rows = (
            self._frame.select(value)
            .where(F.col("v").isNotNull())
            .orderBy("v")
            .offset(low - 1)
            .limit(high - low + 1)
            .collect()
        )
        ordered = [float(r["v"]) for r in rows]
        return [ordered[k - low] for k in ranks]


def shop_statistics(scored: SparkFrame, settings: SegmentSettings) -> Stats:
    """Every statistic the rules read, over all partitions."""
    needed = statistics_needed(settings)
    aggregates = SparkAggregates(scored, sorted({s.column for s in needed}))
    return Stats(known={s: evaluate(s, aggregates) for s in needed})


def _rules_part(
    part: pd.DataFrame,
    snapshot_columns: list[str],
    score_columns: list[str],
    settings: SegmentSettings,
    tiers: TierSettings,
    stats: Stats,
) -> pd.DataFrame:
    """Per row, each segment's rule and its ranking score as it sorts (missing = last)."""
    snapshot, scores = _split(part, snapshot_columns, score_columns)
    rules = segment_rules(snapshot, scores, settings, tiers, stats)
    columns = {"customer_id": scores["customer_id"].astype(object).to_numpy()}
    for name, (mask, rank_score) in rules.items():
        columns[f"{MASK_PREFIX}{name}"] = mask
        columns[f"{RANK_PREFIX}{name}"] = sortable(rank_score)
    return pd.DataFrame(columns)


def _cut(frame: SparkFrame, member: Column, segment: str, limit: int) -> BudgetCut | None:
    """The last row the budget keeps among `member` rows (None: every member fits)."""
    from pyspark.sql import functions as F

    members = frame.where(member)
    if members.count() <= limit:
        return None
    if limit <= 0:
        return KEEP_NONE
    rank = F.col(f"`{RANK_PREFIX}{segment}`")
    last = (
        members.orderBy(rank.desc(), F.col("customer_id").asc())
        .offset(limit - 1)
        .select(rank.alias("score"), "customer_id")
        .first()
    )
    return BudgetCut(float(last["score"]), last["customer_id"])


def _kept(member: Column, segment: str, cut: BudgetCut | None) -> Column:
    """models.population.within_cut as a Spark column."""
    from pyspark.sql import functions as F

    if cut is None:
        return member
    if cut == KEEP_NONE:
        return F.lit(False)
    rank = F.col(f"`{RANK_PREFIX}{segment}`")
    ahead = (rank > F.lit(cut.rank_score)) | (
        (rank == F.lit(cut.rank_score)) & (F.col("customer_id") <= F.lit(cut.customer_id))
    )
    return member & ahead


def budget_cuts(
    rules: SparkFrame, settings: SegmentSettings, scored: int
) -> dict[str, BudgetCut | None]:
    """Each segment's budget cut over the whole shop: suspected resellers first, then every
    other rule without them (models.segments.kept_members, on the cluster)."""
    from pyspark.sql import functions as F

    rules = rules.cache()
    try:
        rule = F.col(f"`{MASK_PREFIX}{RESELLERS}`")
        cuts = {RESELLERS: _cut(rules, rule, RESELLERS, segment_limit(RESELLERS, settings, scored))}
        reseller = _kept(rule, RESELLERS, cuts[RESELLERS])
        for name in SEGMENT_NAMES:
            if name == RESELLERS:
                continue
            member = F.col(f"`{MASK_PREFIX}{name}`") & ~reseller
            cuts[name] = _cut(rules, member, name, segment_limit(name, settings, scored))
        return cuts
    finally:
        rules.unpersist()


# ----------------------------------------------------------------------------- step 3


def _explained_part(
    part: pd.DataFrame,
    snapshot_columns: list[str],
    score_columns: list[str],
    models: dict[str, TargetModel],
    settings: SegmentSettings,
    tiers: TierSettings,
    currency: str,
    population: Population,
) -> Scored:
    """The core on one partition, with the whole shop's population."""
    snapshot, scores = _split(part, snapshot_columns, score_columns)
    return score_and_explain(snapshot, models, settings, tiers, currency, population, scores)


def _stacked(scored: Scored) -> pd.DataFrame:
    """A partition's scores rows (no `SEGMENT`) and every segment's member rows (`SEGMENT`
    = the segment) in one frame: one output of mapInPandas."""
    members = [m.assign(**{SEGMENT: name}) for name, m in scored.segments.items() if len(m)]
    return pd.concat([scored.scores, *members], ignore_index=True)


# ----------------------------------------------------------------------------- the pass


def score_and_explain_on_spark(
    spark: SparkSession,
    snapshot: SparkFrame | pd.DataFrame,
    models: dict[str, TargetModel],
    settings: SegmentSettings,
    tiers: TierSettings,
    currency: str,
) -> SparkScored:
    """models.scoring.score_and_explain for a snapshot on the cluster: the same scores,
    memberships, primary segments, reasons and ranked segments, computed per partition."""
    frame = snapshot if not isinstance(snapshot, pd.DataFrame) else to_spark_frame(spark, snapshot)
    from features.spark import to_pandas_features

    # a few rows with the dtypes of the snapshot on the driver: the output's reference
    sample = to_pandas_features(frame.limit(64))
    snapshot_columns = list(sample.columns)
    campaign_days = settings.holdout.campaign_days
    sample_scored = _scored_part(sample, models, tiers, campaign_days)
    score_columns = ["customer_id", "cutoff", "tier"] + [
        c for c in sample_scored if c not in snapshot_columns and not c.startswith(INPUT_PREFIX)
    ]
    scored_columns = list(sample_scored.columns)

    def step1(parts: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for part in parts:
            yield _conform(_scored_part(part, models, tiers, campaign_days), scored_columns)

    scored = frame.mapInPandas(step1, _schema(sample_scored)).cache()
    try:
        stats = shop_statistics(scored, settings)
        size = population_scored(stats)
        rules_sample = _rules_part(
            sample_scored, snapshot_columns, score_columns, settings, tiers, stats
        )

        def step2(parts: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            for part in parts:
                yield _rules_part(part, snapshot_columns, score_columns, settings, tiers, stats)

        rules = scored.mapInPandas(step2, _schema(rules_sample))
        population = Population(stats, cuts=budget_cuts(rules, settings, size), scored=size)
        core = (snapshot_columns, score_columns, models, settings, tiers, currency, population)
        example = _explained_part(sample_scored, *core)
        columns = _stacked_columns(example, score_columns, settings)

        def step3(parts: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            for part in parts:
                yield _conform(_stacked(_explained_part(part, *core)), columns)

        schema = _schema(_conform(_stacked(example), columns))
        stacked = scored.mapInPandas(step3, schema).cache()
        return _collect(stacked, example, score_columns, settings, population)
    finally:
        scored.unpersist()  # `stacked` is complete: the scores are not needed again


def _stacked_columns(
    example: Scored, score_columns: list[str], settings: SegmentSettings
) -> list[str]:
    """The stacked output's columns: the scores rows', then what only lists have."""
    columns = list(example.scores.columns)
    for name in SEGMENT_NAMES:
        listed = member_columns(name, score_columns, settings.reasons)
        columns += [c for c in listed if c not in columns]
    return [*columns, SEGMENT]


def to_spark_frame(spark: SparkSession, snapshot: pd.DataFrame) -> SparkFrame:
    """A snapshot on the driver as a Spark frame (the cluster's partitions of it)."""
    frame = _conform(snapshot, list(snapshot.columns))
    return spark.createDataFrame(frame, schema=_schema(frame))


def _collect(
    stacked: SparkFrame,
    example: Scored,
    score_columns: list[str],
    settings: SegmentSettings,
    population: Population,
) -> SparkScored:
    """The scores rows (on the driver and as a Spark frame) and every segment, ranked over
    the whole shop."""
    from pyspark.sql import functions as F

    from features.spark import collected

    rows = stacked.where(F.col(SEGMENT).isNull()).select(*example.scores.columns)
    # the snapshot's order (features are built sorted by customer and cutoff)
    scores = _like(collected(rows).sort_values(["customer_id", "cutoff"]), example.scores)
    members = collected(stacked.where(F.col(SEGMENT).isNotNull()))
    segments = {}
    for name in SEGMENT_NAMES:
        columns = member_columns(name, score_columns, settings.reasons)
        listed = members[members[SEGMENT] == name].drop(columns="rank")
        listed = ranked_members(listed[columns[1:]], "rank_score")
        segments[name] = _like(listed, example.segments[name])
    return SparkScored(Scored(scores=scores, segments=segments), rows, population, [stacked])


def _like(frame: pd.DataFrame, example: pd.DataFrame) -> pd.DataFrame:
    """A collected frame with the dtypes the core gives on the driver (`example`)."""
    frame = frame.reset_index(drop=True)
    for column in frame.columns:
        if column not in example:
            continue
        dtype = example[column].dtype
        complete = bool(frame[column].notna().all())
        text = isinstance(dtype, pd.StringDtype)
        if dtype.kind == "M" or (dtype.kind in "iub" and complete) or text:
            frame[column] = frame[column].astype(dtype)
        elif dtype.kind == "O":
            frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    return frame
