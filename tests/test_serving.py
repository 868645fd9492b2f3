"""The scoring service in three layers: logic without a server, ASGI, and `bentoml serve`.

One tiny project (3,000 customers) is trained and scored once for the module, without
Prefect: the flows' plain steps plus the MLflow registry.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from datetime import datetime

import httpx
import pandas as pd
import pytest

from tests.conftest import REPO
from tests.servers import bentoml_serve

TOKEN = "test-token-0123456789abcdef"
CONFIG = """
data:
  timezone: Asia/Seoul
  end: 2026-01-01
  tables:
    customers: {path: shop/customers.parquet}
    orders: {path: shop/orders.parquet}
    order_items: {path: shop/order_items.parquet}
    content_views: {path: shop/content_views.parquet}
synthetic: {customers: 3000, seed: 11, out_dir: shop}
training:
  lightgbm: {n_estimators: 60, min_child_samples: 20}
serving: {max_batch: 50, max_page: 20, reload_seconds: 0.5}
paths: {mlruns: mlruns, exports: exports, prefect_home: prefect}
"""


def train_and_register(config, stamp: datetime, seed: int = 7) -> dict[str, str]:
    """Train both targets, register them, promote by the gate; returns the new versions."""
    import mlflow

    from flows import steps
    from models import registry

    tables, _ = steps.load_shop(config, progress=lambda _: None)
    frame, split = steps.build_training_data(tables, config)
    mlruns = config.resolve(config.paths.mlruns)
    registry.configure_mlflow(mlruns)
    experiment = registry.ensure_experiment(config.registry.experiment, mlruns)
    config.training.seed = seed
    versions = {}
    for target in steps.TARGETS:
        trained = steps.train_target(frame, split, target, config, steps.scratch_dir())
        name = config.registry.model_names[target]
        with mlflow.start_run(experiment_id=experiment, run_name=target) as run:
            mlflow.log_metrics({f"test.{k}": v for k, v in trained.metrics.items()})
            registry.log_json(split.to_dict(), "data_window.json")
            uri = registry.log_classifier(trained.model, trained.test_rows)
            version = registry.register(uri, name, run.info.run_id)
        # always promote: these tests want a new champion, not the gate's verdict
        decision = registry.PromotionDecision(True, "test", trained.metrics["pr_auc"], None)
        registry.apply_promotion(name, version, decision)
        versions[target] = version
    snapshot = steps.latest_snapshot(tables, config, None)
    models = {
        t: registry.load_version(config.registry.model_names[t], v) for t, v in versions.items()
    }
    steps.score_and_export(snapshot, models, config, stamp)
    return versions


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory):
    """A trained, registered and scored tiny project; BentoML's home inside it."""
    from flows.config import load_config

    root = tmp_path_factory.mktemp("serving")
    (root / "dangol.yaml").write_text(CONFIG)
    config = load_config(root / "dangol.yaml")
    versions = train_and_register(config, datetime(2026, 1, 1))
    os.environ["BENTOML_HOME"] = str(root / "bento")
    os.environ["DANGOL_CONFIG"] = str(root / "dangol.yaml")
    os.environ["DANGOL_TOKEN"] = TOKEN
    return config, versions


@pytest.fixture(scope="module")
def state(project):
    from serving import store

    config, _ = project
    tags = store.import_champions(config)
    import bentoml

    return store.load_state(config, {t: bentoml.models.get(tag) for t, tag in tags.items()})


@pytest.fixture(scope="module")
def client(project):
    from starlette.testclient import TestClient

    from serving.service import Dangol

    with TestClient(Dangol.to_asgi()) as test_client:
        yield test_client


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_the_app_times_out_requests_with_the_cancelling_middleware(client) -> None:
    from serving.traffic import CancellingTimeoutMiddleware

    classes = [m.cls for m in client.app.user_middleware]
    assert CancellingTimeoutMiddleware in classes


def buyers(state, n: int) -> list[str]:
    snapshot = state.snapshot
    return list(snapshot.loc[snapshot["orders_lifetime"] > 0, "customer_id"].astype(str)[:n])


# --- unit: the logic without a server ------------------------------------------------------


def test_import_is_idempotent_and_carries_the_card(project, state) -> None:
    from serving import store

    config, versions = project
    again = store.import_champions(config)
    assert again == {t: c.store_tag for t, c in state.cards.items()}
    card = state.cards["repurchase"]
    assert card.version == versions["repurchase"]
    assert card.registered_name == "dangol-repurchase" and card.run_id
    assert card.training_window["test"] and card.training_window["train"]
    assert 0.5 < card.test_metrics["roc_auc"] <= 1.0


