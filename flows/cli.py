"""`dangol`: the command line. Heavy libraries are imported inside commands so `--help` is fast."""

from __future__ import annotations

import argparse
import atexit
import os
import select
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from flows.cli_measure import add_commands
from flows.paths import DEFAULT_CONFIG, PROJECT_ROOT


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text!r}")
    return value


def _config(args: argparse.Namespace):
    from flows.runtime import command_config

    return command_config(args.config).with_engine(getattr(args, "engine", None))


def cmd_simulate(args: argparse.Namespace) -> None:
    from features.synthetic import generate_shop, write_shop

    started = time.perf_counter()
    tables = generate_shop(args.customers, args.seed, start=args.start, end=args.end)
    paths = write_shop(tables, Path(args.out))
    for name, path in paths.items():
        rows = len(getattr(tables, name))
        print(f"{name:>14}: {rows:>10,} rows -> {path}")
    print(f"done in {time.perf_counter() - started:.1f} s")


def _dates(text: str) -> list[date]:
    dates = [_date(part.strip()) for part in text.split(",") if part.strip()]
    if not dates:
        raise argparse.ArgumentTypeError(f"no date in {text!r}: give YYYY-MM-DD[,YYYY-MM-DD...]")
    return dates


def _stderr(line: str) -> None:
    """Loader progress goes to stderr: `dangol tiers ... > file` keeps only the table."""
    print(line, file=sys.stderr)


def _stacked_frame(args: argparse.Namespace, config, tables):
    """Features at --cutoffs, or features and labels at every labelled cutoff (--training)."""
    import pandas as pd

    from features.snapshot import labelled_cutoffs
    from flows import data

    if args.training:
        first, end = data.first_event(tables), data.data_end(tables, config)
        cutoffs = labelled_cutoffs(
            first,
            end,
            config.training.cutoff_every_days,
            config.labels.horizon_days,
            config.training.min_history_days,
        )
        if not cutoffs:
            raise data.CutoffOutOfRangeError(
                f"the data ({first.date()} to {end.date()}) is too short for any labelled "
                f"cutoff: training.min_history_days ({config.training.min_history_days}) and "
                f"labels.horizon_days ({config.labels.horizon_days}) do not fit in it"
            )
        return data.training_frame(tables, config, cutoffs)
    cutoffs = [pd.Timestamp(c) for c in args.cutoffs]
    end = data.data_end(tables, config)
    for cutoff in cutoffs:  # the rule of --cutoff, for each of them
        data.refuse_after_end(cutoff, end, "cutoff")
    frame = data.build_features(tables, config, cutoffs)
    data.refuse_unknown_cutoffs(frame, cutoffs, tables)
    return frame


def cmd_features(args: argparse.Namespace) -> None:
    from features.files import TABLE_FORMATS, check_output_path, write_atomic_table
    from flows import data, export

    out = check_output_path(Path(args.out), TABLE_FORMATS)
    config = _config(args)
    tables, _report = data.load_shop(config, progress=_stderr)
    if args.cutoffs or args.training:
        snapshot = _stacked_frame(args, config, tables)
    else:
        snapshot = export.latest_snapshot(tables, config, args.cutoff)
    write_atomic_table(snapshot, out)
    cutoffs = snapshot["cutoff"].nunique()
    print(f"{len(snapshot):,} rows ({cutoffs} cutoffs) x {snapshot.shape[1] - 2} columns -> {out}")


