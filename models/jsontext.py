"""JSON that every reader accepts: Python's json writes NaN and Infinity, which JavaScript,
jq and most JSON libraries reject; files handed to other systems carry null instead."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd


def json_ready(value: Any) -> Any:
    """`value` with NaN/inf as None, numpy scalars as Python ones and anything else (dates
    included) as its str, as `default=str` wrote them before."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, np.ndarray, pd.Series)):
        return [json_ready(v) for v in value]
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, np.generic):
        return json_ready(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is pd.NaT or value is pd.NA:
        return None
    return str(value)


def strict_json(value: Any, **kwargs: Any) -> str:
    """json.dumps of `json_ready(value)`; never writes NaN or Infinity."""
    return json.dumps(json_ready(value), allow_nan=False, **kwargs)
