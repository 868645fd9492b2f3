"""Deployments on a real local Prefect server: created with their schedules, and a run
triggered through the API completes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO
from tests.servers import prefect_server, stop

pytestmark = [pytest.mark.slow, pytest.mark.integration]

CONFIG = """
data:
  end: 2026-01-01
  tables:
    customers: {path: shop/customers.parquet}
    orders: {path: shop/orders.parquet}
    order_items: {path: shop/order_items.parquet}
    content_views: {path: shop/content_views.parquet}
synthetic: {customers: 3000, seed: 5, out_dir: shop}
training:
  backtest_folds: 1
  lightgbm: {n_estimators: 60, min_child_samples: 20}
schedules: {timezone: Asia/Seoul, retrain_cron: "0 3 * * 1", score_cron: "30 6 * * *"}
paths: {mlruns: mlruns, exports: exports, prefect_home: prefect}
"""


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `prefect server start` on a free loopback port, state in a temp dir."""
    with prefect_server(tmp_path_factory.mktemp("prefect-server")) as api:
        yield api


@pytest.fixture(scope="module")
def deployed(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`dangol deploy` running against that server."""
    root = tmp_path_factory.mktemp("deployed")
    config = root / "dangol.yaml"
    config.write_text(CONFIG)
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "PREFECT_HOME": str(root / "prefect")}
    runner = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "deploy", "--config", str(config)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert runner.poll() is None, runner.stdout.read().decode()
            names = [d["name"] for d in httpx.post(f"{prefect_api}/deployments/filter").json()]
            if {"weekly", "daily"} <= set(names):
                break
            time.sleep(1)
        else:
            pytest.fail("deployments did not appear in 120 s")
        yield prefect_api
    finally:
        stop(runner)


def _deployment(api: str, name: str) -> dict:
    response = httpx.get(f"{api}/deployments/name/{name}")
    assert response.status_code == 200, response.text
    return response.json()


def _run_to_completion(
    api: str, deployment_id: str, seconds: float, parameters: dict | None = None
) -> dict:
    body = {"parameters": parameters} if parameters else {}
    for _ in range(5):
        created = httpx.post(f"{api}/deployments/{deployment_id}/create_flow_run", json=body)
        # a fresh server on SQLite can answer 5xx while the runner is writing: try again
        if created.status_code < 500:
            break
        time.sleep(2)
    assert created.status_code == 201, created.text
    run = created.json()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = httpx.get(f"{api}/flow_runs/{run['id']}").json()["state"]
        if state["type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
            return state
        time.sleep(2)
    raise AssertionError(f"flow run {run['id']} did not finish in {seconds} s")


def test_deployments_carry_the_configured_schedules(deployed: str) -> None:
    retrain = _deployment(deployed, "retrain/weekly")
    score = _deployment(deployed, "score/daily")
    (retrain_schedule,) = retrain["schedules"]
    (score_schedule,) = score["schedules"]
    assert retrain_schedule["schedule"]["cron"] == "0 3 * * 1"
    assert score_schedule["schedule"]["cron"] == "30 6 * * *"
    assert score_schedule["schedule"]["timezone"] == "Asia/Seoul"
    assert retrain["parameters"]["config_path"].endswith("dangol.yaml")


@pytest.fixture(scope="module")
def retrained(deployed: str) -> dict:
    """The final state of one retrain run triggered through the API."""
    return _run_to_completion(deployed, _deployment(deployed, "retrain/weekly")["id"], 300)


def test_triggered_runs_complete(deployed: str, retrained: dict) -> None:
    assert retrained["type"] == "COMPLETED", retrained
    score = _run_to_completion(deployed, _deployment(deployed, "score/daily")["id"], 180)
    assert score["type"] == "COMPLETED", score


def _flow_run_ids(api: str, deployment_id: str) -> set[str]:
    runs = httpx.post(
        f"{api}/flow_runs/filter",
        json={"flow_runs": {"deployment_id": {"any_": [deployment_id]}}},
    ).json()
    return {run["id"] for run in runs}


def test_drift_past_the_line_starts_a_retrain_run(deployed: str, retrained: dict) -> None:
    """A score run whose config sets the alert line near zero starts the retrain deployment."""
    assert retrained["type"] == "COMPLETED", retrained
    retrain = _deployment(deployed, "retrain/weekly")
    config = Path(retrain["parameters"]["config_path"])
    eager = config.with_name("eager.yaml")  # same folder: same data, store and exports
    eager.write_text(config.read_text() + "drift: {psi_alert: 0.000001, retrain_on_drift: true}\n")
    before = _flow_run_ids(deployed, retrain["id"])
    score = _deployment(deployed, "score/daily")
    state = _run_to_completion(deployed, score["id"], 180, {"config_path": str(eager)})
    assert state["type"] == "COMPLETED", state
    assert len(_flow_run_ids(deployed, retrain["id"]) - before) == 1
