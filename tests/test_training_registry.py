"""The champion gate and atomic registration against a real MLflow store in a temp dir."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from flows import steps
from flows.config import DangolConfig, load_config
from flows.retrain import summary_markdown
from models import registry

pytestmark = pytest.mark.integration

CONFIG = """
data:
  timezone: Asia/Seoul
  end: 2026-01-01
  tables:
    customers: {path: shop/customers.parquet}
    orders: {path: shop/orders.parquet}
    order_items: {path: shop/order_items.parquet}
    content_views: {path: shop/content_views.parquet}
synthetic: {customers: 2500, seed: 5, out_dir: shop}
training:
  backtest_folds: 1
  lightgbm: {n_estimators: 80}
paths: {mlruns: mlruns, exports: exports, prefect_home: prefect}
"""


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> DangolConfig:
    root = tmp_path_factory.mktemp("gate")
    (root / "dangol.yaml").write_text(CONFIG)
    return load_config(root / "dangol.yaml")


@pytest.fixture(scope="module")
def models(config: DangolConfig, tmp_path_factory) -> dict[str, list[steps.TrainedTarget]]:
    """For both required targets: a strong model and a deliberately weak one (one stump)."""
    tables, _ = steps.load_shop(config, progress=lambda _: None)
    frame, split = steps.build_training_data(tables, config)
    weak = config.model_copy(deep=True)
    weak.training.lightgbm.n_estimators = 1
    weak.training.lightgbm.num_leaves = 2
    plots = tmp_path_factory.mktemp("plots")
    return {
        kind: [steps.train_target(frame, split, t, cfg, plots) for t in steps.TARGETS]
        for kind, cfg in (("strong", config), ("weak", weak))
    } | {"split": split}


def _store(config: DangolConfig, where: Path) -> DangolConfig:
    """The config with its own empty MLflow store."""
    return config.model_copy(update={"paths": config.paths.model_copy(update={"mlruns": where})})


def _state(config: DangolConfig) -> dict[str, tuple[list[str], str | None]]:
    """Every registered version and the champion of each target's model."""
    registry.configure_mlflow(config.resolve(config.paths.mlruns))
    return {
        (name := config.registry.model_name(t)): (
            registry.version_numbers(name),
            registry.champion_version(name),
        )
        for t in steps.TARGETS
    }


def test_alias_moves_only_for_a_challenger_that_beats_the_champion(models, config, tmp_path):
    from mlflow import MlflowClient

    config = _store(config, tmp_path)
    split = models["split"]
    first = steps_register(models["weak"], split, config)
    assert all(o.decision.promote and o.decision.reason == "no champion yet" for o in first)
    better = steps_register(models["strong"], split, config)
    assert all(o.decision.promote for o in better), [o.decision.reason for o in better]
    worse = steps_register(models["weak"], split, config)
    assert not any(o.decision.promote for o in worse)
    summary = summary_markdown(worse, split)
    assert "dangol-repurchase | 3 |" in summary and "kept: challenger" in summary
    assert "bgnbd" in summary and "(1 window)" in summary
    client = MlflowClient()
    experiment = client.get_experiment_by_name(config.registry.experiment).experiment_id
    for outcome in worse:
        assert registry.champion_version(outcome.model_name) == "2"
        version = client.get_model_version(outcome.model_name, outcome.version)
        assert version.tags["promotion.decision"] == "kept"
        assert "does not beat" in version.tags["promotion.reason"]
        # the child run sits in the project's experiment, under its parent, with the evidence
        run = client.get_run(version.tags["run_id"])
        assert run.info.experiment_id == experiment
        assert "mlflow.parentRunId" in run.data.tags
        assert run.data.tags["promotion.decision"] == "kept"
        assert "gap_vs_spend_rank.roc_auc" in run.data.metrics or (
            "gap_vs_bgnbd.pr_auc" in run.data.metrics
        )
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
        assert any(path.endswith("_importance.png") for path in artifacts)


def steps_register(trained, split, config):
    from flows.retrain import log_and_register

    return log_and_register(trained, split, config)


def test_failure_while_logging_the_second_target_registers_nothing(models, config, tmp_path):
    config = _store(config, tmp_path)
    split = models["split"]
    steps_register(models["weak"], split, config)
    before = _state(config)
    repurchase, vip = models["strong"]
    # the second target's holdout lost a model input: logging its model fails midway
    broken = dataclasses.replace(vip, test_rows=vip.test_rows.drop(columns=vip.model.features[0]))
    with pytest.raises(KeyError):
        steps_register([repurchase, broken], split, config)
    assert _state(config) == before


def test_failure_while_registering_rolls_back_versions_and_aliases(
    models, config, tmp_path, monkeypatch
):
    config = _store(config, tmp_path)
    split = models["split"]
    steps_register(models["weak"], split, config)
    before = _state(config)
    promote = registry.apply_promotion
    failing = config.registry.model_name("vip_conversion")

    def apply_then_fail(name, version, decision):
        if name == failing:
            raise RuntimeError("registry went away")
        promote(name, version, decision)

    monkeypatch.setattr(registry, "apply_promotion", apply_then_fail)
    with pytest.raises(RuntimeError, match="registry went away"):
        steps_register(models["strong"], split, config)
    assert _state(config) == before
