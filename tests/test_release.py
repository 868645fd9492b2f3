"""Releases against a real MLflow store in temp dirs: the gate beyond noise, atomic
registration, and what a kill -9 at each step of publishing leaves live and how the next
retrain repairs it."""

from __future__ import annotations

import dataclasses
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from features.targets import TARGETS
from flows import data, training
from flows.config import DangolConfig, load_config
from flows.publish import CRASH_ENV, log_and_publish
from flows.retrain import summary_markdown
from models import promotion, registry, release
from tests.conftest import REPO

pytestmark = pytest.mark.integration

CONFIG = """
data:
  timezone: Asia/Seoul
  end: 2026-01-01
  tables:
    customers: {{path: {shop}/customers.parquet}}
    orders: {{path: {shop}/orders.parquet}}
    order_items: {{path: {shop}/order_items.parquet}}
    content_views: {{path: {shop}/content_views.parquet}}
synthetic: {{customers: 2500, seed: 5, out_dir: {shop}}}
training:
  backtest_folds: 1
  lightgbm: {{n_estimators: 80}}
registry: {{bootstrap_replicates: 200}}
paths: {{mlruns: mlruns, exports: exports, prefect_home: prefect}}
"""
CRASH_POINTS = [
    "logging",
    "before_register",
    "registering",
    "before_release",
    "before_live",
    "before_mirror",
    "after_live",
]


def write_config(root: Path, shop: Path) -> DangolConfig:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dangol.yaml").write_text(CONFIG.format(shop=shop))
    return load_config(root / "dangol.yaml")


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shop")


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory, shop: Path) -> DangolConfig:
    return write_config(tmp_path_factory.mktemp("gate"), shop)


