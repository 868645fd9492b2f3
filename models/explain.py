"""Per-customer explanations: exact TreeSHAP contributions from LightGBM's own `pred_contrib`.

Contributions are in log-odds of the raw booster (before calibration); per row they sum with
the base value to the raw margin, so the largest ones are the score's main reasons.
"""

from __future__ import annotations

import pandas as pd

from models.train import CalibratedBooster

BASE_VALUE = "base_value"


def contributions(model: CalibratedBooster, frame: pd.DataFrame) -> pd.DataFrame:
    """One column per feature plus `base_value`, one row per input row (same index)."""
    values = model.booster.predict(
        frame[model.features].to_numpy(dtype="float64"), pred_contrib=True
    )
    return pd.DataFrame(values, columns=[*model.features, BASE_VALUE], index=frame.index)
