"""The service's settings, and the context the flow layer hands it (no `flows` import here).

`dangol serve` / `dangol build` assemble a `ServiceContext` from the project config and write
it as JSON; the service reads that file (named by DANGOL_SERVICE_CONTEXT) at startup.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from features.files import write_atomic
from features.snapshot import FeatureSettings
from features.tiers import TierSettings
from models.segments import SegmentSettings

CONTEXT_ENV = "DANGOL_SERVICE_CONTEXT"
# Set to "1" while `bentoml build` imports the service: building does not serve, so it does
# not need the token that serving refuses to start without.
BUILDING_ENV = "DANGOL_BUILDING"


class ServingSettings(BaseModel):
    """The scoring service: where it listens, its limits, its token and how often it reloads."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(3000, gt=0, lt=65536)
    max_batch: int = Field(1000, gt=0, le=100_000)
    max_page: int = Field(1000, gt=0, le=100_000)
    workers: int = Field(1, ge=1, le=64)
    reload_seconds: float = Field(10.0, gt=0)
    # The bearer token: from `token` if set, else from the environment variable `token_env`.
    # Prefer the variable: a config file is usually committed.
    token: str | None = Field(None, min_length=16)
    token_env: str = "DANGOL_TOKEN"
    # Health, and the API document with its Swagger UI (at / and /docs; its calls still
    # need the token): no token needed.
    public_paths: list[str] = ["/", "/livez", "/readyz", "/healthz", "/docs", "/docs.json"]
    # The largest request body accepted (larger: 413). /score_rows at max_batch rows of ~60
    # features needs about 2 KB a row.
    max_body_bytes: int = Field(16 * 1024 * 1024, gt=0)


class ServiceContext(BaseModel):
    """Everything the service needs from the project config, with absolute paths.

    `release_dir` (a Bento) holds the release's models as files; without it the live release
    is read from the MLflow store in `mlruns`.
    """

    model_config = ConfigDict(extra="forbid")

    mlruns: Path
    exports: Path
    release_name: str
    release_dir: Path | None = None
    horizon_days: int
    tiers: TierSettings
    features: FeatureSettings
    segments: SegmentSettings
    currency: str
    serving: ServingSettings

    def write(self, path: Path) -> Path:
        """Atomically write the context as JSON; returns the path."""
        text = self.model_dump_json(indent=2)
        return write_atomic(path, lambda staging: staging.write_text(text, encoding="utf-8"))


def read_context(path: Path | str | None = None) -> ServiceContext:
    """The context from `path`, else from the file DANGOL_SERVICE_CONTEXT names."""
    where = path or os.environ.get(CONTEXT_ENV)
    if not where:
        raise RuntimeError(
            f"{CONTEXT_ENV} is not set: start the service with `dangol serve --config C`"
        )
    return ServiceContext.model_validate_json(Path(where).read_text(encoding="utf-8"))
