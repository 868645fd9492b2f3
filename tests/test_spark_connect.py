"""dangol against a real Spark Connect server (`spark.master: sc://host:port`).

The test starts Spark's own Connect server (`SparkConnectServer` via the `spark-submit` that
ships with PySpark) as a separate process on a free port, with its scratch space in a temp
folder, and talks to it only through the `sc://` URL, as a user's cluster would be used: the
feature command writes the DuckDB file, and the score-and-explain core per partition gives
the lists of the core in memory.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("pyspark")
pytest.importorskip("sqlglot")
pytest.importorskip("grpc")

from features import spark as on_spark  # noqa: E402
from tests.test_spark import _project, assert_same_frame  # noqa: E402

SERVER = "org.apache.spark.sql.connect.service.SparkConnectServer"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def connect_url() -> Iterator[str]:
    """A Spark Connect server (local[2]) for this module, stopped and cleaned afterwards."""
    import pyspark

    home = Path(pyspark.__file__).parent
    scratch = Path(tempfile.mkdtemp(prefix="dangol-connect-"))
    port = _free_port()
    settings = {
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": str(port),
        "spark.local.dir": str(scratch / "local"),
        "spark.sql.warehouse.dir": str(scratch / "warehouse"),
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={scratch / 'derby'}",
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "4",
        "spark.pyspark.python": sys.executable,
    }
    command = [str(home / "bin" / "spark-submit"), "--class", SERVER, "--master", "local[2]"]
    for key, value in settings.items():
        command += ["--conf", f"{key}={value}"]
    env = {**os.environ, "SPARK_HOME": str(home), "PYSPARK_PYTHON": sys.executable}
    env["SPARK_LOG_DIR"] = env["SPARK_PID_DIR"] = str(scratch)
    log = open(scratch / "server.log", "w")  # noqa: SIM115 - closed at teardown
    server = subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=scratch, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 180
        while not _listening(port):
            if server.poll() is not None or time.monotonic() > deadline:
                log.flush()
                tail = (scratch / "server.log").read_text()[-3000:]
                pytest.fail(f"the Spark Connect server did not start:\n{tail}")
            time.sleep(0.5)
        yield f"sc://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.mark.slow
def test_features_command_through_spark_connect(connect_url: str, tmp_path: Path) -> None:
    from flows.cli import main

    config = _project(tmp_path, customers=200)
    config.write_text(config.read_text() + f"spark: {{master: '{connect_url}'}}\n")
    outputs = {}
    for engine in ("duckdb", "spark"):
        out = tmp_path / f"{engine}.parquet"
        args = ["features", "--config", str(config), "--cutoffs", "2025-06-01,2025-12-01"]
        assert main([*args, "--out", str(out), "--engine", engine]) == 0
        outputs[engine] = pd.read_parquet(out)
    assert_same_frame(outputs["spark"], outputs["duckdb"])


@pytest.mark.slow
def test_scoring_per_partition_through_spark_connect(connect_url: str, scoring_case) -> None:
    """The models travel inside the functions to the server's Python workers: the same
    lists and reasons as the core in memory."""
    from models.scoring import score_and_explain
    from models.spark_scoring import score_and_explain_on_spark

    models, snapshot, config = scoring_case
    settings = config.segments.model_copy(update={"max_share": 0.03})
    args = (models, settings, config.tiers, config.data.currency)
    local = score_and_explain(snapshot, *args)
    with on_spark.spark_session(connect_url) as connect:
        assert type(connect).__module__.startswith("pyspark.sql.connect")
        result = score_and_explain_on_spark(connect, snapshot, *args)
        scores = result.scored.scores
        result.release()
    pd.testing.assert_frame_equal(scores, local.scores, check_exact=False, rtol=1e-12)
    for name, members in local.segments.items():
        pd.testing.assert_frame_equal(
            result.scored.segments[name], members, check_exact=False, rtol=1e-12, obj=name
        )
