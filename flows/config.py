"""The project configuration: one YAML file assembled from each package's own settings.

Relative paths in a config file resolve against the folder that holds the file, so a config
means the same thing from any working directory.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from features.engine import ENGINES, EngineName, SparkSettings
from features.loaders import DataSettings, TimeZoneName
from features.snapshot import FeatureSettings, LabelSettings
from features.tiers import TierSettings
from flows.paths import DEFAULT_CONFIG, PROJECT_ROOT  # noqa: F401  (re-exported)
from models.drift import DriftSettings
from models.registry import RegistrySettings
from models.segments import SegmentSettings
from models.train import TrainingSettings
from serving.settings import ServiceContext, ServingSettings


class ConfigError(ValueError):
    """A configuration file that cannot be read or does not validate."""


class SyntheticSettings(BaseModel):
    """The embedded synthetic shop: generated into the data tables' folder when missing."""

    model_config = ConfigDict(extra="forbid")

    customers: int = Field(20_000, gt=0)
    seed: int = 7
    start: date = date(2024, 1, 1)
    end: date = date(2026, 1, 1)
    out_dir: Path = Path("../data/synthetic")


class PathSettings(BaseModel):
    """Where generated state lives; all of it is git-ignored and can be rebuilt."""

    model_config = ConfigDict(extra="forbid")

    mlruns: Path = Path("../mlruns")
    exports: Path = Path("../outputs/exports")
    # the analyst report (`dangol report`); a shop of its own needs a folder of its own, as
    # the file is named by the release's versions, which restart at 1 for every shop
    reports: Path = Path("../outputs/reports")
    prefect_home: Path = Path("../.prefect")
    # BentoML's home for `dangol serve` and `dangol build` (never the machine-wide ~/bentoml)
    bentoml_home: Path = Path("../bentoml_home")


class ScheduleSettings(BaseModel):
    """When the deployed flows run: cron expressions in the shop's time zone."""

    model_config = ConfigDict(extra="forbid")

    timezone: TimeZoneName = "Asia/Seoul"
    retrain_cron: str = "0 3 * * 1"
    score_cron: str = "0 6 * * *"

    @field_validator("retrain_cron", "score_cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        # Shape only: Prefect checks the fields fully when the deployment is made, and
        # importing Prefect here would read its settings before flows.runtime sets them.
        if not re.fullmatch(r"[0-9A-Za-z*/,\-]+( [0-9A-Za-z*/,\-]+){4}", value.strip()):
            raise ValueError(f"not a cron expression of five fields: {value!r}")
        return value


# the tiers of a shop whose config has none and whose currency is not the defaults': its
# own trailing spend, top 1% / 5% / 20% / 50% of spenders (tier 1 .. 4), recomputed each date
SHOP_RELATIVE_TIERS = TierSettings(basis="quantile", quantiles=[0.99, 0.95, 0.8, 0.5])


class DangolConfig(BaseModel):
    """Everything one run needs; `base_dir` is the folder of the YAML file, `file` the file
    itself (for messages that say which command to run; None when built in code)."""

    model_config = ConfigDict(extra="forbid")

    base_dir: Path = PROJECT_ROOT / "configs"
    file: Path | None = None
    data: DataSettings
    # where features and labels are computed: DuckDB on this machine, or the `spark:` cluster
    engine: EngineName = "duckdb"
    spark: SparkSettings = SparkSettings()
    synthetic: SyntheticSettings | None = None
    tiers: TierSettings = TierSettings()
    features: FeatureSettings = FeatureSettings()
    labels: LabelSettings = LabelSettings()
    training: TrainingSettings = TrainingSettings()
    registry: RegistrySettings = RegistrySettings()
    segments: SegmentSettings = SegmentSettings()
    serving: ServingSettings = ServingSettings()
    schedules: ScheduleSettings = ScheduleSettings()
    drift: DriftSettings = DriftSettings()
    paths: PathSettings = PathSettings()

    @model_validator(mode="after")
    def _money_in_the_shop_currency(self) -> DangolConfig:
        """The money defaults (the tier lines, the high-price line) are the synthetic shop's,
        in its currency; in another they mean nothing. Without a `tiers` section such a shop
        gets tiers from its own spend (quantiles); a line left at its default is refused."""
        home = DataSettings.model_fields["currency"].default
        currency = self.data.currency
        if currency == home:
            return self
        if "tiers" not in self.model_fields_set:
            self.tiers = SHOP_RELATIVE_TIERS.model_copy(deep=True)
        elif self.tiers.basis == "absolute" and "thresholds" not in self.tiers.model_fields_set:
            raise ValueError(
                f"tiers.thresholds: the default lines are {home} amounts; give them in "
                f"{currency}, or use the shop's own spend quantiles (basis: quantile)"
            )
        if "content_views" in self.data.tables and (
            "high_price_line" not in self.features.model_fields_set
        ):
            line = FeatureSettings.model_fields["high_price_line"].default
            raise ValueError(
                f"features.high_price_line: the default ({line:,.0f}) is a {home} amount; "
                f"set the price in {currency} from which a viewed item counts as high-price"
            )
        return self

    def with_engine(self, engine: str | None) -> DangolConfig:
        """This config with the engine a command asked for (None: the config's own)."""
        if engine is None or engine == self.engine:
            return self
        if engine not in ENGINES:
            raise ConfigError(f"engine {engine!r}: expected one of {', '.join(ENGINES)}")
        return self.model_copy(update={"engine": engine})

    def resolve(self, path: Path) -> Path:
        """A path from the config, absolute."""
        return (self.base_dir / path).resolve()

    def service_context(self, release_dir: Path | None = None) -> ServiceContext:
        """What the scoring service needs from this config (serving/ reads no YAML)."""
        return ServiceContext(
            mlruns=self.resolve(self.paths.mlruns),
            exports=self.resolve(self.paths.exports),
            release_name=self.registry.release_name,
            release_dir=release_dir,
            horizon_days=self.labels.horizon_days,
            tiers=self.tiers,
            features=self.features,
            segments=self.segments,
            currency=self.data.currency,
            serving=self.serving,
        )


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  {where}: {item['msg']} (got {item.get('input')!r:.80})")
    return "\n".join(lines)


def load_config(path: Path | str) -> DangolConfig:
    """Read and validate a config file; errors name the file and every bad key or value."""
    path = Path(path).resolve()
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    for key in ("base_dir", "file"):
        if key in raw:
            raise ConfigError(f"{path}: {key} is set from the file's location, not in the file")
    try:
        return DangolConfig.model_validate({**raw, "base_dir": path.parent, "file": path})
    except ValidationError as exc:
        raise ConfigError(f"{path}: invalid configuration:\n{_describe(exc)}") from exc
