"""The model an engine scores with, swapped at batch boundaries when another version is promoted."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from fraudstream.engines.exceptions import ModelUnavailable
from fraudstream.features import FeatureConfig
from fraudstream.model.registry import Registry
from fraudstream.scoring import Scorer

log = logging.getLogger(__name__)


class ModelHolder:
    """Holds the production model; ``refresh`` polls the registry (cheap) at most once per interval."""

    def __init__(self, models_dir: Path, poll_interval_s: float) -> None:
        self.models_dir = models_dir
        self.registry = Registry(models_dir)
        self.poll_interval_s = poll_interval_s
        self._checked_at = time.monotonic()
        self._refused: str | None = None
        if self.registry.production_version() is None:
            raise ModelUnavailable(f"no model is promoted in {models_dir}: train one with `fraudstream train` and "
                                   "promote it with `fraudstream model promote VERSION` (or run `fraudstream demo`)")
        self.scorer = Scorer.from_registry(models_dir)

    @property
    def version(self) -> str:
        return self.scorer.model_version

    @property
    def feature_config(self) -> FeatureConfig:
        """The feature configuration the model was trained with; the states must be built with it."""
        return self.scorer.feature_config

    def refresh(self) -> bool:
        """Load the promoted model if it changed; True when the engine now scores with another version."""
        now = time.monotonic()
        if now - self._checked_at < self.poll_interval_s:
            return False
        self._checked_at = now
        promoted = self.registry.production_version()
        if promoted is None or promoted in (self.version, self._refused):
            return False
        candidate = Scorer.from_registry(self.models_dir)
        if candidate.feature_config != self.feature_config:
            log.error("model not switched from=%s to=%s reason='other feature configuration: restart the "
                      "processors with a new consumer group to rebuild feature state'", self.version, promoted)
            self._refused = promoted
            return False
        log.info("model switched from=%s to=%s", self.version, candidate.model_version)
        self.scorer = candidate
        return True
