"""Batch scoring used by both engines: features -> probability, decision, top-3 reasons.

Reasons are computed only for rows decided 'review' or 'block' (approved rows get none): they come
from LightGBM's per-feature contributions, which cost several times a plain prediction. Prediction
runs on a fixed number of threads, so the same input always gives bit-identical output.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fraudstream.features import FeatureConfig
from fraudstream.model.explain import describe
from fraudstream.model.registry import Artifact, Registry, load_artifact
from fraudstream.model.thresholds import Thresholds, decide

REASON_COUNT = 3
PREDICT_THREADS = 1


@dataclass(frozen=True)
class ScoreResult:
    """Per row: fraud probability, decision ('approve' | 'review' | 'block') and reason sentences."""

    probability: np.ndarray
    decision: np.ndarray
    reasons: list[tuple[str, ...]]


class Scorer:
    """A verified model artifact ready to score feature frames."""

    def __init__(self, artifact: Artifact) -> None:
        self.artifact = artifact
        self.model_version: str = artifact.version
        self.feature_names: tuple[str, ...] = tuple(artifact.manifest["feature_names"])
        self.thresholds = Thresholds.from_dict(artifact.manifest["thresholds"])
        #: The engines must compute features with the configuration the model was trained on.
        self.feature_config = FeatureConfig.from_dict(artifact.manifest["feature_config"])
        self._booster = artifact.booster

    @classmethod
    def load(cls, artifact_dir: Path) -> Scorer:
        return cls(load_artifact(artifact_dir))

    @classmethod
    def from_registry(cls, models_dir: Path | None = None, version: str | None = None) -> Scorer:
        """The promoted model (or ``version``) of the registry at models_dir (default: settings)."""
        if models_dir is None:
            from fraudstream.config import get_settings

            models_dir = get_settings().models_dir
        registry = Registry(models_dir)
        return cls(registry.load(version) if version else registry.production())

    def score(self, features: pd.DataFrame) -> ScoreResult:
        """Score every row of a frame holding (at least) the model's feature columns."""
        matrix = features.loc[:, list(self.feature_names)].to_numpy(dtype=np.float64)
        if matrix.shape[0] == 0:
            return ScoreResult(np.zeros(0), np.zeros(0, dtype=object), [])
        probability = np.asarray(self._booster.predict(matrix, num_threads=PREDICT_THREADS), dtype=np.float64)
        decision = decide(probability, self.thresholds.review, self.thresholds.block)
        reasons: list[tuple[str, ...]] = [()] * matrix.shape[0]
        flagged = np.flatnonzero(decision != "approve")
        if flagged.size:
            for row, text in zip(flagged.tolist(), self.explain(matrix[flagged]), strict=True):
                reasons[row] = text
        return ScoreResult(probability, decision, reasons)

    def explain(self, matrix: np.ndarray) -> list[tuple[str, ...]]:
        """Top contributing features (pushing towards fraud) of each row, as sentences."""
        contributions = self._booster.predict(matrix, pred_contrib=True, num_threads=PREDICT_THREADS)[:, :-1]
        top = np.argsort(-contributions, axis=1, kind="stable")[:, :REASON_COUNT]
        names = self.feature_names
        return [
            tuple(describe(names[j], float(matrix[i, j])) for j in top[i] if contributions[i, j] > 0)
            for i in range(matrix.shape[0])
        ]
