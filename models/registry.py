"""MLflow: the local store, model logging, the registry and the champion gate (DESIGN §3.4).

mlflow is imported inside functions: it costs seconds, and `features`/`models` must stay
usable without it.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from models.train import CalibratedBooster

CHAMPION = "champion"
# Targets trained only when the data has their population; not in the default `model_names`
# because every name there must have a champion before scoring or serving.
OPTIONAL_MODEL_NAMES = {"first_purchase": "dangol-first-purchase"}


class NoChampionError(RuntimeError):
    """Scoring needs a champion model; run `dangol train` first."""


class RegistrySettings(BaseModel):
    """Where runs and models live, what they are called and how the champion is chosen."""

    model_config = ConfigDict(extra="forbid")

    experiment: str = "dangol"
    model_names: dict[str, str] = Field(
        default={"repurchase": "dangol-repurchase", "vip_conversion": "dangol-vip-conversion"}
    )
    promotion_metric: str = "pr_auc"
    promotion_margin: float = Field(0.0, ge=0)

    def model_name(self, target: str) -> str:
        """The registered name of a target's model; optional targets missing from
        `model_names` get their default name (so configs listing two targets stay valid)."""
        if target in self.model_names:
            return self.model_names[target]
        if target in OPTIONAL_MODEL_NAMES:
            return OPTIONAL_MODEL_NAMES[target]
        raise KeyError(f"registry.model_names has no entry for target {target!r}")


def store_uri(mlruns_dir: Path) -> str:
    """The SQLite URI of the store in `mlruns_dir` (nothing is created or set)."""
    return f"sqlite:///{mlruns_dir.resolve() / 'mlflow.db'}"


def configure_mlflow(mlruns_dir: Path) -> str:
    """Point tracking and registry at the SQLite store in `mlruns_dir`; returns the URI."""
    import mlflow

    mlruns_dir.resolve().mkdir(parents=True, exist_ok=True)
    uri = store_uri(mlruns_dir)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def ensure_experiment(name: str, mlruns_dir: Path) -> str:
    """The experiment's id, created with artifacts under `mlruns_dir/artifacts` if new."""
    import mlflow

    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = (mlruns_dir.resolve() / "artifacts").as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


def log_classifier(model: CalibratedBooster, example: pd.DataFrame) -> str:
    """Log the model to the active run with signature and input example; returns its URI."""
    import mlflow.pyfunc
    from mlflow.models import infer_signature

    inputs = example[model.features].astype("float64").head(5)
    signature = infer_signature(inputs, model.predict_proba(inputs))
    requirements = [f"{p}=={version(p)}" for p in ("lightgbm", "numpy", "pandas", "scikit-learn")]
    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp) / "model")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(Path(__file__).with_name("pyfunc.py")),
            artifacts={"model_dir": str(Path(tmp) / "model")},
            signature=signature,
            input_example=inputs.fillna(0.0),
            pip_requirements=requirements,
        )
    return info.model_uri


RUN_KEY_TAG = "dangol.run_key"


def register(model_uri: str, name: str, run_id: str, run_key: str | None = None) -> str:
    """Register a logged model under `name`; returns the new version number.

    `run_key` identifies the inputs (data and configuration) the model was trained on, so a
    rerun on the same inputs can find it instead of registering it again.
    """
    import mlflow

    tags = {"run_id": run_id} | ({RUN_KEY_TAG: run_key} if run_key else {})
    version_ = mlflow.register_model(model_uri, name, tags=tags)
    return str(version_.version)


def version_with_run_key(name: str, run_key: str) -> str | None:
    """The newest version of `name` trained on exactly these inputs, if any."""
    from mlflow import MlflowClient

    versions = MlflowClient().search_model_versions(f"name = '{name}'")
    matching = [int(v.version) for v in versions if v.tags.get(RUN_KEY_TAG) == run_key]
    return str(max(matching)) if matching else None


