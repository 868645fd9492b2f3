"""A release is the unit of promotion: one version of every target's model, fitted on the same
data window, horizon, tier rule, feature settings and code, made by one retrain run.

In the MLflow registry a release is a version of the registered model `dangol-release`
(`registry.release_name`) whose tag `dangol.release` holds the record below; its `live`
alias is the single pointer that `dangol score`, the report, the service and `dangol build`
follow. Moving that alias is one SQLite transaction, so a crash leaves the old release or the
new one live, never a mix. The targets' own `champion` aliases mirror the live release for
people browsing MLflow and are repaired by `recover` if a crash left them behind.

A retrain run registers its target versions tagged with its run id, then the release version,
then (if promoted) moves `live`. `recover`, called before every retrain while holding the
store's training lock, finds runs that died on the way (still RUNNING in MLflow): if their
release went live it finishes them, otherwise it deletes what they registered.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from features.snapshot import FeatureSettings
from features.targets import TARGETS
from features.tiers import TierSettings
from models import registry
from models.loading import load_model
from models.train import TargetModel
from models.uplift import UPLIFT_MODEL

LIVE = "live"
# on a release version put live again by a later retrain: why (shown as its decision)
LIVE_AGAIN_TAG = "promotion.live_again"
RECORD_TAG = "dangol.release"
KIND_TAG = "dangol.kind"
RETRAIN = "retrain"
RECORD_FILE = "release.json"


class ReleaseMismatchError(RuntimeError):
    """The live release answers another question than the config asks (horizon, tiers...)."""


class TrainingLockedError(RuntimeError):
    """Another `dangol train` holds this store."""


@dataclass(frozen=True)
class TargetVersion:
    """One target's model inside a release."""

    registered_name: str
    version: str
    run_id: str
    metrics: dict[str, float] = field(default_factory=dict)  # on the test window
    # the horizon its labels looked over (None in releases made before it was recorded: H)
    horizon_days: int | None = None
    # its own cutoffs when they differ from the release's (the value target's own split);
    # None: the release's data_window
    data_window: dict | None = None


@dataclass(frozen=True)
class Release:
    """What a release holds and what it was fitted on; `id` is the retrain run's id."""

    id: str
    run_key: str
    horizon_days: int
    tiers: dict
    features: dict
    code_version: str
    data_window: dict
    targets: dict[str, TargetVersion]
    decision: dict = field(default_factory=dict)
    # what training decided about an uplift model (models.uplift.UpliftSelection.record);
    # with `registered_name` and `version` when one won and rides with the release
    uplift: dict = field(default_factory=dict)
    version: str | None = None

    def to_json(self) -> str:
        record = asdict(self)
        record.pop("version")
        return json.dumps(record, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str, version: str | None = None) -> Release:
        record = json.loads(text)
        stored = record.pop("targets")
        order = [t for t in TARGETS if t in stored] + sorted(set(stored) - set(TARGETS))
        targets = {t: TargetVersion(**stored[t]) for t in order}  # registry order
        return cls(**record, targets=targets, version=version)

    @property
    def label(self) -> str:
        return f"release v{self.version}" if self.version else f"release {self.id[:8]}"

    def versions(self) -> dict[str, str]:
        return {target: entry.version for target, entry in self.targets.items()}

    def horizon_of(self, target: str) -> int:
        """The days a target's score looks over: its own (the value target's), else H."""
        return self.targets[target].horizon_days or self.horizon_days

    def window_of(self, target: str) -> dict:
        """The cutoffs a target was fitted and tested on: its own, else the release's."""
        return self.targets[target].data_window or self.data_window

    @property
    def has_uplift_model(self) -> bool:
        """Whether an uplift model won in training and is part of this release."""
        return bool(self.uplift.get("won")) and "version" in self.uplift


def uplift_model_name(release_name: str) -> str:
    """The registered name of the releases' uplift models."""
    return f"{release_name}-uplift"


def snapshot_settings(tiers: TierSettings, features: FeatureSettings) -> dict[str, object]:
    """The settings a feature snapshot is built with (an export records them beside it)."""
    return {"tiers": tiers.model_dump(mode="json"), "features": features.model_dump(mode="json")}


def settings_record(
    horizon_days: int, tiers: TierSettings, features: FeatureSettings
) -> dict[str, object]:
    """The settings a release's models depend on, as stored in its record."""
    return {"horizon_days": horizon_days, **snapshot_settings(tiers, features)}