def cmd_tiers(args: argparse.Namespace) -> None:
    from features.files import TABLE_FORMATS, check_output_path, write_atomic_table
    from features.tiers import migration_matrix
    from flows import data
    from flows.usage import UsageError

    if args.end <= args.start:
        raise UsageError(f"--to {args.end} must be after --from {args.start}")
    out = None if args.out is None else check_output_path(Path(args.out), TABLE_FORMATS)
    config = _config(args)
    tables, _report = data.load_shop(config, progress=_stderr)
    data.check_date_in_data(tables, config, args.start, "--from")
    data.check_date_in_data(tables, config, args.end, "--to")
    counts, shares = migration_matrix(
        tables.orders, args.start, args.end, config.tiers, tables.customers
    )
    print(f"tier migration {args.start} -> {args.end} (rows: from, columns: to; 'new' = not")
    print(f"yet known at {args.start}); window {config.tiers.window_days} days")
    print("counts:")
    print(counts.to_string())
    print("shares of each row:")
    print(shares.round(3).to_string())
    if out is not None:
        long = counts.stack().rename("count").to_frame()
        long["share"] = shares.stack().reindex(long.index)
        long = long.reset_index()
        long["from_tier"] = long["from_tier"].astype(str)  # tiers and "new": one type (Parquet)
        write_atomic_table(long, out)
        print(f"-> {out}")


def cmd_check(args: argparse.Namespace):
    """What the data supports before training; exit 1 when a required target cannot train."""
    from flows import data
    from flows.readiness import check_readiness

    config = _config(args)
    tables, report = data.load_shop(config, progress=lambda _line: None)
    readiness = check_readiness(tables, config)
    print(f"dangol check {args.config}")
    for line in report.summary_lines():  # rows kept per table and each rejection, by reason
        print(f"  {line}")
    if warning := data.quiet_end_warning(tables, config):
        print(f"  {warning}")
    for line in readiness.lines():
        print(line)
    if not readiness.ready:
        raise SystemExit(1)
    return readiness


def _flow_config(args: argparse.Namespace):
    """The config of a command that runs a flow, and this project's Prefect server (started
    now if none runs, so its start overlaps the flow's imports)."""
    from flows.runtime import start_flow_server

    config = _config(args)
    return config, start_flow_server(config)


def cmd_train(args: argparse.Namespace):
    _, server = _flow_config(args)
    from flows.retrain import retrain_flow
    from flows.runtime import wait_for_flow_server

    wait_for_flow_server(server)
    outcome = retrain_flow(str(Path(args.config).resolve()), getattr(args, "engine", None))
    for line in _release_lines(outcome):
        print(line)
    return outcome


def _release_lines(outcome) -> list[str]:
    """The retrain's verdict, then a table of the targets' test metrics (3 decimals)."""
    state = "live" if outcome.promoted else "not promoted"
    if outcome.unchanged:
        state = "unchanged, live again" if outcome.promoted else "unchanged"
    lines = [f"{outcome.release.label} ({state}): {outcome.reason}"]
    lines += [f"repair: {message}" for message in outcome.repairs]
    lines += ["  " + row for row in metrics_table(outcome.targets)]
    lines += [f"  {target} skipped: {why}" for target, why in outcome.skipped.items()]
    if outcome.release.uplift.get("reason"):
        lines.append(f"  {outcome.release.uplift['reason']}")
    return lines


def metrics_table(targets) -> list[str]:
    """One row per trained target: model and version, the test metrics of its kind rounded to
    3 decimals (features.targets.HEADLINE_METRICS), and the baselines on the first of them
    (or why a baseline failed)."""
    from features.targets import headline_metrics

    if not targets:
        return []
    header = ["target", "model", "test metrics", "baselines"]
    rows = []
    for outcome in targets:
        headline = headline_metrics(outcome.target)
        shown = outcome.metrics
        metrics = ", ".join(f"{label} {shown[key]:.3f}" for key, label in headline if key in shown)
        key, label = headline[0]
        baselines = [f"{k} {v[key]:.3f}" for k, v in outcome.baselines.items() if key in v]
        baselines += [f"{k} FAILED ({why})" for k, why in outcome.baseline_failures.items()]
        model = f"{outcome.model_name} v{outcome.version}"
        compared = f"{label}: " + ", ".join(baselines) if baselines else "-"
        rows.append([outcome.target, model, metrics or "-", compared])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]

    def line(cells: list[str]) -> str:
        padded = [cell.ljust(width) for cell, width in zip(cells, widths, strict=False)]
        return "  ".join([*padded, cells[-1]]).rstrip()

    return [line(header), *(line(row) for row in rows)]


