"""The model an engine scores with, swapped at batch boundaries when another version is promoted.

A promoted model is loaded (verified, compiled to native code: seconds for a large model) on a
background thread while the engine keeps scoring with the current one; the switch happens at the
first batch boundary after it is ready, so a promotion never stalls the stream. A challenger put in
shadow (the registry's SHADOW pointer) is loaded the same way and scored beside production.
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
    """Holds the production model and the shadow one, if any; ``refresh`` polls the registry (cheap) at most
    once per interval."""

    def __init__(self, models_dir: Path, poll_interval_s: float) -> None:
        self.models_dir = models_dir
        self.registry = Registry(models_dir)
        self.poll_interval_s = poll_interval_s
        self._checked_at = time.monotonic()
        self._refused: str | None = None
        self._loading: _Loading | None = None
        #: The challenger scored in shadow (no decisions, no alerts), None without one.
        self.shadow: Scorer | None = None
        self._shadow_loading: _Loading | None = None
        self._shadow_refused: str | None = None
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

    @property
    def shadow_version(self) -> str | None:
        return None if self.shadow is None else self.shadow.model_version

    def refresh(self) -> bool:
        """Switch to the promoted model (or another shadow model) if it changed and is loaded; True when the
        engine now scores with another production or shadow version."""
        switched = False
        if self._loading is not None and self._loading.done.is_set():
            switched = self._switch()
        if self._shadow_loading is not None and self._shadow_loading.done.is_set():
            switched = self._switch_shadow() or switched
        now = time.monotonic()
        if now - self._checked_at < self.poll_interval_s:
            return switched
        self._checked_at = now
        if self._loading is None:
            promoted = self.registry.production_version()
            if promoted is not None and promoted not in (self.version, self._refused):
                self._loading = _Loading(self.models_dir, promoted)
        return self._poll_shadow() or switched

    def _poll_shadow(self) -> bool:
        wanted = self.registry.shadow_version()
        if wanted is None or wanted == self.version:  # cleared, or promoted: nothing to score beside
            if self.shadow is None:
                return False
            log.info("shadow model dropped version=%s", self.shadow_version)
            self.shadow = None
            return True
        if self._shadow_loading is None and wanted not in (self.shadow_version, self._shadow_refused):
            self._shadow_loading = _Loading(self.models_dir, wanted)
        return False

    def _switch_shadow(self) -> bool:
        loading, self._shadow_loading = self._shadow_loading, None
        assert loading is not None
        candidate = loading.scorer
        reason = loading.error if candidate is None else (
            "other feature configuration than production's: its features are not computed"
            if candidate.feature_config != self.feature_config else None)
        if candidate is None or reason is not None:
            log.error("shadow model not loaded version=%s reason=%r", loading.version, reason)
            self._shadow_refused = loading.version
            return False
        log.info("shadow model scoring version=%s beside=%s", candidate.model_version, self.version)
        self.shadow = candidate
        return True

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
