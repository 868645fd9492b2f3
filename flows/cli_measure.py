"""`dangol measure`, `dangol cohorts`, `dangol uplift`: closing the loop (DESIGN §3.8).

`add_commands(add)` registers the commands with `flows.cli.build_parser`'s `add` helper.
Heavy imports stay inside the handlers so that `dangol --help` stays fast. Expected
failures (unknown campaign, window still open, missing table) raise
`models.measure.MeasurementError`, a ContractError: the CLI prints the message and exits 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from flows.usage import UsageError

# The names of models.change.METRICS, repeated here so that `--help` imports no pandas
# (tests/test_measure.py checks that they agree).
METRICS = ("first_purchase_rate", "repurchase_rate")
DEFAULT_METRIC = METRICS[1]


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


def _margin(text: str) -> float:
    """A gross margin: the share of revenue kept, in (0, 1]."""
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if not 0 < value <= 1:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(
            f"a gross margin is a share of revenue in (0, 1] (e.g. 0.35), got {text!r}"
        )
    return value


def _positive_days(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a whole number of days: {text!r}") from exc
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of days, got {text!r}")
    return value


def _load(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """The config, the validated tables and the data end, with loader chatter on stderr."""
    import sys

    from flows import data
    from flows.runtime import command_config

    config = command_config(args.config)
    tables, _report = data.load_shop(config, progress=lambda line: print(line, file=sys.stderr))
    return config, tables, data.data_end(tables, config)


def _emit(payload: dict[str, Any], lines: list[str], as_json: bool) -> None:
    if as_json:
        from models.jsontext import strict_json

        print(strict_json(payload, indent=2))
    else:
        print("\n".join(lines))


def cmd_measure(args: argparse.Namespace) -> None:
    """Treated vs holdout of one campaign, or a policy change judged without a holdout."""
    if args.campaign is not None and args.metric is not None:
        raise UsageError("--metric goes with --change-date; --campaign measures its own outcomes")
    if args.change_date is not None and args.pre_days is not None:
        raise UsageError("--pre-days goes with --campaign (CUPED's pre-period)")
    config, tables, end = _load(args)
    if args.campaign is not None:
        from models.measure import measure_campaign, report_lines

        optional = {} if args.pre_days is None else {"pre_days": args.pre_days}
        result = measure_campaign(
            tables,
            args.campaign,
            end,
            attribution_days=config.data.attribution_days,
            margin=args.margin,
            currency=config.data.currency,
            **optional,
        )
        _emit(result.to_dict(), report_lines(result), args.json)
        return
    from models.change import judge_change, monthly_metric

    metric = args.metric or DEFAULT_METRIC
    series = monthly_metric(tables, metric, end)
    change = judge_change(series, args.change_date, metric)
    _emit(change.to_dict(), change.report_lines(), args.json)


def cmd_cohorts(args: argparse.Namespace) -> None:
    """Repurchase, LTV and tier movement by first-order month; optional before/after."""
    from features.files import TABLE_FORMATS, check_output_path, write_atomic_table
    from flows.data import check_date_in_data
    from models.cohorts import (
        cohort_customers,
        cohort_table,
        compare_cohorts,
        plot_cohorts,
        table_lines,
    )

    out = None if args.out is None else check_output_path(Path(args.out), TABLE_FORMATS)
    config, tables, end = _load(args)
    if args.change_date is not None:
        check_date_in_data(tables, config, args.change_date, "--change-date")
    customers = cohort_customers(tables, end, config.tiers)
    table = cohort_table(customers)
    print("\n".join(table_lines(table)))
    comparison = None
    if args.change_date is not None:
        comparison = compare_cohorts(customers, args.change_date)
        if comparison["difference"].isna().all():
            raise UsageError(
                f"--change-date {args.change_date}: no metric can be compared, too few "
                "customers on one side can be observed yet (a cohort needs 3 months of data "
                f"after its month; the data ends {end.date()})"
            )
        print(f"\ncohorts before vs from {args.change_date} (after − before, 95% CI):")
        print(comparison.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if out is not None:
        write_atomic_table(table, out)
        print(f"-> {out}")
        if comparison is not None:
            side = out.with_name(f"{out.stem}_change{out.suffix}")
            write_atomic_table(comparison, side)
            print(f"-> {side}")
        for path in plot_cohorts(table, out.parent, out.stem):
            print(f"-> {path}")


def cmd_uplift(args: argparse.Namespace) -> None:
    """Train uplift models on earlier campaigns, judge them on a later one by Qini."""
    from models.uplift import evaluate_on_campaign

    config, tables, end = _load(args)
    result = evaluate_on_campaign(
        tables, args.evaluate_on, end, config.features, config.tiers, config.data.attribution_days
    )
    _emit(result.to_dict(), result.report_lines(), args.json)


def add_commands(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Register the measurement commands on the `dangol` parser (flows.cli.build_parser)."""
    measure = add(
        "measure",
        cmd_measure,
        "Measure a campaign against its holdout (--campaign), or a change without a holdout "
        "against normal month-to-month variation (--change-date with --metric).",
    )
    which = measure.add_mutually_exclusive_group(required=True)
    which.add_argument("--campaign", default=None, help="campaign_id in the contacts table")
    which.add_argument("--change-date", type=_date, default=None, help="YYYY-MM-DD")
    measure.add_argument(
        "--metric",
        choices=METRICS,
        default=None,
        help=f"with --change-date (default: {DEFAULT_METRIC})",
    )
    measure.add_argument("--json", action="store_true", help="print a JSON object")
    measure.add_argument(
        "--pre-days",
        type=_positive_days,
        default=None,
        help="with --campaign: days of pre-period spend for CUPED (default: 180)",
    )
    measure.add_argument(
        "--margin",
        type=_margin,
        default=1.0,
        help="gross margin on incremental revenue for ROI, in (0, 1] (default: 1)",
    )

    cohorts = add(
        "cohorts",
        cmd_cohorts,
        "Cohorts by first-order month: repurchase and LTV at 3/6 months, tier movement at "
        "6/12 months; CSV and PNG plots with --out.",
    )
    cohorts.add_argument(
        "--out", default=None, help=".csv or .parquet file; PNG plots are written next to it"
    )
    cohorts.add_argument(
        "--change-date", type=_date, default=None, help="compare cohorts before/after it"
    )

    uplift = add(
        "uplift",
        cmd_uplift,
        "Fit T- and X-learner uplift models on campaigns that ended before a later campaign "
        "and compare their Qini with a response model's on it.",
    )
    uplift.add_argument("--evaluate-on", required=True, help="campaign_id to evaluate on")
    uplift.add_argument("--json", action="store_true", help="print a JSON object")
