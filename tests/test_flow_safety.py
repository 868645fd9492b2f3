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
