"""The OpenAPI document is the truth: what it declares (security, errors, limits, the live
release's features), the Swagger UI without a token, and schemathesis (every check, 100
examples per operation) against a real server finding no server error and no mismatch."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from features.targets import TARGETS
from tests import projects
from tests.servers import bentoml_serve

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROUTES = ["/score", "/score_rows", "/explain", "/segments", "/segment_members", "/model_info"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory):
    from flows.config import load_config

    root = tmp_path_factory.mktemp("schema")
    config = load_config(projects.write_project(root))
    projects.train_release(config)
    projects.score(config, datetime(2026, 1, 1))
    os.environ["DANGOL_TOKEN"] = TOKEN
    return config


@pytest.fixture(scope="module")
def client(project):
    from starlette.testclient import TestClient

    from serving.service import create_service

    with TestClient(create_service(project.service_context()).to_asgi()) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def document(client) -> dict:
    response = client.get("/docs.json")  # no token: the document is public
    assert response.status_code == 200
    return response.json()


def _deref(document: dict, node: dict) -> dict:
    if "$ref" not in node:
        return node
    found = document
    for part in node["$ref"].removeprefix("#/").split("/"):
        found = found[part]
    return found


def test_the_document_is_dangols_with_the_bearer_scheme(document) -> None:
    from serving.openapi import version

    info = document["info"]
    assert info["title"] == "dangol scoring service"
    assert info["version"] == version() and info["version"] not in ("None", "")
    assert "BentoML" not in info["description"] and "Bearer" in info["description"]
    scheme = document["components"]["securitySchemes"]["bearer"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}
    assert document["security"] == [{"bearer": []}]
    assert document["paths"]["/livez"]["get"]["security"] == []


@pytest.mark.parametrize("route", ROUTES)
def test_every_operation_declares_its_errors_with_the_one_shape(document, route) -> None:
    responses = document["paths"][route]["post"]["responses"]
    assert {"400", "401", "413", "415", "500"} <= set(responses)
    for status, response in responses.items():
        if status == "200":
            continue
        schema = _deref(document, response["content"]["application/json"]["schema"])
        assert schema["required"] == ["error"] and set(schema["properties"]) == {"error"}
        assert schema["additionalProperties"] is False


def test_the_document_states_the_configured_limits_and_the_live_release(
    document, project, client
) -> None:
    def request(route: str) -> dict:
        body = document["paths"][route]["post"]["requestBody"]["content"]["application/json"]
        return body["schema"]["properties"]

    assert request("/score")["customer_ids"]["maxItems"] == project.serving.max_batch
    assert request("/score_rows")["rows"]["maxItems"] == project.serving.max_batch
    limit = request("/segment_members")["limit"]["anyOf"][0]
    assert limit["maximum"] == project.serving.max_page
    info = client.post("/model_info", json={}, headers=AUTH).json()
    needed = {name for model in info["models"] for name in model["features"]}
    row = document["components"]["schemas"]["Features"]
    assert set(row["required"]) == needed | {"tier"} == set(row["properties"])
    tier = row["properties"]["tier"]
    assert (tier["minimum"], tier["maximum"]) == (1, project.tiers.lowest_tier)
    # nullable answers are declared nullable (BentoML's document said number only)
    score = _deref(
        document,
        document["paths"]["/explain"]["post"]["responses"]["200"]["content"]["application/json"][
            "schema"
        ],
    )["properties"]["score"]
    assert {"type": "null"} in score["anyOf"]
    item = document["components"]["schemas"]["CustomerScore"]["properties"]
    for spec in TARGETS.values():
        assert {"type": "null"} in item[spec.score_column]["anyOf"]


def test_the_swagger_ui_opens_without_a_token_and_its_calls_still_need_one(client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "swagger" in page.text.lower()
    for asset in ("swagger-ui-bundle.js", "swagger-initializer.js", "swagger-ui.css"):
        assert client.get(f"/static_content/{asset}").status_code == 200, asset
    docs = client.get("/docs", follow_redirects=False)
    assert docs.status_code in (301, 302, 307, 308) and docs.headers["location"] == "/"
    assert client.post("/model_info", json={}).status_code == 401
    assert client.get("/metrics").status_code == 401


@pytest.mark.slow
@pytest.mark.integration
def test_schemathesis_finds_no_server_error_and_no_schema_violation(project, tmp_path) -> None:
    """Every check of schemathesis, 100 examples per operation, against `bentoml serve`
    (about 30 s of requests here)."""
    schemathesis = Path(sys.executable).with_name("schemathesis")
    with bentoml_serve(project, log=tmp_path / "server.log") as (base, _):
        run = subprocess.run(
            [
                str(schemathesis),
                "run",
                f"{base}/docs.json",
                "--header",
                f"Authorization: Bearer {TOKEN}",
                "--checks",
                "all",
                "--max-examples",
                "100",
                "--workers",
                "1",
                "--no-color",
            ],
            cwd=tmp_path,  # its .hypothesis and .schemathesis folders go there
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert re.search(r"Tested:\s+9\b", run.stdout), run.stdout[-3000:]
    assert "failure" not in run.stdout.split("SUMMARY")[-1].lower(), run.stdout[-3000:]
    server_log = (tmp_path / "server.log").read_text(errors="replace")
    assert "status=500" not in server_log