@pytest.fixture(scope="module")
def models(config: DangolConfig, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every target trained three ways: strong, weak (one stump) and strong with another
    seed; plus the split."""
    tables, _ = data.load_shop(config, progress=lambda _: None)
    frame, split = training.build_training_data(tables, config)
    weak = config.model_copy(deep=True)
    weak.training.lightgbm.n_estimators = 1
    weak.training.lightgbm.num_leaves = 2
    reseeded = config.model_copy(deep=True)
    reseeded.training.seed = config.training.seed + 1
    targets = training.targets_to_train(frame)
    plots = tmp_path_factory.mktemp("plots")
    return {
        kind: [training.train_target(frame, split, t, cfg, plots) for t in targets]
        for kind, cfg in (("strong", config), ("weak", weak), ("reseeded", reseeded))
    } | {"split": split}


def _store(config: DangolConfig, where: Path) -> DangolConfig:
    """The config with its own empty MLflow store."""
    return config.model_copy(update={"paths": config.paths.model_copy(update={"mlruns": where})})


def _publish(trained, split, config: DangolConfig, key: str = "test"):
    return log_and_publish(trained, split, config, key)


def _state(config: DangolConfig) -> dict:
    """Every registered version of every target and release, the live release, the aliases."""
    from mlflow import MlflowClient

    registry.configure_mlflow(config.resolve(config.paths.mlruns))
    names = [config.registry.model_name(t) for t in TARGETS] + [config.registry.release_name]
    client = MlflowClient()
    live = release.live_release(config.registry.release_name)
    return {
        "versions": {name: registry.version_numbers(name) for name in names},
        "live": live.id if live else None,
        "champions": {name: release.champion_of(client, name) for name in names[:-1]},
    }


def test_a_release_goes_live_only_when_better_beyond_noise(models, config, tmp_path) -> None:
    from mlflow import MlflowClient

    config = _store(config, tmp_path)
    split = models["split"]
    first = _publish(models["weak"], split, config)
    assert first.promoted and first.reason.startswith("no live release yet")
    better = _publish(models["strong"], split, config)
    assert better.promoted, better.reason
    assert "better beyond noise" in better.reason
    worse = _publish(models["weak"], split, config)
    assert not worse.promoted and "worse beyond noise" in worse.reason
    state = _state(config)
    assert state["live"] == better.release.id
    for target, entry in better.release.targets.items():
        assert state["champions"][entry.registered_name] == entry.version, target
    summary = summary_markdown(worse)
    assert "kept (not live)" in summary and "% CI" in summary
    client = MlflowClient()
    kept = client.get_model_version(config.registry.release_name, worse.release.version)
    assert kept.tags["promotion.decision"] == "kept"
    experiment = client.get_experiment_by_name(config.registry.experiment).experiment_id
    for outcome in worse.targets:
        run = client.get_run(worse.release.targets[outcome.target].run_id)
        assert run.info.experiment_id == experiment
        assert "mlflow.parentRunId" in run.data.tags
        assert run.data.tags["promotion.verdict"] in (promotion.WORSE, promotion.TIE)
        assert "promotion.ci_low" in run.data.metrics
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
        assert any(path.endswith("_importance.png") for path in artifacts)


def test_models_names_the_baselines_train_warned_about_from_the_store(models, config, tmp_path):
    """A first release goes live whatever it scores; `dangol models` reads back from the
    run's logged metrics exactly the baselines `dangol train` said ranked better."""
    from models.registry import baselines_ahead

    config = _store(config, tmp_path)
    first = _publish(models["weak"], models["split"], config)
    assert first.promoted
    at_fit = {t.target: baselines_ahead(t.target, t.metrics, t.baselines) for t in models["weak"]}
    assert any(at_fit.values()), "a one-stump model loses to some rule"
    registry.configure_mlflow(config.resolve(config.paths.mlruns))
    read_back = {
        target: baselines_ahead(target, entry.metrics, registry.logged_results(entry.run_id)[1])
        for target, entry in first.release.targets.items()
    }
    assert read_back == at_fit
    assert registry.logged_results("0" * 32) == ({}, {}, {})


def test_same_data_another_seed_keeps_the_live_release(models, config, tmp_path) -> None:
    config = _store(config, tmp_path)
    split = models["split"]
    live = _publish(models["strong"], split, config)
    again = _publish(models["reseeded"], split, config)
    assert not again.promoted, again.reason
    assert {o.comparison.verdict for o in again.targets} <= {promotion.TIE, promotion.WORSE}
    for outcome in again.targets:
        c = outcome.comparison
        assert c.ci_low < c.delta < c.ci_high  # the estimate and its interval are recorded
    assert _state(config)["live"] == live.release.id


def test_failure_while_logging_registers_nothing(models, config, tmp_path) -> None:
    config = _store(config, tmp_path)
    split = models["split"]
    _publish(models["weak"], split, config)
    before = _state(config)
    first, second, *rest = models["strong"]
    # the second target's holdout lost a model input: logging its model fails midway
    broken = dataclasses.replace(
        second, test_rows=second.test_rows.drop(columns=second.model.features[0])
    )
    with pytest.raises(KeyError):
        _publish([first, broken, *rest], split, config)
    assert _state(config) == before


def test_failure_while_registering_removes_what_the_run_registered(
    models, config, tmp_path, monkeypatch
) -> None:
    config = _store(config, tmp_path)
    split = models["split"]
    _publish(models["weak"], split, config)
    before = _state(config)
    register = registry.register
    calls = []

    def register_then_fail(model_uri, name, tags):
        calls.append(name)
        if len(calls) == 2:
            raise RuntimeError("registry went away")
        return register(model_uri, name, tags)

    monkeypatch.setattr(registry, "register", register_then_fail)
    with pytest.raises(RuntimeError, match="registry went away"):
        _publish(models["strong"], split, config)
    assert _state(config) == before


@pytest.fixture(scope="module")
def weak_store(models, config, tmp_path_factory) -> tuple[Path, str]:
    """A store whose live release is the weak one; each crash test works on a copy."""
    root = tmp_path_factory.mktemp("weak-store")
    weak = _publish(models["weak"], models["split"], _store(config, root / "mlruns"))
    return root / "mlruns", weak.release.id


@pytest.fixture(scope="module")
def candidate(models, tmp_path_factory) -> Path:
    """The strong models and split, pickled for a publishing subprocess."""
    path = tmp_path_factory.mktemp("candidate") / "strong.pkl"
    path.write_bytes(pickle.dumps((models["strong"], models["split"])))
    return path


PUBLISH = """
import pickle, sys
from flows.config import load_config
from flows.publish import log_and_publish
trained, split = pickle.loads(open(sys.argv[1], "rb").read())
log_and_publish(trained, split, load_config(sys.argv[2]), "crash-test")
"""


@pytest.mark.slow
@pytest.mark.parametrize("point", CRASH_POINTS)
def test_kill_at_any_point_leaves_one_release_live_and_the_next_retrain_repairs(
    point, weak_store, candidate, shop, tmp_path
) -> None:
    store, weak_id = weak_store
    shutil.copytree(store, tmp_path / "mlruns")
    config = write_config(tmp_path, shop)
    killed = subprocess.run(
        [sys.executable, "-c", PUBLISH, str(candidate), str(tmp_path / "dangol.yaml")],
        cwd=REPO,
        env={**_env(), CRASH_ENV: point},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == -9, killed.stderr[-3000:]
    state = _state(config)
    live = release.live_release(config.registry.release_name)
    # the live release is whole: the old one, or (once its alias moved) the new one
    assert state["live"] == (weak_id if point in CRASH_POINTS[:5] else live.id)
    assert (state["live"] == weak_id) == (point in CRASH_POINTS[:5])
    for entry in live.targets.values():
        assert entry.version in state["versions"][entry.registered_name]
    # the next retrain repairs first: no dead run, no version outside a release, mirrors right
    mlruns = config.resolve(config.paths.mlruns)
    experiment = registry.ensure_experiment(config.registry.experiment, mlruns)
    names = [config.registry.model_name(t) for t in TARGETS]
    repairs = release.recover(experiment, config.registry.release_name, names)
    assert repairs, "the interrupted run is found"
    assert _orphans(config) == []
    assert _running_retrains(experiment) == []
    repaired = _state(config)
    assert repaired["live"] == state["live"]
    for entry in live.targets.values():
        assert repaired["champions"][entry.registered_name] == entry.version
    # ...and then finishes a retrain normally
    trained, split = pickle.loads(candidate.read_bytes())
    finished = log_and_publish(trained, split, config, "after-crash")
    assert _state(config)["live"] == (finished.release.id if finished.promoted else state["live"])


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != CRASH_ENV}


def _orphans(config: DangolConfig) -> list[str]:
    """Registered target versions that no release holds."""
    from mlflow import MlflowClient

    client = MlflowClient()
    releases = client.search_model_versions(f"name = '{config.registry.release_name}'")
    held = {
        (entry.registered_name, entry.version)
        for version in releases
        for entry in release.Release.from_json(version.tags[release.RECORD_TAG]).targets.values()
    }
    out = []
    for target in TARGETS:
        name = config.registry.model_name(target)
        out += [f"{name} v{v}" for v in registry.version_numbers(name) if (name, v) not in held]
    return out


def _running_retrains(experiment: str) -> list[str]:
    from mlflow import MlflowClient

    runs = MlflowClient().search_runs(
        [experiment],
        filter_string=f"tags.`{release.KIND_TAG}` = '{release.RETRAIN}' "
        "and attributes.status = 'RUNNING'",
    )
    return [run.info.run_id for run in runs]


def test_paired_bootstrap_sees_a_real_gain_and_no_gain_in_noise() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    groups = rng.integers(0, 2000, n)
    signal = rng.normal(size=n)
    outcome = (rng.random(n) < 1 / (1 + np.exp(-2 * signal))).astype(float)
    good = signal + rng.normal(scale=0.5, size=n)
    bad = signal + rng.normal(scale=2.0, size=n)
    delta, low, high = promotion.paired_bootstrap(outcome, good, bad, groups, "pr_auc", 200)
    assert 0 < low < delta < high
    same = good + rng.normal(scale=1e-3, size=n)
    delta, low, high = promotion.paired_bootstrap(outcome, same, good, groups, "pr_auc", 200)
    assert low < 0 < high
    compared = promotion.compare("t", "log_loss", outcome, 1 / (1 + np.exp(-good)), None, groups)
    assert compared.verdict == promotion.NEW
