"""Segments plus top-3 reasons for every member, for 1M scored customers (issue 5 target: 60 s).

Models are trained with the default LightGBM settings on a small synthetic shop; the 1M-row
snapshot is that shop's latest snapshot tiled (new ids, values jittered) so the feature mix is
realistic. Also measures SHAP: LightGBM's native `pred_contrib` against shap.TreeExplainer
on the same rows of the same model, and checks that they agree.

    .venv/bin/python -m bench.segments --customers 1000000
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from datetime import date

import numpy as np
import pandas as pd

from features.snapshot import FeatureSettings, LabelSettings, build_features, training_frame
from features.synthetic import generate_shop
from features.targets import probability_targets
from features.tiers import TierSettings
from models.explain import contributions, contributions_shap
from models.scoring import score_and_explain, score_customers
from models.segments import SegmentSettings, build_segments
from models.train import TrainingSettings, split_cutoffs, train_classifier


def timed(work: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def train_models(shop_customers: int):
    tables = generate_shop(shop_customers, seed=7, start="2024-01-01", end="2026-01-01")
    end = pd.Timestamp("2026-01-01")
    cutoffs = [end - pd.Timedelta(days=90 + 28 * k) for k in range(14, -1, -1)]
    split = split_cutoffs(cutoffs, 90, test_cutoffs=2, validation_cutoffs=2)
    tiers = TierSettings()
    frame = training_frame(
        tables, split.train + split.validation, FeatureSettings(), LabelSettings(), tiers
    )
    settings = TrainingSettings()
    # the classifiers (the value and timing models have their own trainers and benchmarks)
    targets = [spec.name for spec in probability_targets()]
    models = {t: train_classifier(frame, t, split, settings) for t in targets}
    snapshot = build_features(tables, [end], FeatureSettings(), tiers)
    return models, snapshot


def tile(snapshot: pd.DataFrame, rows: int, seed: int = 0) -> pd.DataFrame:
    """`rows` customers drawn from the snapshot with fresh ids and 5% multiplicative jitter."""
    rng = np.random.default_rng(seed)
    big = snapshot.iloc[rng.integers(0, len(snapshot), rows)].reset_index(drop=True)
    numeric = [c for c in big.columns if c not in ("customer_id", "cutoff", "tier")]
    values = big[numeric].to_numpy("float64")
    big[numeric] = values * rng.lognormal(0, 0.05, size=values.shape)
    big["customer_id"] = pd.array([f"B{i:08d}" for i in range(rows)], dtype="string")
    return big


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--shop", type=int, default=8_000, help="customers of the training shop")
    parser.add_argument("--shap-rows", type=int, default=5_000)
    args = parser.parse_args()
    print(
        f"# segments benchmark, {date.today()}, {platform.machine()}, "
        f"{os.cpu_count()} cores (shared machine)"
    )
    seconds, (models, snapshot) = timed(lambda: train_models(args.shop))
    for target, model in models.items():
        dump = model.booster.dump_model()
        trees = len(dump["tree_info"])
        leaves = sum(t["num_leaves"] for t in dump["tree_info"]) / max(trees, 1)
        print(
            f"model {target}: {trees} trees, {leaves:.1f} leaves/tree, "
            f"{len(model.features)} features (trained in {seconds:.0f} s total)"
        )
    big = tile(snapshot, args.customers)
    settings = SegmentSettings()
    tiers = TierSettings()

    t_score, scores = timed(lambda: score_customers(big, models, tiers))
    t_segments, segments = timed(lambda: build_segments(big, scores, settings, tiers))
    members = sum(len(m) for m in segments.values())
    t_core, scored = timed(lambda: score_and_explain(big, models, settings, tiers, "KRW"))
    explained_rows = sum(len(c) for c in scored.contributions.values())
    print("\n| step | seconds |\n|---|---:|")
    print(f"| score {args.customers:,} customers ({len(models)} models) | {t_score:.1f} |")
    print(f"| build {len(segments)} segments ({members:,} memberships) | {t_segments:.1f} |")
    print(
        f"| the whole core: scores, segments, SHAP + top-3 reasons ({explained_rows:,} "
        f"explained rows) | **{t_core:.1f}** |"
    )
    print("\nsegment sizes: " + ", ".join(f"{k} {len(v):,}" for k, v in scored.segments.items()))

    rows = big.iloc[: args.shap_rows]
    first = next(iter(models))
    heads = " | ".join(f"{t} s" for t in models)
    print(f"\n| SHAP method, {len(rows):,} rows | {heads} | rows/s ({first}) |")
    print("|---|" + "---:|" * (len(models) + 1))
    results = {}
    for method, fn in (
        ("LightGBM pred_contrib", contributions),
        ("shap.TreeExplainer", contributions_shap),
    ):
        times = {}
        for target, model in models.items():
            times[target], results[(method, target)] = timed(lambda m=model, f=fn: f(m, rows))
        cells = " | ".join(f"{times[t]:.2f}" for t in models)
        print(f"| {method} | {cells} | {len(rows) / times[first]:,.0f} |")
    for target in models:
        a = results[("LightGBM pred_contrib", target)].to_numpy()
        b = results[("shap.TreeExplainer", target)].to_numpy()
        print(f"{target}: max |native - shap| = {np.abs(a - b).max():.2e}")


if __name__ == "__main__":
    main()