def test_score_ids_matches_the_export_in_request_order(state) -> None:
    from models.lookup import score_ids

    ids = buyers(state, 5)
    request = [ids[3], "nope-1", ids[0], ids[3], "nope-2"]
    scores, unknown = score_ids(state, request)
    assert unknown == ["nope-1", "nope-2"]
    assert [s["customer_id"] for s in scores] == [ids[3], ids[0], ids[3]]
    exported = pd.read_parquet(state.export_dir / "scores.parquet").set_index("customer_id")
    for score in scores:
        expected = exported.loc[score["customer_id"]]
        assert score["repurchase_score"] == pytest.approx(expected["repurchase_score"])
        assert score["tier"] == expected["tier"]


def test_score_rows_agrees_with_lookup_and_names_bad_features(state) -> None:
    from models.lookup import FeatureRowError, score_ids, score_rows

    ids = buyers(state, 3)
    frame = state.snapshot.set_index("customer_id").loc[ids, state.features]
    rows = [
        {k: (None if pd.isna(v) else float(v)) for k, v in r.items()}
        for r in frame.to_dict("records")
    ]
    by_rows = score_rows(state, rows)
    by_ids, _ = score_ids(state, ids)
    for a, b in zip(by_rows, by_ids, strict=True):
        assert a["repurchase_score"] == pytest.approx(b["repurchase_score"])
        assert a["vip_score"] == pytest.approx(b["vip_score"])
    with pytest.raises(FeatureRowError, match=r"rows\[1\].features: missing \['tier'\]"):
        score_rows(state, [rows[0], {k: v for k, v in rows[1].items() if k != "tier"}])
    with pytest.raises(FeatureRowError, match="unknown feature names"):
        score_rows(state, [{**rows[0], "shoe_size": 1.0}])


def test_explain_contributions_add_up_to_the_raw_margin(state) -> None:
    from models.lookup import UnknownCustomerError, explain

    (cid,) = buyers(state, 1)
    result = explain(state, cid, "repurchase", top=4)
    row = state.snapshot.set_index("customer_id").loc[[cid]]
    model = state.models["repurchase"]
    margin = model.booster.predict(row[model.features].to_numpy("float64"), raw_score=True)[0]
    assert result["raw_margin"] == pytest.approx(margin, abs=1e-6)
    sizes = [abs(r["contribution"]) for r in result["reasons"]]
    assert len(sizes) == 4 and sizes == sorted(sizes, reverse=True)
    assert result["score"] == pytest.approx(model.predict_proba(row)[0])
    with pytest.raises(UnknownCustomerError):
        explain(state, "nope", "repurchase", top=3)


def test_segment_page_filters_and_pages(state) -> None:
    from models.lookup import UnknownSegmentError, segment_page

    active = state.segments["active"]
    total, first = segment_page(state, "active", 0, 5)
    assert total == len(active) and [m["rank"] for m in first] == [1, 2, 3, 4, 5]
    _, second = segment_page(state, "active", 5, 5)
    assert [m["rank"] for m in second] == [6, 7, 8, 9, 10]
    threshold = float(active["repurchase_score"].median())
    tier = int(active["tier"].mode()[0])
    total, page = segment_page(state, "active", 0, 1000, threshold, "repurchase_score", [tier])
    expected = active[(active["repurchase_score"] >= threshold) & (active["tier"] == tier)]
    assert total == len(expected) > 0
    assert [m["customer_id"] for m in page] == list(expected["customer_id"])
    with pytest.raises(UnknownSegmentError):
        segment_page(state, "nope", 0, 5)


def test_service_refuses_to_start_without_a_token(monkeypatch) -> None:
    from flows.config import ServingSettings
    from serving.auth import MissingTokenError, resolve_token

    monkeypatch.delenv("SOME_UNSET_TOKEN_VAR", raising=False)
    with pytest.raises(MissingTokenError, match="SOME_UNSET_TOKEN_VAR"):
        resolve_token(ServingSettings(token_env="SOME_UNSET_TOKEN_VAR"))
    monkeypatch.setenv("SOME_UNSET_TOKEN_VAR", "x" * 20)
    assert resolve_token(ServingSettings(token_env="SOME_UNSET_TOKEN_VAR")) == "x" * 20


# --- ASGI: the app in process ---------------------------------------------------------------


