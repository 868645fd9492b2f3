"""Process-level settings for Prefect, applied explicitly before Prefect is imported."""

from __future__ import annotations

import logging
import os
from pathlib import Path


def prepare_prefect(prefect_home: Path) -> None:
    """Keep Prefect's state in the project, give its local server time to start, no telemetry.

    Values already in the environment win, so a real Prefect server can be configured with
    PREFECT_API_URL as usual.
    """
    prefect_home.mkdir(parents=True, exist_ok=True)
    defaults = {
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
        "PREFECT_UI_ENABLED": "false",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)


def quiet_libraries() -> None:
    """MLflow's per-artifact progress bars and INFO chatter bury the pipeline's own progress."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("mlflow").setLevel(logging.WARNING)


def command_config(path: str | Path):
    """The validated config of a `dangol` command, with Prefect and the libraries' logging set
    up before either is imported."""
    from flows.config import load_config

    config = load_config(path)
    prepare_prefect(config.resolve(config.paths.prefect_home))
    quiet_libraries()
    return config
