"""One local Prefect server per project, started by the first flow command and reused by the
next ones, so a warm `dangol score` does not pay Prefect's temporary server start (10-30 s
here) every time.

The server's pid and port are recorded in `<paths.prefect_home>/server.json`. A command uses
the recorded server only when its process is alive and is this project's server (its command
line names this Prefect home), so a record left by a killed server is ignored and replaced.
Starting is serialised by an flock on `server.lock` (released by the kernel if the command is
killed). The server stops itself after `DANGOL_PREFECT_IDLE_MINUTES` (default 30) with no
request or open connection, and within seconds when its record no longer names it
(`dangol prefect stop`, or the project folder removed).

Nothing here is used when PREFECT_API_URL is set (environment or the active Prefect profile)
or DANGOL_PREFECT_SERVER=temporary (Prefect's own per-command temporary server).

This module imports no Prefect at the top: the command side runs before Prefect is imported.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from features.files import process_alive, write_atomic

RECORD_NAME = "server.json"
LOCK_NAME = "server.lock"
LOG_NAME = "server.log"
MODE_ENV = "DANGOL_PREFECT_SERVER"  # project (default) | temporary
IDLE_ENV = "DANGOL_PREFECT_IDLE_MINUTES"
STARTUP_TIMEOUT_ENV = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
DEFAULT_IDLE_MINUTES = 30.0
MODULE = "flows.prefect_server"
# a server whose record is missing this long after it started is an orphan (its starter was
# killed before writing the record, or the project folder is gone)
ORPHAN_SECONDS = 30.0


@dataclass(frozen=True)
class ServerRecord:
    pid: int
    port: int
    home: str
    started: float

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"


class ServerStartError(RuntimeError):
    """The project's Prefect server did not come up (its log says why)."""


def project_server_enabled() -> bool:
    """Whether flow commands use the project's server: not when the user points Prefect at a
    server of their own, asks for Prefect's temporary one, or Prefect is already imported in
    this process (its settings are fixed by then: tests, notebooks)."""
    mode = os.environ.get(MODE_ENV, "project").strip().lower()
    if mode not in {"project", "temporary"}:
        from flows.config import ConfigError

        raise ConfigError(f"{MODE_ENV} must be 'project' or 'temporary', got {mode!r}")
    if mode == "temporary" or "prefect" in sys.modules:
        return False
    return configured_api_url() is None


