"""`dangol --help` and every `dangol <command> --help` answer without importing the heavy
libraries (the cause of a 6.5 s help screen); the wall time is in the closing notes, not a
timed test."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO

HEAVY = ("pandas", "numpy", "mlflow", "lightgbm", "duckdb", "prefect", "bentoml", "sklearn")
PROBE = """
import contextlib, io, json, sys
from flows.cli import build_parser
parser = build_parser()
commands = list(parser._subparsers._group_actions[0].choices)
for argv in [["--help"], *([c, "--help"] for c in commands)]:
    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):
        parser.parse_args(argv)
print(json.dumps({"commands": commands, "loaded": sorted(m for m in sys.modules)}))
"""


def test_help_of_every_command_imports_no_heavy_library() -> None:
    import json

    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert {"train", "score", "models", "serve", "build"} <= set(result["commands"])
    loaded = [m for m in result["loaded"] if m.split(".")[0] in HEAVY]
    assert loaded == [], f"--help imported {sorted({m.split('.')[0] for m in loaded})}"


def test_a_reader_that_stops_early_ends_dangol_quietly(tmp_path) -> None:
    """`dangol models | head -1` ended in a BrokenPipeError traceback: a closed standard
    output ends the command as SIGPIPE ends a C tool (exit 141), without a word."""
    from tests.projects import write_project

    config = write_project(tmp_path)
    command = [sys.executable, "-m", "flows.cli", "prefect", "status", "--config", str(config)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # the reader is gone before dangol writes its line
    errors = process.stderr.read().decode()
    process.stderr.close()
    assert process.wait(timeout=60) == 141, errors
    assert "Traceback" not in errors and "BrokenPipe" not in errors


def test_openmp_threads_spin_briefly_unless_the_user_says_otherwise() -> None:
    """Set before LightGBM loads libgomp (docs/operations.md: two trainings at once were 70x
    slower with libgomp's default spin)."""
    probe = "import os, models.train; print(os.environ['GOMP_SPINCOUNT'])"
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    ours = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True)
    assert ours.stdout.decode().strip() == "1000", ours.stderr.decode()[-500:]
    theirs = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO,
        env={**env, "GOMP_SPINCOUNT": "5"},
        capture_output=True,
    )
    assert theirs.stdout.decode().strip() == "5"
