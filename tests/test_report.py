"""The analyst report end to end: champions in a temp MLflow store, exports with reasons, and
the HTML opened in a real headless Chromium (images render, no console errors)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pandas as pd
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration]

CONFIG = """
data:
  timezone: Asia/Seoul
  currency: KRW
  end: 2026-01-01
  tables:
    customers: {path: shop/customers.parquet}
    orders: {path: shop/orders.parquet}
    order_items: {path: shop/order_items.parquet}
    content_views: {path: shop/content_views.parquet}
synthetic: {customers: 3000, seed: 11, out_dir: shop}
training:
  cutoff_every_days: 28
  lightgbm: {n_estimators: 60, min_child_samples: 20}
segments:
  language: ko
  report: {shap_sample: 300}
paths: {mlruns: mlruns, exports: exports, reports: reports, prefect_home: prefect}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory):
    """A config whose live release was trained on a small shop and published like the
    retrain flow does."""
    from flows import data, training
    from flows.config import load_config
    from flows.publish import log_and_publish
    from models import release

    root = tmp_path_factory.mktemp("report")
    (root / "dangol.yaml").write_text(CONFIG)
    config = load_config(root / "dangol.yaml")
    tables, _ = data.load_shop(config, progress=lambda _line: None)
    frame, split = training.build_training_data(tables, config)
    trained = [
        training.train_target(frame, split, target, config, root)
        for target in training.targets_to_train(frame)
    ]
    outcome = log_and_publish(trained, split, config, "report-test")
    return config, tables, release.load_models(outcome.release), outcome.release


