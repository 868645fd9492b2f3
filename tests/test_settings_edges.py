"""Settings a real shop may choose: windows without 90 days, a data end with a time zone."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.definitions import feature_definitions
from features.snapshot import FeatureSettings, build_features, labelled_cutoffs
from features.synthetic import generate_shop
from features.tiers import TierSettings


@pytest.fixture(scope="module")
def shop():
    return generate_shop(400, 3, start="2024-01-01", end="2025-01-01")


def test_windows_without_90_days_still_give_every_feature(shop) -> None:
    settings = FeatureSettings(windows_days=[30, 180])
    frame = build_features(shop, [pd.Timestamp("2024-10-01")], settings, TierSettings())
    assert "spend_90d" in frame and "spend_trend_90d" in frame
    expected = {d.name for d in feature_definitions(settings, TierSettings())}
    assert expected == set(frame.columns) - {"customer_id", "cutoff"}


def test_a_data_end_with_a_time_zone_works(tmp_path: Path, shop) -> None:
    from features.synthetic import write_shop
    from flows.config import load_config
    from flows.data import data_end, first_event, load_shop

    write_shop(shop, tmp_path / "shop")
    (tmp_path / "dangol.yaml").write_text(
        "data:\n  timezone: Asia/Seoul\n  end: 2025-01-01T00:00:00+09:00\n  tables:\n"
        "    customers: {path: shop/customers.parquet}\n"
        "    orders: {path: shop/orders.parquet}\n"
    )
    config = load_config(tmp_path / "dangol.yaml")
    tables, _ = load_shop(config, progress=lambda _: None)
    end = data_end(tables, config)
    assert end == pd.Timestamp("2025-01-01") and end.tzinfo is None
    assert labelled_cutoffs(first_event(tables), end, 14, 90, 90)
