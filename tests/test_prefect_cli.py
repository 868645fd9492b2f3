"""The Prefect CLI and the UI's listing calls against a real `prefect server start`.

FastAPI >= 0.151 validates an explicit JSON `null` in a request body instead of applying the
parameter's default; Prefect 3.8's own client sends `"limit": null, "sort": null`, so
`prefect deployment ls` and `prefect flow-run ls` failed with 422 (see the fastapi pin in
pyproject.toml). These tests run the real CLI as an operator would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from prefect import flow

from tests.conftest import REPO
from tests.servers import prefect_server

pytestmark = [pytest.mark.slow, pytest.mark.integration]

DEPLOYMENT = "cli-check"


@flow(name="dangol-cli-probe")
def probe() -> int:
    """Never runs: it only gives the deployment a flow."""
    return 1


def _create() -> None:
    """Run in a subprocess with PREFECT_API_URL set: one deployment of `probe` and one flow
    run of it (scheduled, not executed); prints their ids and names as JSON."""
    from prefect.client.orchestration import get_client

    deployment_id = probe.to_deployment(name=DEPLOYMENT).apply()
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(deployment_id)
    print(json.dumps({"deployment_id": str(deployment_id), "run_id": str(run.id), "run": run.name}))


def _env(api: str, home: str) -> dict[str, str]:
    # wide and colourless, so rich prints whole names and ids
    return {
        **os.environ,
        "PREFECT_API_URL": api,
        "PREFECT_HOME": home,
        "COLUMNS": "250",
        "NO_COLOR": "1",
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A real Prefect server holding one deployment and one flow run; yields their ids, the
    API URL and the client environment."""
    with prefect_server(tmp_path_factory.mktemp("prefect-server")) as api:
        env = _env(api, str(tmp_path_factory.mktemp("prefect-client")))
        created = subprocess.run(
            [sys.executable, "-c", "from tests.test_prefect_cli import _create; _create()"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert created.returncode == 0, created.stdout + created.stderr
        yield {**json.loads(created.stdout.strip().splitlines()[-1]), "api": api, "env": env}


def _prefect(server: dict, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "prefect", *args],
        cwd=REPO,
        env=server["env"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_deployment_ls_lists_the_deployment(server: dict) -> None:
    out = _prefect(server, "deployment", "ls")
    assert f"dangol-cli-probe/{DEPLOYMENT}" in out
    assert server["deployment_id"] in out


def test_flow_run_ls_lists_the_flow_run(server: dict) -> None:
    out = _prefect(server, "flow-run", "ls")
    assert server["run_id"] in out
    assert server["run"] in out
    assert "dangol-cli-probe" in out


def test_flow_ls_lists_the_flow(server: dict) -> None:
    assert "dangol-cli-probe" in _prefect(server, "flow", "ls")


# The bodies the bundled UIs send on their Deployments page (captured from a headless browser
# against this Prefect version; they carry no nulls). The page shows "Create a deployment to
# get started" when the count call answers 0 or fails, which includes a UI that cannot reach
# the API at all: see docs/operations.md on PREFECT_UI_API_URL.
UI_V2_FILTER = {
    "offset": 0,
    "sort": "NAME_ASC",
    "deployments": {
        "operator": "and_",
        "flow_or_deployment_name": {"like_": ""},
        "tags": {"operator": "and_", "all_": []},
    },
}


def test_the_ui_deployments_page_calls_return_the_deployment(server: dict) -> None:
    api = server["api"]

    def post(path: str, body: dict):
        response = httpx.post(f"{api}{path}", json=body, timeout=30)
        assert response.status_code == 200, (path, body, response.text)
        return response.json()

    # UI v2 (the default): count gates the empty state, filter fills the table
    assert post("/deployments/count", {"offset": 0, "sort": "NAME_ASC"}) >= 1
    assert post("/deployments/count", UI_V2_FILTER) >= 1
    listed = post("/deployments/filter", {**UI_V2_FILTER, "limit": 10})
    assert server["deployment_id"] in [d["id"] for d in listed]
    # UI v1
    assert post("/deployments/count", {}) >= 1
    page = post("/deployments/paginate", {"sort": "NAME_ASC", "limit": 10, "page": 1})
    assert server["deployment_id"] in [d["id"] for d in page["results"]]


def test_the_server_accepts_the_nulls_its_own_client_sends(server: dict) -> None:
    """Prefect's Python client sends `null` for "not given" (limit, sort, unused filters)."""
    api = server["api"]
    nulls = {"limit": None, "sort": None, "offset": 0, "flows": None, "flow_runs": None}
    for path, key in [("/deployments/filter", "deployment_id"), ("/flow_runs/filter", "run_id")]:
        response = httpx.post(f"{api}{path}", json=nulls, timeout=30)
        assert response.status_code == 200, (path, response.text)
        assert server[key] in [item["id"] for item in response.json()]
