"""MLflow: the local store, model logging, the registry and the champion gate (DESIGN §3.4).

mlflow is imported inside functions: it costs seconds, and `features`/`models` must stay
usable without it.
"""

from __future__ import annotations

import platform
import tempfile
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from features.targets import TARGETS, headline_metrics
from models.jsontext import strict_json
from models.train import TargetModel

CHAMPION = "champion"
RUN_TAG = "dangol.run_id"  # the retrain run a version was made by
RUN_KEY_TAG = "dangol.run_key"


class NoChampionError(RuntimeError):
    """Scoring needs a live release; run `dangol train` first."""


class RegistrySettings(BaseModel):
    """Where runs and models live, what they are called and how a release is promoted.

    Every target's model is registered under `model_names[target]` (default: the target's
    registered name in features.targets); the release, the unit of promotion, under
    `release_name`, whose `live` alias is the one pointer everything scores with.
    """

    model_config = ConfigDict(extra="forbid")

    experiment: str = "dangol"
    model_names: dict[str, str] = Field(default_factory=dict)
    release_name: str = "dangol-release"
    # None: each target's own promotion metric (features.targets)
    promotion_metric: str | None = None
    # the challenger must beat the champion by more than this on the metric's bootstrap
    # interval (0: "better beyond noise" alone decides)
    promotion_margin: float = Field(0.0, ge=0)
    bootstrap_replicates: int = Field(400, ge=50)

    @field_validator("model_names")
    @classmethod
    def _known_targets(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(TARGETS))
        if unknown:
            raise ValueError(f"unknown targets {unknown}; known: {', '.join(TARGETS)}")
        return value

    def model_name(self, target: str) -> str:
        """The registered name of a target's model."""
        return self.model_names.get(target) or TARGETS[target].registered_name

    def metric(self, target: str) -> str:
        return self.promotion_metric or TARGETS[target].promotion_metric


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


def log_model(model: TargetModel, example: pd.DataFrame) -> str:
    """Log the model to the active run with signature and input example; returns its URI."""
    import mlflow.pyfunc
    from mlflow.models import infer_signature

    inputs = example[model.features].astype("float64").head(5)
    signature = infer_signature(inputs, model.predict(inputs))
    requirements = [f"{p}=={version(p)}" for p in ("lightgbm", "numpy", "pandas", "scikit-learn")]
    # The environment is stated here: given only pip requirements, MLflow looks up the
    # installed pip for its conda.yaml and warns "Failed to resolve installed pip version" in
    # a uv environment, which has no pip.
    environment = {
        "name": "dangol-model",
        "channels": ["conda-forge"],
        "dependencies": [f"python={platform.python_version()}", "pip", {"pip": requirements}],
    }
    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp) / "model")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(Path(__file__).with_name("pyfunc.py")),
            artifacts={"model_dir": str(Path(tmp) / "model")},
            signature=signature,
            input_example=inputs.fillna(0.0),
            conda_env=environment,
        )
    return info.model_uri


def register(model_uri: str, name: str, tags: dict[str, str]) -> str:
    """Register a logged model under `name` with its tags; returns the new version number."""
    import mlflow

    version_ = mlflow.register_model(model_uri, name, tags=tags)
    return str(version_.version)


def load_version(name: str, model_version: str) -> TargetModel:
    """Load a registered model version as the plain target model."""
    import mlflow.pyfunc

    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{model_version}")
    # MLflow 3 makes a loaded model the process's "active model" and links every metric logged
    # afterwards to it: a champion loaded for comparison would collect the challenger's metrics.
    mlflow.clear_active_model()
    return pyfunc.unwrap_python_model().model


def version_numbers(name: str) -> list[str]:
    """Every version of a registered model (empty when the name is not registered)."""
    from mlflow import MlflowClient

    return sorted(
        (str(v.version) for v in MlflowClient().search_model_versions(f"name='{name}'")), key=int
    )


def log_json(payload: dict, artifact_file: str) -> None:
    """Log a dict as a JSON artifact of the active run."""
    import mlflow

    mlflow.log_text(strict_json(payload, indent=2), artifact_file)


def logged_baselines(
    metrics: dict[str, float], tags: dict[str, str]
) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """A target run's baselines as the retrain logs them (flows.publish): their metrics
    (`baseline.<b>.<metric>`), and the ones that failed with why (tags
    `baseline.<b>.status` = failed, `baseline.<b>.reason`)."""
    scored: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        kind, _, rest = key.partition(".")
        name, _, metric = rest.partition(".")
        if kind == "baseline" and metric:
            scored.setdefault(name, {})[metric] = value
    failed = {
        key.split(".")[1]: tags.get(f"baseline.{key.split('.')[1]}.reason", "")
        for key, status in tags.items()
        if key.startswith("baseline.") and key.endswith(".status") and status == "failed"
    }
    return scored, failed


def logged_results(
    run_id: str,
) -> tuple[dict[str, float], dict[str, dict[str, float]], dict[str, str]]:
    """A target run's test metrics (`test.` dropped), its baselines' metrics and its failed
    baselines with why, as the retrain logged them; all empty when the run is gone."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        run = MlflowClient().get_run(run_id).data
    except MlflowException:
        return {}, {}, {}
    tested = {k.removeprefix("test."): v for k, v in run.metrics.items() if k.startswith("test.")}
    scored, failed = logged_baselines(run.metrics, run.tags)
    return tested, scored, failed


def baselines_ahead(
    target: str, metrics: dict[str, float], baselines: dict[str, dict[str, float]]
) -> list[str]:
    """Each baseline that beat the model on the test window's headline metric (the first of
    the target's kind, higher is better), in words: a release may still go live (the first
    one always does), but whoever reads its lists should know a rule ranked better. Said by
    `dangol train` from the fit and by `dangol models` from the run's logged metrics."""
    key, label = headline_metrics(target)[0]
    model = metrics.get(key, float("nan"))
    return [
        f"{name} ranks better than the model on the test window: {label} {scored[key]:.3f} "
        f"against {model:.3f}"
        for name, scored in baselines.items()
        if np.isfinite(scored.get(key, np.nan)) and scored[key] > model
    ]
