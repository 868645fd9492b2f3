"""Deployments: `retrain` weekly and `score` daily on cron schedules from the config.

`dangol deploy` registers both deployments with the Prefect API named by PREFECT_API_URL
(a `prefect server start` in production) and serves them from this process: the runner
polls for scheduled and manually triggered runs and executes them here.
"""

from __future__ import annotations

from pathlib import Path

from prefect import serve
from prefect.deployments.runner import EntrypointType
from prefect.schedules import Cron

from flows.config import DangolConfig
from flows.retrain import retrain_flow
from flows.score import score_flow

RETRAIN_DEPLOYMENT = "retrain/weekly"
SCORE_DEPLOYMENT = "score/daily"


def deployments(config: DangolConfig, config_path: Path) -> list:
    """The two runner deployments, their schedules and the config they run with."""
    schedules = config.schedules
    plan = [
        (retrain_flow, RETRAIN_DEPLOYMENT, schedules.retrain_cron),
        (score_flow, SCORE_DEPLOYMENT, schedules.score_cron),
    ]
    return [
        flow.to_deployment(
            name=deployment.split("/")[1],
            schedules=[Cron(cron, timezone=schedules.timezone)],
            parameters={"config_path": str(config_path.resolve())},
            description=flow.description,
            tags=["dangol"],
            # by module path, so the runner finds the flow from any working directory
            entrypoint_type=EntrypointType.MODULE_PATH,
        )
        for flow, deployment, cron in plan
    ]


def serve_deployments(config: DangolConfig, config_path: Path, limit: int | None = None) -> None:
    """Create or update both deployments and run their flow runs until interrupted."""
    serve(*deployments(config, config_path), limit=limit, print_starting_message=True)