def cmd_models(args: argparse.Namespace) -> dict:
    """The live release: per target its registered model, version, run, horizon, data window,
    test metrics, and the promotion decision."""

    from models import registry, release

    config = _config(args)
    registry.configure_mlflow(config.resolve(config.paths.mlruns))
    live = release.require_live(config.registry.release_name, str(args.config))
    ahead = {
        target: registry.baselines_ahead(
            target, entry.metrics, registry.logged_results(entry.run_id)[1]
        )
        for target, entry in live.targets.items()
    }
    payload = {
        "release": live.id,
        "version": live.version,
        "horizon_days": live.horizon_days,
        "data_window": live.data_window,
        "code_version": live.code_version,
        "decision": {
            "promote": live.decision.get("promote"),
            "reason": live.decision.get("reason"),
        },
        "targets": {
            target: {
                "registered_name": entry.registered_name,
                "version": entry.version,
                "run_id": entry.run_id,
                "horizon_days": live.horizon_of(target),
                "data_window": live.window_of(target),
                "test_metrics": entry.metrics,
                "baselines_ahead": ahead[target],
            }
            for target, entry in live.targets.items()
        },
    }
    if args.json:
        from models.jsontext import strict_json

        print(strict_json(payload, indent=2))
        return payload
    window = live.data_window
    print(f"live {live.label} (id {live.id}), horizon {live.horizon_days} days")
    print(
        f"  fitted on {window.get('fitted', window.get('train', ['?']))[0]} .. "
        f"{window.get('fitted', window.get('train', ['?']))[-1]}; tested on "
        f"{', '.join(window.get('test', []))}"
    )
    print(f"  decision: {payload['decision']['reason']}")
    from features.targets import headline_metrics

    for target, entry in payload["targets"].items():
        shown = entry["test_metrics"]
        metrics = ", ".join(
            f"{label} {shown[key]:.3f}" for key, label in headline_metrics(target) if key in shown
        )
        print(
            f"  {target}: {entry['registered_name']} v{entry['version']} "
            f"(run {entry['run_id'][:8]}): {metrics}"
        )
        for note in entry["baselines_ahead"]:
            print(f"    warning: {note}")
        if entry["data_window"] != window:  # a target with its own horizon and split
            fitted = entry["data_window"].get("fitted") or ["?"]
            print(
                f"    its own window ({entry['horizon_days']} days): fitted on "
                f"{fitted[0]} .. {fitted[-1]}; tested on "
                f"{', '.join(entry['data_window'].get('test', []))}"
            )
    return payload


def cmd_score(args: argparse.Namespace):
    _, server = _flow_config(args)
    from flows.export import where_exported
    from flows.runtime import wait_for_flow_server
    from flows.score import score_flow

    wait_for_flow_server(server)
    outcome = score_flow(
        str(Path(args.config).resolve()),
        getattr(args, "cutoff", None),
        getattr(args, "engine", None),
    )
    print(f"scored {outcome.customers:,} customers at {outcome.cutoff} with {outcome.release}")
    for line in outcome.segment_lines():
        print(f"  {line}")
    print(f"export: {where_exported(outcome.export_dir)}")
    print(outcome.drift)
    return outcome


def _bentoml_env(config, context_file: Path) -> dict[str, str]:
    """The environment of a `bentoml` subprocess: the project's own BentoML home (never the
    machine-wide ~/bentoml) and the service context file."""
    from serving.settings import CONTEXT_ENV

    home = config.resolve(config.paths.bentoml_home)
    home.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "BENTOML_HOME": str(home), CONTEXT_ENV: str(context_file)}


