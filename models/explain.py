"""Per-customer explanations: exact TreeSHAP contributions from LightGBM's own `pred_contrib`.

A probability's contributions are in log-odds of the raw booster (before calibration); a
predicted amount's are in the log of the money (`models.value.ValueModel.contributions`,
both parts of a two-part model). Per row they sum with the base value to the raw margin, so
the largest ones are the score's main reasons.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from features.targets import Kind
from models.train import TargetModel

BASE_VALUE = "base_value"
# what the contributions of a target of each kind add up to (the kinds that are explained)
SCALES: dict[Kind, str] = {"probability": "log-odds", "amount": "log of the predicted value"}


def contributions(model: TargetModel, frame: pd.DataFrame) -> pd.DataFrame:
    """One column per feature plus `base_value`, one row per input row (same index), on the
    scale `SCALES` names for the model's kind."""
    matrix = frame[model.features].to_numpy(dtype="float64")
    own = getattr(model, "contributions", None)  # a model of several boosters combines them
    values = own(matrix) if own else model.booster.predict(matrix, pred_contrib=True)
    return pd.DataFrame(values, columns=[*model.features, BASE_VALUE], index=frame.index)


# rows the importance of a model of several boosters is averaged over (a fixed sample)
IMPORTANCE_ROWS = 5_000
GAIN = "share of total split gain"
MEAN_ABS_SHAP = "share of mean |SHAP| on the log of the predicted value"


def feature_importance(model: TargetModel, rows: pd.DataFrame) -> tuple[np.ndarray, str]:
    """Each feature's importance and what it measures: a classifier's or the timing model's
    split gain; for a model that combines its own contributions (the value model, whose
    two-part recipe has two boosters) the mean |contribution| over `rows`, because the two
    boosters' gains are on different losses and the main one's alone leaves out the buying
    half (37% of mean |SHAP| on Online Retail)."""
    if getattr(model, "contributions", None) is None or not len(rows):
        return model.booster.feature_importance("gain").astype("float64"), GAIN
    sample = rows.sample(min(len(rows), IMPORTANCE_ROWS), random_state=0)
    values = contributions(model, sample).drop(columns=BASE_VALUE)
    return values.abs().mean().to_numpy("float64"), MEAN_ABS_SHAP


def contributions_shap(model: TargetModel, frame: pd.DataFrame) -> pd.DataFrame:
    """A single booster's contributions via shap.TreeExplainer: the same numbers as
    `contributions` for a one-booster model (the speed comparison in bench/segments.py)."""
    import shap

    explainer = shap.TreeExplainer(model.booster)
    values = explainer.shap_values(frame[model.features].to_numpy(dtype="float64"))
    values = values[1] if isinstance(values, list) else values
    out = pd.DataFrame(values, columns=model.features, index=frame.index)
    base = explainer.expected_value
    out[BASE_VALUE] = float(base[-1] if hasattr(base, "__len__") else base)
    return out


def mean_contributions(contrib: pd.DataFrame, groups: dict[str, pd.Index]) -> pd.DataFrame:
    """Mean contribution per feature (rows) for each group of row labels (columns)."""
    features = contrib.drop(columns=BASE_VALUE, errors="ignore")
    means = {name: features.loc[index].mean() for name, index in groups.items() if len(index)}
    return pd.DataFrame(means)


def _explanation(contrib: pd.DataFrame, frame: pd.DataFrame):
    import shap

    features = [c for c in contrib.columns if c != BASE_VALUE]
    return shap.Explanation(
        values=contrib[features].to_numpy(dtype="float64"),
        base_values=contrib[BASE_VALUE].to_numpy(dtype="float64"),
        data=frame.loc[contrib.index, features].to_numpy(dtype="float64"),
        feature_names=features,
    )


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_global(
    contrib: pd.DataFrame,
    frame: pd.DataFrame,
    title: str,
    directory: Path,
    scale: str = SCALES["probability"],
) -> list:
    """shap's beeswarm and bar plots of the given rows, the axis naming the contributions'
    scale; returns the two PNG paths."""
    import shap

    plt = _pyplot()
    explanation = _explanation(contrib, frame)
    paths = []
    axes = {"beeswarm": f"SHAP value ({scale})", "bar": f"mean |SHAP value| ({scale})"}
    for kind, draw in (("beeswarm", shap.plots.beeswarm), ("bar", shap.plots.bar)):
        plt.figure()
        draw(explanation, max_display=12, show=False)
        plt.xlabel(axes[kind])
        plt.title(f"{title}: SHAP {kind}")
        path = directory / f"{title}_shap_{kind}.png".replace(" ", "_")
        plt.gcf().set_size_inches(8, 5.5)
        plt.tight_layout()
        plt.savefig(path, dpi=90, bbox_inches="tight")
        plt.close("all")
        paths.append(path)
    return paths


def plot_waterfall(contrib: pd.DataFrame, frame: pd.DataFrame, row, title: str, path: Path) -> Path:
    """shap's waterfall plot of one row (label `row` of contrib)."""
    import shap

    plt = _pyplot()
    explanation = _explanation(contrib.loc[[row]], frame)
    plt.figure()
    shap.plots.waterfall(explanation[0], max_display=10, show=False)
    plt.title(title)
    plt.gcf().set_size_inches(8, 5)
    plt.tight_layout()
    plt.savefig(path, dpi=90, bbox_inches="tight")
    plt.close("all")
    return path


def plot_segment_means(
    means: pd.DataFrame, title: str, path: Path, top: int = 10, scale: str = SCALES["probability"]
) -> Path:
    """Heatmap-like bar chart: mean contribution of the top features in each segment."""
    plt = _pyplot()
    order = means.abs().max(axis=1).sort_values(ascending=False).index[:top]
    shown = means.loc[order]
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(order) + 2))
    image = ax.imshow(shown.to_numpy(), cmap="coolwarm", aspect="auto")
    limit = float(np.nanmax(np.abs(shown.to_numpy()))) or 1.0
    image.set_clim(-limit, limit)
    ax.set_yticks(range(len(order)), list(order))
    ax.set_xticks(range(shown.shape[1]), list(shown.columns), rotation=30, ha="right")
    fig.colorbar(image, ax=ax, label=f"mean SHAP ({scale})")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
