"""Champions from the MLflow registry into the BentoML model store, and the state from both.

Tag design: each registered model `N` is stored under the BentoML name `N` (lower-cased); the
import step creates a new store version only when the champion's MLflow version is not there
yet, so `N:latest` is always the newest imported champion. The service declares
`BentoModel("N:latest")` at class scope, which is what `bentoml build` packs.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import pandas as pd

from flows.config import DangolConfig
from models import registry
from models.lookup import ModelCard, ScoringState, build_state, read_segments
from models.train import CalibratedBooster

logger = logging.getLogger("dangol.serving")

MODEL_DIR = "calibrated_booster"
CARD_FILE = "card.json"


def store_name(registered_name: str) -> str:
    """A BentoML model name for a registered MLflow model name."""
    return re.sub(r"[^a-z0-9_.-]", "-", registered_name.lower())


def store_tags(config: DangolConfig) -> dict[str, str]:
    """`<name>:latest` for every target: what the service declares at class scope."""
    return {t: f"{store_name(n)}:latest" for t, n in config.registry.model_names.items()}


def all_stored(tags: dict[str, str]) -> bool:
    """Whether every tag resolves in the local BentoML store."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        for tag in tags.values():
            bentoml.models.get(tag)
    except NotFound:
        return False
    return True


def _find_imported(name: str, version: str):
    """The store entry holding MLflow version `version` of `name`, if imported already."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        stored = bentoml.models.list(store_name(name))
    except NotFound:
        return None
    for model in stored:
        if model.info.labels.get("mlflow_version") == version:
            return model
    return None


def _card_from_mlflow(target: str, name: str, version: str) -> ModelCard:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    model_version = client.get_model_version(name, version)
    run_id = model_version.run_id or model_version.tags.get("run_id", "")
    metrics, window = {}, {}
    if run_id:
        run = client.get_run(run_id)
        metrics = {
            k.removeprefix("test."): float(v)
            for k, v in run.data.metrics.items()
            if k.startswith("test.")
        }
        try:
            path = client.download_artifacts(run_id, "data_window.json")
            window = json.loads(Path(path).read_text())
        except (MlflowException, OSError, ValueError):
            window = {}
    return ModelCard(target, name, version, run_id, "", window, metrics)


def import_champions(config: DangolConfig) -> dict[str, str]:
    """Copy each champion (booster + calibration + card) into the BentoML store if new.

    Returns the full store tag of each target's champion.
    """
    import bentoml

    registry.configure_mlflow(config.resolve(config.paths.mlruns))
    tags = {}
    for target, name in config.registry.model_names.items():
        version = registry.champion_version(name)
        if version is None:
            raise registry.NoChampionError(f"no champion for {name}: run `dangol train` first")
        existing = _find_imported(name, version)
        if existing is not None:
            tags[target] = str(existing.tag)
            continue
        model = registry.load_version(name, version)
        card = _card_from_mlflow(target, name, version)
        with bentoml.models.create(
            store_name(name),
            labels={"target": target, "mlflow_version": version},
            metadata={
                "registered_name": name,
                "version": version,
                "run_id": card.run_id,
                "training_window": card.training_window,
                "test_metrics": card.test_metrics,
            },
        ) as stored:
            model.save(Path(stored.path) / MODEL_DIR)
            (Path(stored.path) / CARD_FILE).write_text(json.dumps(card.__dict__))
        tags[target] = str(stored.tag)
        logger.info("imported %s v%s as %s", name, version, stored.tag)
    return tags


def load_stored(target: str, stored) -> tuple[CalibratedBooster, ModelCard]:
    """A champion and its card from a BentoML store entry."""
    raw = json.loads((Path(stored.path) / CARD_FILE).read_text())
    card = ModelCard(**{**raw, "target": target, "store_tag": str(stored.tag)})
    return CalibratedBooster.load(Path(stored.path) / MODEL_DIR), card


def latest_export(config: DangolConfig) -> Path:
    """The folder `exports/latest` points at (resolved, so a swap is visible as a new path)."""
    latest = config.resolve(config.paths.exports) / "latest"
    if not (latest / "features.parquet").exists():
        raise FileNotFoundError(f"no scored snapshot at {latest}: run `dangol score` first")
    return latest.resolve()


def champion_versions(config: DangolConfig) -> dict[str, str | None]:
    """The registry's current champion versions (a cheap SQLite read)."""
    uri = registry.store_uri(config.resolve(config.paths.mlruns))
    return {t: registry.champion_version(n, uri) for t, n in config.registry.model_names.items()}


def load_state(config: DangolConfig, stored: dict[str, object]) -> ScoringState:
    """Build the serving state from store entries and the latest export."""
    models, cards = {}, {}
    for target, entry in stored.items():
        models[target], cards[target] = load_stored(target, entry)
    export_dir = latest_export(config)
    snapshot = pd.read_parquet(export_dir / "features.parquet")
    return build_state(models, cards, snapshot, read_segments(export_dir), config.tiers, export_dir)


def registry_stamp(config: DangolConfig) -> int | None:
    """When the MLflow store last changed (ns), or None without one: a free change check."""
    try:
        return os.stat(config.resolve(config.paths.mlruns) / "mlflow.db").st_mtime_ns
    except FileNotFoundError:
        return None


def mlflow_store_exists(config: DangolConfig) -> bool:
    """Whether the MLflow registry is reachable from here (a Bento may ship without it)."""
    return os.path.exists(config.resolve(config.paths.mlruns) / "mlflow.db")
