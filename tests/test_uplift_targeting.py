"""Uplift targeting wired into the release, the segments and the what-if (issue 13, item 6).

One small synthetic shop with its planted campaigns (persuadables, sure things, lost causes,
sleeping dogs) is trained once like the retrain flow, then published as one release: to
stay fast, only the target that ranks the segments used here (`ranking_target`), then the
uplift model. The uplift judgement runs at a 50% level here, so the small shop's learner
wins through the same code as the default 95% (which it does not clear on 3,000 customers).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from tests.projects import score, write_project

pytestmark = [pytest.mark.slow, pytest.mark.integration]

TABLES = """    content_views: {path: shop/content_views.parquet}
    contacts: {path: shop/contacts.parquet}
    campaigns: {path: shop/campaigns.parquet}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory):
    """(config, tables, the uplift selection, the published release) of a small shop whose
    campaign logs are configured."""
    from features.targets import ranking_target
    from flows import data, training
    from flows.config import load_config
    from flows.publish import log_and_publish
    from models.uplift import plot_qini, select_uplift_model

    root = tmp_path_factory.mktemp("uplift-targeting")
    path = write_project(root, customers=3000)
    text = path.read_text()
    path.write_text(text.replace("    content_views: {path: shop/content_views.parquet}\n", TABLES))
    config = load_config(path)
    tables, _ = data.load_shop(config, progress=lambda _line: None)
    frame, split = training.build_training_data(tables, config)
    target = ranking_target("repurchase_prospects").name
    assert target == ranking_target("active").name
    trained = [training.train_target(frame, split, target, config, root)]
    selection = select_uplift_model(
        tables,
        data.data_end(tables, config),
        config.features,
        config.tiers,
        config.data.attribution_days,
        replicates=200,
        level=0.5,
    )
    assert selection.evaluation is not None, selection.reason
    selection.plots.append(plot_qini(selection.evaluation, root / "uplift_qini.png"))
    outcome = log_and_publish(trained, split, config, "uplift-targeting", uplift=selection)
    return config, tables, selection, outcome.release


def _live(config):
    from flows import export
    from models import release

    live = export.live_release(config)
    return live, release.load_models(live)


def _uplift_ranked(config, segment: str):
    """The config with `segment` ranked by uplift and no budget cut (so the rule alone
    decides membership)."""
    settings = config.segments.model_copy(
        update={
            "max_share": 1.0,
            segment: getattr(config.segments, segment).model_copy(update={"rank_by": "uplift"}),
        }
    )
    return config.model_copy(update={"segments": settings})


def test_the_release_carries_the_winning_uplift_model(project, tmp_path) -> None:
    from mlflow import MlflowClient

    from flows import export
    from models import release
    from models.uplift import UPLIFT_MODEL

    config, tables, selection, published = project
    assert selection.won, selection.reason
    assert published.has_uplift_model
    assert published.uplift["registered_name"] == release.uplift_model_name(
        config.registry.release_name
    )
    assert published.uplift["evaluated_on"] == selection.evaluation.campaign_id
    live, models = _live(config)
    assert live.id == published.id
    snapshot = export.latest_snapshot(tables, config, None)
    expected = selection.model.predict(snapshot)
    np.testing.assert_allclose(models[UPLIFT_MODEL].predict(snapshot), expected, rtol=1e-9)
    # the Bento's plain-file copy of the release carries it too
    _, copied = release.read_release_dir(
        release.write_release_dir(live, models, tmp_path / "release")
    )
    np.testing.assert_allclose(copied[UPLIFT_MODEL].predict(snapshot), expected, rtol=1e-9)
    # the judgement is logged in its own child run: Qini per ranking, the gain, the plot
    run = MlflowClient().get_run(published.uplift["run_id"])
    assert run.data.metrics["qini.response"] == pytest.approx(selection.evaluation.qini["response"])
    assert run.data.metrics["qini_gain.ci_low"] > 0
    artifacts = [a.path for a in MlflowClient().list_artifacts(run.info.run_id, "plots")]
    assert artifacts == ["plots/uplift_qini.png"]


