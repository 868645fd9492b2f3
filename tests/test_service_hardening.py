"""The service against what clients (and attackers) send: content types, body sizes, out of
range features, random paths, forged log lines, and how `dangol serve` stops.

One tiny project is trained, released and scored once for the module (no Prefect).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime

import httpx
import pandas as pd
import pytest

from tests import projects
from tests.conftest import REPO
from tests.servers import bentoml_serve, free_port, wait_for

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROUTES = ["/score", "/score_rows", "/explain", "/segments", "/segment_members", "/model_info"]
BODY_LIMIT = 64_000


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory):
    from flows.config import load_config

    root = tmp_path_factory.mktemp("hardening")
    config = load_config(projects.write_project(root))
    projects.train_release(config)
    projects.score(config, datetime(2026, 1, 1))
    os.environ["DANGOL_TOKEN"] = TOKEN
    return config


@pytest.fixture(scope="module")
def state(project):
    from serving import state as states

    context = project.service_context()
    live, models = states.load_release(context)
    return states.load_state(context, live, models)


@pytest.fixture(scope="module")
def client(project):
    from starlette.testclient import TestClient

    from serving.service import create_service

    context = project.service_context()
    context.serving.max_body_bytes = BODY_LIMIT
    with TestClient(create_service(context).to_asgi()) as test_client:
        yield test_client


def valid_row(state) -> dict[str, float | None]:
    """A buyer's full feature row, as a caller would send it (null for missing)."""
    snapshot = state.snapshot
    row = snapshot.loc[snapshot["orders_lifetime"] > 0, state.features].iloc[0]
    return {k: (None if pd.isna(v) else float(v)) for k, v in row.items()}


def assert_one_error_shape(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert isinstance(body["error"], str) and body["error"]
    return body["error"]


# --- content types and sizes -----------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data",  # no boundary: BentoML answered 500
        "multipart/form-data; boundary=xyz",
        "application/x-www-form-urlencoded",
        "text/plain",
        "application/xml",
        "application/vnd.bentoml+pickle",
    ],
)
def test_a_body_that_is_not_json_is_415_on_every_post(client, route, content_type) -> None:
    headers = {**AUTH, "content-type": content_type}
    response = client.post(route, content=b"--xyz\r\n\r\nx\r\n--xyz--", headers=headers)
    assert response.status_code == 415, response.text
    assert "application/json" in assert_one_error_shape(response)


def test_a_body_over_the_limit_is_413_declared_or_streamed(client) -> None:
    ids = json.dumps({"customer_ids": ["C" * 100] * 1000}).encode()
    assert len(ids) > BODY_LIMIT
    headers = {**AUTH, "content-type": "application/json"}
    declared = client.post("/score", content=ids, headers=headers)
    assert declared.status_code == 413
    assert "max_body_bytes" in assert_one_error_shape(declared)

    def chunks():  # no content-length: counted as it arrives
        for start in range(0, len(ids), 8192):
            yield ids[start : start + 8192]

    streamed = client.post("/score", content=chunks(), headers=headers)
    assert streamed.status_code == 413
    small = client.post("/score", json={"customer_ids": ["C1"]}, headers=AUTH)
    assert small.status_code == 200, small.text


def test_every_error_answer_has_the_one_shape(client) -> None:
    """400 (pydantic and our own), 401, 404 (ours and unknown routes), 405, 413, 415."""
    json_headers = {**AUTH, "content-type": "application/json"}
    answers = {
        400: [
            client.post("/score", content=b'{"customer_ids": [', headers=json_headers),
            client.post("/score", json={"customer_ids": [1]}, headers=AUTH),
            client.post("/score", json={"customer_ids": ["a"] * 51}, headers=AUTH),
            client.post("/segment_members", json={"name": "active", "limit": 21}, headers=AUTH),
        ],
        401: [client.post("/score", json={"customer_ids": ["a"]})],
        404: [
            client.post("/explain", json={"customer_id": "ghost"}, headers=AUTH),
            client.post("/segment_members", json={"name": "nope"}, headers=AUTH),
            client.get("/no/such/path", headers=AUTH),
        ],
        405: [client.get("/score", headers=AUTH)],
        413: [client.post("/score", content=b"x" * (BODY_LIMIT + 1), headers=json_headers)],
        415: [client.post("/score", content=b"x", headers={**AUTH, "content-type": "text/csv"})],
    }
    for status, responses in answers.items():
        for response in responses:
            assert response.status_code == status, (status, response.text)
            assert_one_error_shape(response)
    validation = answers[400][1].json()["error"]
    assert "customer_ids.0" in validation and "detail" not in answers[400][1].json()


