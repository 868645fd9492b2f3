"""The BentoML scoring service: thin and typed, it delegates to `models.lookup`.

Start it with `dangol serve --config C` (which sets DANGOL_CONFIG) or
`DANGOL_CONFIG=C bentoml serve serving.service:Dangol`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import bentoml
import pandas as pd
from pydantic import BaseModel, Field

from flows.config import DEFAULT_CONFIG, DangolConfig, load_config
from models import registry
from models.lookup import ScoringState

CustomerId = Annotated[str, Field(min_length=1, max_length=128)]


class CustomerScore(BaseModel):
    customer_id: str
    tier: int
    repurchase_score: float | None = Field(
        description="P(order within the horizon); null if never bought"
    )
    vip_score: float | None = Field(
        description="P(reaching a VIP tier within the horizon); null if VIP"
    )
    expected_value: float | None = Field(description="repurchase_score x average order value")


class ScoreResponse(BaseModel):
    cutoff: str
    model_versions: dict[str, str]
    scores: list[CustomerScore]
    unknown_ids: list[str]


class ModelInfo(BaseModel):
    cutoff: str
    model_versions: dict[str, str]
    customers: int


def load_state(config: DangolConfig) -> ScoringState:
    """The champions from the MLflow registry and the snapshot of the latest export."""
    registry.configure_mlflow(config.resolve(config.paths.mlruns))
    models, versions = {}, {}
    for target, name in config.registry.model_names.items():
        version = registry.champion_version(name)
        if version is None:
            raise registry.NoChampionError(f"no champion for {name}: run `dangol train` first")
        models[target], versions[target] = registry.load_version(name, version), version
    latest = config.resolve(config.paths.exports) / "latest" / "features.parquet"
    if not latest.exists():
        raise FileNotFoundError(f"no scored snapshot at {latest}: run `dangol score` first")
    return ScoringState(models, versions, pd.read_parquet(latest), config.tiers)


@bentoml.service(name="dangol", traffic={"timeout": 30})
class Dangol:
    """Scores for marketing systems: by customer id, from the latest feature snapshot."""

    def __init__(self) -> None:
        self.config = load_config(Path(os.environ.get("DANGOL_CONFIG", DEFAULT_CONFIG)))
        self.state = load_state(self.config)

    @bentoml.api(route="/score")
    def score(
        self, customer_ids: Annotated[list[CustomerId], Field(min_length=1, max_length=10_000)]
    ) -> ScoreResponse:
        """Scores, tier and expected value for each known id; unknown ids are listed apart."""
        if len(customer_ids) > self.config.serving.max_batch:
            raise bentoml.exceptions.InvalidArgument(
                f"customer_ids: {len(customer_ids)} ids, at most {self.config.serving.max_batch}"
            )
        scores, unknown = self.state.score_ids(customer_ids)
        return ScoreResponse(
            cutoff=self.state.cutoff,
            model_versions=self.state.versions,
            scores=[CustomerScore(**row) for row in scores],
            unknown_ids=unknown,
        )

    @bentoml.api(route="/model_info")
    def model_info(self) -> ModelInfo:
        """Which champion versions answer and which snapshot they score."""
        return ModelInfo(
            cutoff=self.state.cutoff,
            model_versions=self.state.versions,
            customers=len(self.state.snapshot),
        )