def test_score_export_has_ranked_explained_segments_and_summary(project) -> None:
    from features.targets import timing_target
    from flows import export
    from models.timing import share_by_day

    config, tables, models, live = project
    snapshot = export.latest_snapshot(tables, config, None)
    folder, sizes = export.score_and_export(snapshot, models, config, datetime(2026, 1, 1), live)
    latest = folder.parent / "latest"
    assert latest.resolve() == folder.resolve()
    assert sizes["active"] > 0 and sizes["repurchase_prospects"] > 0
    active = pd.read_csv(latest / "segment_active.csv", encoding="utf-8-sig")
    assert list(active["rank"]) == list(range(1, len(active) + 1))
    assert active["expected_value"].is_monotonic_decreasing
    assert {"customer_id", "repurchase_score", "vip_score", "tier"} <= set(active.columns)
    # Korean reasons (config language: ko) for every member, from the model that ranks it
    assert active["reason_1"].notna().all()
    assert active["reason_1"].str.contains(r"[가-힣]").all()
    assert (active["explained_by"] == "repurchase").all()
    at_risk = pd.read_parquet(latest / "segment_vip_at_risk.parquet")
    assert (at_risk["reasons_direction"] == "lowers").all()
    assert (at_risk["reason_1_contribution"].dropna() < 0).all()
    scores = pd.read_parquet(latest / "scores.parquet")
    assert summary_release(latest) == live.id
    assert scores["primary_segment"].notna().any()
    assert {f"in_{name}" for name in sizes} <= set(scores.columns)
    prospects = pd.read_parquet(latest / "segment_repurchase_prospects.parquet")
    assert (prospects["next_purchase_to"] > prospects["next_purchase_from"]).all()
    summary = json.loads((latest / "summary.json").read_text(encoding="utf-8"))
    assert summary["segments"]["active"]["members"] == sizes["active"]
    # what the snapshot was built with, so a later release can tell whether it can read it
    from models.release import snapshot_mismatch

    assert summary["snapshot_settings"]["features"] == live.features
    assert snapshot_mismatch(summary["snapshot_settings"], live) is None
    # each score's horizon, predicted_value's its own (the value target's)
    from features.targets import amount_target

    horizons = summary["release"]["horizon_days"]
    value = live.targets[amount_target().name]
    assert horizons[amount_target().name] == value.horizon_days
    assert horizons["repurchase"] == live.horizon_days
    assert f"{amount_target().name} {value.horizon_days} days" in (latest / "summary.md").read_text(
        encoding="utf-8"
    )
    whatif = summary["segments"]["active"]["whatif"]
    assert [w["uplift_pp"] for w in whatif] == [3, 5, 7]
    assert whatif[0]["extra_buyers"] == pytest.approx(0.03 * sizes["active"])
    check_base_rates(scores, summary, latest, config.segments.holdout.campaign_days, live)
    timing = models[timing_target().name]
    buyers = scores["repurchase_score"].notna().to_numpy()
    rows = snapshot.set_index("customer_id").loc[scores.loc[buyers, "customer_id"]]
    days = config.segments.holdout.campaign_days
    share = share_by_day(timing.distribution(rows), days, live.horizon_days)
    learned = scores.loc[buyers, "repurchase_score"].to_numpy() * share
    assert np.allclose(scores.loc[buyers, "campaign_probability"], learned)
    # every list but the resellers holds out ~10%, written in the contract's format
    from features.schema import CAMPAIGNS, CONTACTS

    campaigns = pd.read_csv(latest / "campaigns" / "campaigns.csv")
    assert set(CAMPAIGNS.required) <= set(campaigns.columns)
    assert "suspected_resellers" not in set(campaigns["segment"])
    active_id = campaigns.loc[campaigns["segment"] == "active", "campaign_id"].item()
    contacts = pd.read_csv(latest / "campaigns" / f"{active_id}_contacts.csv")
    treated = pd.read_csv(latest / "campaigns" / f"{active_id}_treated.csv")
    assert set(CONTACTS.required) <= set(contacts.columns)
    # one campaign per customer: the Active campaign holds the members whose primary it is
    primary_active = (scores["primary_segment"] == "active").sum()
    assert len(contacts) == primary_active <= sizes["active"]
    everyone = pd.concat([pd.read_csv(f) for f in (latest / "campaigns").glob("*_contacts.csv")])[
        "customer_id"
    ]
    assert not everyone.duplicated().any()
    assert active["primary_segment"].notna().all()
    # no segment holds more than a quarter of the scored customers; the summary says why a
    # list is capped or empty and fills the action's numbers
    for name, size in sizes.items():
        assert size <= 0.25 * summary["scored"], name
    assert "X+" not in summary["segments"]["active"]["action"]
    # money in the report language's one format (segments.language: ko here: "13만 원+")
    assert re.match(r"[\d,.]+(만 |억 )?원\+ ", summary["segments"]["active"]["action"])
    assert "overlaps" in summary["segments"]["active"] and "note" in summary["segments"]["active"]
    held = contacts["group"].eq("holdout")
    assert 0.04 < held.mean() < 0.16 and len(treated) == (~held).sum()
    assert set(treated["customer_id"]) == set(contacts.loc[~held, "customer_id"])
    resellers = set(pd.read_parquet(latest / "segment_suspected_resellers.parquet")["customer_id"])
    for name in sizes:
        if name != "suspected_resellers":
            members = pd.read_parquet(latest / f"segment_{name}.parquet")["customer_id"]
            assert not resellers & set(members)


def check_base_rates(scores: pd.DataFrame, summary: dict, latest: Path, days: int, live) -> None:
    """The what-if's base rate is the chance of an order while the campaign runs, not over
    the horizon: a buyer's from the timing model, a first order's at an even rate over H;
    rising VIPs' is their chance of buying, not of reaching VIP."""
    campaign = scores["campaign_probability"]
    buyers = scores["repurchase_score"].notna().to_numpy()
    assert campaign[buyers].notna().all()
    assert (campaign[buyers] <= scores.loc[buyers, "repurchase_score"] + 1e-12).all()
    assert campaign[buyers].mean() < 0.8 * scores.loc[buyers, "repurchase_score"].mean()
    never = scores["first_purchase_score"].notna().to_numpy()
    assert never.any()
    even = 1 - (1 - scores.loc[never, "first_purchase_score"]) ** (days / live.horizon_days)
    assert np.allclose(campaign[never], even)
    assert f"campaign's {days} days" in summary["whatif_base_rate"]
    by_id = campaign.set_axis(scores["customer_id"])
    for name in ("active", "rising_vip", "high_price_browsers"):
        members = pd.read_parquet(latest / f"segment_{name}.parquet")["customer_id"]
        rows = summary["segments"][name]["whatif"]
        assert len(members) and rows, name
        assert rows[0]["baseline_rate"] == pytest.approx(by_id[members].mean()), name


