"""PSI: zero for the same distribution, large for a shifted one, missingness counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.drift import drift_table, psi


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(3)


def test_same_distribution_is_stable(rng: np.random.Generator) -> None:
    reference = rng.normal(size=20_000)
    assert psi(reference, rng.normal(size=20_000)) < 0.01
    assert psi(reference, reference) == pytest.approx(0.0, abs=1e-12)


def test_shift_grows_with_its_size(rng: np.random.Generator) -> None:
    reference = rng.normal(size=20_000)
    small = psi(reference, rng.normal(0.2, size=20_000))
    large = psi(reference, rng.normal(1.0, size=20_000))
    assert 0.01 < small < 0.1 < 0.25 < large


def test_values_going_missing_is_drift(rng: np.random.Generator) -> None:
    reference = rng.normal(size=10_000)
    current = reference.copy()
    current[: len(current) // 2] = np.nan
    assert psi(reference, current) > 0.25


def test_drift_table_orders_by_psi_and_skips_absent_columns(rng: np.random.Generator) -> None:
    reference = pd.DataFrame({"a": rng.normal(size=5000), "b": rng.normal(size=5000)})
    current = pd.DataFrame({"a": rng.normal(size=5000), "b": rng.normal(2, size=5000)})
    table = drift_table(reference, current, ["a", "b", "not_there"])
    assert list(table["column"]) == ["b", "a"]
