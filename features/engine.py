"""Which engine computes the features and labels: DuckDB on this machine (default) or Spark.

Both run the same definitions (features.snapshot's SQL; features.spark transpiles it), so the
choice changes where the work happens, never what is computed. This module imports neither
PySpark nor SQLGlot: the default DuckDB path stays as light as it was.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from features import snapshot
from features.schema import ShopTables
from features.snapshot import FeatureSettings, LabelSettings
from features.tiers import TierSettings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkFrame
    from pyspark.sql import SparkSession

EngineName = Literal["duckdb", "spark"]
ENGINES: tuple[str, ...] = ("duckdb", "spark")
FeatureTable = Literal["customers", "orders", "order_items", "content_views"]
MASTER_SCHEMES = ("local", "spark://", "yarn", "k8s://", "sc://", "mesos://")


class SparkSettings(BaseModel):
    """The `spark:` section: the cluster to run on, settings passed to it, where it reads.

    `master`: `local[*]` (this machine), `spark://host:7077`, `yarn`, `k8s://https://...`, or a
    Spark Connect server `sc://host:15002`. `conf`: any Spark settings, passed through as they
    are (e.g. spark.executor.memory). `tables`: per contract table a Parquet path (local,
    hdfs://, s3a://, abfss://...) or a catalogue table name (db.table) holding the contract's
    columns; a table not listed here is read by the `data:` section's loader (validated) and
    handed to Spark. `training_sample_customers`: how many customers' rows (all their
    cutoffs) come to the driver for LightGBM; none = all. `export_path`: where score runs
    also write their rows as Parquet partitions.
    """

    model_config = ConfigDict(extra="forbid")

    master: str = "local[*]"
    conf: dict[str, str] = Field(default_factory=dict)
    tables: dict[FeatureTable, str] = Field(default_factory=dict)
    training_sample_customers: int | None = Field(None, gt=0)
    sample_seed: int = 0
    # a Parquet dataset on the cluster's file system that every Spark score run adds its
    # scored rows to, partitioned by cutoff date and primary segment (none: the export
    # folder only); relative paths resolve against the config's folder
    export_path: str | None = None

    @field_validator("master")
    @classmethod
    def _known_master(cls, value: str) -> str:
        if not value.startswith(MASTER_SCHEMES):
            raise ValueError(
                f"spark.master {value!r}: expected local[*], spark://, yarn, k8s:// or sc://"
            )
        return value

    @field_validator("conf", mode="before")
    @classmethod
    def _text_values(cls, value: object) -> object:
        # YAML reads `spark.sql.shuffle.partitions: 8` as a number; Spark wants text
        if isinstance(value, Mapping):
            return {
                str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()
            }
        return value


@contextmanager
def spark_for(settings: SparkSettings) -> Iterator[SparkSession]:
    """The Spark session of a run: an active one when the caller already has it (tests, a
    notebook on the cluster), else one from the settings, stopped afterwards."""
    from features.spark import require_spark, spark_session

    require_spark()
    active = running_session()
    if active is not None:
        yield active
        return
    with spark_session(settings.master, settings.conf) as spark:
        yield spark


def running_session() -> SparkSession | None:
    """The process's Spark session if one is running. getActiveSession is per thread, and
    Prefect runs tasks in worker threads, so the process-wide default session counts too."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is None:
        active = getattr(SparkSession, "_instantiatedSession", None)
    return active


def _frames(spark: SparkSession, tables: ShopTables, settings: SparkSettings, base_dir: Path):
    from features.spark import frames_from_pandas, frames_from_sources

    frames = frames_from_pandas(
        spark, ShopTables(**{**tables.present(), **dict.fromkeys(settings.tables)})
    )
    frames.update(frames_from_sources(spark, settings.tables, base_dir))
    return frames


def build_features(
    tables: ShopTables,
    cutoffs: Sequence[datetime],
    features: FeatureSettings,
    tiers: TierSettings,
    engine: EngineName = "duckdb",
    spark: SparkSettings | None = None,
    base_dir: Path = Path("."),
) -> pd.DataFrame:
    """features.snapshot.build_features on the chosen engine (same frame either way)."""
    if engine == "duckdb":
        return snapshot.build_features(tables, cutoffs, features, tiers)
    from features import spark as on_spark

    settings = spark or SparkSettings()
    with spark_for(settings) as session:
        frames = _frames(session, tables, settings, base_dir)
        return on_spark.build_features(session, frames, cutoffs, features, tiers)


def training_frame(
    tables: ShopTables,
    cutoffs: Sequence[datetime],
    features: FeatureSettings,
    labels: LabelSettings,
    tiers: TierSettings,
    engine: EngineName = "duckdb",
    spark: SparkSettings | None = None,
    base_dir: Path = Path("."),
    value_horizon_days: int | None = None,
) -> pd.DataFrame:
    """features.snapshot.training_frame on the chosen engine; on Spark only a sample of the
    customers (spark.training_sample_customers) comes to the driver when one is set."""
    if engine == "duckdb":
        return snapshot.training_frame(tables, cutoffs, features, labels, tiers, value_horizon_days)
    from features import spark as on_spark

    settings = spark or SparkSettings()
    with spark_for(settings) as session:
        frames = _frames(session, tables, settings, base_dir)
        return on_spark.training_frame(
            session,
            frames,
            cutoffs,
            features,
            labels,
            tiers,
            sample_customers=settings.training_sample_customers,
            seed=settings.sample_seed,
            value_horizon_days=value_horizon_days,
        )


PARTITIONS = ("cutoff_date", "primary_segment")
NO_SEGMENT = "none"


def write_scored_partitions(rows: SparkFrame, settings: SparkSettings, base_dir: Path) -> str:
    """The scored rows (models.scoring's scores, as the cluster scored them:
    models.spark_scoring) added to the Parquet dataset at spark.export_path, partitioned by
    cutoff date and primary segment; a re-run at the same cutoff replaces that cutoff's
    partitions only. Returns the dataset's path."""
    from pyspark.sql import functions as F

    if settings.export_path is None:
        raise ValueError("spark.export_path is not set")
    path = settings.export_path
    if "://" not in path:
        path = str((base_dir / path).resolve())
    rows = rows.withColumn("cutoff_date", F.date_format("cutoff", "yyyy-MM-dd")).withColumn(
        "primary_segment", F.coalesce(F.col("primary_segment"), F.lit(NO_SEGMENT))
    )
    rows.sparkSession.conf.set("spark.sql.sources.partitionOverwriteMode", "dynamic")
    rows.write.mode("overwrite").partitionBy(*PARTITIONS).parquet(path)
    return path