def snapshot_mismatch(recorded: dict | None, release: Release) -> str | None:
    """Why a snapshot built with the `recorded` snapshot settings cannot be scored by the
    release (None: it can, or the snapshot predates the record)."""
    if not recorded:
        return None
    if recorded.get("tiers") != release.tiers:
        return f"it was built with another tier rule than the live {release.label}'s"
    if recorded.get("features") != release.features:
        return f"it was built with other feature settings than the live {release.label}'s"
    return None


def mismatch(
    release: Release, horizon_days: int, tiers: TierSettings, features: FeatureSettings
) -> str | None:
    """What differs between the release and these settings (None: nothing)."""
    wanted = settings_record(horizon_days, tiers, features)
    if release.horizon_days != wanted["horizon_days"]:
        return (
            f"the live {release.label} predicts a {release.horizon_days}-day horizon; the "
            f"config asks for {horizon_days} days"
        )
    if release.tiers != wanted["tiers"]:
        return f"the live {release.label} was fitted with another tier rule than the config's"
    if release.features != wanted["features"]:
        return f"the live {release.label} was fitted with other feature settings than the config's"
    return None


def check_matches(
    release: Release, horizon_days: int, tiers: TierSettings, features: FeatureSettings
) -> None:
    """Stop with a message when the config and the live release disagree."""
    problem = mismatch(release, horizon_days, tiers, features)
    if problem:
        raise ReleaseMismatchError(
            f"{problem}: run `dangol train` with this config to make a release for it, or "
            "score with the config the release was trained with"
        )


def _client(uri: str | None = None):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def live_release(release_name: str, uri: str | None = None) -> Release | None:
    """The release behind the `live` alias, or None before the first promotion.

    With `uri`, that store is read without touching the process-wide MLflow URI.
    """
    from mlflow.exceptions import MlflowException

    try:
        version = _client(uri).get_model_version_by_alias(release_name, LIVE)
    except MlflowException:
        return None
    found = Release.from_json(version.tags[RECORD_TAG], str(version.version))
    if LIVE_AGAIN_TAG in version.tags:
        # what made it live last: a retrain that put it back, not its own old decision
        again = {"promote": True, "reason": version.tags[LIVE_AGAIN_TAG]}
        found = replace(found, decision={**found.decision, **again})
    return found


def put_live_again(release_name: str, release: Release, reason: str) -> None:
    """Make an earlier release live again, recording why on its version first (a kill
    before the alias moves leaves the live one live; the next retrain does it again)."""
    _client().set_model_version_tag(release_name, release.version, LIVE_AGAIN_TAG, reason[:4000])
    set_live(release_name, release)
    mirror_champions(release)


def require_live(release_name: str, config_hint: str, uri: str | None = None) -> Release:
    release = live_release(release_name, uri)
    if release is None:
        raise registry.NoChampionError(
            f"no live release ({release_name}@{LIVE}) in this MLflow store: "
            f"run `dangol train --config {config_hint}` first"
        )
    return release


def release_with_run_key(release_name: str, run_key: str) -> Release | None:
    """A finished release made from exactly these inputs, if any (promoted or kept)."""
    from mlflow.exceptions import MlflowException

    try:
        versions = _client().search_model_versions(f"name = '{release_name}'")
    except MlflowException:
        return None
    matching = [v for v in versions if v.tags.get(registry.RUN_KEY_TAG) == run_key]
    if not matching:
        return None
    newest = max(matching, key=lambda v: int(v.version))
    return Release.from_json(newest.tags[RECORD_TAG], str(newest.version))


def create(release_name: str, release: Release, artifact_uri: str) -> Release:
    """Register the release (record and decision as tags, in one transaction); not live yet."""
    from mlflow.exceptions import MlflowException

    client = _client()
    with contextlib.suppress(MlflowException):  # exists already
        client.create_registered_model(
            release_name, description="dangol releases: one model version per target"
        )
    tags = {
        RECORD_TAG: release.to_json(),
        registry.RUN_TAG: release.id,
        registry.RUN_KEY_TAG: release.run_key,
        "promotion.decision": "promoted" if release.decision.get("promote") else "kept",
        "promotion.reason": str(release.decision.get("reason", ""))[:4000],
    }
    version = client.create_model_version(
        release_name, source=artifact_uri, run_id=release.id, tags=tags
    )
    return Release.from_json(tags[RECORD_TAG], str(version.version))


