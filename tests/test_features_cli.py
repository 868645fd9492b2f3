"""`dangol tiers` and `dangol features --cutoffs/--training` on a tiny shop in a temp dir."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.synthetic import write_shop
from flows.cli import main
from tests.test_features_oracle import random_shop


def _config(tmp_path: Path) -> Path:
    paths = write_shop(random_shop(31, customers=60), tmp_path / "shop")
    tables = "\n".join(f"    {name}: {{path: {path}}}" for name, path in paths.items())
    text = (
        f"data:\n  end: 2026-02-05\n  tables:\n{tables}\n"
        "tiers:\n  window_days: 60\n  thresholds: [3000, 1200, 400, 100]\n"
        "training:\n  cutoff_every_days: 30\n  min_history_days: 30\n"
        f"paths:\n  prefect_home: {tmp_path / 'prefect'}\n"
    )
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_tiers_and_stacked_features_commands(tmp_path: Path) -> None:
    config = str(_config(tmp_path))
    csv = tmp_path / "out" / "migration.csv"
    args = ["tiers", "--config", config, "--from", "2025-06-01", "--to", "2025-12-01"]
    assert main([*args, "--out", str(csv)]) == 0
    matrix = pd.read_csv(csv)
    assert list(matrix.columns) == ["from_tier", "to_tier", "count", "share"]
    assert matrix["count"].sum() > 0
    shares = matrix.groupby("from_tier")["share"].sum()
    assert ((shares - 1).abs() < 1e-9).any()

    out = tmp_path / "out" / "stacked.parquet"
    args = ["features", "--config", config, "--cutoffs", "2025-06-01,2025-09-01", "--out"]
    assert main([*args, str(out)]) == 0
    frame = pd.read_parquet(out)
    assert sorted(frame["cutoff"].unique()) == list(pd.to_datetime(["2025-06-01", "2025-09-01"]))

    train = tmp_path / "out" / "train.parquet"
    assert main(["features", "--config", config, "--training", "--out", str(train)]) == 0
    frame = pd.read_parquet(train)
    assert {"repurchase", "first_purchase", "vip_conversion"} <= set(frame.columns)
    assert (frame["cutoff"] + pd.Timedelta(days=90) <= pd.Timestamp("2026-02-05")).all()


def test_a_cutoff_outside_the_data_is_refused_by_name(tmp_path: Path, capsys) -> None:
    """After the data's end every customer would look silent (lists that read as current);
    before anyone is known there is nothing to score. Exit 2, one message, no file."""
    config = str(_config(tmp_path))
    out = tmp_path / "out" / "snapshot.parquet"
    late = ["features", "--config", config, "--cutoff", "2030-01-01", "--out", str(out)]
    assert main(late) == 2
    message = capsys.readouterr().err
    assert "cutoff 2030-01-01 is after the end of the data (2026-02-05)" in message
    assert "Traceback" not in message
    early = ["features", "--config", config, "--cutoff", "2001-01-01", "--out", str(out)]
    assert main(early) == 2
    assert "cutoff 2001-01-01: no customer is known before it" in capsys.readouterr().err
    assert not out.exists()
    assert main(["features", "--config", config, "--cutoff", "2026-02-05", "--out", str(out)]) == 0


def test_scoring_before_any_training_names_the_command_to_run(tmp_path: Path) -> None:
    """`dangol score` and `dangol report` on an empty store say which command to run, with
    the config file (not its folder)."""
    import pytest

    from flows import export
    from flows.config import load_config
    from models.registry import NoChampionError

    config = _config(tmp_path)
    config.write_text(config.read_text() + f"  mlruns: {tmp_path / 'mlruns'}\n")
    with pytest.raises(NoChampionError) as error:
        export.live_release(load_config(config))
    assert f"run `dangol train --config {config.resolve()}` first" in str(error.value)


BAD_OUT = [
    ("folder", "is a folder; give a file name in it"),
    ("plain.csv/x.csv", "plain.csv is a file, not a folder"),
    ("table.txt", "name the file with .csv or .parquet"),
]


@pytest.mark.parametrize(("out", "says"), BAD_OUT)
@pytest.mark.parametrize(
    "command",
    [
        ["tiers", "--from", "2025-06-01", "--to", "2025-12-01"],
        ["features", "--cutoff", "2025-06-01"],
        ["features", "--cutoffs", "2025-06-01,2025-09-01"],
        ["cohorts"],
    ],
)
def test_a_bad_out_path_is_one_message_and_leaves_nothing(
    tmp_path: Path, capsys, command: list[str], out: str, says: str
) -> None:
    config = str(_config(tmp_path))
    where = tmp_path / "out"
    (where / "folder").mkdir(parents=True)
    (where / "plain.csv").write_text("not a folder\n")
    assert main([*command, "--config", config, "--out", str(where / out)]) == 2
    err = capsys.readouterr().err
    assert f"dangol {command[0]}: error: " in err and says in err
    assert "Traceback" not in err
    assert sorted(p.name for p in where.iterdir()) == ["folder", "plain.csv"]
    assert list((where / "folder").iterdir()) == []


def test_the_file_format_follows_the_extension(tmp_path: Path, capsys) -> None:
    config = str(_config(tmp_path))
    snapshot = tmp_path / "snap.csv"
    assert (
        main(["features", "--config", config, "--cutoff", "2025-06-01", "--out", str(snapshot)])
        == 0
    )
    frame = pd.read_csv(snapshot)  # CSV, not Parquet under a .csv name
    assert len(frame) > 0 and {"customer_id", "cutoff"} <= set(frame.columns)
    matrix = tmp_path / "migration.parquet"
    tiers = ["tiers", "--config", config, "--from", "2025-06-01", "--to", "2025-12-01"]
    assert main([*tiers, "--out", str(matrix)]) == 0
    long = pd.read_parquet(matrix)
    assert list(long.columns) == ["from_tier", "to_tier", "count", "share"]
    assert "new" in set(long["from_tier"])
    cohorts = tmp_path / "cohorts.parquet"
    assert main(["cohorts", "--config", config, "--out", str(cohorts)]) == 0
    assert pd.read_parquet(cohorts)["cohort"].iloc[0].startswith("20")


def test_tiers_print_only_the_table_on_stdout(tmp_path: Path, capsys) -> None:
    """`dangol tiers ... > file` keeps the table; the loader's lines go to stderr."""
    config = str(_config(tmp_path))
    assert main(["tiers", "--config", config, "--from", "2025-06-01", "--to", "2025-12-01"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("tier migration 2025-06-01 -> 2025-12-01")
    assert "kept" not in captured.out and "kept" in captured.err
    out = tmp_path / "snap.parquet"
    assert main(["features", "--config", config, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [captured.out.splitlines()[-1]]
    assert captured.out.strip().endswith(str(out)) and "kept" in captured.err


TIER_DATES = [
    ("2025-12-01", "2025-06-01", "--to 2025-06-01 must be after --from 2025-12-01"),
    ("2025-06-01", "2025-06-01", "--to 2025-06-01 must be after --from 2025-06-01"),
    ("2025-06-01", "2030-01-01", "--to 2030-01-01 is after the end of the data (2026-02-05)"),
    ("2020-01-01", "2021-01-01", "--from 2020-01-01 is before the first order"),
]


@pytest.mark.parametrize(("start", "end", "says"), TIER_DATES)
def test_tier_dates_the_data_cannot_describe_are_refused(
    tmp_path: Path, capsys, start: str, end: str, says: str
) -> None:
    """Not a traceback, and not every tier 'moving' to the lowest after the data's end or
    NaN shares before its start."""
    config = str(_config(tmp_path))
    out = tmp_path / "m.csv"
    assert main(["tiers", "--config", config, "--from", start, "--to", end, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"dangol tiers: error: {says}" in err and "Traceback" not in err
    if "the data" in says:
        assert "the data covers" in err and "to 2026-02-05" in err
    assert not out.exists()


def test_every_stacked_cutoff_is_checked_like_cutoff(tmp_path: Path, capsys) -> None:
    config = str(_config(tmp_path))
    out = tmp_path / "f.parquet"
    stacked = ["features", "--config", config, "--out", str(out), "--cutoffs"]
    assert main([*stacked, "2025-06-01,2030-01-01"]) == 2
    assert "cutoff 2030-01-01 is after the end of the data (2026-02-05)" in capsys.readouterr().err
    assert main([*stacked, "2025-06-01,2001-01-01"]) == 2
    assert "cutoff 2001-01-01: no customer is known before it" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(SystemExit) as parsed:  # argparse: usage and one error line
        main([*stacked, ","])
    assert parsed.value.code == 2
    assert "argument --cutoffs: no date in ','" in capsys.readouterr().err


def test_a_shop_too_short_for_training_cutoffs_is_one_message(tmp_path: Path, capsys) -> None:
    config = _config(tmp_path)
    config.write_text(config.read_text().replace("min_history_days: 30", "min_history_days: 3000"))
    out = tmp_path / "train.parquet"
    assert main(["features", "--config", str(config), "--training", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "dangol features: error: the data (" in err
    assert "is too short for any labelled cutoff: training.min_history_days (3000)" in err
    assert not out.exists()


def test_a_data_end_long_after_the_last_order_is_warned_about(tmp_path: Path) -> None:
    """data.end says the log is complete up to it; months without a single order before it
    (longer than the shop was ever quiet) mean the export most likely stops earlier, and
    every label after the last order would read as customers not buying."""
    from flows import data
    from flows.config import load_config

    config = load_config(_config(tmp_path))
    tables, _ = data.load_shop(config, progress=lambda _line: None)
    last = tables.orders["ordered_at"].max()
    assert data.quiet_end_warning(tables, config) is None  # 3 days quiet; 14 seen before
    late = config.model_copy(
        update={"data": config.data.model_copy(update={"end": last + pd.Timedelta(days=400)})}
    )
    warning = data.quiet_end_warning(tables, late)
    assert warning is not None and warning.startswith("warning: no order in the 400 days")
    lines: list[str] = []
    data.load_shop(late, progress=lines.append)
    assert lines[-1] == warning
