"""The operations path as a user meets it: empty tables named, expected errors as one
message with exit 2 (no Prefect traceback), metrics as a rounded table, and no MLflow pip
warning when models are logged."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from features.synthetic import write_shop
from features.targets import amount_target, ranking_target
from flows.cli import main, metrics_table
from tests import projects
from tests.test_features_oracle import random_shop


def _project(tmp_path: Path, tables: list[str], blank: dict[str, str]) -> Path:
    """A CSV shop with `tables`; those in `blank` are written header-only or empty."""
    shop = random_shop(31, customers=60)
    written = write_shop(shop, tmp_path / "parquet")
    lines = []
    for name in tables:
        path = tmp_path / f"{name}.csv"
        frame = pd.read_parquet(written[name])
        if blank.get(name) == "empty":
            path.write_text("")
        elif blank.get(name) == "header":
            frame.head(0).to_csv(path, index=False)
        else:
            frame.to_csv(path, index=False)
        lines.append(f"    {name}: {{path: {path}}}")
    text = (
        "data:\n  end: 2026-02-05\n  tables:\n" + "\n".join(lines) + "\n"
        "tiers:\n  window_days: 60\n  thresholds: [3000, 1200, 400, 100]\n"
        "training:\n  cutoff_every_days: 30\n  min_history_days: 30\n"
        f"paths:\n  prefect_home: {tmp_path / 'prefect'}\n  mlruns: {tmp_path / 'mlruns'}\n"
    )
    config = tmp_path / "c.yaml"
    config.write_text(text)
    return config


EMPTY_CASES = [
    # today: order_items "rejected as unknown order" (the orders file was the empty one)
    (["customers", "orders", "order_items"], {"orders": "header"}, "orders.csv", "no rows"),
    (["customers", "orders"], {"orders": "header"}, "orders.csv", "no rows"),
    (["customers", "orders"], {"orders": "empty"}, "orders.csv", "empty"),
    (["customers", "orders"], {"customers": "header"}, "customers.csv", "no rows"),
]


@pytest.mark.parametrize(("tables", "blank", "named", "says"), EMPTY_CASES)
def test_an_empty_or_header_only_table_is_named(
    tmp_path, capsys, tables, blank, named, says
) -> None:
    config = _project(tmp_path, tables, blank)
    code = main(["features", "--config", str(config), "--out", str(tmp_path / "f.parquet")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert named in err and says in err, err
    assert "Traceback" not in err and "AttributeError" not in err


def test_a_header_only_optional_table_is_fine(tmp_path, capsys) -> None:
    tables = ["customers", "orders", "content_views"]
    config = _project(tmp_path, tables, {"content_views": "header"})
    out = tmp_path / "f.parquet"
    assert main(["features", "--config", str(config), "--out", str(out)]) == 0
    assert out.exists()


@pytest.mark.slow
def test_train_on_a_header_only_table_exits_2_without_prefect_tracebacks(
    tmp_path, capfd, prefect_harness
) -> None:
    config = _project(tmp_path, ["customers", "orders", "order_items"], {"orders": "header"})
    code = main(["train", "--config", str(config)])
    captured = capfd.readouterr()
    output = captured.out + captured.err
    assert code == 2, output
    assert "dangol train: error:" in captured.err and "orders.csv: no rows" in captured.err
    assert "Traceback" not in output, output[-3000:]
    assert output.count("orders.csv: no rows") == 1, output[-3000:]


def test_unexpected_failures_keep_their_prefect_lines() -> None:
    from features.contract import ContractError
    from flows.runtime import HideExpectedFailures

    hide = HideExpectedFailures((ContractError,))

    def record(message: str, error: BaseException | None = None) -> logging.LogRecord:
        info = (type(error), error, None) if error is not None else None
        return logging.LogRecord("prefect.flow_runs", logging.ERROR, "", 0, message, (), info)

    assert not hide.filter(record("Encountered exception", ContractError("orders.csv: no rows")))
    assert not hide.filter(
        record("Finished in state Failed('Task run encountered an exception ContractError: x')")
    )
    assert hide.filter(record("Encountered exception", KeyError("tier")))
    assert hide.filter(record("Finished in state Failed('... KeyError: tier')"))
    assert hide.filter(record("Finished in state Completed()"))


def test_metrics_print_as_a_rounded_table() -> None:
    buyers, vips = ranking_target("repurchase_prospects").name, ranking_target("rising_vip").name
    trained = [
        SimpleNamespace(
            target=buyers,
            model_name="dangol-buyers",
            version="2",
            metrics={"roc_auc": 0.93412345678901234, "pr_auc": 0.87, "brier": 0.10219999999},
            baselines={"recency": {"roc_auc": 0.89312345678}},
            baseline_failures={"bgnbd": "did not converge"},
        ),
        SimpleNamespace(
            target=vips,
            model_name="dangol-vips",
            version="12",
            metrics={"roc_auc": 0.986, "pr_auc": 0.5, "brier": 0.005},
            baselines={},
            baseline_failures={},
        ),
        SimpleNamespace(
            target=amount_target().name,
            model_name="dangol-value",
            version="1",
            metrics={"normalized_gini": 0.8961, "capture_top_decile": 0.61, "mae": 1.0},
            baselines={"previous_window": {"normalized_gini": 0.825}, "rfm": {"spearman": 1}},
            baseline_failures={},
        ),
    ]
    header, first, second, money = metrics_table(trained)
    assert header.split() == ["target", "model", "test", "metrics", "baselines"]
    assert "ROC-AUC 0.934" in first and "Brier 0.102" in first and "0.9341" not in first
    assert "recency 0.893" in first and "bgnbd FAILED (did not converge)" in first
    assert "PR-AUC 0.500" in second
    assert first.index("ROC-AUC") == second.index("ROC-AUC")  # columns line up
    # the money target shows its own metrics, and baselines on its first one
    assert "Gini 0.896" in money and "Gini: previous_window 0.825" in money
    assert "rfm" not in money
    assert "{" not in "".join([header, first, second])


@pytest.mark.slow
def test_logging_models_gives_no_pip_warning(tmp_path, caplog) -> None:
    from flows.config import load_config

    config = load_config(projects.write_project(tmp_path))
    with caplog.at_level(logging.WARNING):
        outcome = projects.train_release(config)
    assert "Failed to resolve installed pip version" not in caplog.text
    artifacts = config.resolve(config.paths.mlruns)
    requirements = list(artifacts.rglob("requirements.txt"))
    assert requirements and outcome.targets
    assert all("lightgbm==" in path.read_text() for path in requirements)


def test_scoring_retries_a_busy_store_but_not_a_settled_answer() -> None:
    """No live release (or one for other settings) will not appear in two seconds: the task
    fails at once; anything else (a locked SQLite store) is retried."""
    import sqlite3

    from prefect.states import Failed

    from flows.score import load_release_task, retry_unless_settled
    from models.registry import NoChampionError
    from models.release import ReleaseMismatchError

    assert load_release_task.retry_condition_fn is retry_unless_settled
    assert load_release_task.retries == 2
    for settled in (NoChampionError("no live release"), ReleaseMismatchError("90 vs 30")):
        assert not retry_unless_settled(None, None, Failed(data=settled))
    busy = sqlite3.OperationalError("database is locked")
    assert retry_unless_settled(None, None, Failed(data=busy))