def summary_release(folder: Path) -> str:
    return json.loads((folder / "summary.json").read_text(encoding="utf-8"))["release"]["id"]


@pytest.fixture(scope="module")
def report(project) -> Path:
    from flows.report import build_report

    config, _tables, _models, _live = project
    return build_report(config, progress=lambda _line: None)


def test_report_is_written_and_logged_to_the_champion_runs(project, report: Path) -> None:
    from mlflow import MlflowClient

    config, _, _, live = project
    assert report.is_file() and report.parent == config.resolve(Path("reports"))
    assert [p.name for p in report.parent.iterdir()] == [report.name]  # no plot files left
    page = report.read_text(encoding="utf-8")
    headings = (
        "Models against baselines",
        "Segments: sizes, campaigns and profiles",
        "First purchase",
        "Customer value and next purchase",
        "Tier migration",
        "Cohorts by first-order month",
        "Drift",
        "SHAP",
        "Example explanations",
    )
    numbered = re.findall(r"<h2>(\d+)\. ([^<]+)</h2>", page)
    assert [int(n) for n, _ in numbered] == list(range(1, len(numbered) + 1))
    assert all(any(t.startswith(h) for _, t in numbered) for h in headings)
    # the tier-migration table says which dates it compares
    assert re.search(r"Customers by tier on \d{4}-\d{2}-\d{2} .* and on 2026-01-01", page)
    # drift against the release's last fitted cutoff, as a table and a plot
    assert "Population stability index" in page and 'alt="PSI per score and feature"' in page
    # whole numbers are shown whole (a median of order counts is "4", not "4.00")
    assert not re.search(r">-?[\d,]+\.00<", page)
    # every example customer appears once
    examples = re.findall(r"<h3>[a-z_]+ #\d+: ([^<]+)</h3>", page)
    assert examples and len(examples) == len(set(examples))
    assert "recency" in page  # the repurchase baseline from the run's baseline.* metrics
    # the money and timing targets: today's values and expected weeks, their test metrics
    from features.targets import amount_target, timing_target

    assert set(live.targets) >= {amount_target().name, timing_target().name}
    assert re.search(r"predicts each buyer's spend over the next \d+ days: ₩[\d,.]+[MK]? ", page)
    assert "Value per segment" in page and "Expected next orders per week" in page
    assert "normalized_gini" in page and "bgnbd_gamma_gamma" in page and "c_index" in page
    assert 'alt="customer_value customer_value_deciles"' in page
    # what drives the predicted value, on its own scale (log of the money, not log-odds)
    assert 'alt="customer_value customer_value_shap_beeswarm"' in page
    assert re.search(r"SHAP contributions \(log of the predicted value\) of [\d,]+ sampled", page)
    assert 'alt="cohorts cohorts_repeat"' in page and 'alt="cohorts cohorts_tiers"' in page
    assert page.count("<img") >= 8  # gain + calibration x2, beeswarm + bar x2, segments, examples
    client = MlflowClient()
    for entry in live.targets.values():
        logged = [a.path for a in client.list_artifacts(entry.run_id, "report")]
        assert logged == [f"report/{report.name}"]


