"""The scoring service in three layers: logic without a server, ASGI, and `bentoml serve`.

One tiny project (3,000 customers) is trained, released and scored once for the module,
without Prefect: the flows' plain stages plus the MLflow registry.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import pandas as pd
import pytest

from features.targets import TARGETS, headline_metrics
from tests import projects
from tests.conftest import REPO
from tests.servers import bentoml_serve

TOKEN = "test-token-0123456789abcdef"
FIRST = next(iter(TARGETS))  # the registry's first target: buyers' repurchase-like score
FIRST_SCORE = TARGETS[FIRST].score_column


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory):
    """A trained, released and scored tiny project."""
    from flows.config import load_config

    root = tmp_path_factory.mktemp("serving")
    config = load_config(projects.write_project(root))
    outcome = projects.train_release(config)
    projects.score(config, datetime(2026, 1, 1))
    os.environ["DANGOL_TOKEN"] = TOKEN
    return config, outcome.release


@pytest.fixture(scope="module")
def state(project):
    from serving import state as states

    config, _ = project
    context = config.service_context()
    live, models = states.load_release(context)
    return states.load_state(context, live, models)


@pytest.fixture(scope="module")
def client(project):
    from starlette.testclient import TestClient

    from serving.service import create_service

    config, _ = project
    with TestClient(create_service(config.service_context()).to_asgi()) as test_client:
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


def test_score_ids_matches_the_export_in_request_order(state) -> None:
    from serving.state import score_ids

    ids = buyers(state, 5)
    request = [ids[3], "nope-1", ids[0], ids[3], "nope-2"]
    scores, unknown = score_ids(state, request)
    assert unknown == ["nope-1", "nope-2"]
    assert [s["customer_id"] for s in scores] == [ids[3], ids[0], ids[3]]
    exported = pd.read_parquet(state.export_dir / "scores.parquet").set_index("customer_id")
    for score in scores:
        expected = exported.loc[score["customer_id"]]
        for spec in TARGETS.values():
            if pd.isna(expected[spec.score_column]):
                assert score[spec.score_column] is None
            else:
                assert score[spec.score_column] == pytest.approx(
                    expected[spec.score_column], abs=1e-12
                )
        assert score["tier"] == expected["tier"]


def test_score_rows_agrees_with_the_ids_and_names_bad_features(state) -> None:
    from serving.state import FeatureRowError, score_ids, score_rows

    ids = buyers(state, 3)
    frame = state.snapshot.set_index("customer_id").loc[ids, state.features]
    rows = [
        {k: (None if pd.isna(v) else float(v)) for k, v in r.items()}
        for r in frame.to_dict("records")
    ]
    by_rows = score_rows(state, rows)
    by_ids, _ = score_ids(state, ids)
    for a, b in zip(by_rows, by_ids, strict=True):
        for spec in TARGETS.values():
            assert a[spec.score_column] == b[spec.score_column]
    with pytest.raises(FeatureRowError, match=r"rows\[1\].features: missing \['tier'\]"):
        score_rows(state, [rows[0], {k: v for k, v in rows[1].items() if k != "tier"}])
    with pytest.raises(FeatureRowError, match="unknown feature names"):
        score_rows(state, [{**rows[0], "shoe_size": 1.0}])


def test_explain_contributions_add_up_and_move_the_score_the_way_shown(state) -> None:
    from serving.state import UnknownCustomerError, explain

    (cid,) = buyers(state, 1)
    result = explain(state, cid, FIRST, top=4)
    row = state.snapshot.set_index("customer_id").loc[[cid]]
    model = state.models[FIRST]
    margin = model.booster.predict(row[model.features].to_numpy("float64"), raw_score=True)[0]
    assert result["raw_margin"] == pytest.approx(margin, abs=1e-6)
    sign = 1 if result["direction"] == "raises" else -1
    sizes = [sign * r["contribution"] for r in result["reasons"]]
    assert 0 < len(sizes) <= 4 and sizes == sorted(sizes, reverse=True)
    assert all(size > 0 for size in sizes)  # each reason moves the score the way it says
    assert len({r["text"] for r in result["reasons"]}) == len(result["reasons"])
    assert result["score"] == pytest.approx(model.predict_proba(row)[0], abs=1e-12)
    with pytest.raises(UnknownCustomerError):
        explain(state, "nope", FIRST, top=3)


def test_explain_gives_the_predicted_values_reasons_in_the_log_of_the_money(client, state):
    """/explain?target=customer_value: the contributions and the base add up to the log of
    the predicted value /score gives (both parts of the model), and each reason raises it."""
    from features.targets import amount_target

    spec = amount_target()
    assert spec.name in state.models, "the tiny project trains a value model"
    cid = state.snapshot.loc[state.snapshot["orders_lifetime"] >= 2, "customer_id"].iloc[0]
    body = {"customer_id": str(cid), "target": spec.name, "top": 4}
    answer = client.post("/explain", json=body, headers=AUTH).json()
    scored = client.post("/score", json={"customer_ids": [str(cid)]}, headers=AUTH).json()
    value = scored["scores"][0][spec.score_column]
    assert answer["target"] == spec.name and answer["scale"] == "log of the predicted value"
    assert answer["score"] == pytest.approx(value, rel=1e-9) and value > 0
    assert math.exp(answer["raw_margin"]) == pytest.approx(value, rel=1e-6)
    # in no list ranked by value: the reasons go the way the value went from the average
    went_up = answer["raw_margin"] >= answer["base_value"]
    assert answer["direction"] == ("raises" if went_up else "lowers")
    sign = 1 if went_up else -1
    assert 0 < len(answer["reasons"]) <= 4
    assert all(sign * r["contribution"] > 0 and r["text"] for r in answer["reasons"])
    asked = "lowers" if went_up else "raises"
    other = client.post("/explain", json={**body, "direction": asked}, headers=AUTH).json()
    assert other["direction"] == asked
    assert all(-sign * r["contribution"] > 0 for r in other["reasons"])
    probability = client.post(
        "/explain", json={"customer_id": str(cid), "target": FIRST}, headers=AUTH
    ).json()
    assert probability["scale"] == "log-odds"


def test_score_and_explain_agree_on_customers_in_no_segment(client, state) -> None:
    """Reasons computed on request for customers in no segment: /score and a default
    /explain give the same words in the direction /score states."""
    exported = pd.read_parquet(state.export_dir / "scores.parquet")
    outside = exported[exported["primary_segment"].isna() & exported["explained_by"].notna()]
    ids = list(outside["customer_id"].astype(str)[:15])
    assert ids, "the tiny shop has explained customers in no segment"
    body = client.post("/score", json={"customer_ids": ids}, headers=AUTH).json()
    for answer in body["scores"]:
        explained = client.post(
            "/explain", json={"customer_id": answer["customer_id"]}, headers=AUTH
        ).json()
        assert explained["direction"] == answer["reasons_direction"] == "raises"
        assert [r["text"] for r in explained["reasons"]] == answer["reasons"]
        assert all(r["contribution"] > 0 for r in explained["reasons"])


def test_explain_refuses_a_target_that_does_not_score_the_customer(client, state) -> None:
    """A member who never ordered has no predicted value: no margin, no reasons to invent
    ("no orders yet" raising a value nobody predicted), but a 400 naming the population."""
    from features.targets import amount_target

    spec = amount_target()
    never = state.snapshot.loc[state.snapshot["orders_lifetime"] == 0, "customer_id"]
    assert len(never), "the tiny shop has members without orders"
    body = {"customer_id": str(never.iloc[0]), "target": spec.name}
    response = client.post("/explain", json=body, headers=AUTH)
    assert response.status_code == 400
    assert spec.population_text in response.text and spec.name in response.text


def test_segment_page_filters_pages_and_ranks_by_any_target(state) -> None:
    from serving.state import UnknownSegmentError, segment_page

    active = state.segments["active"]
    total, first = segment_page(state, "active", 0, 5)
    assert total == len(active) and [m["rank"] for m in first] == [1, 2, 3, 4, 5]
    _, second = segment_page(state, "active", 5, 5)
    assert [m["rank"] for m in second] == [6, 7, 8, 9, 10]
    threshold = float(active[FIRST_SCORE].median())
    tier = int(active["tier"].mode()[0])
    total, page = segment_page(state, "active", 0, 1000, threshold, FIRST_SCORE, [tier])
    expected = active[(active[FIRST_SCORE] >= threshold) & (active["tier"] == tier)]
    assert total == len(expected) > 0
    assert [m["customer_id"] for m in page] == list(expected["customer_id"])
    for spec in TARGETS.values():
        _, ranked = segment_page(state, "active", 0, 1000, rank_by=spec.score_column)
        values = [m[spec.score_column] for m in ranked if m[spec.score_column] is not None]
        assert values == sorted(values, reverse=True)
    with pytest.raises(UnknownSegmentError):
        segment_page(state, "nope", 0, 5)


def test_exports_score_explain_and_report_agree_for_50_customers(client, state, tmp_path) -> None:
    """One core: the exported rows, /score, /explain and the report say the same."""
    from models.report import ReportInputs, tier_migration, write_report

    exported = pd.read_parquet(state.export_dir / "scores.parquet").set_index("customer_id")
    members = exported[exported["primary_segment"].notna()]
    assert len(members) >= 50
    sample = members.sample(50, random_state=1)
    body = client.post("/score", json={"customer_ids": list(sample.index)}, headers=AUTH).json()
    for answer in body["scores"]:
        row = sample.loc[answer["customer_id"]]
        for spec in TARGETS.values():
            if pd.isna(row[spec.score_column]):
                assert answer[spec.score_column] is None
            else:
                assert abs(answer[spec.score_column] - row[spec.score_column]) <= 1e-12
        words = [row[f"reason_{k}"] for k in (1, 2, 3) if isinstance(row[f"reason_{k}"], str)]
        assert answer["reasons"] == words
        assert answer["primary_segment"] == row["primary_segment"]
        assert answer["explained_by"] == row["explained_by"]
        # the learned next-order window: the same dates as the export (None where none)
        for column in ("expected_next_purchase", "next_purchase_from", "next_purchase_to"):
            if column in row and pd.notna(row[column]):
                assert answer[column] == str(pd.Timestamp(row[column]).date())
            else:
                assert answer.get(column) is None
        segment = pd.read_parquet(state.export_dir / f"segment_{row['primary_segment']}.parquet")
        in_segment = segment.set_index("customer_id").loc[answer["customer_id"]]
        assert [in_segment[f"reason_{k}"] for k in range(1, len(words) + 1)] == words
        explained = client.post(
            "/explain", json={"customer_id": answer["customer_id"]}, headers=AUTH
        ).json()
        assert explained["target"] == row["explained_by"]
        assert [r["text"] for r in explained["reasons"]] == words
        assert [r["feature"] for r in explained["reasons"]] == [
            row[f"reason_{k}_feature"] for k in range(1, len(words) + 1)
        ]
    snapshot = state.snapshot
    inputs = ReportInputs(
        runs=[],
        models=state.models,
        snapshot=snapshot,
        segments=state.segments,
        migration=tier_migration(snapshot, snapshot),
        settings=state.context.segments,
        currency=state.context.currency,
        shap_sample=200,
        contributions=state.scored.contributions,
        tiers=state.context.tiers,
    )
    page = write_report(inputs, tmp_path).read_text(encoding="utf-8")
    shown = re.findall(
        r"<h3>([a-z_]+) #\d+: ([^<]+)</h3><p>[^<]*</p><ol>(.*?)</ol>", page, flags=re.S
    )
    assert shown, "the report shows example explanations"
    assert len({cid for _, cid, _ in shown}) == len(shown), "each example customer once"
    for segment, cid, items in shown:
        words = [html.unescape(w) for w in re.findall(r"<li>(.*?)</li>", items)]
        exported_rows = pd.read_parquet(state.export_dir / f"segment_{segment}.parquet")
        row = exported_rows.set_index("customer_id").loc[cid]
        assert words == [row[f"reason_{k}"] for k in range(1, len(words) + 1)]
        if exported.loc[cid, "primary_segment"] == segment:
            answer = client.post("/score", json={"customer_ids": [cid]}, headers=AUTH).json()
            assert answer["scores"][0]["reasons"] == words


def test_service_refuses_to_start_without_a_token(monkeypatch) -> None:
    from serving.auth import MissingTokenError, resolve_token
    from serving.settings import ServingSettings

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
    assert body["customer_id"] == cid and 0 < len(body["reasons"]) <= 3
    assert {"feature", "value", "contribution", "text"} == set(body["reasons"][0])
    for reason in body["reasons"]:
        assert reason["text"] and " = " not in reason["text"], reason
    listed = client.post("/segments", json={}, headers=AUTH).json()["segments"]
    assert {s["name"]: s["size"] for s in listed} == {
        name: len(m) for name, m in state.segments.items()
    }
    page = client.post(
        "/segment_members", json={"name": "active", "offset": 2, "limit": 3}, headers=AUTH
    ).json()
    assert [m["rank"] for m in page["members"]] == [3, 4, 5]
    assert page["total"] == len(state.segments["active"])


def test_score_answers_every_target_primary_segment_and_reasons(client, state) -> None:
    ids = list(state.snapshot["customer_id"].astype(str)[:40])
    body = client.post("/score", json={"customer_ids": ids}, headers=AUTH).json()
    assert body["release"] == state.release.id
    for answer in body["scores"]:
        assert {spec.score_column for spec in TARGETS.values()} <= set(answer)
        assert answer["reasons"], answer  # everyone scored by some target gets reasons
        assert " = " not in " ".join(answer["reasons"])


def test_model_info_names_the_release_versions_window_and_metrics(client, project) -> None:
    _, live = project
    body = client.post("/model_info", json={}, headers=AUTH).json()
    assert body["release"] == live.id
    by_target = {m["target"]: m for m in body["models"]}
    assert set(by_target) == set(live.targets)
    for target, entry in live.targets.items():
        assert by_target[target]["version"] == entry.version
        assert by_target[target]["horizon_days"] == (entry.horizon_days or live.horizon_days)
        assert by_target[target]["training_window"] == live.window_of(target)
        # each target's own cutoffs (the value target's own split): tested windows fit the data
        last_test = pd.Timestamp(by_target[target]["training_window"]["test"][-1])
        days = by_target[target]["horizon_days"]
        assert last_test + pd.Timedelta(days=days) <= pd.Timestamp("2026-01-01"), target
        assert headline_metrics(target)[0][0] in by_target[target]["test_metrics"]
    assert "tier" in by_target[FIRST]["features"]
    assert body["customers"] == 3000


def _resolve(spec: dict, ref: str) -> dict:
    node = spec
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _deref(spec: dict, node: dict) -> dict:
    return _resolve(spec, node["$ref"]) if "$ref" in node else node


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
    assert schema["properties"]["customer_ids"]["minItems"] == 1
    answer = spec["paths"]["/score"]["post"]["responses"]["200"]["content"]["application/json"]
    body = _deref(spec, answer["schema"])
    item = _deref(spec, body["properties"]["scores"]["items"])
    # every target of the registry has its score in the answer
    assert {t.score_column for t in TARGETS.values()} <= set(item["properties"])


def _republish(config) -> str:
    """The live release again under a new release version (same models): a new live id."""
    from dataclasses import replace

    import mlflow

    from models import registry, release

    mlruns = config.resolve(config.paths.mlruns)
    registry.configure_mlflow(mlruns)
    live = release.live_release(config.registry.release_name)
    experiment = registry.ensure_experiment(config.registry.experiment, mlruns)
    with mlflow.start_run(experiment_id=experiment, run_name="republish") as run:
        again = replace(live, id=run.info.run_id, run_key="republished")
        created = release.create(config.registry.release_name, again, run.info.artifact_uri)
    release.set_live(config.registry.release_name, created)
    release.mirror_champions(created)
    return created.id


def test_reload_swaps_release_and_export_without_failing_requests(client, project, state):
    """A new live release and a new export; requests in flight keep answering."""
    import threading

    config, _ = project
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
        new_id = _republish(config)
        export = projects.score(config, datetime(2026, 1, 2))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            info = client.post("/model_info", json={}, headers=AUTH).json()
            if info["release"] == new_id and info["export"] == str(export):
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"no reload within 60 s: {info}")
    finally:
        stop.set()
        worker.join()
    assert not failures, failures[:3]


def test_score_refuses_a_config_whose_horizon_differs_from_the_live_release(project) -> None:
    from flows import export
    from models.release import ReleaseMismatchError

    config, live = project
    other = config.model_copy(deep=True)
    other.labels.horizon_days = live.horizon_days // 3
    with pytest.raises(ReleaseMismatchError, match=f"{live.horizon_days}-day horizon"):
        export.live_release(other)


# --- a real `bentoml serve` over HTTP --------------------------------------------------------


@pytest.mark.slow
@pytest.mark.integration
def test_bentoml_serve_over_http(project, state) -> None:
    config, _ = project
    with bentoml_serve(config) as (base, server):
        ids = buyers(state, 100)
        response = httpx.post(f"{base}/score", json={"customer_ids": ids[:50]}, headers=AUTH)
        assert response.status_code == 200, response.text
        assert len(response.json()["scores"]) == 50
        assert all(math.isfinite(s[FIRST_SCORE]) for s in response.json()["scores"])
        too_many = httpx.post(f"{base}/score", json={"customer_ids": ids[:51]}, headers=AUTH)
        assert too_many.status_code == 400 and "max_batch" in too_many.text
        assert httpx.post(f"{base}/score", json={"customer_ids": ids[:1]}).status_code == 401
        assert httpx.get(f"{base}/metrics").status_code == 401
        metrics = httpx.get(f"{base}/metrics", headers=AUTH)
        assert metrics.status_code == 200 and "bentoml_service_request" in metrics.text
    output = server.stdout.read().decode()
    assert TOKEN not in output


@pytest.mark.slow
@pytest.mark.integration
def test_two_projects_on_one_machine_each_serve_their_own_release(project, tmp_path) -> None:
    """Another project (same shop, another training seed, its own store) trained and served
    beside this one: each service answers with its own release and its own export's scores."""
    from flows.config import load_config

    config, _ = project
    live = export_live(config)  # an earlier test may have republished it
    other = load_config(projects.write_project(tmp_path / "other", training_seed=3))
    other_live = projects.train_release(other).release
    projects.score(other, datetime(2026, 1, 1))
    assert other_live.id != live.id
    exports = {
        name: pd.read_parquet(cfg.resolve(cfg.paths.exports) / "latest" / "scores.parquet")
        for name, cfg in (("this", config), ("other", other))
    }
    scored = exports["this"][FIRST_SCORE].notna()
    buyer = exports["this"].loc[scored, "customer_id"].iloc[0]
    expected = {
        name: float(frame.set_index("customer_id").loc[buyer, FIRST_SCORE])
        for name, frame in exports.items()
    }
    assert expected["this"] != expected["other"], "the two projects' models differ"
    with bentoml_serve(config) as (base, _), bentoml_serve(other) as (other_base, _):
        for name, url, release_id in (
            ("this", base, live.id),
            ("other", other_base, other_live.id),
        ):
            info = httpx.post(f"{url}/model_info", json={}, headers=AUTH).json()
            assert info["release"] == release_id
            answer = httpx.post(
                f"{url}/score", json={"customer_ids": [buyer]}, headers=AUTH
            ).json()["scores"][0]
            assert answer[FIRST_SCORE] == pytest.approx(expected[name], abs=1e-12)


