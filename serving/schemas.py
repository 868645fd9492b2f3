"""Request and response models of the scoring service: what the OpenAPI document shows."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat

CustomerId = Annotated[str, Field(min_length=1, max_length=128, description="customer id")]
Target = Literal["repurchase", "vip_conversion"]
ScoreField = Literal["repurchase_score", "vip_score", "expected_value"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CustomerScore(Strict):
    customer_id: str
    tier: int = Field(description="membership tier at the cutoff (1 = highest)")
    repurchase_score: float | None = Field(
        description="P(order within the horizon); null if the customer never bought"
    )
    vip_score: float | None = Field(
        description="P(reaching a VIP tier within the horizon); null if already VIP"
    )
    expected_value: float | None = Field(description="repurchase_score x average order value")


class ScoreResponse(Strict):
    cutoff: str = Field(description="the snapshot's cutoff date (features use events before it)")
    model_versions: dict[str, str] = Field(description="champion MLflow version per target")
    scores: list[CustomerScore] = Field(description="known ids, in request order")
    unknown_ids: list[str] = Field(description="ids not in the snapshot, in request order")


class FeatureRow(Strict):
    ref: str | None = Field(None, max_length=128, description="caller's label, echoed back")
    features: dict[Annotated[str, Field(max_length=128)], FiniteFloat | None] = Field(
        description="every model feature by name (see /model_info); null means missing"
    )


class RowScore(Strict):
    ref: str | None
    tier: int
    repurchase_score: float | None
    vip_score: float | None
    expected_value: float | None


class RowScoreResponse(Strict):
    model_versions: dict[str, str]
    scores: list[RowScore]


class Reason(Strict):
    feature: str
    value: float | None = Field(description="the customer's feature value (null = missing)")
    contribution: float = Field(description="TreeSHAP contribution in log-odds")
    text: str = Field(
        description="the reason in plain words, in the shop's language and currency "
        '(e.g. "last order 12 days ago", "spent £1,234 in total")'
    )


class Explanation(Strict):
    customer_id: str
    target: Target
    cutoff: str
    model_version: str
    score: float | None = Field(description="calibrated probability; null outside the population")
    base_value: float = Field(description="the model's average raw margin (log-odds)")
    raw_margin: float = Field(description="base_value + sum of all contributions")
    reasons: list[Reason] = Field(description="largest contributions by absolute size")


class SegmentSize(Strict):
    name: str
    size: int


class SegmentList(Strict):
    cutoff: str
    segments: list[SegmentSize]


class SegmentMember(BaseModel):
    """A ranked member; further export columns (e.g. reasons) are passed through."""

    model_config = ConfigDict(extra="allow")

    rank: int
    customer_id: str
    tier: int
    repurchase_score: float | None = None
    vip_score: float | None = None
    expected_value: float | None = None


class SegmentPage(Strict):
    name: str
    cutoff: str
    total: int = Field(description="members matching the filters")
    offset: int
    limit: int
    members: list[SegmentMember]


class ModelDetails(Strict):
    target: str
    registered_name: str
    version: str
    run_id: str
    store_tag: str = Field(description="BentoML model store tag")
    training_window: dict[str, list[str]] = Field(description="train/validation/test cutoffs")
    test_metrics: dict[str, float]
    features: list[str]


class ModelInfo(Strict):
    cutoff: str
    customers: int
    export: str = Field(description="the export folder the snapshot and segments come from")
    models: list[ModelDetails]