def test_ranked_by_uplift_on_the_later_campaign_the_top_gains_more(project) -> None:
    """On the evaluation campaign (never seen by the judged learners), the contacts the
    winning learner ranks in the top half gain more from the offer than its bottom half."""
    _config, _tables, selection, _release = project
    evaluation = selection.evaluation
    score_ = evaluation.scores[selection.learner]
    top = score_ >= np.median(score_)
    treated = evaluation.treated == 1

    def gain(part: np.ndarray) -> float:
        y = evaluation.buyer
        return y[part & treated].mean() - y[part & ~treated].mean()

    assert gain(top) > gain(~top) + 0.02


def test_rank_by_uplift_orders_a_segment_by_the_live_uplift_model(project) -> None:
    from flows import export
    from models.scoring import score_and_explain
    from models.segments import UPLIFT_RANKING
    from models.uplift import UPLIFT_COLUMN, UPLIFT_MODEL

    config, tables, _selection, _release = project
    _live_release, models = _live(config)
    snapshot = export.latest_snapshot(tables, config, None)
    ranked = _uplift_ranked(config, "repurchase_prospects")

    def segment(settings):
        scored = score_and_explain(
            snapshot, models, settings.segments, settings.tiers, settings.data.currency
        )
        return scored.segments["repurchase_prospects"]

    by_uplift, usual = segment(ranked), segment(_uplift_ranked(config, "active"))
    assert len(by_uplift) > 50
    # the rule decides who is in; the uplift model decides the order
    assert set(by_uplift["customer_id"]) == set(usual["customer_id"])
    predicted = pd.Series(
        models[UPLIFT_MODEL].predict(snapshot), index=snapshot["customer_id"].to_numpy()
    )
    member_uplift = predicted.reindex(by_uplift["customer_id"]).to_numpy()
    np.testing.assert_allclose(by_uplift[UPLIFT_COLUMN].to_numpy(), member_uplift, rtol=1e-9)
    assert (np.diff(member_uplift) <= 1e-12).all()
    assert list(by_uplift["customer_id"]) != list(usual["customer_id"])
    # the export carries the uplift column and says what the list is ranked by
    folder = score(ranked, datetime(2026, 1, 2))
    exported = pd.read_csv(folder / "segment_repurchase_prospects.csv")
    assert list(exported["customer_id"]) == list(by_uplift["customer_id"])
    assert UPLIFT_COLUMN in exported
    import json

    summary = json.loads((folder / "summary.json").read_text())
    assert summary["segments"]["repurchase_prospects"]["ranked_by"] == UPLIFT_RANKING


def test_the_whatif_uses_model_and_measured_uplift_and_names_its_sources(project) -> None:
    from flows import data, export
    from models.measure import measure_campaign
    from models.scoring import score_and_explain
    from models.uplift import UPLIFT_COLUMN
    from models.whatif import ASSUMED_SOURCE, MODEL_SOURCE, campaign_whatif

    config, tables, _selection, _release = project
    _live_release, models = _live(config)
    snapshot = export.latest_snapshot(tables, config, None)
    scored = score_and_explain(
        snapshot, models, config.segments, config.tiers, config.data.currency
    )
    measured = export.measured_uplift(tables, config)
    # the synthetic shop's "Autumn for every active buyer" campaign is logged as `active`
    (campaign,) = measured.loc[measured["segment"] == "active", "campaign_id"]
    truth = measure_campaign(
        tables, campaign, data.data_end(tables, config), config.data.attribution_days
    )
    table = campaign_whatif(scored.segments, scored.scores, config.segments, measured)
    active = table[table["segment"] == "active"].set_index("source")
    assert set(active.index) == {MODEL_SOURCE, f"measured {campaign}"}
    row = active.loc[f"measured {campaign}"]
    assert row["uplift_pp"] == pytest.approx(truth.to_dict()["uplift_pp"])
    assert row["ci_low_pp"] == pytest.approx(truth.to_dict()["ci_low_pp"])
    assert row["extra_buyers"] == pytest.approx(row["uplift_pp"] / 100 * row["members"])
    # its money is what `dangol measure` says the campaign earned and cost, per customer
    n = row["members"]
    assert row["extra_revenue"] == pytest.approx(truth.revenue.estimate * n)
    assert row["extra_revenue_ci_low"] == pytest.approx(truth.revenue.ci_low * n)
    assert row["extra_revenue_ci_high"] == pytest.approx(truth.revenue.ci_high * n)
    assert row["coupon_cost"] == pytest.approx(truth.coupon_cost / truth.treated.customers * n)
    assert row["net_extra_revenue"] == pytest.approx(row["extra_revenue"] - row["coupon_cost"])
    members = scored.segments["active"]
    model_row = active.loc[MODEL_SOURCE]
    assert model_row["extra_buyers"] == pytest.approx(members[UPLIFT_COLUMN].sum())
    assert model_row["uplift_pp"] == pytest.approx(100 * members[UPLIFT_COLUMN].mean())
    # without an uplift model or a measured campaign, only the assumed points remain
    plain = {k: v.drop(columns=UPLIFT_COLUMN) for k, v in scored.segments.items()}
    fixed = campaign_whatif(plain, scored.scores, config.segments, measured.iloc[0:0])
    assert set(fixed["source"]) == {ASSUMED_SOURCE}
    assert sorted(set(fixed["uplift_pp"])) == [3, 5, 7]
    # this release has no timing model: the base rate is the horizon's, and it says so
    from models.whatif import base_rate_window, base_rates

    assert "no timing model" in base_rate_window(scored.scores, config.segments)
    repurchase = scored.scores["repurchase_score"].to_numpy()
    assert np.allclose(base_rates(scored.scores), repurchase, equal_nan=True)
    assert fixed.loc[fixed["segment"] == "active", "baseline_rate"].iloc[0] == pytest.approx(
        scored.scores.set_index("customer_id")
        .loc[members["customer_id"], "repurchase_score"]
        .mean()
    )