def cmd_report(args: argparse.Namespace) -> Path:
    config = _config(args)
    from flows.report import build_report

    return build_report(config)


def cmd_serve(args: argparse.Namespace) -> None:
    config = _config(args)
    from flows.export import live_release
    from serving.auth import resolve_token

    resolve_token(config.serving)  # fail here, clearly, rather than in every worker
    live = live_release(config)  # and here if there is nothing (or the wrong thing) to serve
    context = config.service_context()
    from serving.state import check_latest_fits

    check_latest_fits(context, live)
    context_file = context.write(config.resolve(config.paths.bentoml_home) / "service.json")
    port = args.port or config.serving.port
    command = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        "serving.app:Dangol",
        "--host",
        config.serving.host,
        "--port",
        str(port),
    ]
    print(f"serving {live.label} on http://{config.serving.host}:{port} (Ctrl-C stops)")
    env = _bentoml_env(config, context_file)
    from flows.runtime import run_until_stopped

    raise SystemExit(run_until_stopped(command, env, PROJECT_ROOT))


def cmd_deploy(args: argparse.Namespace) -> None:
    # deploying to a work pool needs a Prefect server the user runs, never the project's
    config, server = _flow_config(args) if args.work_pool is None else (_config(args), None)
    from flows.deploy import deploy_to_work_pool, serve_deployments
    from flows.runtime import wait_for_flow_server

    wait_for_flow_server(server)

    schedules = config.schedules
    print(
        f"deploying retrain ({schedules.retrain_cron}) and score ({schedules.score_cron}) "
        f"in {schedules.timezone}; API: {os.environ.get('PREFECT_API_URL', 'temporary local')}"
    )
    if args.work_pool is None:
        serve_deployments(config, Path(args.config))
        return
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():  # from the environment or the active Prefect profile
        raise SystemExit(
            "deploy --work-pool: set PREFECT_API_URL to a running Prefect server; a temporary "
            "one would vanish with this command, and its workers with it"
        )
    deploy_to_work_pool(config, Path(args.config), args.work_pool)
    print(
        f"deployed on work pool {args.work_pool!r}; start a worker where this project lives: "
        f".venv/bin/prefect worker start --pool {args.work_pool}"
    )


def cmd_build(args: argparse.Namespace) -> None:
    """A Bento that carries exactly the live release (as files) and the service context."""
    config = _config(args)
    from flows.export import live_release
    from models import release

    live = live_release(config)
    build_dir = PROJECT_ROOT / "outputs" / "bento"
    release_dir = release.write_release_dir(live, release.load_models(live), build_dir / "release")
    # inside the Bento the files sit under src/, the build context's root; a token written
    # in the config stays out of it (the Bento refuses to start without DANGOL_TOKEN or the
    # variable serving.token_env names)
    bundled = config.service_context(release_dir=Path("outputs/bento/release"))
    bundled.serving.token = None
    context_file = bundled.write(build_dir / "service.json")
    print(f"packing {live.label} ({live.versions()}) from {release_dir}")
    print(
        f"the Bento listens on {config.serving.host}:{config.serving.port} (serving.host, "
        f"serving.port) and needs the token in {config.serving.token_env} at run time"
    )
    command = [sys.executable, "-m", "bentoml", "build", "-f", "bentofile.yaml", "."]
    from serving.settings import BUILDING_ENV

    env = {**_bentoml_env(config, context_file), BUILDING_ENV: "1"}
    raise SystemExit(subprocess.call(command, env=env, cwd=PROJECT_ROOT))


