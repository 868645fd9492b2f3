"""Failure safety of the flows: bad input stops before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from features.contract import ContractError

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_bad_input_stops_retrain_before_anything_is_written(
    tmp_path: Path, prefect_harness: None
) -> None:
    from flows.retrain import retrain_flow

    (tmp_path / "orders.csv").write_text(
        "order_id,customer_id,ordered_at,amount\n"
        "o1,c1,2025-01-01,100\n"
        "o2,c1,not a time,100\n"
        "o3,c2,also not,100\n"
    )
    config = tmp_path / "c.yaml"
    config.write_text(
        "data:\n  tables:\n    orders: {path: orders.csv}\n"
        "paths: {mlruns: mlruns, exports: exports, prefect_home: prefect}\n"
    )
    with pytest.raises(ContractError) as error:
        retrain_flow(str(config))
    message = str(error.value)
    assert "orders.csv" in message and "ordered_at" in message
    assert not (tmp_path / "mlruns").exists()
    assert not (tmp_path / "exports").exists()


def test_scratch_folders_of_killed_runs_are_removed_by_the_next(tmp_path: Path) -> None:
    """A retrain killed mid-training left its plot folder in the machine's temp folder for
    good; scratch now lives under the project's paths and the next run removes what a
    process that is gone left there (a running one's stays)."""
    import os
    import subprocess
    import sys

    from features.files import scratch_folder

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    dead = tmp_path / f".plots-{int(gone.stdout)}"
    running = tmp_path / f".plots-{os.getppid()}"
    for folder in (dead, running):
        folder.mkdir()
        (folder / "calibration.png").write_bytes(b"png")
    with scratch_folder(tmp_path, "plots") as mine:
        assert mine.is_dir() and mine.name == f".plots-{os.getpid()}"
        assert not dead.exists() and running.exists()
    assert not mine.exists()
