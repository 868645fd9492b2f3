"""The feature and label definitions of features.snapshot, run on Apache Spark.

One definition, two engines: the DuckDB SQL that features.snapshot builds is transpiled to
Spark SQL with SQLGlot at run time (`to_spark_sql`), so a feature added to the DuckDB SQL runs
on Spark with no second copy. The per-cutoff ratios and tiers (`finish_features`) are the same
pandas code, run per cutoff on the cluster with applyInPandas. PySpark and SQLGlot are the
optional `spark` dependency group: nothing here is imported on the default DuckDB path.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from features.schema import SCHEMAS, ShopTables
from features.snapshot import (
    KEYS,
    FeatureSettings,
    LabelSettings,
    attach_labels,
    features_sql,
    finish_features,
    labels_sql,
)
from features.tiers import TierSettings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkFrame
    from pyspark.sql import SparkSession

FEATURE_TABLES = ("customers", "orders", "order_items", "content_views")
# Naive shop-local timestamps stay as they are when Spark's session zone is UTC (no shift
# on the way in from pandas or out to it).
BASE_CONF = {
    "spark.ui.enabled": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.catalogImplementation": "in-memory",
    "spark.ui.showConsoleProgress": "false",
    # pandas writes nanosecond timestamps, which Spark cannot read as timestamps: read them
    # as integers and convert (frames_from_sources)
    "spark.sql.legacy.parquet.nanosAsLong": "true",
}


class SparkUnavailableError(RuntimeError):
    """engine: spark without the `spark` dependency group (PySpark, SQLGlot) or Java."""


def require_spark() -> None:
    """Fail with one clear message when the optional Spark stack is not installed."""
    try:
        import pyspark  # noqa: F401
        import sqlglot  # noqa: F401
    except ImportError as exc:
        raise SparkUnavailableError(
            "engine spark needs the `spark` dependency group: make .venv/.synced-spark "
            f"(uv sync --group spark); missing {exc.name}"
        ) from exc
    if shutil.which("java") is None and not _java_home():
        raise SparkUnavailableError("engine spark needs Java 17+ (`java` on PATH or JAVA_HOME)")


def _java_home() -> str | None:
    return os.environ.get("JAVA_HOME") or None


# ----------------------------------------------------------------------------- the session


@contextmanager
def spark_session(
    master: str = "local[*]", conf: Mapping[str, str] | None = None, app_name: str = "dangol"
) -> Iterator[SparkSession]:
    """A Spark session for one run: the configured master (local[*], spark://, yarn, k8s://)
    or a Spark Connect server (sc://). Local scratch space and the warehouse live in a temp
    folder removed afterwards, so a run leaves nothing in the working directory."""
    require_spark()
    from pyspark.sql import SparkSession

    scratch = Path(tempfile.mkdtemp(prefix="dangol-spark-"))
    settings = {
        **BASE_CONF,
        "spark.local.dir": str(scratch / "local"),
        "spark.sql.warehouse.dir": str(scratch / "warehouse"),
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={scratch / 'derby'}",
        **(conf or {}),
    }
    builder = SparkSession.builder.appName(app_name)
    if master.startswith("sc://"):
        builder = builder.remote(master)
        # a Connect server owns its own session settings; pass only the SQL ones
        settings = {k: v for k, v in settings.items() if k.startswith("spark.sql.")}
        settings.pop("spark.sql.catalogImplementation", None)
        settings.pop("spark.sql.warehouse.dir", None)
    else:
        builder = builder.master(master)
        if master.startswith("local"):
            # local Python workers run this interpreter (a cluster's come from its conf)
            settings.setdefault("spark.pyspark.python", sys.executable)
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    try:
        yield spark
    finally:
        spark.stop()
        shutil.rmtree(scratch, ignore_errors=True)


# ----------------------------------------------------------------------------- the dialect


@lru_cache(maxsize=64)
def to_spark_sql(duckdb_sql: str) -> str:
    """The DuckDB statement in Spark SQL: SQLGlot's transpiler plus the dialect fixes below."""
    import sqlglot

    tree = sqlglot.parse_one(duckdb_sql, read="duckdb")
    tree = tree.transform(_median_as_duckdb)
    tree = tree.transform(_seconds_between_as_duckdb)
    tree = tree.transform(_decimal_literal_as_double)
    tree = tree.transform(_tuple_as_struct)
    return tree.sql(dialect="spark")


# DuckDB's median of an even count is (lo + hi) / 2; Spark's is lo + (hi - lo) * 0.5, which
# differs in the last bit about one time in ten. The two middle values of the sorted list,
# averaged the DuckDB way, keep medians exact (NULLs dropped as by median; none: NULL).
_MEDIAN = (
    "(GET(ARRAY_SORT(COLLECT_LIST(x)), (SIZE(COLLECT_LIST(x)) - 1) DIV 2)"
    " + GET(ARRAY_SORT(COLLECT_LIST(x)), SIZE(COLLECT_LIST(x)) DIV 2)) / 2"
)


def _median_as_duckdb(node):
    """median(x) -> the DuckDB average of the two middle values (see _MEDIAN)."""
    import sqlglot
    from sqlglot import exp

    if not isinstance(node, exp.Median):
        return node
    template = sqlglot.parse_one(_MEDIAN, read="spark")
    argument = node.this

    def substitute(part):
        if isinstance(part, exp.Column) and part.name == "x" and not part.table:
            return argument.copy()
        return part

    return exp.Paren(this=template.transform(substitute))


def _seconds_between_as_duckdb(node):
    """date_diff('second', a, b) counts second boundaries crossed in DuckDB (0.9 s -> 1.1 s
    is 1) but whole elapsed seconds in Spark's timestampdiff (0): whole seconds since 1970
    subtracted keep DuckDB's meaning for data with sub-second times."""
    from sqlglot import exp

    if not isinstance(node, exp.DateDiff) or node.text("unit").upper() != "SECOND":
        return node
    later = exp.Anonymous(this="UNIX_SECONDS", expressions=[node.this.copy()])
    earlier = exp.Anonymous(this="UNIX_SECONDS", expressions=[node.expression.copy()])
    return exp.Paren(this=exp.Sub(this=later, expression=earlier))


def _decimal_literal_as_double(node):
    """`86400.0` is a DOUBLE in DuckDB arithmetic (its `/` always divides in floating point)
    but an exact DECIMAL(6,1) in Spark, whose decimal division rounds to 6 places: a fix so
    that day counts and shares keep full double precision."""
    from sqlglot import exp

    if isinstance(node, exp.Literal) and not node.is_string:
        text = node.this
        if "." in text and "e" not in text.lower():
            return exp.Cast(this=node.copy(), to=exp.DataType.build("double"))
    return node


def _tuple_as_struct(node):
    """DuckDB orders by a row value `(a, b)` (e.g. arg_max's tie-break); Spark needs an
    explicit struct for that, which compares field by field the same way."""
    from sqlglot import exp

    if isinstance(node, exp.Tuple) and isinstance(node.parent, exp.ArgMax | exp.ArgMin):
        return exp.Struct(expressions=[e.copy() for e in node.expressions])
    return node


# ----------------------------------------------------------------------------- inputs


def frames_from_pandas(spark: SparkSession, tables: ShopTables) -> dict[str, SparkFrame]:
    """The contract tables the features read, as Spark frames (from validated pandas tables)."""
    out = {}
    for name, frame in tables.present().items():
        if name in FEATURE_TABLES:
            out[name] = _from_pandas(spark, frame, name)
    return out


def _from_pandas(spark: SparkSession, frame: pd.DataFrame, name: str) -> SparkFrame:
    from pyspark.sql import types as T

    fields = []
    schema = SCHEMAS[name].columns
    columns = [c for c in frame.columns if c in schema]
    kinds = {"string": T.StringType(), "datetime64[ns]": T.TimestampType()}
    for column in columns:
        fields.append(T.StructField(column, kinds.get(schema[column], T.DoubleType()), True))
    plain = frame[columns].copy()
    for column in columns:
        if schema[column] == "string":
            plain[column] = plain[column].astype(object).where(plain[column].notna(), None)
    return spark.createDataFrame(plain, schema=T.StructType(fields))


def frames_from_sources(
    spark: SparkSession, sources: Mapping[str, str], base_dir: Path
) -> dict[str, SparkFrame]:
    """Contract tables read in place: a Parquet path (local, hdfs://, s3a://, abfss://, ...)
    or a catalogue table name (db.table). The files must already hold the contract's
    columns and types (the DuckDB loader's mapping and row checks do not run here)."""

    out = {}
    for name, source in sources.items():
        if name not in FEATURE_TABLES:
            continue
        if _is_path(source):
            path = source if "://" in source else str((base_dir / source).resolve())
            frame = spark.read.parquet(path)
        else:
            frame = spark.table(source)
        schema = SCHEMAS[name].columns
        wanted = [c for c in schema if c in frame.columns]
        out[name] = frame.select(*[_contract_column(frame, c, schema[c]) for c in wanted])
    return out


def _contract_column(frame: SparkFrame, column: str, dtype: str):
    """One column in the contract's type: ids as text, money and counts as doubles, times
    as timestamps (integer times are the nanoseconds since 1970 that pandas writes)."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    value = F.col(column)
    if dtype == "string":
        return value.cast("string").alias(column)
    if dtype != "datetime64[ns]":
        return value.cast("double").alias(column)
    if isinstance(frame.schema[column].dataType, T.LongType | T.IntegerType):
        return F.timestamp_micros(F.expr(f"`{column}` DIV 1000")).alias(column)
    return value.cast("timestamp").alias(column)


def _is_path(source: str) -> bool:
    return "/" in source or source.endswith((".parquet", ".pq")) or "://" in source


def _register(spark: SparkSession, frames: Mapping[str, SparkFrame], cutoffs) -> set[str]:
    for name, frame in frames.items():
        frame.createOrReplaceTempView(name)
    when = pd.DataFrame({"cutoff": pd.to_datetime(sorted(set(cutoffs))).astype("datetime64[ns]")})
    from pyspark.sql import types as T

    schema = T.StructType([T.StructField("cutoff", T.TimestampType(), False)])
    spark.createDataFrame(when, schema=schema).createOrReplaceTempView("cutoffs")
    return set(frames)


# ----------------------------------------------------------------------------- features


def feature_frame(
    spark: SparkSession,
    frames: Mapping[str, SparkFrame],
    cutoffs: Sequence[datetime],
    features: FeatureSettings,
    tiers: TierSettings,
) -> SparkFrame:
    """Every feature per (customer, cutoff) as a Spark frame: the DuckDB aggregation SQL
    transpiled, then the ratios and tiers of finish_features per cutoff (applyInPandas: every
    statistic there is one cutoff's, e.g. the peers' median gap and quantile tier lines)."""
    present = _register(spark, frames, cutoffs)
    aggregated = spark.sql(to_spark_sql(features_sql(present, features, tiers)))
    schema = _finished_schema(aggregated, tiers)

    def finish(part: pd.DataFrame) -> pd.DataFrame:
        out = finish_features(part, tiers)
        return out.astype({"customer_id": object})

    return aggregated.groupBy("cutoff").applyInPandas(finish, schema=schema)


def _finished_schema(aggregated: SparkFrame, tiers: TierSettings):
    """The output schema of finish_features, found by running it on an empty frame."""
    from pyspark.sql import types as T

    finished = finish_features(collected(aggregated.limit(0)), tiers)
    # an empty collect may not carry the cutoff's time type
    return spark_schema(finished, lambda c: T.TimestampType() if c == "cutoff" else None)


def spark_type(dtype):
    """The Spark type a pandas column of this dtype is stored as."""
    from pyspark.sql import types as T

    kinds = {"b": T.BooleanType, "M": T.TimestampType, "i": T.LongType, "u": T.LongType}
    kinds["f"] = T.DoubleType
    return kinds.get(dtype.kind, T.StringType)()


def spark_schema(frame: pd.DataFrame, type_of: Callable[[str], object] | None = None):
    """A pandas frame's columns as a Spark schema: `type_of(column)` where it names a type
    (columns a partition may leave empty), else by dtype (`spark_type`)."""
    from pyspark.sql import types as T

    fields = []
    for column, dtype in frame.dtypes.items():
        kind = (type_of(str(column)) if type_of else None) or spark_type(dtype)
        fields.append(T.StructField(str(column), kind, True))
    return T.StructType(fields)


def collected(frame: SparkFrame) -> pd.DataFrame:
    """A Spark frame on the driver as plain pandas. Spark Connect puts its query metrics in
    `DataFrame.attrs`, which pandas then fails to write into Parquet metadata: drop them."""
    out = frame.toPandas()
    out.attrs.clear()
    return out


def to_pandas_features(frame: SparkFrame) -> pd.DataFrame:
    """A Spark feature frame on the driver with the DuckDB engine's dtypes and order: counts
    as nullable Int64 (DuckDB's COUNT after the outer joins), the tier as int64."""
    from pyspark.sql import types as T

    out = collected(frame)
    counts = [f.name for f in frame.schema.fields if isinstance(f.dataType, T.LongType)]
    out = out.astype({c: "Int64" for c in counts if c != "tier"})
    out["customer_id"] = out["customer_id"].astype("string")
    out["cutoff"] = out["cutoff"].astype("datetime64[ns]")
    out["tier"] = out["tier"].astype("int64")
    return out.sort_values(KEYS, ignore_index=True)


def build_features(
    spark: SparkSession,
    frames: Mapping[str, SparkFrame],
    cutoffs: Sequence[datetime],
    features: FeatureSettings,
    tiers: TierSettings,
) -> pd.DataFrame:
    """features.snapshot.build_features, computed on Spark (same rows, columns and dtypes)."""
    return to_pandas_features(feature_frame(spark, frames, cutoffs, features, tiers))


def label_frame(
    spark: SparkSession,
    frames: Mapping[str, SparkFrame],
    cutoffs: Sequence[datetime],
    labels: LabelSettings,
    tiers: TierSettings,
    value_horizon_days: int | None = None,
) -> SparkFrame:
    """The outcome rows of features.snapshot.build_labels as a Spark frame."""
    _register(spark, frames, cutoffs)
    return spark.sql(to_spark_sql(labels_sql(labels, tiers, value_horizon_days)))


def to_pandas_labels(frame: SparkFrame) -> pd.DataFrame:
    out = collected(frame)
    out["customer_id"] = out["customer_id"].astype("string")
    out["cutoff"] = out["cutoff"].astype("datetime64[ns]")
    return out


def build_labels(
    spark: SparkSession,
    frames: Mapping[str, SparkFrame],
    cutoffs: Sequence[datetime],
    labels: LabelSettings,
    tiers: TierSettings,
    value_horizon_days: int | None = None,
) -> pd.DataFrame:
    """features.snapshot.build_labels on Spark: outcome rows per (customer, cutoff)."""
    frame = label_frame(spark, frames, cutoffs, labels, tiers, value_horizon_days)
    return to_pandas_labels(frame)


SAMPLE_BUCKETS = 1_000_000


def sampled_customers(frame: SparkFrame, customers: int | None, seed: int = 0) -> SparkFrame:
    """About `customers` customers' rows, every cutoff of each (a customer-level sample: a
    customer is in or out as a whole, chosen by a seeded hash of the id, so features and
    labels pick the same people and a re-run picks the same sample). None: every row."""
    if customers is None:
        return frame
    from pyspark.sql import functions as F

    total = frame.select("customer_id").distinct().count()
    if total <= customers:
        return frame
    keep = int(SAMPLE_BUCKETS * customers / total)
    bucket = F.pmod(F.xxhash64(F.col("customer_id"), F.lit(seed)), F.lit(SAMPLE_BUCKETS))
    return frame.where(bucket < keep)


def training_frame(
    spark: SparkSession,
    frames: Mapping[str, SparkFrame],
    cutoffs: Sequence[datetime],
    features: FeatureSettings,
    labels: LabelSettings,
    tiers: TierSettings,
    sample_customers: int | None = None,
    seed: int = 0,
    value_horizon_days: int | None = None,
) -> pd.DataFrame:
    """features.snapshot.training_frame on Spark: the features and labels stacked over the
    cutoffs, labelled by the same attach_labels on the driver. With `sample_customers`, only
    a customer-level sample comes to the driver; the per-cutoff statistics (peers' gap, tier
    lines) are still those of every customer, computed before sampling."""
    frame = feature_frame(spark, frames, cutoffs, features, tiers)
    outcomes = label_frame(spark, frames, cutoffs, labels, tiers, value_horizon_days)
    if sample_customers is None:
        return attach_labels(to_pandas_features(frame), to_pandas_labels(outcomes), tiers)
    cached = frame.cache()  # counted for the sample's share, then filtered: compute once
    try:
        frame = sampled_customers(cached, sample_customers, seed)
        outcomes = outcomes.join(frame.select(*KEYS), on=KEYS, how="left_semi")
        return attach_labels(to_pandas_features(frame), to_pandas_labels(outcomes), tiers)
    finally:
        cached.unpersist()
