"""Deployments: `retrain` weekly and `score` daily on cron schedules from the config.

`dangol deploy` registers both deployments with the Prefect API named by PREFECT_API_URL
(a `prefect server start` in production) and serves them from this process: the runner
polls for scheduled and manually triggered runs and executes them here.

`dangol deploy --work-pool P` registers them on the process work pool P instead (created if
missing) and returns: any `prefect worker start --pool P` on a machine with this project
at the same path runs them, in a fresh process per run.
"""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

from prefect import Flow, serve
from prefect.deployments.runner import EntrypointType
from prefect.schedules import Cron

from flows.config import DangolConfig
from flows.names import RETRAIN_DEPLOYMENT, SCORE_DEPLOYMENT
from flows.paths import PROJECT_ROOT
from flows.retrain import retrain_flow
from flows.score import score_flow


def _plan(config: DangolConfig) -> list[tuple[Flow, str, str, str]]:
    """(flow, deployment name, cron, entrypoint) of both deployments."""
    schedules = config.schedules
    return [
        (retrain_flow, RETRAIN_DEPLOYMENT, schedules.retrain_cron, "flows/retrain.py:retrain_flow"),
        (score_flow, SCORE_DEPLOYMENT, schedules.score_cron, "flows/score.py:score_flow"),
    ]


def _settings(config: DangolConfig, config_path: Path, flow: Flow, cron: str) -> dict:
    """What both kinds of deployment share: schedule, parameters, description, tags."""
    return {
        "schedules": [Cron(cron, timezone=config.schedules.timezone)],
        "parameters": {"config_path": str(config_path.resolve())},
        "description": flow.description,
        "tags": ["dangol"],
    }


def deployments(config: DangolConfig, config_path: Path) -> list:
    """The two runner deployments, their schedules and the config they run with."""
    return [
        flow.to_deployment(
            name=deployment.split("/")[1],
            **_settings(config, config_path, flow, cron),
            # by module path, so the runner finds the flow from any working directory
            entrypoint_type=EntrypointType.MODULE_PATH,
        )
        for flow, deployment, cron, _ in _plan(config)
    ]


def ensure_process_pool(name: str) -> None:
    """Create the process work pool `name` unless it exists; refuse a pool of another type."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            try:
                client.create_work_pool(WorkPoolCreate(name=name, type="process"))
            except ObjectAlreadyExists:  # another deploy created it meanwhile
                pool = client.read_work_pool(name)
            else:
                return
        if pool.type != "process":
            raise SystemExit(
                f"deploy --work-pool: pool {name!r} is of type {pool.type!r}; dangol deploys "
                "its code from this folder and needs a 'process' pool"
            )


def deploy_to_work_pool(config: DangolConfig, config_path: Path, pool: str) -> list[UUID]:
    """Register both deployments on a process work pool; the code is pulled from this
    project's folder, so workers must see the project (and its `.venv`) at the same path."""
    ensure_process_pool(pool)
    # `to_deployment` + `apply` rather than `Flow.deploy`: in Prefect 3.8 the latter first
    # lists the pool's workers with a request its own server refuses (422, null paging)
    return [
        Flow.from_source(source=str(PROJECT_ROOT), entrypoint=entrypoint)
        .to_deployment(
            name=deployment.split("/")[1],
            work_pool_name=pool,
            **_settings(config, config_path, flow, cron),
        )
        .apply(work_pool_name=pool)
        for flow, deployment, cron, entrypoint in _plan(config)
    ]


def serve_deployments(config: DangolConfig, config_path: Path, limit: int | None = None) -> None:
    """Create or update both deployments and run their flow runs until interrupted."""
    serve(*deployments(config, config_path), limit=limit, print_starting_message=True)
