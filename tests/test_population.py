"""The shop-wide statistics of the segment rules, and segments built part by part.

A cluster scores the shop one partition at a time; what makes a partition's memberships the
whole shop's is `models.population`: statistics reduced to counts, means and k-th smallest
values, and budgets reduced to their last kept row. These tests check those reductions
against the direct pandas computations and then build the segments of a shop in parts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_segments import _population

from features.tiers import TierSettings
from models.population import (
    FrameAggregates,
    Population,
    Statistic,
    Stats,
    budget_cut,
    evaluate,
    within_cut,
)
from models.segments import (
    RESELLERS,
    SegmentSettings,
    build_segments,
    local_population,
    statistics_needed,
)


def _values(rng: np.random.Generator, n: int) -> np.ndarray:
    """Values with many ties and some NaN, as scores rounded by a model and missing ones."""
    values = rng.integers(0, max(n // 4, 2), n).astype(float) / 7
    values[rng.random(n) < 0.1] = np.nan
    return values


@pytest.mark.parametrize("seed", range(6))
def test_a_percentile_line_selects_what_the_percentile_rank_selects(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = _values(rng, int(rng.integers(1, 400)))
    rank = pd.Series(values).rank(pct=True, method="max").to_numpy()
    aggregates = FrameAggregates(pd.DataFrame({"x": values}))
    for share in [0.0, 0.1, 0.25, 1 / 3, 0.5, 0.75, 0.9, 0.999, 1.0, *rng.random(20)]:
        line = evaluate(Statistic("line", "x", share), aggregates)
        np.testing.assert_array_equal(values >= line, rank >= share, err_msg=f"share {share}")


@pytest.mark.parametrize("seed", range(6))
def test_median_and_mean_equal_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = rng.lognormal(3, 1, int(rng.integers(1, 60)))
    values[rng.random(len(values)) < 0.2] = np.nan
    aggregates = FrameAggregates(pd.DataFrame({"x": values}))
    finite = values[np.isfinite(values)]
    median = evaluate(Statistic("median", "x"), aggregates)
    if finite.size:
        assert median == np.median(finite)  # exactly: the same two middle values, averaged
        assert evaluate(Statistic("mean", "x"), aggregates) == pytest.approx(finite.mean())
    else:
        assert np.isnan(median)


@pytest.mark.parametrize("limit", [0, 1, 7, 50, 199, 200, 500])
def test_a_budget_cut_keeps_the_best_ranked_rows(limit: int) -> None:
    rng = np.random.default_rng(limit)
    n = 300
    score = _values(rng, n)
    ids = pd.Series([f"c{i:04d}" for i in rng.permutation(n)])
    mask = rng.random(n) < 0.7
    ranked = (
        pd.DataFrame({"score": np.nan_to_num(score, nan=-np.inf), "id": ids, "row": range(n)})[mask]
        .sort_values(["score", "id"], ascending=[False, True])
        .head(limit)
    )
    expected = np.zeros(n, dtype=bool)
    expected[ranked["row"].to_numpy()] = True
    kept = within_cut(mask, score, ids, budget_cut(mask, score, ids, limit))
    np.testing.assert_array_equal(kept, expected)


def _whole_shop_population(
    snapshot: pd.DataFrame, scores: pd.DataFrame, settings: SegmentSettings
) -> Population:
    """What a cluster hands every partition: the statistics `statistics_needed` names and
    the budget cuts, computed over the whole shop (here in memory)."""
    population = local_population(snapshot, scores, TierSettings())
    build_segments(snapshot, scores, settings, TierSettings(), population)  # fills the cuts
    known = {s: population.stats.value(s) for s in statistics_needed(settings)}
    return Population(Stats(known=known), cuts=population.cuts, scored=population.scored)


@pytest.mark.parametrize(
    "settings",
    [
        SegmentSettings(),
        SegmentSettings(max_share=0.03),
        SegmentSettings.model_validate(
            {
                "active": {"min_percentile": 0.3, "top_n": 40},
                "vip_steady": {"min_orders": 3},
                "suspected_resellers": {"min_spend_percentile": 0.5},
            }
        ),
    ],
)
def test_segments_built_in_parts_equal_the_whole_shops(settings: SegmentSettings) -> None:
    snapshot, scores = _population(3_000, 0.4, seed=11)
    snapshot["max_units_vs_usual"] *= 4  # some suspected resellers
    scores["repurchase_score"] = scores["repurchase_score"].round(2)  # ties at the lines
    whole = build_segments(snapshot, scores, settings, TierSettings())
    population = _whole_shop_population(snapshot, scores, settings)
    parts = np.random.default_rng(3).integers(0, 4, len(snapshot))
    pieces: dict[str, list[pd.DataFrame]] = {name: [] for name in whole}
    for part in range(4):
        rows = parts == part
        built = build_segments(snapshot[rows], scores[rows], settings, TierSettings(), population)
        for name, members in built.items():
            pieces[name].append(members.drop(columns="rank"))
    assert len(whole[RESELLERS]) > 0
    for name, members in whole.items():
        joined = pd.concat(pieces[name], ignore_index=True).sort_values(
            ["rank_score", "customer_id"], ascending=[False, True], ignore_index=True
        )
        expected = members.drop(columns="rank")
        pd.testing.assert_frame_equal(joined, expected, check_dtype=False, obj=name)


def test_a_partition_without_the_whole_shops_numbers_is_refused() -> None:
    snapshot, scores = _population(200, 0.4, seed=1)
    population = Population(Stats(known={}), cuts={}, scored=200)
    with pytest.raises(KeyError, match="was not computed"):
        build_segments(snapshot, scores, SegmentSettings(), TierSettings(), population)
