"""The MLflow pyfunc wrapper of a target's model, logged as "model from code".

MLflow copies this file next to the model and runs it on load; `set_model` names the object.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.models import set_model

from models.loading import load_model


class DangolClassifier(mlflow.pyfunc.PythonModel):
    """The target's score for each row of features: a calibrated probability, or money for
    the value target."""

    def load_context(self, context: Any) -> None:
        self.model = load_model(Path(context.artifacts["model_dir"]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> np.ndarray:
        return self.model.predict(model_input)


set_model(DangolClassifier())