def test_without_campaign_logs_training_goes_on_and_segments_fall_back(project, tmp_path):
    from flows import export, training
    from models.scoring import score_and_explain
    from models.segments import UPLIFT_FALLBACK, segment_notes
    from models.uplift import UPLIFT_COLUMN, UPLIFT_MODEL

    config, tables, _selection, _release = project
    bare = dataclasses.replace(tables, contacts=None, campaigns=None)
    selection = training.train_uplift(bare, config, tmp_path)
    assert not selection.won and selection.model is None
    assert selection.reason.startswith("no uplift model: no logged campaign")
    assert selection.plots == []
    _live_release, models = _live(config)
    without = {k: v for k, v in models.items() if k != UPLIFT_MODEL}
    ranked = _uplift_ranked(config, "repurchase_prospects")
    snapshot = export.latest_snapshot(tables, config, None)
    scored = score_and_explain(
        snapshot, without, ranked.segments, ranked.tiers, ranked.data.currency
    )
    members = scored.segments["repurchase_prospects"]
    assert UPLIFT_COLUMN not in members
    # the usual ranking: expected value, best first
    assert members["rank_score"].tolist() == sorted(members["rank_score"], reverse=True)
    np.testing.assert_allclose(members["rank_score"], members["expected_value"])
    notes = segment_notes(snapshot, scored.scores, scored.segments, ranked.segments, ranked.tiers)
    assert UPLIFT_FALLBACK in notes["repurchase_prospects"]
    assert UPLIFT_FALLBACK not in notes.get("active", "")


def test_score_answers_carry_the_predicted_uplift(project) -> None:
    """/score's rows (serving.state.records, from the one core) carry each customer's
    predicted uplift from the live release's uplift model, in the documented schema."""
    from flows import export
    from models.scoring import score_and_explain
    from models.uplift import UPLIFT_MODEL
    from serving.schemas import CustomerScore
    from serving.state import records

    config, tables, _selection, _release = project
    _live_release, models = _live(config)
    snapshot = export.latest_snapshot(tables, config, None)
    scored = score_and_explain(
        snapshot, models, config.segments, config.tiers, config.data.currency
    )
    answers = records(scored)
    predicted = models[UPLIFT_MODEL].predict(snapshot)
    np.testing.assert_allclose([a["uplift"] for a in answers], predicted, rtol=1e-9)
    assert np.ptp(predicted) > 0  # customers differ: a real model, not a constant
    for answer in answers[:200]:
        CustomerScore.model_validate({**answer, "reasons": answer["reasons"] or []})
