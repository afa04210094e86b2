"""A tiny real model over FEATURE_NAMES, for tests of the registry, scoring and the engines.

It trains in milliseconds on random data where ``amount`` drives the label, so tests exercise a
genuine LightGBM artifact without a training run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from fraudstream.features import FEATURE_CODE_VERSION, FEATURE_NAMES, FeatureConfig
from fraudstream.model.registry import Registry
from fraudstream.model.thresholds import CostSetting, Thresholds


def example_booster(seed: int = 1) -> lgb.Booster:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(400, len(FEATURE_NAMES)))
    y = (x[:, FEATURE_NAMES.index("amount")] + 0.3 * rng.normal(size=400) > 1.0).astype(int)
    data = lgb.Dataset(x, y, feature_name=list(FEATURE_NAMES))
    params = {"objective": "binary", "num_threads": 1, "verbosity": -1, "seed": seed, "min_data_in_leaf": 5}
    return lgb.train(params, data, num_boost_round=15)


def example_manifest(review: float = 0.3, block: float = 0.8) -> dict[str, Any]:
    return {
        "created_at": "2026-01-01T00:00:00+00:00",
        "feature_names": list(FEATURE_NAMES),
        "feature_code_version": FEATURE_CODE_VERSION,
        "feature_config": FeatureConfig().to_dict(),
        "metrics": {"model": {"average_precision": 0.0}},
        "thresholds": Thresholds(review, block, 0.0, CostSetting()).to_dict(),
    }


def publish_example_model(models_dir: Path, seed: int = 1, promote: bool = True) -> str:
    """Publish (and by default promote) the example model; returns its version."""
    registry = Registry(models_dir)
    version = registry.publish(example_booster(seed), example_manifest())
    if promote:
        registry.promote(version)
    return version
