"""Real servers for integration tests: free loopback ports, readiness waits, clean stops."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, seconds: float) -> None:
    """Poll `url` until it answers 200; fail with the process's output if it dies first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode() if process.stdout else ""
            raise AssertionError(f"{process.args} exited early:\n{output}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} not ready after {seconds} s")


def stop(process: subprocess.Popen) -> None:
    """Terminate, and kill if it does not go within 30 s."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def start(command: list[str], env: dict[str, str], log: Path | None = None) -> subprocess.Popen:
    """A server subprocess from the repository root, output captured for failure messages
    (in `log` when given: a pipe nobody reads blocks a server that logs much)."""
    output = subprocess.PIPE if log is None else log.open("ab")
    try:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT)
    finally:
        if log is not None:
            output.close()


@contextmanager
def bentoml_serve(
    config, log: Path | None = None, **env: str
) -> Iterator[tuple[str, subprocess.Popen]]:
    """`bentoml serve serving.app:Dangol` for a project config on a free port, ready, as
    `dangol serve` starts it (context file, the project's own BentoML home); yields
    (base URL, process). Its output goes to `log` if given."""
    from serving.settings import CONTEXT_ENV

    home = config.resolve(config.paths.bentoml_home)
    context = config.service_context().write(home / f"service-{os.getpid()}.json")
    port = free_port()
    server = start(
        [sys.executable, "-m", "bentoml", "serve", "serving.app:Dangol", "--port", str(port)],
        {**os.environ, "BENTOML_HOME": str(home), CONTEXT_ENV: str(context), **env},
        log,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/readyz", server, 120)
        yield base, server
    finally:
        stop(server)


@contextmanager
def prefect_server(home: Path) -> Iterator[str]:
    """A real `prefect server start` on a free loopback port, state in `home`; yields the
    API URL."""
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    command = [sys.executable, "-m", "prefect", "server", "start"]
    server = start(command + ["--host", "127.0.0.1", "--port", str(port)], env)
    try:
        api = f"http://127.0.0.1:{port}/api"
        wait_for(f"{api}/health", server, 180)
        yield api
    finally:
        stop(server)
