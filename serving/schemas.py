"""Request and response models of the scoring service: what the OpenAPI document shows."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from features.definitions import FeatureDef, feature_definitions
from features.snapshot import FeatureSettings
from features.targets import TARGETS, explained_targets
from features.tiers import TierSettings
from models.explain import SCALES
from models.scoring import DIRECTION_WORDS

CustomerId = Annotated[str, Field(min_length=1, max_length=128, description="customer id")]
# the targets whose reasons /explain gives (contributions in log-odds of a probability, or
# in the log of a predicted amount)
Target = Literal[tuple(s.name for s in explained_targets())]  # type: ignore[valid-type]
Scale = Literal[tuple(SCALES.values())]  # type: ignore[valid-type]
# which contributions are the reasons: those that raise the score, or those that lower it
Direction = Literal[tuple(DIRECTION_WORDS.values())]  # type: ignore[valid-type]
ScoreField = Literal[(*(s.score_column for s in TARGETS.values()), "expected_value")]  # type: ignore[valid-type]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _score_fields() -> dict[str, Any]:
    """One nullable score per target of the registry, described from its spec."""
    what = {
        "probability": "P({})",
        "amount": "predicted {} in the shop's currency",
        "days": "predicted median of the {} (null too when no order is expected within the "
        "horizon)",
    }
    return {
        spec.score_column: (
            float | None,
            Field(
                description=f"{what[spec.kind].format(spec.title)}; null outside its "
                f"population ({spec.population_text}) or without a model"
            ),
        )
        for spec in TARGETS.values()
    }


_CustomerScoreBase = create_model(  # type: ignore[call-overload]
    "_CustomerScoreBase",
    __base__=Strict,
    customer_id=(str, ...),
    tier=(int, Field(description="membership tier at the cutoff (1 = highest)")),
    **_score_fields(),
    expected_value=(
        float | None,
        Field(
            description="the customer's value in money: the predicted spend over the value "
            "horizon for buyers (the value model), else the probability of the next order x "
            "what that order is worth (a first order's as its model of past first orders "
            "expects; docs/segments.md)"
        ),
    ),
    uplift=(
        float | None,
        Field(
            None,
            description="predicted uplift of a campaign contact, P(buy | contacted) - "
            "P(buy | not), from the live release's uplift model; null when the release has "
            "none (it is kept only when it beat the response model on a later campaign)",
        ),
    ),
)


class CustomerScore(_CustomerScoreBase):
    primary_segment: str | None = Field(
        description="the customer's one campaign segment (by segments.priority), if any"
    )
    explained_by: str | None = Field(description="the target whose model gives the reasons")
    reasons_direction: str | None = Field(
        description='"raises": what raises that score; "lowers": what lowers it (risk lists)'
    )
    reasons: list[str] = Field(description="the top reasons in words, as in the exports")
    expected_next_purchase: str | None = Field(
        None,
        description="the expected date of the next order (the next-purchase model's median, "
        "from the cutoff on); null when not expected within the horizon or without that model",
    )
    next_purchase_from: str | None = Field(
        None, description="start of the 50% window of the next order (25th percentile)"
    )
    next_purchase_to: str | None = Field(
        None, description="end of the 50% window of the next order (75th percentile)"
    )


class ScoreResponse(Strict):
    cutoff: str = Field(description="the snapshot's cutoff date (features use events before it)")
    release: str = Field(description="the live release's id")
    model_versions: dict[str, str] = Field(description="champion MLflow version per target")
    scores: list[CustomerScore] = Field(description="known ids, in request order")
    unknown_ids: list[str] = Field(description="ids not in the snapshot, in request order")


class ErrorBody(Strict):
    """Every error answer of the service (4xx and 5xx) has this one shape."""

    error: str = Field(description="what is wrong, naming the field when a field is wrong")


# Units of the feature catalogue (features.definitions) and the values a row may carry:
# counts are whole and >= 0, money and views' prices >= 0, shares within [0, 1]; every
# value finite. A days feature may be negative only where its definition says so.
_COUNT_UNITS = {"orders", "views", "units"}
_MONEY_UNITS = {"currency"}
_SHARE_UNITS = {"share 0-1"}


def _whole(value: float) -> float:
    # pydantic's multiple_of has a tolerance (2.6e-42 passes as a multiple of 1)
    if not value.is_integer():
        raise ValueError("Input should be a whole number")
    return value


def _feature_type(definition: FeatureDef, lowest_tier: int) -> Any:
    finite = {"strict": True, "allow_inf_nan": False, "description": definition.meaning}
    unit = definition.unit
    if definition.name == "tier":
        limits = {"ge": 1, "le": lowest_tier, "multiple_of": 1}
        return Annotated[float, Field(**{**finite, **limits}), AfterValidator(_whole)]
    if unit in _COUNT_UNITS:
        limits = {"ge": 0, "multiple_of": 1}
        return Annotated[float, Field(**{**finite, **limits}), AfterValidator(_whole)] | None
    elif unit in _MONEY_UNITS:
        limits = {"ge": 0}
    elif unit in _SHARE_UNITS:
        limits = {"ge": 0, "le": 1}
    elif unit == "days" and "negative" not in definition.meaning:
        limits = {"ge": 0}
    else:  # ratios, log ratios, slopes: any finite value
        limits = {}
    return Annotated[float, Field(**{**finite, **limits})] | None


def feature_row_model(features: FeatureSettings, tiers: TierSettings) -> type[BaseModel]:
    """The request row of /score_rows for these settings: one field per feature of the
    catalogue with its unit's range (`tier` required, within the configured tiers); an
    omitted feature is reported missing when the live release needs it, null = unknown."""
    fields: dict[str, Any] = {}
    for definition in feature_definitions(features, tiers):
        kind = _feature_type(definition, tiers.lowest_tier)
        fields[definition.name] = (kind, ...) if definition.name == "tier" else (kind, None)
    row_features = create_model(  # type: ignore[call-overload]
        "Features",
        __config__=ConfigDict(extra="forbid", allow_inf_nan=False),
        __doc__="Model features by name (see /model_info); null means missing.",
        **fields,
    )
    return create_model(  # type: ignore[call-overload]
        "FeatureRow",
        __base__=Strict,
        ref=(str | None, Field(None, max_length=128, description="caller's label, echoed back")),
        features=(row_features, Field(description="every feature of the live release")),
    )


RowScore = create_model(  # type: ignore[call-overload]
    "RowScore",
    __base__=Strict,
    ref=(str | None, ...),
    tier=(int, ...),
    **_score_fields(),
    expected_value=(float | None, ...),
    uplift=(float | None, Field(None, description="as in /score")),
)


class RowScoreResponse(Strict):
    model_versions: dict[str, str]
    scores: list[RowScore]


class Reason(Strict):
    feature: str
    value: float | None = Field(description="the customer's feature value (null = missing)")
    contribution: float = Field(
        description="TreeSHAP contribution on the answer's `scale`: log-odds, or the log of "
        "the predicted value (exp(contribution) is the factor it multiplies the value by)"
    )
    text: str = Field(
        description="the reason in plain words, in the shop's language and currency "
        '(e.g. "last order 12 days ago", "spent £1,234 in total")'
    )


class Explanation(Strict):
    customer_id: str
    target: Target
    cutoff: str
    model_version: str
    release: str
    score: float | None = Field(
        description="calibrated probability, or the predicted value in the shop's currency; "
        "null outside the population"
    )
    scale: Scale = Field(
        description="what the contributions, the base value and the raw margin are in"
    )
    direction: Direction = Field(
        description="the reasons are what raises the score or what lowers it: as asked, else "
        "as the export gives them for the target that explains the customer there (a risk "
        "list: lowers; a customer in no segment: raises), else the way the score went from "
        "the base value"
    )
    base_value: float = Field(
        description="where the contributions start: the model's expected raw margin over its "
        "training rows (for a two-part value model, log P(buys) at the buying model's "
        "expected margin plus the amount model's expected log)"
    )
    raw_margin: float = Field(description="base_value + sum of all contributions")
    reasons: list[Reason] = Field(
        description="the largest contributions in that direction, as in the exports"
    )


class SegmentSize(Strict):
    name: str
    size: int


class SegmentList(Strict):
    cutoff: str
    segments: list[SegmentSize]


SegmentMember = create_model(  # type: ignore[call-overload]
    "SegmentMember",
    __config__=ConfigDict(extra="allow"),
    __doc__="A ranked member; further export columns (e.g. reasons) are passed through.",
    rank=(int, ...),
    customer_id=(str, ...),
    tier=(int, ...),
    **{name: (kind, None) for name, (kind, _) in _score_fields().items()},
    expected_value=(float | None, None),
)


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
    horizon_days: int
    training_window: dict[str, list[str]] = Field(description="train/validation/test cutoffs")
    test_metrics: dict[str, float]
    features: list[str]


class ModelInfo(Strict):
    release: str = Field(description="the live release's id (the retrain run that made it)")
    release_version: str | None = Field(description="its version of the release model")
    cutoff: str
    customers: int
    export: str = Field(description="the export folder the snapshot comes from")
    models: list[ModelDetails]
