"""The model an engine scores with, swapped at batch boundaries when another version is promoted.

A promoted model is loaded (verified, compiled to native code: seconds for a large model) on a
background thread while the engine keeps scoring with the current one; the switch happens at the
first batch boundary after it is ready, so a promotion never stalls the stream.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from fraudstream.batch.scoring import Scorer
from fraudstream.engines.exceptions import ModelUnavailable
from fraudstream.features import FeatureConfig
from fraudstream.model.registry import Registry

log = logging.getLogger(__name__)


class ModelHolder:
    """Holds the production model; ``refresh`` polls the registry (cheap) at most once per interval."""

    def __init__(self, models_dir: Path, poll_interval_s: float) -> None:
        self.models_dir = models_dir
        self.registry = Registry(models_dir)
        self.poll_interval_s = poll_interval_s
        self._checked_at = time.monotonic()
        self._refused: str | None = None
        self._loading: _Loading | None = None
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
        """Switch to the promoted model if it changed and is loaded; True when the engine now scores with
        another version."""
        if self._loading is not None:
            return self._switch() if self._loading.done.is_set() else False
        now = time.monotonic()
        if now - self._checked_at < self.poll_interval_s:
            return False
        self._checked_at = now
        promoted = self.registry.production_version()
        if promoted is None or promoted in (self.version, self._refused):
            return False
        self._loading = _Loading(self.models_dir, promoted)
        return False

    def _switch(self) -> bool:
        loading, self._loading = self._loading, None
        assert loading is not None
        candidate = loading.scorer
        if candidate is None:
            log.error("model not switched from=%s to=%s reason=%r", self.version, loading.version, loading.error)
            self._refused = loading.version
            return False
        if candidate.feature_config != self.feature_config:
            log.error("model not switched from=%s to=%s reason='other feature configuration: restart the "
                      "processors with a new consumer group to rebuild feature state'", self.version, loading.version)
            self._refused = loading.version
            return False
        log.info("model switched from=%s to=%s", self.version, candidate.model_version)
        self.scorer = candidate
        return True


class _Loading:
    """One promoted version being loaded on a daemon thread (an exiting engine does not wait for it)."""

    def __init__(self, models_dir: Path, version: str) -> None:
        self.version = version
        self.scorer: Scorer | None = None
        self.error: str | None = None
        self.done = threading.Event()
        threading.Thread(target=self._load, args=(models_dir,), name=f"load-{version}", daemon=True).start()

    def _load(self, models_dir: Path) -> None:
        try:
            self.scorer = Scorer.from_registry(models_dir, self.version)
        except Exception as error:  # a broken artifact must not stop the engine: it keeps the current model
            self.error = f"{type(error).__name__}: {error}"
        finally:
            self.done.set()
