"""Process-level settings for Prefect, applied explicitly before Prefect is imported, and
the lifetime of a server `dangol serve` starts."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path


def prepare_prefect(prefect_home: Path) -> None:
    """Keep Prefect's state in the project, give its local server time to start, no telemetry.

    Values already in the environment win, so a real Prefect server can be configured with
    PREFECT_API_URL as usual.
    """
    prefect_home.mkdir(parents=True, exist_ok=True)
    defaults = {
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
        "PREFECT_UI_ENABLED": "false",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)


def quiet_libraries() -> None:
    """MLflow's per-artifact progress bars and INFO chatter bury the pipeline's own progress."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("mlflow").setLevel(logging.WARNING)


def command_config(path: str | Path):
    """The validated config of a `dangol` command, with Prefect and the libraries' logging set
    up before either is imported."""
    from flows.config import load_config

    config = load_config(path)
    prepare_prefect(config.resolve(config.paths.prefect_home))
    quiet_libraries()
    return config


def start_flow_server(config):
    """Before a flow command imports Prefect: use this project's local Prefect server (start
    it if none runs; flows.prefect_server), unless PREFECT_API_URL or
    DANGOL_PREFECT_SERVER=temporary says otherwise. Returns the server to wait for before the
    first flow runs, or None (Prefect starts its own temporary server then)."""
    from flows.prefect_server import use_project_server

    server = use_project_server(config.resolve(config.paths.prefect_home))
    if server is not None:
        print(server.describe(), file=sys.stderr)
    return server


def wait_for_flow_server(server) -> None:
    """Block until the server of `start_flow_server` answers (no-op for None)."""
    if server is not None:
        server.wait_until_ready()


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies, even by SIGKILL (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the signal handlers below still stop the children


class _Stop(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def run_until_stopped(
    command: list[str], env: dict[str, str], cwd: Path, grace: float = 5.0
) -> int:
    """Run a server command until it ends or this process gets SIGTERM/SIGINT; then stop it
    and everything it started, so the port is free when this returns.

    The server runs in its own process group (BentoML's arbiter and its workers), which is
    sent SIGTERM, then SIGKILL after `grace` seconds. Without this, a SIGTERM to `dangol
    serve` left the re-parented BentoML server holding the port.
    """
    process = subprocess.Popen(
        command, env=env, cwd=cwd, start_new_session=True, preexec_fn=_die_with_parent
    )

    def stop(signum: int, _frame) -> None:
        raise _Stop(signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return process.wait()
    except _Stop as request:
        for s in previous:  # a second Ctrl-C must not interrupt the shutdown
            signal.signal(s, signal.SIG_IGN)
        _stop_group(process, grace)
        print(f"stopped ({signal.Signals(request.signum).name})", file=sys.stderr)
        return 0
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _stop_group(process: subprocess.Popen, grace: float) -> None:
    group = process.pid  # its own session: the group id is its pid
    _signal_group(group, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _signal_group(group, signal.SIGKILL)
        process.wait()
    _signal_group(group, signal.SIGKILL)  # workers that outlived the arbiter


def _signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone
        os.killpg(group, signum)


class HideExpectedFailures(logging.Filter):
    """Drops Prefect's lines about a run that failed with an expected error (bad data, bad
    config, too little data): the command prints that error once, as one clear message.
    Any other failure keeps Prefect's lines and their traceback."""

    def __init__(self, expected: tuple[type[BaseException], ...]) -> None:
        super().__init__()
        self.expected = expected
        self.names = tuple(f"{kind.__name__}:" for kind in expected)
        self.names += tuple(f"{kind.__name__}(" for kind in expected)

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is not None:
            return not isinstance(error, self.expected)
        message = record.getMessage()
        # "Finished in state Failed('Task run encountered an exception ContractError: ...')"
        return not ("Failed(" in message and any(name in message for name in self.names))


PREFECT_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


def hide_expected_failures(expected: tuple[type[BaseException], ...]) -> None:
    """Install HideExpectedFailures on Prefect's run loggers (before or after Prefect is
    imported: loggers are looked up by name)."""
    for name in PREFECT_RUN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, HideExpectedFailures) for f in logger.filters):
            logger.addFilter(HideExpectedFailures(expected))
