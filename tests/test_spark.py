"""The Spark engine against DuckDB: the same features, labels, file and exports.

One local Spark (local[2]) for the whole module (starting one costs ~10 s); every flow and
command below finds it running and uses it. Parity means every column equal: exact for
counts, ids, dates, tiers and medians, within 1e-9 (relative) for sums and means, whose
floating-point order of addition differs between the engines.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pyspark")
pytest.importorskip("sqlglot")

from features import snapshot  # noqa: E402
from features import spark as on_spark  # noqa: E402
from features.schema import ShopTables  # noqa: E402
from features.snapshot import KEYS, FeatureSettings, LabelSettings  # noqa: E402
from features.synthetic import generate_shop  # noqa: E402
from features.tiers import TierSettings  # noqa: E402
from tests.test_features_oracle import (  # noqa: E402
    SETTINGS,
    TIERS,
    _compare,
    oracle,
    random_cutoffs,
    random_shop,
)

# PySpark 4.3 warns that it is not yet tested with pandas 3; the parity tests below are
# what says whether the results are right
pytestmark = pytest.mark.filterwarnings("ignore:PySpark does not yet fully support:FutureWarning")

EXACT_KINDS = ("median_", "orders_", "views_", "tier", "high_price_views", "max_")


@pytest.fixture(scope="module")
def spark() -> Iterator[object]:
    """local[2] with few shuffle partitions (the data is tiny); scratch space in a temp dir
    that the session removes, nothing in the working directory."""
    before = set(os.listdir("."))
    conf = {"spark.sql.shuffle.partitions": "4", "spark.default.parallelism": "2"}
    with on_spark.spark_session("local[2]", conf) as session:
        yield session
    assert not {"metastore_db", "spark-warehouse", "derby.log"} & (set(os.listdir(".")) - before)


def assert_same_frame(engine: pd.DataFrame, reference: pd.DataFrame) -> None:
    """Same rows, columns, dtypes; exact where the value is a count, id, date, tier or
    median, 1e-9 relative elsewhere."""
    assert list(engine.columns) == list(reference.columns)
    assert engine.dtypes.equals(reference.dtypes), (engine.dtypes, reference.dtypes)
    assert len(engine) == len(reference)
    for column in reference.columns:
        left, right = engine[column], reference[column]
        if left.dtype.kind not in "fi" and str(left.dtype) not in ("Int64", "Float64"):
            assert left.astype(str).tolist() == right.astype(str).tolist(), column
            continue
        a = left.to_numpy("float64", na_value=np.nan)
        b = right.to_numpy("float64", na_value=np.nan)
        assert np.array_equal(np.isnan(a), np.isnan(b)), column
        if column.startswith(EXACT_KINDS):
            assert np.array_equal(a, b, equal_nan=True), column
        else:
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=column)


def test_the_dialect_fixes() -> None:
    """SQLGlot's output gets two fixes: decimal literals divide as doubles (Spark would
    round a DECIMAL quotient to 6 places), and arg_max's row-value tie-break is a struct."""
    sql = on_spark.to_spark_sql(
        "SELECT arg_max(price, (viewed_at, price)) AS p, count(*) / 86400.0 AS d FROM v"
    )
    assert "MAX_BY(price, STRUCT(viewed_at, price))" in sql
    assert "CAST(86400.0 AS DOUBLE)" in sql
    assert "MEDIAN" not in on_spark.to_spark_sql("SELECT median(o.amount) FROM o")


