"""`dangol measure`, `dangol cohorts`, `dangol uplift`: closing the loop (DESIGN §3.8).

`add_commands(add)` registers the commands with `flows.cli.build_parser`'s `add` helper.
Heavy imports stay inside the handlers so that `dangol --help` stays fast. Expected
failures (unknown campaign, window still open, missing table) raise
`models.measure.MeasurementError`, a ContractError: the CLI prints the message and exits 2.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

# The names of models.change.METRICS, repeated here so that `--help` imports no pandas
# (tests/test_measure.py checks that they agree).
METRICS = ("first_purchase_rate", "repurchase_rate")


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


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
        print(json.dumps(payload, indent=2, default=str))
    else:
        print("\n".join(lines))


def cmd_measure(args: argparse.Namespace) -> None:
    """Treated vs holdout of one campaign, or a policy change judged without a holdout."""
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

    series = monthly_metric(tables, args.metric, end)
    change = judge_change(series, args.change_date, args.metric)
    _emit(change.to_dict(), change.report_lines(), args.json)


def cmd_cohorts(args: argparse.Namespace) -> None:
    """Repurchase, LTV and tier movement by first-order month; optional before/after."""
    from models.cohorts import (
        cohort_customers,
        cohort_table,
        compare_cohorts,
        plot_cohorts,
        table_lines,
    )
    from models.holdout import write_atomic_csv

    config, tables, end = _load(args)
    customers = cohort_customers(tables, end, config.tiers)
    table = cohort_table(customers)
    print("\n".join(table_lines(table)))
    comparison = None
    if args.change_date is not None:
        comparison = compare_cohorts(customers, args.change_date)
        print(f"\ncohorts before vs from {args.change_date} (after − before, 95% CI):")
        print(comparison.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.out:
        out = Path(args.out)
        write_atomic_csv(table, out)
        print(f"-> {out}")
        if comparison is not None:
            side = out.with_name(f"{out.stem}_change{out.suffix}")
            write_atomic_csv(comparison, side)
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
        "--metric", choices=METRICS, default="repurchase_rate", help="with --change-date"
    )
    measure.add_argument("--json", action="store_true", help="print a JSON object")
    measure.add_argument(
        "--pre-days",
        type=int,
        default=None,
        help="days of pre-period spend for CUPED (default: models.measure.PRE_DAYS, 180)",
    )
    measure.add_argument(
        "--margin", type=float, default=1.0, help="gross margin on incremental revenue for ROI"
    )

    cohorts = add(
        "cohorts",
        cmd_cohorts,
        "Cohorts by first-order month: repurchase and LTV at 3/6 months, tier movement at "
        "6/12 months; CSV and PNG plots with --out.",
    )
    cohorts.add_argument("--out", default=None, help="CSV file; plots are written next to it")
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
