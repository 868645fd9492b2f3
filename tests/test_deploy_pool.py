"""`dangol deploy --work-pool`: deployments on a process work pool, run by a real Prefect
worker against a real local Prefect server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO
from tests.servers import prefect_server, start, stop
from tests.test_deploy import CONFIG, _deployment, _run_to_completion

pytestmark = [pytest.mark.slow, pytest.mark.integration]

POOL = "dangol-test-pool"


def _deploy(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "flows.cli", "deploy", "--config", str(config)]
    return subprocess.run(
        command + ["--work-pool", POOL],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def pool_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A Prefect server with both deployments on a process pool; yields (API URL, root)."""
    root = tmp_path_factory.mktemp("pool")
    (root / "dangol.yaml").write_text(CONFIG)
    with prefect_server(tmp_path_factory.mktemp("prefect-server")) as api:
        env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_HOME": str(root / "prefect")}
        deployed = _deploy(root / "dangol.yaml", env)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        assert f"--pool {POOL}" in deployed.stdout
        yield api, root


def test_deployments_sit_on_the_pool_with_their_schedules(pool_api) -> None:
    api, _ = pool_api
    pool = httpx.get(f"{api}/work_pools/{POOL}").json()
    assert pool["type"] == "process"
    retrain = _deployment(api, "retrain/weekly")
    assert retrain["work_pool_name"] == POOL
    assert retrain["schedules"][0]["schedule"]["cron"] == "0 3 * * 1"
    assert retrain["schedules"][0]["schedule"]["timezone"] == "Asia/Seoul"
    assert _deployment(api, "score/daily")["work_pool_name"] == POOL


def test_a_worker_on_the_pool_runs_retrain_to_completion(pool_api) -> None:
    api, root = pool_api
    env = {
        **os.environ,
        "PREFECT_API_URL": api,
        "PREFECT_HOME": str(root / "worker"),
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }
    worker = start([sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL], env)
    try:
        state = _run_to_completion(api, _deployment(api, "retrain/weekly")["id"], 300)
    finally:
        stop(worker)
    assert state["type"] == "COMPLETED", (state, worker.stdout.read().decode()[-3000:])
    assert (root / "mlruns" / "mlflow.db").exists()


def test_work_pool_needs_a_lasting_server(tmp_path: Path) -> None:
    (tmp_path / "dangol.yaml").write_text(CONFIG)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    refused = _deploy(tmp_path / "dangol.yaml", env)
    assert refused.returncode != 0
    assert "PREFECT_API_URL" in refused.stderr
