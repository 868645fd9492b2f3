"""`dangol check` and what `dangol train` does with a target the data cannot support: a
300-customer shop trains what it can, and only a target listed in
`training.required_targets` stops the run."""

from __future__ import annotations

import re

import pytest

from features.targets import TARGETS, ranking_target
from flows import readiness
from flows.config import load_config
from flows.readiness import check_readiness, required_targets
from models.train import InsufficientDataError
from tests.projects import write_project

VIP = ranking_target("rising_vip").name
BUYERS = ranking_target("repurchase_prospects").name


@pytest.fixture(scope="module")
def small_shop(tmp_path_factory: pytest.TempPathFactory):
    """300 customers over two years: the VIP line of the default tiers is crossed by a few."""
    from flows import data, training

    root = tmp_path_factory.mktemp("small")
    config = load_config(write_project(root, customers=300, shop_seed=5))
    tables, _ = data.load_shop(config, progress=lambda _line: None)
    frame, split = training.build_training_data(tables, config)
    return config, tables, frame, split


def test_check_says_what_a_small_shop_supports_and_what_to_change(small_shop) -> None:
    config, tables, _frame, _split = small_shop
    readiness = check_readiness(tables, config)
    text = "\n".join(readiness.lines())
    assert readiness.customers == 300 and readiness.tables["orders"] == len(tables.orders)
    assert readiness.targets[BUYERS] is None
    why = readiness.targets[VIP]
    assert why.startswith("VIP line ₩2.0M: ") and "20 needed" in why
    assert "lower the line (tiers.thresholds) or use quantile tiers" in why
    # the segments ranked by the VIP score cannot be built, and say so
    assert readiness.segments["rising_vip"] == f"no model for target {VIP}"
    assert readiness.segments["active"] is None
    assert readiness.ready  # the required target trains
    for heading in (
        "tables:",
        "dates:",
        "orders per buyer:",
        "positives / negatives",
        "to change:",
    ):
        assert heading in text
    timing = next(spec.name for spec in TARGETS.values() if spec.kind == "days")
    counted = next(line for line in text.splitlines() if line.startswith(f"  {timing}:"))
    assert "next orders" in counted and "/" not in counted  # one number, not n / n
    positives = {(c.target, c.window): c.positives for c in readiness.counts}
    assert positives[(VIP, "validation")] < config.training.min_positives


def test_train_skips_a_short_target_and_keeps_the_others(small_shop) -> None:

    config, _tables, frame, split = small_shop
    wanted, skipped = readiness.plan_targets(frame, split, config)
    assert BUYERS in wanted and VIP not in wanted
    assert skipped[VIP].startswith("VIP line ")
    # the same words as `dangol check`
    assert skipped[VIP] == check_readiness(_tables, config).targets[VIP]


def test_a_required_target_that_cannot_train_stops_the_run(small_shop) -> None:

    config, _tables, frame, split = small_shop
    strict = config.model_copy(
        update={"training": config.training.model_copy(update={"required_targets": [BUYERS, VIP]})}
    )
    assert required_targets(strict) == [BUYERS, VIP]
    with pytest.raises(InsufficientDataError, match=f"required target {VIP} cannot be trained"):
        readiness.plan_targets(frame, split, strict)
    # the default follows the targets' specs
    assert required_targets(config) == [n for n, spec in TARGETS.items() if spec.required]


def test_required_targets_must_be_known() -> None:
    from models.train import TrainingSettings

    with pytest.raises(ValueError, match="unknown targets"):
        TrainingSettings(required_targets=["lifetime_value_typo"])


def test_check_command_prints_the_report(small_shop, capsys) -> None:
    from flows.cli import main

    config, *_ = small_shop
    assert main(["check", "--config", str(config.base_dir / "dangol.yaml")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"orders: kept [\d,]+ of [\d,]+ rows", out)  # what the load kept
    assert f"{VIP} (optional): cannot be trained: VIP line" in out
    assert "ready: `dangol train` would train" in out


def test_train_on_too_short_a_log_says_what_to_change(small_shop) -> None:
    """The same advice as `dangol check`, not only "no validation cutoff"."""
    from flows import training

    config, tables, *_ = small_shop
    long_horizon = config.model_copy(
        update={"labels": config.labels.model_copy(update={"horizon_days": 400})}
    )
    with pytest.raises(InsufficientDataError) as error:
        training.build_training_data(tables, long_horizon)
    message = str(error.value)
    assert message.startswith("no validation cutoff")
    assert "shorten labels.horizon_days or training.min_history_days" in message


def test_the_advised_span_is_one_that_trains(small_shop) -> None:
    """The advice counted two horizons where the split needs three (training, validation
    and test labels may not overlap): a user who followed it still could not train."""
    import pandas as pd

    from features.snapshot import labelled_cutoffs
    from flows import training

    config, tables, *_ = small_shop
    settings = config.training.model_copy(
        update={"cutoff_every_days": 7, "min_history_days": 28, "test_cutoffs": 2}
    )
    short = config.model_copy(update={"training": settings})
    first = pd.Timestamp("2025-01-01")
    advice = training.span_advice(first, first + pd.Timedelta(days=242), short)
    needed = int(re.search(r"training needs (\d+)", advice).group(1))
    horizon = short.labels.horizon_days
    assert needed >= 28 + 3 * horizon  # the old advice said 236 for this shop

    def splits(span: int) -> bool:
        end = first + pd.Timedelta(days=span)
        cutoffs = labelled_cutoffs(first, end, 7, horizon, 28)
        try:
            training.time_split(cutoffs, horizon, short)
        except InsufficientDataError:
            return False
        return True

    assert splits(needed) and not splits(needed - 1)


def test_check_and_train_say_when_the_value_horizon_is_shorter_than_configured(
    small_shop,
) -> None:
    """A 1.5-year log turned value_horizon_days 365 into 90 without a word outside the
    summary; and a value horizon below H was silently raised to H."""
    import pandas as pd
    from pydantic import ValidationError

    from features.snapshot import LabelSettings, labelled_cutoffs
    from flows import training

    config, *_ = small_shop
    first = pd.Timestamp("2024-01-01")

    def cutoffs(days: int) -> list[pd.Timestamp]:
        end = first + pd.Timedelta(days=days)
        settings = config.training
        return labelled_cutoffs(
            first, end, settings.cutoff_every_days, 90, settings.min_history_days
        )

    short = cutoffs(550)
    days = training.value_horizon(short, config)
    assert days is not None and days < 365
    note = training.value_horizon_note(short, config)
    assert note is not None and f"over {days} days, not up to 365" in note
    assert training.value_horizon_note(cutoffs(2000), config) is None
    # the two-year shop: 180 days, and check prints why
    readiness = check_readiness(small_shop[1], config)
    assert "over 180 days, not up to 365" in readiness.value_horizon
    assert f"value horizon: {readiness.value_horizon}" in readiness.lines()
    with pytest.raises(ValidationError, match="value_horizon_days \\(30\\) must be at least"):
        LabelSettings(horizon_days=90, value_horizon_days=30)
    assert LabelSettings(horizon_days=400).value_horizon_days == 400  # the default, raised