def version_data_window(name: str, model_version: str) -> dict[str, list[str]]:
    """The train / validation / test cutoffs a registered version was fitted and judged on."""
    import mlflow
    from mlflow import MlflowClient

    run_id = MlflowClient().get_model_version(name, model_version).tags.get("run_id")
    if not run_id:
        return {}
    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="data_window.json")
    return json.loads(Path(path).read_text())


def version_metrics(name: str, model_version: str) -> dict[str, float]:
    """The metrics of the run that logged a registered version."""
    from mlflow import MlflowClient

    client = MlflowClient()
    run_id = client.get_model_version(name, model_version).tags.get("run_id")
    return dict(client.get_run(run_id).data.metrics) if run_id else {}


def champion_version(name: str, uri: str | None = None) -> str | None:
    """The version behind the champion alias, or None when there is none yet.

    With `uri`, that store is read without touching the process-wide MLflow URI (a
    background reader must not redirect another thread's logging).
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def load_version(name: str, model_version: str) -> CalibratedBooster:
    """Load a registered model version as the plain calibrated booster."""
    import mlflow.pyfunc

    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{model_version}")
    # MLflow 3 makes a loaded model the process's "active model" and links every metric logged
    # afterwards to it: a champion loaded for comparison would collect the challenger's metrics.
    mlflow.clear_active_model()
    return pyfunc.unwrap_python_model().model


@dataclass(frozen=True)
class PromotionDecision:
    """Whether the challenger takes the champion alias, and why."""

    promote: bool
    reason: str
    challenger_score: float
    champion_score: float | None

    def tags(self) -> dict[str, str]:
        return {
            "promotion.decision": "promoted" if self.promote else "kept",
            "promotion.reason": self.reason,
            "promotion.challenger_score": f"{self.challenger_score:.6f}",
            "promotion.champion_score": "none"
            if self.champion_score is None
            else f"{self.champion_score:.6f}",
        }


def decide_promotion(
    metric: str, margin: float, challenger_score: float, champion_score: float | None
) -> PromotionDecision:
    """The gate: promote only when the challenger beats the champion by `margin` on `metric`,
    both measured on the same holdout. The first model always becomes champion."""
    if champion_score is None:
        return PromotionDecision(True, "no champion yet", challenger_score, None)
    if not np.isfinite(champion_score):
        return PromotionDecision(
            True, "champion cannot be scored on this holdout", challenger_score, champion_score
        )
    gain = challenger_score - champion_score
    verdict = "beats" if gain > margin else "does not beat"
    reason = (
        f"challenger {metric} {challenger_score:.4f} {verdict} champion {champion_score:.4f} "
        f"by more than the margin {margin:.4f} (gain {gain:+.4f})"
    )
    return PromotionDecision(gain > margin, reason, challenger_score, champion_score)


def apply_promotion(name: str, model_version: str, decision: PromotionDecision) -> None:
    """Record the decision on the version and move the alias if it says so."""
    from mlflow import MlflowClient

    client = MlflowClient()
    for key, value in decision.tags().items():
        client.set_model_version_tag(name, model_version, key, value)
    if decision.promote:
        client.set_registered_model_alias(name, CHAMPION, model_version)


def version_numbers(name: str) -> list[str]:
    """Every version of a registered model (empty when the name is not registered)."""
    from mlflow import MlflowClient

    return sorted(
        (str(v.version) for v in MlflowClient().search_model_versions(f"name='{name}'")), key=int
    )


def rollback(name: str, new_version: str | None, previous_champion: str | None) -> None:
    """Undo a registration: delete the new version and put the champion alias back."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    if new_version is not None:
        with contextlib.suppress(MlflowException):  # never created: nothing to undo
            client.delete_model_version(name, new_version)
    if previous_champion is not None:
        client.set_registered_model_alias(name, CHAMPION, previous_champion)
    elif champion_version(name) is not None:
        client.delete_registered_model_alias(name, CHAMPION)


def log_json(payload: dict, artifact_file: str) -> None:
    """Log a dict as a JSON artifact of the active run."""
    import mlflow

    mlflow.log_text(json.dumps(payload, indent=2, default=str), artifact_file)