def cmd_prefect(args: argparse.Namespace) -> None:
    """This project's local Prefect server: start it, stop it, or say whether it runs."""
    from flows import prefect_server

    config = _config(args)
    home = config.resolve(config.paths.prefect_home)
    if args.action == "start":
        if not prefect_server.project_server_enabled():
            raise SystemExit(
                "dangol prefect start: PREFECT_API_URL (environment or Prefect profile) or "
                f"{prefect_server.MODE_ENV}=temporary is set; the project's server is not used"
            )
        server = prefect_server.use_project_server(home)
        assert server is not None
        server.wait_until_ready()
        print(server.describe())
        print(f"  runs: PREFECT_API_URL={server.record.api_url} .venv/bin/prefect flow-run ls")
    elif args.action == "stop":
        stopped = prefect_server.stop_server(home)
        print(f"stopped pid {stopped.pid}" if stopped else "no server was running")
    else:
        record = prefect_server.running_server(home)
        if record is None:
            print(f"not running (the next flow command starts it; state in {home})")
            raise SystemExit(1)
        print(f"running: {record.api_url} (pid {record.pid}; state in {home})")


def cmd_demo(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    print(f"== dangol demo on {args.config}")
    print("== 1/3 retrain flow: features -> LightGBM -> MLflow registry -> champion")
    trained = cmd_train(args)
    print("== 2/3 score flow: snapshot -> scores -> segments -> export")
    scored = cmd_score(args)
    print("== 3/3 analyst report: metrics, gain and calibration, SHAP, segments")
    report = cmd_report(args)
    config = _config(args)
    mlruns = config.resolve(config.paths.mlruns)
    print(f"\n== summary ({time.perf_counter() - started:.0f} s)")
    for line in _release_lines(trained):
        print("  " + line)
    sizes = ", ".join(f"{k} {v:,}" for k, v in scored.segment_sizes.items())
    print(f"  segments at {scored.cutoff}: {sizes}")
    print(f"  exports:   {scored.export_dir.parent / 'latest'}")
    print(f"  report:    {report}")
    print(f"  MLflow UI: .venv/bin/mlflow ui --backend-store-uri sqlite:///{mlruns}/mlflow.db")
    print("  service:   make serve  (or DANGOL_TOKEN=<token> .venv/bin/dangol serve)")
    if prefect_api := os.environ.get("PREFECT_API_URL"):
        print(f"  Prefect:   PREFECT_API_URL={prefect_api} .venv/bin/prefect flow-run ls")


def _engine_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--engine",
        choices=["duckdb", "spark"],
        default=None,
        help="compute features on DuckDB or on the config's Spark cluster (default: the "
        "config's engine, duckdb unless set)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dangol",
        description="Predict repeat buyers and VIPs, explain why, export ranked customer lists.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler, help_text: str, config: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        if config:
            sub.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML config file")
        return sub

    sim = add("simulate", cmd_simulate, "Write the synthetic shop as Parquet.", config=False)
    sim.add_argument("--customers", type=_positive, default=20_000, help="number of customers")
    sim.add_argument("--seed", type=int, default=7, help="random seed (same seed, same shop)")
    sim.add_argument("--start", default="2024-01-01", help="first day of the data")
    sim.add_argument("--end", default="2026-01-01", help="day after the data ends")
    sim.add_argument("--out", required=True, help="output folder")

    feats = add("features", cmd_features, "Write a point-in-time feature snapshot.")
    feats.add_argument("--cutoff", type=_date, default=None, help="YYYY-MM-DD (default: data end)")
    feats.add_argument("--out", required=True, help="output file: .parquet or .csv")
    feats.add_argument(
        "--cutoffs", type=_dates, default=None, help="comma-separated YYYY-MM-DD: stack these"
    )
    feats.add_argument(
        "--training",
        action="store_true",
        help="features and labels at every labelled cutoff of the config (training frame)",
    )

    _engine_option(feats)
    tier = add("tiers", cmd_tiers, "Tier-migration matrix between two dates (counts, shares).")
    tier.add_argument("--from", dest="start", type=_date, required=True, help="YYYY-MM-DD")
    tier.add_argument("--to", dest="end", type=_date, required=True, help="YYYY-MM-DD")
    tier.add_argument(
        "--out", default=None, help="optional .csv or .parquet: from_tier, to_tier, count, share"
    )

    add(
        "check",
        cmd_check,
        "Readiness before training: tables, dates, customers, history against the horizon, "
        "positives per window per target, what can be built and what to change (exit 1 when a "
        "required target cannot train).",
    )
    train = add(
        "train",
        cmd_train,
        "Retrain every target as one release, log to MLflow, promote it if better beyond noise.",
    )
    _engine_option(train)
    models = add("models", cmd_models, "Show the live release: versions, runs, windows, metrics.")
    models.add_argument("--json", action="store_true", help="print the release as JSON")

    score = add("score", cmd_score, "Score customers with the champions and export segments.")
    score.add_argument("--cutoff", type=_date, default=None, help="YYYY-MM-DD (default: data end)")
    _engine_option(score)

    add("report", cmd_report, "Write the analyst HTML report of the champions (and log it).")

    serve = add("serve", cmd_serve, "Start the scoring service (BentoML).")
    serve.add_argument("--port", type=int, default=None, help="port (default: serving.port)")

    deploy = add(
        "deploy",
        cmd_deploy,
        "Schedule retrain and score on Prefect and run them here (blocks), or register them on "
        "a work pool (--work-pool) for Prefect workers to run.",
    )
    deploy.add_argument(
        "--work-pool",
        default=None,
        help="process work pool to deploy to (created if missing); returns at once",
    )
    add("build", cmd_build, "Build a Bento that carries the live release and its settings.")

    prefect = add(
        "prefect",
        cmd_prefect,
        "This project's local Prefect server, which train, score and deploy start when none "
        "runs and reuse: start it, stop it, or show its address (exit 1 when not running).",
    )
    prefect.add_argument("action", choices=["start", "stop", "status"])

    add("demo", cmd_demo, "Run everything on the embedded synthetic shop and summarise.")
    add_commands(add)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from features.contract import ContractError
    from features.files import OutputPathError
    from features.spark import SparkUnavailableError
    from flows.config import ConfigError
    from flows.data import CutoffOutOfRangeError
    from flows.prefect_server import ServerStartError
    from flows.runtime import hide_expected_failures
    from flows.usage import UsageError
    from models.registry import NoChampionError
    from models.release import ReleaseMismatchError, TrainingLockedError
    from models.train import InsufficientDataError
    from serving.auth import MissingTokenError

    expected = (ConfigError, ContractError, InsufficientDataError, NoChampionError)
    expected += (
        MissingTokenError,
        ReleaseMismatchError,
        TrainingLockedError,
        SparkUnavailableError,
        ServerStartError,
        CutoffOutOfRangeError,
        OutputPathError,
        UsageError,
    )
    hide_expected_failures(expected)  # one message below, not Prefect's tracebacks too
    try:
        args.handler(args)
    except expected as exc:
        print(f"dangol {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


def console() -> None:
    """The `dangol` program: main(), the exit handlers (Prefect's log and event flushes,
    logging, temporary folders), then exit without tearing the interpreter down: freeing
    every module and object took ~2 s after a `dangol score` here and writes nothing. Tests
    call main() and keep the normal exit."""
    try:
        code = main()
        atexit._run_exitfuncs()
        sys.stdout.flush()
    except BrokenPipeError:
        if not _stdout_closed():
            raise  # a socket or a child's pipe: a real failure
        # the reader stopped early (`dangol models | head -1`): quiet, as SIGPIPE would end
        # a C tool; later writes go nowhere, and the exit handlers still run
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        atexit._run_exitfuncs()
        code = 128 + signal.SIGPIPE
    sys.stderr.flush()
    os._exit(code)


def _stdout_closed() -> bool:
    """Whether nobody reads our standard output any more (a pipe whose reader exited)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError):
        return False


if __name__ == "__main__":
    console()
