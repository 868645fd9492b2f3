"""The project's local Prefect server (flows.prefect_server): flow commands reuse one running
server instead of starting Prefect's temporary one each time, ignore a record left by a
killed server, and never share a server between projects. Real Prefect servers and flow runs,
in subprocesses (a process that already imported Prefect cannot be pointed elsewhere)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from features.files import process_alive
from flows import prefect_server
from tests.conftest import REPO
from tests.projects import write_project

pytestmark = [pytest.mark.slow, pytest.mark.integration]

# What a flow command does (flows.cli._flow_config, then the flow), with a tiny flow: prints
# the server used and the flow run's id.
FLOW_COMMAND = """
import json, sys
from flows.runtime import command_config, start_flow_server, wait_for_flow_server
config = command_config(sys.argv[1])
server = start_flow_server(config)
from prefect import flow
from prefect.runtime import flow_run
wait_for_flow_server(server)

@flow(name="dangol-server-probe")
def probe() -> str:
    return str(flow_run.id)

print(json.dumps({"pid": server.record.pid, "url": server.record.api_url,
                  "started": server.started, "run": probe()}))
"""


def _env() -> dict[str, str]:
    """A user's shell: no Prefect server configured, no Prefect home but the project's."""
    env = {k: v for k, v in os.environ.items() if k not in {"PREFECT_API_URL", "PREFECT_HOME"}}
    env[prefect_server.MODE_ENV] = "project"
    return env


def run_flow_command(config: Path, **env: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", FLOW_COMMAND, str(config)],
        cwd=REPO,
        env={**_env(), **env},
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def recorded_runs(api_url: str) -> set[str]:
    """The ids of the flow runs the server holds."""
    answer = httpx.post(f"{api_url}/flow_runs/filter", json={"limit": 200}, timeout=30)
    answer.raise_for_status()
    return {run["id"] for run in answer.json()}


def _home(config: Path) -> Path:
    return config.parent / "prefect"


@pytest.fixture
def projects(tmp_path: Path) -> Iterator[list[Path]]:
    """Two project folders; their servers are stopped afterwards."""
    configs = [write_project(tmp_path / name, customers=200) for name in ("one", "two")]
    yield configs
    for config in configs:
        prefect_server.stop_server(_home(config))


def test_commands_reuse_one_server_and_survive_its_kill_and_stop(projects: list[Path]) -> None:
    config, home = projects[0], _home(projects[0])
    first = run_flow_command(config)
    second = run_flow_command(config)
    assert first["started"] and not second["started"]
    assert (second["pid"], second["url"]) == (first["pid"], first["url"])
    # both runs are recorded in the one server, which outlived both commands
    assert {first["run"], second["run"]} <= recorded_runs(first["url"])
    assert prefect_server.running_server(home).pid == first["pid"]

    # kill -9: the record stays behind, names a dead pid, and is ignored
    os.kill(first["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while process_alive(first["pid"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert prefect_server.read_record(home).pid == first["pid"]
    assert prefect_server.running_server(home) is None
    again = run_flow_command(config)
    assert again["started"] and again["pid"] != first["pid"]
    # the same Prefect home: the runs before the kill are still there
    assert {first["run"], second["run"], again["run"]} <= recorded_runs(again["url"])

    stopped = prefect_server.stop_server(home)
    assert stopped is not None and stopped.pid == again["pid"]
    assert not process_alive(again["pid"])
    assert prefect_server.running_server(home) is None
    assert prefect_server.stop_server(home) is None


def test_two_projects_do_not_share_a_server(projects: list[Path]) -> None:
    """Each project has its own server and Prefect home; a record naming a live process that
    is no server (a pid reused after the server died) is not taken for one."""
    two_home = _home(projects[1])
    two_home.mkdir(parents=True)
    impostor = prefect_server.ServerRecord(os.getpid(), 9, str(two_home.resolve()), time.time())
    (two_home / prefect_server.RECORD_NAME).write_text(json.dumps(impostor.__dict__))
    assert not prefect_server.is_running(impostor, two_home)

    one = run_flow_command(projects[0])
    # the second project's server stops itself after 15 idle seconds
    two = run_flow_command(projects[1], **{prefect_server.IDLE_ENV: "0.25"})
    assert two["run"] in recorded_runs(two["url"])
    assert one["started"] and two["started"]
    assert len({one["pid"], two["pid"], os.getpid()}) == 3 and one["url"] != two["url"]
    assert one["run"] in recorded_runs(one["url"])
    assert one["run"] not in recorded_runs(two["url"])

    deadline = time.monotonic() + 120
    while process_alive(two["pid"]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not process_alive(two["pid"]), "the idle server did not stop"
    assert prefect_server.running_server(_home(projects[0])).pid == one["pid"]


def test_a_configured_api_url_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PREFECT_API_URL in the environment or in the active profile of PREFECT_HOME: the
    project's server is not used."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PREFECT_PROFILE", raising=False)
    monkeypatch.delenv("PREFECT_PROFILES_PATH", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    assert prefect_server.configured_api_url() is None
    (tmp_path / "profiles.toml").write_text(
        'active = "team"\n[profiles.team]\nPREFECT_API_URL = "http://prefect.internal/api"\n'
    )
    assert prefect_server.configured_api_url() == "http://prefect.internal/api"
    monkeypatch.setenv("PREFECT_API_URL", "http://elsewhere:4200/api")
    assert prefect_server.configured_api_url() == "http://elsewhere:4200/api"