# --- /score_rows range checks -------------------------------------------------------------


OUT_OF_RANGE = [
    ("tier", "1e300", "less than or equal to 5"),  # was scored as tier -9223372036854775808
    ("tier", "0", "greater than or equal to 1"),
    ("tier", "2.5", "multiple of 1"),
    ("tier", "true", "valid number"),  # was taken as 1
    ("tier", "null", "valid number"),
    ("orders_lifetime", "-5", "greater than or equal to 0"),  # was echoed back
    ("orders_lifetime", "1.5", "multiple of 1"),
    ("max_units_one_product", "2.5890419884777833e-42", "whole number"),  # within tolerance
    ("orders_lifetime", "true", "valid number"),
    ("views_30d", "-1", "greater than or equal to 0"),
    ("spend_lifetime", "-0.01", "greater than or equal to 0"),
    ("spend_lifetime", "Infinity", "finite"),
    ("spend_lifetime", "NaN", "finite"),
    ("spend_lifetime", '"12"', "valid number"),
    ("overdue_ratio", "-Infinity", "finite"),
    ("high_price_view_share", "1.5", "less than or equal to 1"),
    ("days_since_last_order", "-3", "greater than or equal to 0"),
]


@pytest.mark.parametrize(("feature", "value", "message"), OUT_OF_RANGE)
def test_score_rows_range_checks_every_feature_naming_it(
    client, state, feature, value, message
) -> None:
    row = valid_row(state)
    assert feature in row
    text = json.dumps({"rows": [{"features": {**row, feature: 0}}]})
    text = text.replace(f'"{feature}": 0', f'"{feature}": {value}')
    headers = {**AUTH, "content-type": "application/json"}
    response = client.post("/score_rows", content=text.encode(), headers=headers)
    assert response.status_code == 400, response.text
    error = assert_one_error_shape(response)
    assert f"rows.0.features.{feature}" in error and message in error, error