def configured_api_url() -> str | None:
    """PREFECT_API_URL from the environment or the active profile of PREFECT_HOME (read as
    Prefect does, without importing it)."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    home = Path(os.environ.get("PREFECT_HOME", Path.home() / ".prefect")).expanduser()
    profiles_path = Path(os.environ.get("PREFECT_PROFILES_PATH", home / "profiles.toml"))
    try:
        profiles = tomllib.loads(profiles_path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return None
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active", "ephemeral")
    url = profiles.get("profiles", {}).get(active, {}).get("PREFECT_API_URL")
    return str(url) if url else None


@dataclass(frozen=True)
class ProjectServer:
    """The server a command uses: its record, the Prefect home and whether this command
    started it."""

    record: ServerRecord
    prefect_home: Path
    started: bool

    def wait_until_ready(self, timeout: float | None = None) -> None:
        limit = timeout or float(os.environ.get(STARTUP_TIMEOUT_ENV, "180"))
        wait_until_ready(self.record, self.prefect_home, limit)

    def describe(self) -> str:
        how = "started" if self.started else "reusing"
        return (
            f"Prefect: {how} this project's server {self.record.api_url} (pid "
            f"{self.record.pid}; stops after {idle_limit_seconds() / 60:g} min idle or "
            "`dangol prefect stop`)"
        )


def use_project_server(prefect_home: Path) -> ProjectServer | None:
    """Point this process's Prefect at the project's server, starting it if none is running;
    returns without waiting for a new server to answer (`ProjectServer.wait_until_ready`
    does, so the start overlaps this command's imports). None when not used."""
    if not project_server_enabled():
        return None
    idle_limit_seconds()  # a bad setting fails here, before a server is started
    record, started = ensure_server(prefect_home)
    os.environ["PREFECT_API_URL"] = record.api_url
    return ProjectServer(record, prefect_home, started)


def ensure_server(prefect_home: Path) -> tuple[ServerRecord, bool]:
    """The project's running server, or a new one (started, recorded, not yet waited for);
    and whether it was started now."""
    prefect_home.mkdir(parents=True, exist_ok=True)
    with _locked(prefect_home):
        record = read_record(prefect_home)
        if record is not None and is_running(record, prefect_home):
            return record, False
        return _start(prefect_home), True


def wait_until_ready(record: ServerRecord, prefect_home: Path, timeout: float = 180.0) -> None:
    """Block until the server answers /health; ServerStartError if it dies or is too slow."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _healthy(record):
            return
        if not is_running(record, prefect_home):
            raise ServerStartError(
                f"the project's Prefect server (pid {record.pid}) exited while starting; "
                f"see {prefect_home / LOG_NAME}"
            )
        time.sleep(0.1)
    raise ServerStartError(
        f"the project's Prefect server did not answer within {timeout:.0f} s; "
        f"see {prefect_home / LOG_NAME}"
    )


def running_server(prefect_home: Path) -> ServerRecord | None:
    """The recorded server if it is alive and answering, else None."""
    record = read_record(prefect_home)
    if record is None or not is_running(record, prefect_home) or not _healthy(record):
        return None
    return record


def stop_server(prefect_home: Path, grace: float = 10.0) -> ServerRecord | None:
    """Stop the project's server (SIGTERM, then SIGKILL after `grace` s) and remove its
    record; returns the record of the server stopped, None if none was running."""
    with _locked(prefect_home):
        record = read_record(prefect_home)
        (prefect_home / RECORD_NAME).unlink(missing_ok=True)
    if record is None or not is_running(record, prefect_home):
        return None
    _signal(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and process_alive(record.pid):
        time.sleep(0.1)
    if process_alive(record.pid):
        _signal(record.pid, signal.SIGKILL)
    return record


def read_record(prefect_home: Path) -> ServerRecord | None:
    try:
        raw = json.loads((prefect_home / RECORD_NAME).read_text(encoding="utf-8"))
        return ServerRecord(int(raw["pid"]), int(raw["port"]), str(raw["home"]), raw["started"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing, half-written or foreign: as if no server were recorded


def is_running(record: ServerRecord, prefect_home: Path) -> bool:
    """The recorded pid is alive and is this project's server (not a reused pid)."""
    if not process_alive(record.pid):
        return False
    try:
        argv = Path(f"/proc/{record.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False  # gone, or no /proc: do not trust a bare pid
    expected = [MODULE.encode(), b"--home", str(prefect_home.resolve()).encode()]
    return all(part in argv for part in expected)


def _healthy(record: ServerRecord) -> bool:
    try:
        return httpx.get(f"{record.api_url}/health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)


@contextlib.contextmanager
def _locked(prefect_home: Path) -> Iterator[None]:
    prefect_home.mkdir(parents=True, exist_ok=True)
    with open(prefect_home / LOCK_NAME, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(prefect_home: Path) -> ServerRecord:
    """Spawn the server detached (own session: Ctrl-C in the terminal and the command's end
    do not stop it) and record it atomically. Called with the lock held."""
    home = prefect_home.resolve()
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    env.setdefault("PREFECT_HOME", str(home))
    command = [sys.executable, "-m", MODULE, "--home", str(home), "--port", str(port)]
    with open(prefect_home / LOG_NAME, "ab") as log:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=home,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    record = ServerRecord(process.pid, port, str(home), time.time())
    text = json.dumps(asdict(record))
    write_atomic(prefect_home / RECORD_NAME, lambda staging: staging.write_text(text, "utf-8"))
    return record


# ---- the server process -----------------------------------------------------------------


class _Activity:
    """ASGI wrapper counting open requests and connections (a flow's event websocket stays
    open while the flow runs) and when the last one ended."""

    def __init__(self, app) -> None:
        self.app = app
        self.open = 0
        self.last = time.monotonic()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in {"http", "websocket"}:
            await self.app(scope, receive, send)
            return
        self.open += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.open -= 1
            self.last = time.monotonic()

    def idle_seconds(self) -> float:
        return 0.0 if self.open else time.monotonic() - self.last


def _watch(server, activity: _Activity, home: Path, idle_limit: float) -> None:
    """Ask uvicorn to exit when idle too long or when the record no longer names this
    process (stopped, replaced, or the project folder removed)."""
    started = time.monotonic()
    while not server.should_exit:
        time.sleep(1.0)
        record = read_record(home)
        if record is not None and record.pid != os.getpid():
            reason = f"the record names another server (pid {record.pid})"
        elif record is None and time.monotonic() - started > ORPHAN_SECONDS:
            reason = "no record names this server"
        elif activity.idle_seconds() > idle_limit:
            reason = f"idle for {idle_limit / 60:g} min"
        else:
            continue
        print(f"dangol prefect server {os.getpid()} stopping: {reason}", flush=True)
        server.should_exit = True


def idle_limit_seconds() -> float:
    text = os.environ.get(IDLE_ENV, str(DEFAULT_IDLE_MINUTES))
    try:
        minutes = float(text)
    except ValueError:
        minutes = -1.0
    if minutes <= 0:
        from flows.config import ConfigError

        raise ConfigError(f"{IDLE_ENV} must be a positive number of minutes, got {text!r}")
    return minutes * 60


def serve(home: Path, port: int) -> None:
    """Prefect's API as its temporary server runs it (no UI, the services of an ephemeral
    server), on loopback, until idle or replaced."""
    # set before Prefect is imported: it reads its settings once
    os.environ["PREFECT_HOME"] = os.environ.get("PREFECT_HOME", str(home))
    os.environ["PREFECT_UI_ENABLED"] = "0"
    os.environ["PREFECT__SERVER_EPHEMERAL"] = "1"
    os.environ["PREFECT__SERVER_FINAL"] = "1"
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    idle_limit = idle_limit_seconds()
    import uvicorn
    from prefect.server.api.server import create_app

    activity = _Activity(create_app())
    config = uvicorn.Config(activity, host="127.0.0.1", port=port, log_level="error", lifespan="on")
    server = uvicorn.Server(config)
    watcher = threading.Thread(
        target=_watch, args=(server, activity, home, idle_limit), daemon=True
    )
    watcher.start()
    print(f"dangol prefect server {os.getpid()} on http://127.0.0.1:{port}/api", flush=True)
    server.run()


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}")
    parser.add_argument("--home", required=True, type=Path)
    parser.add_argument("--port", required=True, type=int)
    args = parser.parse_args(argv)
    serve(args.home, args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
