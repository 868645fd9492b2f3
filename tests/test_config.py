"""Configuration: the shipped configs validate; bad keys and values are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["default.yaml", "online_retail.yaml"])
def test_shipped_configs_validate(name: str) -> None:
    config = load_config(REPO / "configs" / name)
    assert config.base_dir == REPO / "configs"
    assert config.resolve(config.paths.mlruns) == REPO / "mlruns"


def test_the_shipped_shops_share_no_name_or_output_folder() -> None:
    """The two shipped shops share one MLflow store: every registered name, the experiment
    and every folder they write (exports, reports) must be their own, or one shop's run
    would move the other's champion aliases or overwrite its report."""
    from features.targets import TARGETS
    from models.release import uplift_model_name

    shops = [load_config(REPO / "configs" / n) for n in ("default.yaml", "online_retail.yaml")]
    assert len({c.resolve(c.paths.mlruns) for c in shops}) == 1  # the case this guards

    def owned(config) -> set[str]:
        registry = config.registry
        names = {registry.model_name(t) for t in TARGETS} | {registry.experiment}
        names |= {registry.release_name, uplift_model_name(registry.release_name)}
        folders = {str(config.resolve(p)) for p in (config.paths.exports, config.paths.reports)}
        return names | folders

    assert owned(shops[0]).isdisjoint(owned(shops[1]))


def test_a_report_folder_in_the_old_place_says_where_it_moved(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="now paths.reports"):
        load_config(_write(tmp_path, MINIMAL + "segments:\n  report: {out_dir: r}\n"))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


MINIMAL = "data:\n  tables:\n    orders: {path: orders.csv}\n"


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, MINIMAL))
    assert config.labels.horizon_days == 90
    assert config.tiers.vip_line == 2_000_000


def test_money_defaults_do_not_travel_to_another_currency(tmp_path: Path) -> None:
    """The default lines are in won: a dollar shop without a `tiers` section got a $2.0M VIP
    line, and high-price views above $1,000,000."""
    usd = MINIMAL.replace("data:\n", "data:\n  currency: USD\n")
    config = load_config(_write(tmp_path, usd))
    assert config.tiers.basis == "quantile" and config.tiers.quantiles == [0.99, 0.95, 0.8, 0.5]
    with pytest.raises(ConfigError, match="tiers.thresholds: the default lines are KRW amounts"):
        load_config(_write(tmp_path, usd + "tiers: {window_days: 90}\n"))
    given = load_config(_write(tmp_path, usd + "tiers: {thresholds: [900, 300]}\n"))
    assert given.tiers.basis == "absolute" and given.tiers.vip_line == 300
    views = usd.replace(
        "orders: {path: orders.csv}", "orders: {path: o.csv}\n    content_views: {path: v.csv}"
    )
    with pytest.raises(ConfigError, match="features.high_price_line: the default"):
        load_config(_write(tmp_path, views))
    assert load_config(_write(tmp_path, views + "features: {high_price_line: 80}\n"))


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ("trainig:\n  seed: 1\n", "trainig"),
        ("training:\n  lightgbm:\n    num_leafs: 3\n", "training.lightgbm.num_leafs"),
        ("labels:\n  horizon_days: -5\n", "labels.horizon_days"),
        ("tiers:\n  thresholds: [100, 500]\n", "strictly descending"),
        ("features:\n  windows_days: thirty\n", "features.windows_days"),
    ],
)
def test_bad_keys_and_values_are_named(tmp_path: Path, extra: str, named: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(_write(tmp_path, MINIMAL + extra))
    assert named in str(error.value)
    assert "c.yaml" in str(error.value)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "data: [unclosed\n"))