def test_the_dialect_fixes_matter(spark) -> None:
    """Without the fixes Spark really differs: a DECIMAL quotient loses precision, and its
    median of two values is not DuckDB's (a + b) / 2 in the last bit."""
    raw = spark.sql("SELECT 1 / 3.0 AS x").collect()[0]["x"]
    fixed = spark.sql(on_spark.to_spark_sql("SELECT 1 / 3.0 AS x")).collect()[0]["x"]
    assert float(raw) != 1 / 3
    assert fixed == 1 / 3
    a, b = 0.6011877226790624, 39.17035541108591
    duck = (a + b) / 2
    assert a + (b - a) * 0.5 != duck  # Spark's interpolation
    values = f"VALUES (CAST({a!r} AS DOUBLE)), (CAST({b!r} AS DOUBLE)), (NULL) AS t(x)"
    sql = f"SELECT median(x) AS m FROM ({values})"
    assert spark.sql(sql).collect()[0]["m"] != duck
    assert spark.sql(on_spark.to_spark_sql(sql)).collect()[0]["m"] == duck
    none = "SELECT median(x) AS m FROM (VALUES (CAST(NULL AS DOUBLE))) AS t(x)"
    assert spark.sql(on_spark.to_spark_sql(none)).collect()[0]["m"] is None
    # seconds between 0.9 s and 1.1 s past a minute: DuckDB counts the boundary crossed
    times = "TIMESTAMP '2025-01-01 00:00:00.9', TIMESTAMP '2025-01-01 00:00:01.1'"
    assert spark.sql(f"SELECT timestampdiff(SECOND, {times}) AS s").collect()[0]["s"] == 0
    seconds = on_spark.to_spark_sql(f"SELECT date_diff('second', {times}) AS s")
    assert spark.sql(seconds).collect()[0]["s"] == 1


def test_training_frame_equals_duckdb_at_several_cutoffs(spark) -> None:
    """Synthetic shop, four cutoffs (one mid-day): features, labels, dtypes all equal."""
    tables = generate_shop(300, 5)
    cutoffs = [
        pd.Timestamp("2024-09-01"),
        pd.Timestamp("2025-03-01"),
        pd.Timestamp("2025-07-17 13:30"),
        pd.Timestamp("2025-10-01"),
    ]
    features, labels, tiers = FeatureSettings(), LabelSettings(), TierSettings()
    frames = on_spark.frames_from_pandas(spark, tables)
    engine = on_spark.training_frame(spark, frames, cutoffs, features, labels, tiers)
    reference = snapshot.training_frame(tables, cutoffs, features, labels, tiers)
    assert engine["cutoff"].nunique() == 4 and len(engine) > 500
    assert_same_frame(engine, reference)


def test_quantile_tiers_and_other_windows_equal_duckdb(spark) -> None:
    """Per-cutoff statistics (quantile tier lines, peers' gap) on Spark too."""
    tables = generate_shop(250, 9)
    cutoffs = [pd.Timestamp("2025-02-01"), pd.Timestamp("2025-11-01")]
    features = FeatureSettings(windows_days=[14, 60], high_price_line=300_000)
    tiers = TierSettings(basis="quantile", quantiles=[0.95, 0.8, 0.5, 0.2])
    frames = on_spark.frames_from_pandas(spark, tables)
    engine = on_spark.build_features(spark, frames, cutoffs, features, tiers)
    reference = snapshot.build_features(tables, cutoffs, features, tiers)
    assert_same_frame(engine, reference)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_spark_matches_the_oracle_at_many_random_cutoffs(spark, seed: int) -> None:
    """The brute-force oracle of tests/test_features_oracle.py, against Spark."""
    tables = random_shop(seed)
    cutoffs = random_cutoffs(tables, seed, 120)
    frames = on_spark.frames_from_pandas(spark, tables)
    engine = on_spark.build_features(spark, frames, cutoffs, SETTINGS, TIERS)
    assert len(engine) > 1000
    _compare(engine, oracle(tables, cutoffs, SETTINGS, TIERS))


def test_spark_matches_the_oracle_without_optional_tables(spark) -> None:
    full = random_shop(4)
    cutoffs = random_cutoffs(full, 4, 40)
    for dropped in ("content_views", "order_items", "customers"):
        tables = ShopTables(**{**full.present(), dropped: None})
        frames = on_spark.frames_from_pandas(spark, tables)
        engine = on_spark.build_features(spark, frames, cutoffs, SETTINGS, TIERS)
        _compare(engine, oracle(tables, cutoffs, SETTINGS, TIERS))


