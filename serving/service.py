"""The BentoML scoring service: its state and HTTP only; scoring and reasons come from the
one core (models.scoring) through serving.state.

Importing this module does nothing; `create_service(context)` builds the service class for a
`ServiceContext` (what the flow layer hands it, see serving.settings). `serving.app` is the
entry point BentoML imports: `dangol serve --config C` writes the context and starts
`bentoml serve serving.app:Dangol`.

The models come from the live release of the project's own MLflow store (or, in a Bento,
from the release files it carries): no machine-wide BentoML model store is involved, so two
projects on one machine never see each other's models.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
from typing import Annotated, Any

from pydantic import Field

from models.release import ReleaseMismatchError
from models.scoring import DIRECTION_WORDS, NotScoredError
from serving import state as states

# BentoML reads the endpoints' annotations from this module's namespace
from serving.schemas import (
    CustomerId,
    Direction,
    Explanation,
    ModelDetails,
    ModelInfo,
    RowScoreResponse,
    ScoreField,
    ScoreResponse,
    SegmentList,
    SegmentPage,
    SegmentSize,
    Target,
)
from serving.settings import BUILDING_ENV, ServiceContext

logger = logging.getLogger("dangol.serving")
DIRECTION_OF = {word: sign for sign, word in DIRECTION_WORDS.items()}

# What the API document states; the configured limits (serving.max_batch, max_page) are
# checked per request and are never above these.
MAX_BATCH = 100_000
MAX_PAGE = 100_000
DEFAULT_PAGE = 100


def freeze_heap() -> None:
    """Take everything alive now (libraries, models, the snapshot and its per-customer
    records) out of the cyclic collector's reach.

    Without this, a full collection walks all of it every few thousand requests and stalls
    the event loop for 300–400 ms (measured: p99 344 ms at 300 req/s). Unfreezing first lets
    the collection after a reload free the previous state's cycles (call it once nothing
    refers to that state any more).
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def create_service(context: ServiceContext):  # noqa: C901 - one class, thin methods
    """The service class for this context (BentoML reads its limits and middleware here)."""
    import bentoml
    from bentoml.exceptions import InvalidArgument, NotFound

    from serving import traffic
    from serving.auth import BearerTokenMiddleware, RedactInputErrors, resolve_token
    from serving.http import EscapeControlCharacters, RequestGuard
    from serving.openapi import Document
    from serving.schemas import feature_row_model

    limits = context.serving
    if os.environ.get(BUILDING_ENV) != "1":
        # refuse to start without a token here, at import, rather than answer every request
        # with an error once the app builds its middleware on the first one
        resolve_token(limits)
    # /score_rows' row: every feature of the catalogue for these settings, with its range
    row_model = feature_row_model(context.features, context.tiers)
    served: dict[str, Any] = {}  # the instance, once BentoML has made it (for the document)

    def check_batch(field: str, size: int) -> None:
        if size > limits.max_batch:
            raise InvalidArgument(
                f"{field}: at most {limits.max_batch} per request (serving.max_batch), got {size}"
            )

    @bentoml.service(
        name="dangol",
        workers=limits.workers,
        traffic={"timeout": 30},
        metrics={"enabled": True},
        # where `bentoml serve` listens without --host/--port, as in a Bento's container:
        # the configured address, loopback unless serving.host says otherwise
        http={"host": limits.host, "port": limits.port},
    )
    class Dangol:
        """Scores, explanations and ranked segments for marketing systems.

        Every endpoint except /livez, /readyz and the API document needs
        `Authorization: Bearer <token>`.
        """

        def __init__(self) -> None:
            self.context = context
            served["instance"] = self
            live, models = states.load_release(context)
            self.state = states.load_state(context, live, models)
            freeze_heap()
            self._stop = threading.Event()
            self._reloader = threading.Thread(target=self._reload_loop, name="reload", daemon=True)
            self._reloader.start()

        @bentoml.on_shutdown
        def stop_reloading(self) -> None:
            """Stop the reload thread with the service."""
            self._stop.set()

        def _reload_loop(self) -> None:
            told = ""
            while not self._stop.wait(limits.reload_seconds):
                try:
                    if self.reload():
                        freeze_heap()  # here, once `reload` no longer holds the previous state
                    told = ""
                except ReleaseMismatchError as exc:
                    # lasts until `dangol score` (or a restart with the new config): said
                    # once, not every tick
                    if str(exc) != told:
                        logger.warning("not reloading: %s; still serving the previous state", exc)
                        told = str(exc)
                except Exception:  # keep serving the last good state whatever went wrong
                    logger.exception("reload failed; still serving the previous state")

        def reload(self) -> bool:
            """Swap in a new state if the live release or `latest` export moved.

            The new state is built completely before one attribute assignment replaces the
            old one, so a request in flight keeps the state it started with.
            """
            current = self.state
            live_id = states.live_release_id(context)
            release_moved = live_id is not None and live_id != current.release.id
            export_moved = states.latest_export(context) != current.export_dir
            if not (release_moved or export_moved):
                return False
            if release_moved:
                live, models = states.load_release(context)
            else:
                live, models = current.release, current.models
            self.state = states.load_state(context, live, models)
            logger.info(
                "reloaded: %s %s, export %s",
                self.state.release.label,
                self.state.versions,
                self.state.export_dir,
            )
            return True

        @bentoml.api(route="/score")
        async def score(
            self,
            customer_ids: Annotated[list[CustomerId], Field(min_length=1, max_length=MAX_BATCH)],
        ) -> ScoreResponse:
            """Every target's score, tier, primary segment, expected value and the top reasons
            per known id; unknown ids are listed apart."""
            check_batch("customer_ids", len(customer_ids))
            state = self.state
            scores, unknown = states.score_ids(state, customer_ids)
            return ScoreResponse(
                cutoff=state.cutoff,
                release=state.release.id,
                model_versions=state.versions,
                scores=scores,
                unknown_ids=unknown,
            )

        async def score_rows(self, rows) -> RowScoreResponse:
            """Score full feature rows sent by the caller (every feature of the live release
            by name, null = missing; each within its unit's range)."""
            check_batch("rows", len(rows))
            state = self.state
            given = [row.features.model_dump(exclude_unset=True) for row in rows]
            try:
                scored = states.score_rows(state, given)
            except states.FeatureRowError as exc:
                raise InvalidArgument(str(exc)) from None
            for row, record in zip(rows, scored, strict=True):
                record["ref"] = row.ref
            return RowScoreResponse(model_versions=state.versions, scores=scored)

        # the row model depends on the settings, so its annotation is set here, not written
        score_rows.__annotations__["rows"] = Annotated[
            list[row_model], Field(min_length=1, max_length=MAX_BATCH)
        ]
        score_rows = bentoml.api(route="/score_rows")(score_rows)

        @bentoml.api(route="/explain")
        async def explain(
            self,
            customer_id: CustomerId,
            target: Annotated[
                Target | None,
                Field(
                    description="the model to explain: a probability or the predicted value "
                    "(the timing model's answer is a curve over days and has no reasons)"
                ),
            ] = None,
            top: Annotated[int, Field(ge=1, le=50)] | None = None,
            direction: Direction | None = None,
        ) -> Explanation:
            """One customer's score and the reasons behind it (TreeSHAP: log-odds for a
            probability, the log of the money for the predicted value), as in the exports;
            `target` defaults to the one that explains the customer there, `direction` to
            the export's for that target, else the way the score went from the base value."""
            state = self.state
            if target is not None and target not in state.models:
                raise InvalidArgument(
                    f"target: the live {state.release.label} has no {target} model"
                )
            asked = None if direction is None else DIRECTION_OF[direction]
            try:
                result = states.explain(state, customer_id, target, top, asked)
            except states.UnknownCustomerError:
                raise NotFound(f"customer_id: {customer_id!r} is not in the snapshot") from None
            except NotScoredError as exc:
                raise InvalidArgument(f"customer_id: {customer_id!r}: {exc}") from None
            return Explanation(
                **result,
                cutoff=state.cutoff,
                release=state.release.id,
                model_version=state.versions[result["target"]],
            )

        @bentoml.api(route="/segments")
        async def segments(self) -> SegmentList:
            """Every segment of the latest scoring with its size."""
            state = self.state
            sizes = states.segment_sizes(state)
            return SegmentList(
                cutoff=state.cutoff,
                segments=[SegmentSize(name=name, size=size) for name, size in sizes.items()],
            )

        @bentoml.api(route="/segment_members")
        async def segment_members(
            self,
            name: Annotated[str, Field(min_length=1, max_length=64)],
            offset: Annotated[int, Field(ge=0, le=10_000_000)] = 0,
            limit: Annotated[int, Field(ge=1, le=MAX_PAGE)] | None = None,
            min_score: Annotated[float | None, Field(ge=0)] = None,
            score_field: ScoreField | None = None,
            tiers: Annotated[list[Annotated[int, Field(ge=0, le=100)]], Field(max_length=20)]
            | None = None,
            rank_by: ScoreField | None = None,
        ) -> SegmentPage:
            """One page of a segment's members (`limit` default 100, at most serving.max_page),
            in its rank order or by any target's score (`rank_by`), filtered by a minimum score
            (`score_field`, default the `rank_by` score) and tiers."""
            if limit is None:
                limit = min(DEFAULT_PAGE, limits.max_page)
            elif limit > limits.max_page:
                raise InvalidArgument(
                    f"limit: at most {limits.max_page} (serving.max_page), got {limit}"
                )
            state = self.state
            try:
                total, members = states.segment_page(
                    state, name, offset, limit, min_score, score_field or rank_by, tiers, rank_by
                )
            except states.UnknownSegmentError:
                known = ", ".join(sorted(state.segments)) or "none"
                raise NotFound(f"name: no segment {name!r} (known: {known})") from None
            return SegmentPage(
                name=name,
                cutoff=state.cutoff,
                total=total,
                offset=offset,
                limit=limit,
                members=members,
            )

        @bentoml.api(route="/model_info")
        async def model_info(self) -> ModelInfo:
            """The live release answering (per target: version, run, horizon, data window,
            test metrics) and the snapshot."""
            state = self.state
            live = state.release
            details = [
                ModelDetails(
                    target=target,
                    registered_name=entry.registered_name,
                    version=entry.version,
                    run_id=entry.run_id,
                    horizon_days=live.horizon_of(target),
                    training_window=live.window_of(target),
                    test_metrics=entry.metrics,
                    features=state.models[target].features,
                )
                for target, entry in live.targets.items()
            ]
            return ModelInfo(
                release=live.id,
                release_version=live.version,
                cutoff=state.cutoff,
                customers=len(state.snapshot),
                export=str(state.export_dir),
                models=details,
            )

    document = Document(Dangol, limits)

    def live_document() -> dict:
        instance = served.get("instance")
        if instance is None:
            return document.base
        state = instance.state
        return document.for_release(state.features, list(state.models))

    # BentoML's request timeout kept every answered request alive; its metrics made a series
    # per path ever requested (serving.traffic)
    routes = {method.route for method in Dangol.apis.values()}
    traffic.install(routes | set(limits.public_paths) | {"/metrics"})
    Dangol.add_asgi_middleware(BearerTokenMiddleware, settings=limits)
    Dangol.add_asgi_middleware(RequestGuard, settings=limits, document=live_document)
    # BentoML logs rejected requests with pydantic's message, which quotes the input values,
    # and paths as sent: rejected requests at INFO without values, control characters escaped
    errors = logging.getLogger("bentoml._internal.server.http_app")
    _add_filter(errors, RedactInputErrors)
    for logger_ in (errors, logging.getLogger("bentoml.access"), logger):
        _add_filter(logger_, EscapeControlCharacters)
    return Dangol


def _add_filter(logger_: logging.Logger, kind: type) -> None:
    """One filter of a kind per logger, however often a service is created in a process."""
    if not any(isinstance(f, kind) for f in logger_.filters):
        logger_.addFilter(kind())
