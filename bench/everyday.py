"""The everyday path: a warm `dangol score` with Prefect's per-command temporary server against
the project's reused local server, and `dangol demo` on a fresh copy of a project, per step.

    .venv/bin/python -m bench.everyday                                  # demo, then warm score
    .venv/bin/python -m bench.everyday --config configs/default.yaml   # warm score only

Demo: the default config is copied into a temporary folder, so data, MLflow store, Prefect
home and outputs start empty as in a fresh clone (after `make install`). Warm score: then
on that project (or on --config, which needs a live release), every run a real `dangol score`
subprocess (the snapshot and drift reference are cached after the first). The project's
Prefect server is stopped at the end.
Prints Markdown for docs/benchmarks.md. The machine's load is printed with each table: on a
shared machine compare the ratios of one run, not seconds across runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DANGOL = [sys.executable, "-m", "flows.cli"]


def load() -> str:
    return ", ".join(f"{value:.1f}" for value in os.getloadavg())


def run(command: list[str], env: dict[str, str]) -> tuple[float, list[tuple[float, str]]]:
    """Wall seconds of a command and its output lines, each with seconds since the start."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    lines = [(time.perf_counter() - started, line.rstrip()) for line in process.stdout]
    if process.wait() != 0:
        tail = "\n".join(line for _, line in lines[-30:])
        raise SystemExit(f"{' '.join(command)} failed:\n{tail}")
    return time.perf_counter() - started, lines


def user_env(mode: str) -> dict[str, str]:
    """A user's shell: no Prefect server configured; `mode` is DANGOL_PREFECT_SERVER."""
    env = {k: v for k, v in os.environ.items() if k not in {"PREFECT_API_URL", "PREFECT_HOME"}}
    return {**env, "DANGOL_PREFECT_SERVER": mode}


def warm_score(config: str, repeats: int) -> None:
    stop = [*DANGOL, "prefect", "stop", "--config", config]
    score = [*DANGOL, "score", "--config", config]
    run(stop, user_env("project"))
    run(score, user_env("temporary"))  # the snapshot and drift reference are cached after this
    temporary = [run(score, user_env("temporary"))[0] for _ in range(repeats)]
    first, _ = run(score, user_env("project"))  # starts the project's server
    reused = [run(score, user_env("project"))[0] for _ in range(repeats)]
    median_temporary, median_reused = statistics.median(temporary), statistics.median(reused)
    when = f"{datetime.now():%Y-%m-%d %H:%M}"
    print(f"\n## Warm `dangol score --config {config}` ({when}, load {load()})\n")
    print("| Prefect server | runs | wall (median) | each |")
    print("|---|---|---|---|")
    print(
        f"| temporary, started by each command | {repeats} | {median_temporary:.1f} s | "
        + ", ".join(f"{s:.1f}" for s in temporary)
        + " |"
    )
    print(f"| project's, first command starts it | 1 | {first:.1f} s | {first:.1f} |")
    print(
        f"| project's, reused | {repeats} | {median_reused:.1f} s | "
        + ", ".join(f"{s:.1f}" for s in reused)
        + " |"
    )
    print(f"\nreused vs temporary: {median_temporary / median_reused:.2f}x faster", flush=True)


# (label, pattern of the line that ends the step)
DEMO_STEPS = [
    ("start-up: imports, config, Prefect server", r"Beginning flow run .* for flow 'retrain'"),
    ("load (generate) the shop", r"load_shop_task.* Finished"),
    ("training frame", r"training_data_task.* Finished"),
    ("train repurchase", r"repurchase trained in"),
    ("train vip_conversion", r"vip_conversion trained in"),
    ("train first_purchase", r"first_purchase trained in"),
    ("train customer_value", r"customer_value trained in"),
    ("train next_purchase", r"next_purchase trained in"),
    ("register and publish the release", r"== 2/3"),
    ("score flow", r"== 3/3"),
    ("report", r"== summary"),
]


def demo(config: Path) -> None:
    """`dangol demo` on the project of `config`, timed per step from its output lines."""
    before = load()
    wall, lines = run([*DANGOL, "demo", "--config", str(config)], user_env("project"))
    when = f"{datetime.now():%Y-%m-%d %H:%M}"
    print(f"\n## `dangol demo` on a fresh project ({when}, load {before} before, {load()} after)\n")
    print("| step | seconds | share |")
    print("|---|---|---|")
    previous = 0.0
    for label, pattern in DEMO_STEPS:
        ends = [at for at, line in lines if re.search(pattern, line)]
        if not ends:
            continue
        end = ends[0]
        print(f"| {label} | {end - previous:.1f} | {(end - previous) / wall:.0%} |")
        previous = end
    print(f"| summary and exit | {wall - previous:.1f} | {(wall - previous) / wall:.0%} |")
    print(f"| **total** | **{wall:.1f}** | |", flush=True)


def fresh_project(scratch: Path) -> Path:
    """The default config copied into `scratch`: its data, MLflow store, Prefect home and
    outputs (paths relative to the config's folder) start empty, as in a fresh clone."""
    config = scratch / "configs" / "default.yaml"
    config.parent.mkdir()
    shutil.copy(ROOT / "configs" / "default.yaml", config)
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--config", default=None, help="a trained project: time only its warm score"
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"# dangol everyday path, {platform.machine()}, {os.cpu_count()} cores", flush=True)
    if args.config is not None:
        warm_score(args.config, args.repeats)
        return
    with tempfile.TemporaryDirectory(prefix="dangol-bench-everyday-") as scratch:
        config = fresh_project(Path(scratch))
        try:
            demo(config)
            warm_score(str(config), args.repeats)
        finally:
            run([*DANGOL, "prefect", "stop", "--config", str(config)], user_env("project"))


if __name__ == "__main__":
    main()
