"""Serving speed: dangol's BentoML service against `mlflow models serve` of the same model.

Both servers run on loopback with one worker each, in the same run, under `wrk` (C load
generator, `apt-get install wrk`) for throughput. dangol answers by id (scores precomputed per
snapshot) and by full feature rows (the same work MLflow does); MLflow scores feature rows.

Latency at moderate load comes from an open-loop generator (`open_loop`): requests leave on a
fixed schedule whatever the server does, and each latency runs from the scheduled time, so a
stall counts against every request it delays (a closed-loop tool like wrk waits for the
server and hides them: coordinated omission).

    .venv/bin/python -m bench.serving            # builds a tiny trained project in a temp dir
    .venv/bin/python -m bench.serving --config C # uses an already trained and scored project

Prints a Markdown table and the throughput ratios; paste into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from features.targets import TARGETS
from serving.settings import CONTEXT_ENV
from tests.servers import free_port, wait_for

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-token-0123456789abcdef"
LUA = """wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {token}"
"""


@dataclass(frozen=True)
class Result:
    server: str
    request: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(url: str, body: dict, connections: int, seconds: int, workdir: Path) -> tuple:
    """Requests/s, p50 and p99 in ms, and non-2xx/socket errors, from one bounded wrk run."""
    script = workdir / f"post-{abs(hash(json.dumps(body)))}.lua"
    script.write_text(LUA.format(body=json.dumps(json.dumps(body)), token=TOKEN))
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return rps, p50, p99, errors


@dataclass(frozen=True)
class OpenLoopResult:
    request: str
    rate: int
    sent: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    over_20ms: int
    errors: int


async def _connection(address: tuple[str, int], request: bytes, due: asyncio.Queue, out: list):
    """One keep-alive connection: sends whenever a scheduled time is queued, records
    (latency from the scheduled time, status)."""
    reader, writer = await asyncio.open_connection(*address)
    while (scheduled := await due.get()) is not None:
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length:\s*(\d+)", head)
        await reader.readexactly(int(length.group(1)) if length else 0)
        out.append((time.perf_counter() - scheduled, int(head.split(b" ", 2)[1])))
    writer.close()


async def _open_loop(url: str, body: dict, rate: int, seconds: int, connections: int) -> list:
    parsed = httpx.URL(url)
    payload = json.dumps(body).encode()
    request = (
        f"POST {parsed.raw_path.decode()} HTTP/1.1\r\nHost: {parsed.host}\r\n"
        f"Content-Type: application/json\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload
    due: asyncio.Queue = asyncio.Queue()
    out: list = []
    address = (parsed.host, parsed.port)
    tasks = [
        asyncio.create_task(_connection(address, request, due, out)) for _ in range(connections)
    ]
    start = time.perf_counter()
    for i in range(rate * seconds):
        scheduled = start + i / rate
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        due.put_nowait(scheduled)
    for _ in tasks:
        due.put_nowait(None)
    await asyncio.gather(*tasks)
    return out


def open_loop(url: str, body: dict, request: str, rate: int, seconds: int) -> OpenLoopResult:
    """`rate` requests per second for `seconds` over 8 connections, latency from schedule."""
    out = asyncio.run(_open_loop(url, body, rate, seconds, connections=8))
    latency = np.array([elapsed for elapsed, _ in out]) * 1000
    return OpenLoopResult(
        request=request,
        rate=rate,
        sent=len(out),
        p50_ms=float(np.percentile(latency, 50)),
        p99_ms=float(np.percentile(latency, 99)),
        max_ms=float(latency.max()),
        over_20ms=int((latency > 20).sum()),
        errors=sum(status != 200 for _, status in out),
    )


def tiny_project(root: Path) -> Path:
    """Train, release and score a 3,000-customer synthetic shop (as the tests do)."""
    from flows.config import load_config
    from tests import projects

    path = projects.write_project(root)
    path.write_text(path.read_text().replace("max_batch: 50", "max_batch: 1000"))
    config = load_config(path)
    projects.train_release(config)
    projects.score(config, datetime(2026, 1, 1))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, default=None, help="trained and scored project")
    parser.add_argument("--seconds", type=int, default=10, help="duration of each wrk run")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections")
    parser.add_argument(
        "--rates",
        type=int,
        nargs="+",
        default=[100, 300, 600],
        help="open-loop request rates (req/s) for the single-id latency runs",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")

    from flows.config import load_config

    workdir = Path(tempfile.mkdtemp(prefix="dangol-bench-"))
    config_path = args.config.resolve() if args.config else tiny_project(workdir)
    config = load_config(config_path)
    snapshot = pd.read_parquet(config.resolve(config.paths.exports) / "latest" / "features.parquet")
    buyers = snapshot[snapshot["orders_lifetime"] > 0]
    ids = list(buyers["customer_id"].astype(str)[:100])
    context = config.service_context().write(workdir / "service.json")
    env = {
        **os.environ,
        CONTEXT_ENV: str(context),
        "DANGOL_TOKEN": TOKEN,
        "BENTOML_HOME": str(workdir / "bento"),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{config.resolve(config.paths.mlruns) / 'mlflow.db'}",
    }
    bento_port, mlflow_port = free_port(), free_port()
    first = next(iter(TARGETS))
    name = config.registry.model_name(first)
    servers = {
        "dangol (BentoML)": subprocess.Popen(
            [sys.executable, "-m", "bentoml", "serve", "serving.app:Dangol"]
            + ["--host", "127.0.0.1", "--port", str(bento_port)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        "mlflow models serve": subprocess.Popen(
            [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{name}@champion"]
            + ["--env-manager", "local", "--host", "127.0.0.1", "--port", str(mlflow_port)]
            + ["--workers", "1"],
            cwd=workdir,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    }
    try:
        wait_for(f"http://127.0.0.1:{bento_port}/readyz", servers["dangol (BentoML)"], 180)
        wait_for(f"http://127.0.0.1:{mlflow_port}/ping", servers["mlflow models serve"], 180)
        info = httpx.post(
            f"http://127.0.0.1:{bento_port}/model_info",
            json={},
            headers={"Authorization": f"Bearer {TOKEN}"},
        ).json()
        features = next(m for m in info["models"] if m["target"] == first)["features"]
        all_features = sorted({f for m in info["models"] for f in m["features"]})
        rows = buyers.set_index("customer_id").loc[ids]

        def feature_rows(n: int) -> list[dict]:
            frame = rows[all_features].head(n).astype("float64")
            records = frame.astype(object).where(frame.notna(), None).to_dict("records")
            return [{"features": r} for r in records]

        def mlflow_body(n: int) -> dict:
            frame = rows[features].head(n).astype("float64")
            data = frame.astype(object).where(frame.notna(), None).to_numpy().tolist()
            return {"dataframe_split": {"columns": features, "data": data}}

        bento = f"http://127.0.0.1:{bento_port}"
        plan = [
            ("dangol (BentoML)", "1 id", f"{bento}/score", {"customer_ids": ids[:1]}),
            ("dangol (BentoML)", "100 ids", f"{bento}/score", {"customer_ids": ids}),
            ("dangol (BentoML)", "1 row", f"{bento}/score_rows", {"rows": feature_rows(1)}),
            ("dangol (BentoML)", "100 rows", f"{bento}/score_rows", {"rows": feature_rows(100)}),
            (
                "mlflow models serve",
                "1 row",
                f"http://127.0.0.1:{mlflow_port}/invocations",
                mlflow_body(1),
            ),
            (
                "mlflow models serve",
                "100 rows",
                f"http://127.0.0.1:{mlflow_port}/invocations",
                mlflow_body(100),
            ),
        ]
        latency = [
            open_loop(f"{bento}/score", {"customer_ids": ids[:1]}, "1 id", rate, args.seconds * 2)
            for rate in args.rates
        ]
        for row in latency:
            print(f"  open loop 1 id at {row.rate} req/s: p99 {row.p99_ms:.1f} ms", flush=True)
        results = []
        for server, request, url, body in plan:
            check = httpx.post(url, json=body, headers={"Authorization": f"Bearer {TOKEN}"})
            check.raise_for_status()
            for connections in sorted({2, args.connections}):
                rps, p50, p99, errors = run_wrk(url, body, connections, args.seconds, workdir)
                results.append(Result(server, request, connections, rps, p50, p99, errors))
                print(f"  {server} {request} c={connections}: {rps:.0f} req/s", flush=True)
    finally:
        for process in servers.values():
            process.terminate()
        for process in servers.values():
            process.wait(timeout=30)
    report(results, args.connections, latency)


def report(results: list[Result], connections: int, latency: list[OpenLoopResult]) -> None:
    print("\n| dangol request | rate | sent | p50 ms | p99 ms | max ms | > 20 ms | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for r in latency:
        print(
            f"| {r.request} | {r.rate}/s | {r.sent} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | "
            f"{r.max_ms:.1f} | {r.over_20ms} | {r.errors} |"
        )
    print("\n| server | request | connections | req/s | p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r.server} | {r.request} | {r.connections} | {r.rps:.0f} | {r.p50_ms:.1f} | "
            f"{r.p99_ms:.1f} | {r.errors} |"
        )
    by = {(r.server, r.request, r.connections): r.rps for r in results}
    mlflow_1 = by[("mlflow models serve", "1 row", connections)]
    mlflow_100 = by[("mlflow models serve", "100 rows", connections)]
    print(f"\nratios at {connections} connections (dangol / MLflow throughput):")
    for request in ("1 id", "1 row"):
        ratio = by[("dangol (BentoML)", request, connections)] / mlflow_1
        print(f"  {request} vs MLflow 1 row: {ratio:.2f}x")
    for request in ("100 ids", "100 rows"):
        ratio = by[("dangol (BentoML)", request, connections)] / mlflow_100
        print(f"  {request} vs MLflow 100 rows: {ratio:.2f}x")
    print(f"\n{time.strftime('%Y-%m-%d %H:%M')} UTC, {os.cpu_count()} cores (shared machine)")


if __name__ == "__main__":
    main()