def test_score_endpoint_reports_unknown_ids_per_id(client, state) -> None:
    ids = buyers(state, 2)
    response = client.post("/score", json={"customer_ids": [ids[0], "ghost", ids[1]]}, headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [s["customer_id"] for s in body["scores"]] == ids
    assert body["unknown_ids"] == ["ghost"]
    assert body["cutoff"] == "2026-01-01"


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer wrong-token-wrong-token"}, 401), (AUTH, 200)],
)
def test_token_is_required_except_for_health(client, headers, status) -> None:
    assert client.post("/model_info", json={}, headers=headers).status_code == status
    assert client.get("/readyz").status_code == 200
    assert client.get("/livez").status_code == 200


BAD_INPUTS = [
    ("/score", b'{"customer_ids": [', "json"),
    ("/score", b'{"customer_ids": "C1"}', "customer_ids"),
    ("/score", b'{"customer_ids": [1, 2]}', "customer_ids"),
    ("/score", b'{"customer_ids": []}', "customer_ids"),
    ("/score", b'{"customer_ids": [""]}', "customer_ids"),
    ("/score", json.dumps({"customer_ids": ["a"] * 51}).encode(), "customer_ids"),
    ("/score", b'{"ids": ["C1"]}', "customer_ids"),
    ("/score_rows", b'{"rows": [{"features": {"tier": NaN}}]}', "tier"),
    ("/score_rows", b'{"rows": [{"features": {"tier": Infinity}}]}', "tier"),
    ("/score_rows", b'{"rows": [{"features": {"tier": 3}}]}', "features"),
    ("/score_rows", b'{"rows": []}', "rows"),
    ("/explain", b'{"customer_id": "ghost"}', "customer_id"),
    ("/explain", b'{"customer_id": "C1", "target": "churn"}', "target"),
    ("/explain", b'{"customer_id": "C1", "top": 0}', "top"),
    ("/segment_members", b'{"name": "nope"}', "name"),
    ("/segment_members", b'{"name": "active", "offset": -1}', "offset"),
    ("/segment_members", b'{"name": "active", "limit": 21}', "limit"),
    ("/segment_members", b'{"name": "active", "limit": "ten"}', "limit"),
    ("/segment_members", b'{"name": "active", "min_score": -0.5}', "min_score"),
    ("/segment_members", b'{"name": "active", "tiers": ["gold"]}', "tiers"),
]


@pytest.mark.parametrize(("route", "payload", "field"), BAD_INPUTS)
def test_bad_input_is_a_4xx_naming_the_field(client, route, payload, field) -> None:
    headers = {**AUTH, "content-type": "application/json"}
    response = client.post(route, content=payload, headers=headers)
    assert 400 <= response.status_code < 500, response.text
    assert field.lower() in response.text.lower()


def test_rejected_input_values_stay_out_of_the_logs(client, caplog) -> None:
    secret = "4111-1111-1111-1111"
    with caplog.at_level("DEBUG"):
        body = {"rows": [{"features": {"tier": secret}}]}
        response = client.post("/score_rows", json=body, headers=AUTH)
    assert response.status_code == 400
    assert "rows.0.features.tier" in caplog.text  # the location is logged...
    assert secret not in caplog.text  # ...the value is not


def test_explain_and_segments_over_asgi(client, state) -> None:
    (cid,) = buyers(state, 1)
    body = client.post("/explain", json={"customer_id": cid, "top": 3}, headers=AUTH).json()
    assert body["customer_id"] == cid and len(body["reasons"]) == 3
    assert {"feature", "value", "contribution", "text"} == set(body["reasons"][0])
    # the phrase carries the customer's own value (e.g. "last order 12 days ago")
    for reason in body["reasons"]:
        assert reason["text"], reason
        if reason["feature"] == "days_since_last_order":
            assert f"{reason['value']:,.0f} days ago" in reason["text"]
    listed = client.post("/segments", json={}, headers=AUTH).json()["segments"]
    assert {s["name"]: s["size"] for s in listed} == {
        name: len(m) for name, m in state.segments.items()
    }
    page = client.post(
        "/segment_members", json={"name": "active", "offset": 2, "limit": 3}, headers=AUTH
    ).json()
    assert [m["rank"] for m in page["members"]] == [3, 4, 5]
    assert page["total"] == len(state.segments["active"])


def test_model_info_names_versions_window_and_metrics(client, project) -> None:
    _, versions = project
    body = client.post("/model_info", json={}, headers=AUTH).json()
    by_target = {m["target"]: m for m in body["models"]}
    assert by_target["repurchase"]["version"] == versions["repurchase"]
    assert by_target["repurchase"]["training_window"]["test"]
    assert "roc_auc" in by_target["vip_conversion"]["test_metrics"]
    assert "tier" in by_target["repurchase"]["features"]
    assert body["customers"] == 3000