def test_customer_sample_keeps_whole_customers(spark) -> None:
    """A sample takes every cutoff of a customer or none, about the asked size, and the
    kept rows are exactly the full frame's rows."""
    tables = generate_shop(400, 5)
    cutoffs = [pd.Timestamp("2025-03-01"), pd.Timestamp("2025-09-01")]
    args = (cutoffs, FeatureSettings(), LabelSettings(), TierSettings())
    frames = on_spark.frames_from_pandas(spark, tables)
    sample = on_spark.training_frame(spark, frames, *args, sample_customers=100, seed=3)
    full = on_spark.training_frame(spark, frames, *args)
    customers = sample["customer_id"].nunique()
    assert 60 <= customers <= 140
    per_customer = full[full["customer_id"].isin(sample["customer_id"])]
    assert len(per_customer) == len(sample)
    kept = per_customer.sort_values(KEYS, ignore_index=True)
    assert_same_frame(sample.sort_values(KEYS, ignore_index=True), kept)


def _project(tmp_path: Path, customers: int = 600) -> Path:
    from tests.projects import write_project

    return write_project(tmp_path / "project", customers=customers)


def test_features_command_writes_the_same_file(spark, tmp_path: Path) -> None:
    from flows.cli import main

    config = str(_project(tmp_path, customers=300))
    outputs = {}
    for engine in ("duckdb", "spark"):
        out = tmp_path / f"{engine}.parquet"
        args = ["features", "--config", config, "--cutoffs", "2025-04-01,2025-12-01"]
        assert main([*args, "--out", str(out), "--engine", engine]) == 0
        outputs[engine] = pd.read_parquet(out)
    assert_same_frame(outputs["spark"], outputs["duckdb"])
    # Spark reading the Parquet files itself (as on a cluster), not the loader's tables
    shop = {name: f"shop/{name}.parquet" for name in ("customers", "orders", "order_items")}
    shop["content_views"] = "shop/content_views.parquet"
    with open(config, "a") as handle:
        handle.write(f"spark: {{tables: {shop}}}\n")
    out = tmp_path / "from_files.parquet"
    assert main([*args, "--out", str(out), "--engine", "spark"]) == 0
    assert_same_frame(pd.read_parquet(out), outputs["duckdb"])
    latest = tmp_path / "latest.parquet"
    assert main(["features", "--config", config, "--out", str(latest), "--engine", "spark"]) == 0
    assert pd.read_parquet(latest)["cutoff"].nunique() == 1


def test_a_missing_engine_is_one_clear_error(tmp_path: Path, capsys) -> None:
    from flows.cli import main

    config = _project(tmp_path, customers=50)
    config.write_text(config.read_text() + "spark: {master: 'mainframe://x'}\n")
    assert main(["features", "--config", str(config), "--out", str(tmp_path / "x.parquet")]) == 2
    assert "spark.master" in capsys.readouterr().err


def _same_export(spark_dir: Path, duckdb_dir: Path) -> None:
    names = sorted(p.name for p in duckdb_dir.glob("segment_*.csv"))
    assert names == sorted(p.name for p in spark_dir.glob("segment_*.csv"))
    assert any(len(pd.read_csv(duckdb_dir / n)) for n in names)
    for name in names:
        a = pd.read_csv(spark_dir / name, encoding="utf-8-sig")
        b = pd.read_csv(duckdb_dir / name, encoding="utf-8-sig")
        assert list(a.columns) == list(b.columns), name
        assert a["customer_id"].tolist() == b["customer_id"].tolist(), name
        reasons = [c for c in b.columns if c.startswith("reason_")]
        assert a[reasons].fillna("").equals(b[reasons].fillna("")), name
        numbers = b.select_dtypes("number").columns
        np.testing.assert_allclose(a[numbers], b[numbers], rtol=1e-9, err_msg=name)
    a = pd.read_parquet(spark_dir / "scores.parquet")
    b = pd.read_parquet(duckdb_dir / "scores.parquet")
    text = [c for c in b.columns if b[c].dtype == object or str(b[c].dtype) == "string"]
    assert a[text].astype(str).equals(b[text].astype(str))


