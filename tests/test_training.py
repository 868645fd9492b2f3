"""Time split, promotion gate and metrics: small, exact behaviour."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.evaluate import top_decile
from models.registry import decide_promotion
from models.train import InsufficientDataError, split_cutoffs


def _cutoffs(n: int, every: int = 14) -> list[pd.Timestamp]:
    return [pd.Timestamp("2025-01-01") + pd.Timedelta(days=every * k) for k in range(n)]


@pytest.mark.parametrize("window", [1, 3])
def test_split_windows_do_not_overlap_in_time(window: int) -> None:
    split = split_cutoffs(_cutoffs(30), 90, test_cutoffs=window, validation_cutoffs=window)
    horizon = pd.Timedelta(days=90)
    assert split.test == _cutoffs(30)[-window:]
    assert len(split.validation) == window
    # every training label window closes before validation starts, and so on
    assert max(split.train) + horizon <= min(split.validation)
    assert max(split.validation) + horizon <= min(split.test)


def test_split_refuses_short_history() -> None:
    with pytest.raises(InsufficientDataError, match="validation"):
        split_cutoffs(_cutoffs(5), horizon_days=90)


def test_first_model_becomes_champion() -> None:
    decision = decide_promotion("pr_auc", 0.01, 0.3, None)
    assert decision.promote and decision.reason == "no champion yet"


@pytest.mark.parametrize(
    ("challenger", "champion", "promote"),
    [(0.50, 0.40, True), (0.405, 0.40, False), (0.39, 0.40, False)],
)
def test_gate_needs_the_margin(challenger: float, champion: float, promote: bool) -> None:
    decision = decide_promotion("pr_auc", 0.01, challenger, champion)
    assert decision.promote is promote
    assert f"{champion:.4f}" in decision.reason


def test_top_decile_lift_and_capture() -> None:
    outcome = np.array([1, 1] + [0] * 18)
    score = np.arange(20, 0, -1, dtype=float)  # the two positives score highest
    lift, capture = top_decile(outcome, score)
    assert capture == 1.0
    assert lift == pytest.approx(10.0)