def _resolve(spec: dict, ref: str) -> dict:
    node = spec
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _refs(node) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def test_openapi_document_lists_every_endpoint_with_schemas(client) -> None:
    spec = client.get("/docs.json").json()
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["title"]
    routes = ["/score", "/score_rows", "/explain", "/segments", "/segment_members", "/model_info"]
    for route in routes:
        operation = spec["paths"][route]["post"]
        request = operation["requestBody"]["content"]["application/json"]["schema"]
        response = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert request and response, route
    for ref in _refs(spec):
        assert _resolve(spec, ref), ref  # every reference resolves
    score_input = spec["paths"]["/score"]["post"]["requestBody"]["content"]["application/json"]
    schema = score_input["schema"]
    schema = _resolve(spec, schema["$ref"]) if "$ref" in schema else schema
    assert schema["properties"]["customer_ids"]["maxItems"] == 50


def test_reload_swaps_champion_and_export_without_failing_requests(client, project, state):
    """Register a new champion version and a new export; requests in flight keep answering."""
    import threading

    import mlflow

    from flows import steps
    from models import registry

    config, versions = project
    ids = buyers(state, 3)
    failures: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            r = client.post("/score", json={"customer_ids": ids}, headers=AUTH)
            if r.status_code != 200 or len(r.json()["scores"]) != 3:
                failures.append(r.text)

    worker = threading.Thread(target=hammer)
    worker.start()
    try:
        registry.configure_mlflow(config.resolve(config.paths.mlruns))
        name = config.registry.model_names["repurchase"]
        new = mlflow.register_model(f"models:/{name}/{versions['repurchase']}", name)
        decision = registry.PromotionDecision(True, "test", 1.0, None)
        registry.apply_promotion(name, str(new.version), decision)
        models = {
            t: registry.load_version(config.registry.model_names[t], v) for t, v in versions.items()
        }
        export, _ = steps.score_and_export(state.snapshot, models, config, datetime(2026, 1, 2))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            info = client.post("/model_info", json={}, headers=AUTH).json()
            moved = {m["target"]: m["version"] for m in info["models"]}
            if moved["repurchase"] == str(new.version) and info["export"] == str(export):
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"no reload within 60 s: {info}")
    finally:
        stop.set()
        worker.join()
    assert not failures, failures[:3]


# --- a real `bentoml serve` over HTTP --------------------------------------------------------


@pytest.mark.slow
@pytest.mark.integration
def test_bentoml_serve_over_http(project, state) -> None:
    config, _ = project
    with bentoml_serve(config.base_dir / "dangol.yaml") as (base, server):
        ids = buyers(state, 100)
        response = httpx.post(f"{base}/score", json={"customer_ids": ids[:50]}, headers=AUTH)
        assert response.status_code == 200, response.text
        assert len(response.json()["scores"]) == 50
        assert all(math.isfinite(s["repurchase_score"]) for s in response.json()["scores"])
        assert (
            httpx.post(f"{base}/score", json={"customer_ids": ids[:51]}, headers=AUTH).status_code
            == 400
        )
        assert httpx.post(f"{base}/score", json={"customer_ids": ids[:1]}).status_code == 401
        assert httpx.get(f"{base}/metrics").status_code == 401
        metrics = httpx.get(f"{base}/metrics", headers=AUTH)
        assert metrics.status_code == 200 and "bentoml_service_request" in metrics.text
    output = server.stdout.read().decode()
    assert TOKEN not in output


@pytest.mark.slow
@pytest.mark.integration
def test_dangol_build_makes_a_bento_that_carries_the_champions(project, state) -> None:
    config, _ = project
    env = {**os.environ, "BENTOML_HOME": os.environ["BENTOML_HOME"]}
    config_file = str(config.base_dir / "dangol.yaml")
    built = subprocess.run(
        [sys.executable, "-m", "flows.cli", "build", "--config", config_file],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    listed = subprocess.run(
        [sys.executable, "-m", "bentoml", "get", "dangol:latest", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    bento = json.loads(listed.stdout)
    carried = {m["tag"] for service in bento["services"] for m in service["models"]}
    import bentoml

    from serving.store import store_tags

    latest = {str(bentoml.models.get(tag).tag) for tag in store_tags(config).values()}
    assert carried == latest