@pytest.mark.slow
@pytest.mark.integration
def test_flows_retrain_and_score_on_spark(spark, tmp_path: Path, prefect_harness) -> None:
    """The unchanged Prefect flows with engine spark: the retrain flow trains on a training
    frame computed on Spark and publishes the live release; for that release the score
    flow on Spark writes the segments and reasons that scoring on DuckDB writes."""
    from flows.config import load_config
    from flows.retrain import retrain_flow
    from flows.score import score_flow
    from tests.projects import score

    path = _project(tmp_path, customers=3000)
    path.write_text(path.read_text() + "spark: {export_path: lake/scores}\n")
    trained = retrain_flow(str(path), engine="spark")
    assert trained.promoted and {t.target for t in trained.targets}
    duckdb_dir = score(load_config(path), datetime(2026, 1, 2, 6, 0, 0))
    outcome = score_flow(str(path), engine="spark")
    assert outcome.customers == len(pd.read_parquet(duckdb_dir / "scores.parquet"))
    _same_export(outcome.export_dir, duckdb_dir)
    # the same rows as Parquet partitions by cutoff date and primary segment
    lake = path.parent / "lake" / "scores"
    cutoff_dirs = list(lake.glob("cutoff_date=*"))
    assert [d.name for d in cutoff_dirs] == [f"cutoff_date={outcome.cutoff}"]
    segments = {d.name.split("=", 1)[1] for d in cutoff_dirs[0].glob("primary_segment=*")}
    assert segments - {"none"} and segments - {"none"} <= set(outcome.segment_sizes)
    partitioned = pd.read_parquet(lake)
    assert len(partitioned) == outcome.customers


@pytest.mark.slow
@pytest.mark.parametrize(("partitions", "max_share"), [(1, None), (5, 0.03)])
def test_scoring_per_partition_equals_the_core_in_memory(
    spark, scoring_case, partitions: int, max_share: float | None
) -> None:
    """The one core run per partition with the shop-wide population gives the scores,
    memberships, primary segments, reasons and ranked lists of the core over the whole
    snapshot in memory, budgets cut over the whole shop included."""
    from models.scoring import score_and_explain
    from models.spark_scoring import score_and_explain_on_spark, to_spark_frame

    models, snapshot, config = scoring_case
    settings = config.segments
    if max_share is not None:
        settings = settings.model_copy(update={"max_share": max_share})
    args = (models, settings, config.tiers, config.data.currency)
    local = score_and_explain(snapshot, *args)
    frame = to_spark_frame(spark, snapshot).repartition(partitions)
    distributed = score_and_explain_on_spark(spark, frame, *args)
    on_spark = distributed.scored
    assert {"repurchase", "first_purchase"} <= set(models), set(models)
    pd.testing.assert_frame_equal(on_spark.scores, local.scores, check_exact=False, rtol=1e-12)
    assert list(on_spark.segments) == list(local.segments)
    assert sum(len(m) for m in local.segments.values()) > 100
    for name, members in local.segments.items():
        pd.testing.assert_frame_equal(
            on_spark.segments[name], members, check_exact=False, rtol=1e-12, obj=name
        )
    assert distributed.rows.count() == len(snapshot)
    cuts = [cut for cut in distributed.population.cuts.values() if cut is not None]
    assert len(cuts) >= (3 if max_share else 0), distributed.population.cuts
    distributed.release()
