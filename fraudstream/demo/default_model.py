"""The model the demo (and the tests and benches) start with: trained once on a small simulated history."""

from __future__ import annotations

import logging

from fraudstream.config import Settings
from fraudstream.model.registry import Registry
from fraudstream.model.train import SplitConfig, TrainConfig
from fraudstream.training import build

log = logging.getLogger(__name__)

#: The first-run model: 10 simulated days (about a minute here), enough for a model that works.
DEFAULT_TRAINING_DAYS = 10
DEFAULT_TRAINING = TrainConfig(split=SplitConfig(burn_in_days=1, gap_days=1, validation_days=2, test_days=2),
                               max_rounds=200)


def ensure_default_model(settings: Settings) -> str:
    """The promoted model's version; on first run, train one on a small simulated history and promote it
    (also when the promoted one predates signed manifests: it could not be loaded)."""
    registry = Registry(settings.models_dir)
    version = registry.production_version()
    if version is not None and registry.signed(version):
        return version
    log.info("training default model days=%d models_dir=%s", DEFAULT_TRAINING_DAYS, settings.models_dir)
    version, result = build(settings.models_dir, days=DEFAULT_TRAINING_DAYS, promote=True, config=DEFAULT_TRAINING)
    log.info("default model promoted version=%s average_precision=%.3f", version,
             result.metrics["model"]["average_precision"])
    return version