def set_live(release_name: str, release: Release) -> None:
    """The one atomic step of promotion: move the release model's `live` alias."""
    _client().set_registered_model_alias(release_name, LIVE, release.version)


def mirror_champions(release: Release) -> None:
    """Point each target's `champion` alias at the release's version of it."""
    client = _client()
    for entry in release.targets.values():
        client.set_registered_model_alias(entry.registered_name, registry.CHAMPION, entry.version)


@contextlib.contextmanager
def training_lock(mlruns_dir: Path) -> Iterator[None]:
    """Exclusive use of the store by one retrain; released by the OS if the process dies."""
    mlruns_dir.mkdir(parents=True, exist_ok=True)
    handle = os.open(mlruns_dir / ".train.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TrainingLockedError(
                f"another `dangol train` is using {mlruns_dir}; wait for it to finish"
            ) from None
        yield
    finally:
        os.close(handle)


def _versions_of_run(client, name: str, run_id: str) -> list:
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return []
    return [v for v in versions if v.tags.get(registry.RUN_TAG) == run_id]


def discard_run(run_id: str, names: list[str]) -> list[str]:
    """Delete every version a retrain run registered under these names; returns them."""
    client = _client()
    deleted = []
    for name in names:
        for version in _versions_of_run(client, name, run_id):
            client.delete_model_version(name, version.version)
            deleted.append(f"{name} v{version.version}")
    return deleted


def recover(experiment_id: str, release_name: str, model_names: list[str]) -> list[str]:
    """Finish or roll back retrain runs that died midway; repair the mirror aliases.

    Call with the training lock held: a RUNNING retrain run is then a dead one. Returns one
    message per repair.
    """
    client = _client()
    live = live_release(release_name)
    messages = []
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{KIND_TAG}` = '{RETRAIN}' and attributes.status = 'RUNNING'",
    )
    for run in runs:
        run_id = run.info.run_id
        if live is not None and live.id == run_id:
            mirror_champions(live)
            client.set_tag(run_id, "dangol.recovered", "finished: its release was live")
            client.set_terminated(run_id, "FINISHED")
            messages.append(f"finished interrupted run {run_id[:8]}: its {live.label} is live")
            continue
        names = [release_name, *model_names, uplift_model_name(release_name)]
        deleted = discard_run(run_id, names)
        client.set_tag(run_id, "dangol.recovered", f"rolled back: deleted {deleted or 'nothing'}")
        client.set_terminated(run_id, "KILLED")
        messages.append(
            f"rolled back interrupted run {run_id[:8]}: deleted {', '.join(deleted) or 'nothing'}"
        )
    if live is not None:
        for target, entry in live.targets.items():
            if champion_of(client, entry.registered_name) != entry.version:
                client.set_registered_model_alias(
                    entry.registered_name, registry.CHAMPION, entry.version
                )
                messages.append(f"{target}: champion alias repaired to v{entry.version}")
    return messages


def champion_of(client, name: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, registry.CHAMPION).version)
    except MlflowException:
        return None


def load_models(release: Release) -> dict[str, TargetModel]:
    """Every model of a release, from the registry: the targets', then under `UPLIFT_MODEL`
    the uplift model when one won (models.scoring scores it with the rest)."""
    models = {
        target: registry.load_version(entry.registered_name, entry.version)
        for target, entry in release.targets.items()
    }
    if release.has_uplift_model:
        models[UPLIFT_MODEL] = registry.load_version(
            release.uplift["registered_name"], release.uplift["version"]
        )
    return models


def write_release_dir(release: Release, models: dict[str, TargetModel], directory: Path) -> Path:
    """The release as plain files (record + one folder per model), for a Bento or offline use;
    written next to `directory` and renamed into place."""
    staging = directory.with_name(f".{directory.name}.staging-{os.getpid()}")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    for target, model in models.items():
        model.save(staging / target)
    (staging / RECORD_FILE).write_text(
        json.dumps({"version": release.version, "record": json.loads(release.to_json())})
    )
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(staging, directory)
    return directory


def read_release_dir(directory: Path) -> tuple[Release, dict[str, TargetModel]]:
    """A release written by `write_release_dir`."""
    payload = json.loads((directory / RECORD_FILE).read_text())
    release = Release.from_json(json.dumps(payload["record"]), payload["version"])
    models = {target: load_model(directory / target) for target in release.targets}
    if release.has_uplift_model:
        models[UPLIFT_MODEL] = load_model(directory / UPLIFT_MODEL)
    return release, models