VIEWPORT = 1280


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _devtools_check(browser: str, page: Path, profile: Path) -> dict:
    """Open `page` in headless Chromium over the DevTools protocol; report images and errors."""
    from websockets.sync.client import connect

    # a short folder of its own: the socket path must fit in 108 bytes, which a folder
    # under pytest's tmp_path does not (chromium aborts)
    scratch = Path(tempfile.mkdtemp(prefix="chr-"))
    process = subprocess.Popen(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # chromium puts its singleton socket folder in TMPDIR and leaves it: in a folder
        # removed below, not the machine's /tmp (one org.chromium.Chromium.* per run)
        env={**os.environ, "TMPDIR": str(scratch)},
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            assert process.poll() is None, "chromium exited before opening DevTools"
            assert time.monotonic() < deadline, "chromium did not open DevTools in 60 s"
            time.sleep(0.2)
        port = port_file.read_text().split()[0]
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        events: dict = {"errors": [], "loaded": False}
        with connect(url, max_size=None, open_timeout=30) as ws:
            ids = iter(range(1, 10_000))

            def call(method: str, **params) -> dict:
                ident = next(ids)
                ws.send(json.dumps({"id": ident, "method": method, "params": params}))
                while True:
                    message = _pump(ws, events)
                    if message.get("id") == ident:
                        return message.get("result", {})

            for domain in ("Page", "Runtime", "Log"):
                call(f"{domain}.enable")
            # a laptop screen: the page must fit its width without scrolling sideways
            call(
                "Emulation.setDeviceMetricsOverride",
                width=VIEWPORT,
                height=900,
                deviceScaleFactor=1,
                mobile=False,
            )
            call("Page.navigate", url=page.resolve().as_uri())
            while not events["loaded"]:
                _pump(ws, events)
            script = (
                "JSON.stringify({title: document.title, ready: document.readyState, images: "
                "Array.from(document.images).map(i => [i.complete, i.naturalWidth]),"
                " h1: document.querySelector('h1') && document.querySelector('h1').innerText,"
                " scrollWidth: document.documentElement.scrollWidth,"
                " viewport: window.innerWidth})"
            )
            result = call("Runtime.evaluate", expression=script, returnByValue=True)
            time.sleep(0.5)  # late console errors (e.g. a failed image decode) still arrive
            call("Runtime.evaluate", expression="1")
        return {**json.loads(result["result"]["value"]), "errors": events["errors"]}
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(scratch, ignore_errors=True)


def _pump(ws, events: dict) -> dict:
    """Read one DevTools message, recording load and error events; returns the message."""
    message = json.loads(ws.recv(timeout=60))
    method, params = message.get("method"), message.get("params", {})
    errors = events["errors"]
    if method == "Page.loadEventFired":
        events["loaded"] = True
    elif method == "Runtime.exceptionThrown":
        errors.append(str(params.get("exceptionDetails")))
    elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
        errors.append(str(params.get("args")))
    elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
        errors.append(str(params["entry"].get("text")))
    return message


def test_report_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium is missing in CI: .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium not installed: apt-get install -y chromium to run the browser check")
    seen = _devtools_check(browser, report, tmp_path / "profile")
    assert seen["ready"] == "complete"
    assert seen["title"].startswith("dangol report")
    assert seen["h1"].startswith("dangol analyst report")
    assert len(seen["images"]) >= 8
    broken = [i for i, (complete, width) in enumerate(seen["images"]) if not complete or width == 0]
    assert broken == [], f"images that did not render: {broken}"
    assert seen["errors"] == []
    assert seen["viewport"] == VIEWPORT
    assert seen["scrollWidth"] <= seen["viewport"], "the page scrolls sideways at 1280 px"


def test_value_section_warns_when_the_scored_days_fall_in_a_season_never_trained_on() -> None:
    """A value model fitted on one year's January .. June cutoffs and scored on 10 December:
    the page says which days are extrapolated and what that cost on the test window."""
    from models.report import ModelRun, ReportInputs, _unseen_season_part
    from models.segments import SegmentSettings

    run = ModelRun(
        "customer_value",
        "dangol-customer_value",
        "1",
        "run",
        {"test.unseen_season_days": 90.0, "test.total_error_pct": -25.9},
        horizon_days=90,
        fitted=list(pd.date_range("2011-01-02", "2011-06-05", freq="7D")),
    )

    def page(cutoff: str) -> str:
        inputs = ReportInputs(
            runs=[run],
            models={},
            snapshot=pd.DataFrame({"cutoff": [pd.Timestamp(cutoff)]}),
            segments={},
            migration=pd.DataFrame(),
            settings=SegmentSettings(),
            currency="GBP",
        )
        return "".join(_unseen_season_part(inputs, "customer_value"))

    warning = page("2011-12-10")
    assert warning.startswith('<p class="warning">23 of the 90 days after 2011-12-10')
    assert "2011-01-02 .. 2011-06-05" in warning and "off by -26%" in warning
    assert page("2012-02-01") == ""  # a time of year the training windows covered


def test_metrics_table_names_a_baseline_that_failed() -> None:
    """A baseline that could not be computed was dropped from the page without a word."""
    from models.report import ModelRun, _metrics_table

    run = ModelRun(
        "customer_value",
        "dangol-customer_value",
        "1",
        "run",
        {
            "test.normalized_gini": 0.8,
            "baseline.rfm.normalized_gini": 0.7,
            "test.mae": 598671.672,
            "baseline.rfm.mae": 612000.0,
        },
        failed_baselines={"previous_window": "no spend_60d feature"},
    )
    page = _metrics_table(run, "JPY")
    assert "<th>rfm</th>" in page and "<td>0.700</td>" in page
    assert "¥598,672" in page and "598671.672" not in page  # money, not a bare number
    assert "Baseline previous_window could not be computed: no spend_60d feature." in page


def _bare_inputs(snapshot: pd.DataFrame, **extra):
    from models.report import ReportInputs
    from models.segments import SegmentSettings

    return ReportInputs(
        runs=[],
        models={},
        snapshot=snapshot,
        segments=extra.pop("segments", {}),
        migration=pd.DataFrame(),
        settings=SegmentSettings(),
        currency="GBP",
        **extra,
    )


def test_drift_table_marks_what_alerts_as_the_score_flow_does(tmp_path: Path) -> None:
    """`dangol score` said "no drift above 0.25" while the page called the shop's ageing a
    major shift: the page now shows the flow's own alert rule per row."""
    from flows.drift import DriftReport
    from models.report import _drift_section

    features = pd.DataFrame(
        {"column": ["days_since_first_order", "orders_90d", "spend_365d"], "psi": [0.43, 0.3, 0.4]}
    )
    drift = DriftReport(pd.Timestamp("2025-06-01"), features, {"repurchase": 0.05}, ["spend_365d"])
    inputs = _bare_inputs(
        pd.DataFrame(),
        drift=drift,
        psi_alert=0.25,
        not_alerting=["days_since_first_order"],
    )
    page = "".join(_drift_section(inputs, tmp_path))
    cells = [re.findall(r"<t[hd]>(.*?)</t[hd]>", row) for row in page.split("<tr>")[2:]]
    rows = {row[0]: row for row in cells}
    alerting = {column for column, row in rows.items() if row[-1] == "yes"}
    assert set(rows) == {"repurchase score", "days_since_first_order", "orders_90d", "spend_365d"}
    assert alerting == {"orders_90d"}
    assert "never alerts" in rows["days_since_first_order"][2]
    assert "window cut short then" in rows["spend_365d"][2]


def test_segment_profile_shows_a_tier_that_exists() -> None:
    from models.report import _profiles

    members = pd.DataFrame({"customer_id": ["a", "b"], "tier": [3, 4], "expected_value": [1, 2]})
    snapshot = pd.DataFrame({"customer_id": ["a", "b"], "orders_lifetime": [2.0, 5.0]})
    table = _profiles(_bare_inputs(snapshot, segments={"active": members}))
    assert table.loc["active", "tier"] == 3
    assert table.loc["active", "orders_lifetime"] == 3.5


def test_an_orders_only_log_says_there_is_no_one_for_the_first_purchase_model(
    tmp_path: Path,
) -> None:
    from models.report import _first_purchase_section

    snapshot = pd.DataFrame(
        {"customer_id": ["a"], "cutoff": [pd.Timestamp("2025-01-01")], "orders_lifetime": [2.0]}
    )
    page = "".join(_first_purchase_section(_bare_inputs(snapshot), tmp_path))
    assert page.startswith("<p>No known member has never ordered")
    assert "0 known members" not in page


def test_timing_part_says_nobody_is_expected_instead_of_nan_days() -> None:
    """A shop where almost nobody buys twice: no buyer gets a date; the page said their
    windows were "nan days" wide above an empty table."""
    from features.targets import timing_target
    from models.report import _timing_part

    spec = timing_target()
    snapshot = pd.DataFrame(
        {"customer_id": ["a", "b", "c"], "cutoff": [pd.Timestamp("2025-07-01")] * 3}
    ).assign(orders_lifetime=[1.0, 1.0, 0.0])
    scores = pd.DataFrame(
        {
            spec.score_column: [float("nan")] * 3,
            **{
                c: [pd.NaT] * 3
                for c in ("expected_next_purchase", "next_purchase_from", "next_purchase_to")
            },
        }
    )
    inputs = _bare_inputs(snapshot, scores=scores)
    inputs.models[spec.name] = object()  # only its presence matters here
    page = "".join(_timing_part(inputs))
    assert "None of the 2 buyers" in page
    assert "nan" not in page and "<table" not in page


def test_waterfall_labels_are_words(project) -> None:
    """Every bar of a waterfall is the customer's fact in words: no "nan =", no raw
    "25286400 = spend_lifetime"."""
    from flows import export
    from models.report import ReportInputs, waterfall_labels

    config, tables, models, _live = project
    snapshot = export.latest_snapshot(tables, config, None)
    inputs = ReportInputs(
        runs=[],
        models=models,
        snapshot=snapshot,
        segments={},
        migration=pd.DataFrame(),
        settings=config.segments.model_copy(update={"language": "en"}),
        currency="KRW",
    )
    features = next(iter(models.values())).features
    sparse = snapshot.sort_values("orders_lifetime").iloc[0]  # many missing values
    rich = snapshot.sort_values("spend_lifetime").iloc[-1]
    for row in (sparse, rich):
        labels = waterfall_labels(features, row, inputs)
        assert len(labels) == len(features)
        for label, feature in zip(labels, features, strict=True):
            # a column name (they all have underscores or are single words) is never a label
            assert "_" not in label and label != feature, (feature, label)
            assert "nan" not in label.lower() and " = " not in label, (feature, label)


def test_the_value_of_members_who_never_ordered_is_said_by_the_model_that_gives_it() -> None:
    """Online Retail has no first-purchase model (orders only, no views): the page said
    those members were valued at P(first order) x their mean viewed price anyway."""
    from features.targets import TARGETS, never_ordered
    from models.report import _unordered_value

    snapshot = pd.DataFrame({"customer_id": ["a"], "orders_lifetime": [0.0]})
    assert _unordered_value(_bare_inputs(snapshot)).endswith("no model here scores a first order.")
    (first,) = [s.name for s in TARGETS.values() if s.population is never_ordered]
    viewed = _bare_inputs(snapshot.assign(mean_viewed_price=[50.0]))
    viewed.models[first] = SimpleNamespace(worth=None)
    assert "P(first order) x their mean viewed price" in _unordered_value(viewed)
    # a model that learned what first orders are worth is named as what values them
    learned = _bare_inputs(snapshot.assign(mean_viewed_price=[50.0]))
    learned.models[first] = SimpleNamespace(worth=object())
    assert "x the amount its model of past first orders expects" in _unordered_value(learned)
    # neither a learned worth nor views: nothing values them, and the page says so
    blind = _bare_inputs(snapshot)
    blind.models[first] = SimpleNamespace(worth=None)
    assert _unordered_value(blind).startswith("Members who never ordered get no value")