def test_score_rows_takes_whole_floats_signed_days_and_any_ratio(client, state) -> None:
    row = valid_row(state)
    row.update(
        tier=2.0,
        orders_lifetime=3.0,
        views_30d=0,
        signup_to_first_order_days=-4.5,  # the catalogue says it can be negative
        gap_slope=-12.0,
        spend_trend_90d=-3.2,
    )
    response = client.post("/score_rows", json={"rows": [{"features": row}]}, headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["scores"][0]["tier"] == 2


def test_a_feature_outside_the_catalogue_is_named(client, state) -> None:
    row = {**valid_row(state), "shoe_size": 42}
    response = client.post("/score_rows", json={"rows": [{"features": row}]}, headers=AUTH)
    assert response.status_code == 400
    assert "rows.0.features.shoe_size" in assert_one_error_shape(response)


# --- logs ---------------------------------------------------------------------------------


def test_client_errors_log_at_info_without_the_customer_id(client, caplog) -> None:
    secret = "customer-4111111111111111"
    with caplog.at_level(logging.DEBUG):
        response = client.post("/explain", json={"customer_id": secret}, headers=AUTH)
        rejected = client.post("/score", json={"customer_ids": [7]}, headers=AUTH)
    assert response.status_code == 404 and rejected.status_code == 400
    assert secret not in caplog.text
    rejections = [r for r in caplog.records if "Rejected request to" in r.getMessage()]
    assert len(rejections) == 2, caplog.text
    assert all(r.levelno == logging.INFO for r in rejections)
    assert "customer_id" in rejections[0].getMessage()  # the field, not the value
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def test_control_characters_in_a_logged_message_are_escaped() -> None:
    from serving.http import EscapeControlCharacters

    record = logging.LogRecord(
        "bentoml.access", logging.INFO, __file__, 1, "path=%s", ("/x\n2026 [ERROR] forged",), None
    )
    EscapeControlCharacters().filter(record)
    assert record.getMessage() == "path=/x\\n2026 [ERROR] forged"


# --- a real server ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(project, tmp_path_factory):
    log = tmp_path_factory.mktemp("served") / "server.log"
    with bentoml_serve(project, log=log) as (base, server):
        yield base, server, log


def worker_rss(server: subprocess.Popen) -> int:
    import psutil

    processes = psutil.Process(server.pid).children(recursive=True)
    return sum(p.memory_info().rss for p in processes)


@pytest.mark.slow
@pytest.mark.integration
def test_random_paths_do_not_grow_metrics_or_memory(served) -> None:
    """Each unknown path made new labelled series (5,000 paths: /metrics 20 MB, the worker
    +106 MB); now they share one label."""
    base, server, _ = served
    with httpx.Client(base_url=base, timeout=10) as http:

        def scatter(n: int) -> None:
            for i in range(n):
                path = f"/{secrets.token_hex(8)}/{i}"
                http.get(path, headers=AUTH if i % 2 else {})  # with and without the token

        scatter(200)  # warm up: the shared series exist, allocators settle
        metrics_before = len(http.get("/metrics", headers=AUTH).content)
        rss_before = worker_rss(server)
        scatter(2000)
        metrics_after = http.get("/metrics", headers=AUTH)
        rss_after = worker_rss(server)
    assert metrics_after.status_code == 200
    assert len(metrics_after.content) <= metrics_before + 1024, (
        metrics_before,
        len(metrics_after.content),
    )
    assert rss_after - rss_before < 10 * 2**20, (rss_before, rss_after)
    assert "/{other}" in metrics_after.text


@pytest.mark.slow
@pytest.mark.integration
def test_a_request_cannot_forge_a_log_line_and_its_lines_carry_its_id(served) -> None:
    base, _, log = served
    forged = "2026-01-01T00:00:00+0000 [ERROR] [entry_service:dangol:1] forged"
    httpx.post(f"{base}/x%0A{forged.replace(' ', '%20')}", json={}, headers=AUTH)
    secret = "customer-5500000000000004"
    answer = httpx.post(f"{base}/explain", json={"customer_id": secret}, headers=AUTH)
    assert answer.status_code == 404
    request_id = answer.headers["x-bentoml-request-id"]
    time.sleep(1)  # the access line is written after the answer
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    assert not [line for line in lines if line.startswith(forged[:30])], "a forged line"
    assert any("\\n2026-01-01T00:00:00+0000 [ERROR]" in line for line in lines)
    assert secret not in "\n".join(lines)
    own = [line for line in lines if request_id in line]
    assert len(own) >= 2, own  # the rejection and the access line
    assert any("Rejected request to /explain" in line and "[INFO]" in line for line in own)
    assert any("status=404" in line for line in own)


# --- `dangol serve` stops -----------------------------------------------------------------


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_dangol_serve_stops_with_its_children_on_a_signal(project, signum) -> None:
    import psutil

    port = free_port()
    command = [sys.executable, "-m", "flows.cli", "serve", "--config"]
    command += [str(project.base_dir / "dangol.yaml"), "--port", str(port)]
    dangol = subprocess.Popen(
        command, cwd=REPO, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/readyz", dangol, 180)
        family = psutil.Process(dangol.pid).children(recursive=True)
        assert family, "bentoml serve runs as a child"
        dangol.send_signal(signum)
        stopped = time.monotonic()
        dangol.wait(timeout=10)
        _, alive = psutil.wait_procs(family, timeout=max(0.1, 10 - (time.monotonic() - stopped)))
        assert not alive, [p.cmdline() for p in alive]
        assert port_is_free(port)
        assert time.monotonic() - stopped < 10
        assert dangol.returncode == 0
    finally:
        if dangol.poll() is None:
            dangol.kill()


# --- no residue ---------------------------------------------------------------------------

STALLED_EXPORT = """
import sys, time
from datetime import datetime
from pathlib import Path

import pandas as pd

from models.segments import write_export


class Stalled(dict):  # the export stops here, between its files, until it is killed
    def items(self):
        time.sleep(600)
        return super().items()


frame = pd.DataFrame({"customer_id": ["a"], "cutoff": [pd.Timestamp("2030-01-01")]})
write_export(Path(sys.argv[1]), frame, frame, Stalled(), datetime(2030, 1, 1))
"""


@pytest.mark.slow
def test_the_next_export_removes_what_a_killed_one_left(project) -> None:
    exports = project.resolve(project.paths.exports)
    latest_before = (exports / "latest").resolve()
    child = subprocess.Popen([sys.executable, "-c", STALLED_EXPORT, str(exports)], cwd=REPO)
    staging = exports / f".staging-20300101T000000-{child.pid}"
    try:
        deadline = time.monotonic() + 120
        while not (staging / "scores.parquet").exists():
            assert child.poll() is None and time.monotonic() < deadline, "no staging folder"
            time.sleep(0.2)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert staging.is_dir()  # what kill -9 leaves
    assert (exports / "latest").resolve() == latest_before  # the previous export still served
    folder = projects.score(project, datetime(2026, 1, 3))  # the next run
    assert not staging.exists()
    assert not [p.name for p in exports.iterdir() if p.name.startswith(".")]
    assert (exports / "latest").resolve() == folder.resolve()
    assert not (exports / "20300101T000000").exists()
