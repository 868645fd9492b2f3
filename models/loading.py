"""A saved target model from its folder, whatever its kind (the release, the Bento and the
MLflow wrapper load models through this)."""

from __future__ import annotations

from pathlib import Path

from models.timing import TIMING_FILE, TimingModel
from models.train import CalibratedBooster, TargetModel
from models.uplift import UPLIFT_FILE, UpliftModel
from models.value import VALUE_FILE, ValueModel


def load_model(directory: Path) -> TargetModel:
    """The money model (models.value), the timing model, the uplift model (models.uplift) or
    a calibrated classifier, by the files present."""
    if (directory / UPLIFT_FILE).exists():
        return UpliftModel.load(directory)  # type: ignore[return-value]
    if (directory / VALUE_FILE).exists():
        return ValueModel.load(directory)
    if (directory / TIMING_FILE).exists():
        return TimingModel.load(directory)
    return CalibratedBooster.load(directory)
