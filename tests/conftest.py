"""Shared fixtures: Prefect runs against a throwaway local server, state in temp dirs."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Prefect reads these when it is first imported: set them before any test module imports it.
_PREFECT_HOME = Path(tempfile.mkdtemp(prefix="dangol-prefect-"))
# the suite's Prefect state goes with the test process (was left in the system temp dir)
atexit.register(shutil.rmtree, _PREFECT_HOME, ignore_errors=True)
os.environ.setdefault("PREFECT_HOME", str(_PREFECT_HOME))
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_UI_ENABLED", "false")
# flow commands run in-process here use the harness or Prefect's temporary server, never a
# project server that would outlive the test (tests/test_project_prefect_server.py opts in)
os.environ.setdefault("DANGOL_PREFECT_SERVER", "temporary")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect server for the whole session (starting one takes ~20 s here)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def scoring_case(tmp_path_factory) -> tuple:
    """Models of every target trained on a small synthetic shop (no registry needed) and
    the snapshot they score, with the config."""
    from flows import data, export, training
    from flows.config import load_config
    from models.train import InsufficientDataError
    from tests.projects import write_project

    config = load_config(write_project(tmp_path_factory.mktemp("scoring"), customers=2000))
    tables, _ = data.load_shop(config, progress=lambda _: None)
    frame, split = training.build_training_data(tables, config)
    models = {}
    for target in training.targets_to_train(frame):
        try:
            models[target] = training.evaluate_split(frame, split, target, config).model
        except InsufficientDataError:
            continue  # as the retrain flow does: a target this small shop cannot support
    return models, export.latest_snapshot(tables, config, None), config