@pytest.mark.slow
@pytest.mark.integration
def test_dangol_build_makes_a_bento_that_carries_the_live_release(project) -> None:
    config, _ = project
    from models import release

    live = export_live(config)
    config_file = str(config.base_dir / "dangol.yaml")
    built = subprocess.run(
        [sys.executable, "-m", "flows.cli", "build", "--config", config_file],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    home = config.resolve(config.paths.bentoml_home)
    listed = subprocess.run(
        [sys.executable, "-m", "bentoml", "get", "dangol:latest", "-o", "path"],
        env={**os.environ, "BENTOML_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    bento = Path(listed.stdout.strip())
    carried = bento / "src" / "outputs" / "bento" / "release"
    packed, models = release.read_release_dir(carried)
    assert packed.id == live.id and packed.versions() == live.versions()
    assert set(models) == set(live.targets)
    # the Bento listens on serving.host (loopback by default) and needs the token
    context_file = bento / "src" / "outputs" / "bento" / "service.json"
    carried_settings = json.loads(context_file.read_text())["serving"]
    assert carried_settings["host"] == "127.0.0.1" and carried_settings["token"] is None
    run_bento(bento, home, context_file)


def run_bento(bento: Path, home: Path, context_file: Path) -> None:
    """`bentoml serve` of the built Bento as its container runs it (no --host): refused
    without a token; with one, listening on loopback only and answering 401 without it."""
    import psutil

    from tests.servers import free_port, start, stop, wait_for

    port = free_port()
    command = [sys.executable, "-m", "bentoml", "serve", str(bento), "--port", str(port)]
    env = {**os.environ, "BENTOML_HOME": str(home), "DANGOL_SERVICE_CONTEXT": str(context_file)}
    env.pop("DANGOL_TOKEN", None)
    refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0
    assert "DANGOL_TOKEN" in refused.stdout + refused.stderr
    server = start(command, {**env, "DANGOL_TOKEN": TOKEN})
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/readyz", server, 180)
        family = [psutil.Process(server.pid), *psutil.Process(server.pid).children(True)]
        listening = {
            c.laddr.ip
            for p in family
            for c in p.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port
        }
        assert listening == {"127.0.0.1"}, listening
        assert httpx.post(f"{base}/model_info", json={}).status_code == 401
        assert httpx.post(f"{base}/model_info", json={}, headers=AUTH).status_code == 200
    finally:
        stop(server)


def export_live(config):
    from flows import export

    return export.live_release(config)
