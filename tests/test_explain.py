"""Contributions add up to the model's raw margin, row by row."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd

from models.explain import BASE_VALUE, contributions
from models.train import CalibratedBooster


def test_contributions_sum_to_raw_margin() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(500, 3)), columns=["a", "b", "c"])
    outcome = (frame["a"] + 0.5 * frame["b"] + rng.normal(scale=0.5, size=500) > 0).astype(int)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_leaves": 7},
        lgb.Dataset(frame.to_numpy(), outcome),
        num_boost_round=20,
    )
    model = CalibratedBooster(booster, np.array([0.0, 1.0]), np.array([0.0, 1.0]), ["a", "b", "c"])
    contrib = contributions(model, frame)
    margin = booster.predict(frame.to_numpy(), raw_score=True)
    np.testing.assert_allclose(contrib.sum(axis=1), margin, rtol=1e-6, atol=1e-9)
    assert contrib[BASE_VALUE].nunique() == 1
    # "a" drives the outcome most, so it carries the largest mean absolute contribution
    assert contrib.drop(columns=BASE_VALUE).abs().mean().idxmax() == "a"
