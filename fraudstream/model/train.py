"""Model build: replay history through the feature core, split by time (fraudstream.model.split), train
LightGBM and two baselines, compare them on the held-out test period, choose thresholds, publish.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from fraudstream.events.contract import format_time_us
from fraudstream.features import CATEGORICAL_FEATURES, FEATURE_CODE_VERSION, FeatureConfig
from fraudstream.features.config import DEFAULT_FEATURE_CONFIG_VERSION
from fraudstream.model.dataset import LabeledHistory, Replay, replay
from fraudstream.model.drift import drift_reference
from fraudstream.model.exceptions import NotEnoughData
from fraudstream.model.metrics import compromised_since, evaluate
from fraudstream.model.registry import Registry
from fraudstream.model.split import SplitConfig, split_masks
from fraudstream.model.thresholds import CostSetting, Thresholds, choose_thresholds

#: The seed project's model: a random forest on four hand-picked columns.
SEED_FEATURES = ("amount", "hour_of_day", "account_age_days", "account_transaction_count_24h")
MODEL_NAMES = ("model", "logistic_regression", "seed_random_forest")

#: Stage name, done, total: the CLI draws one progress bar per stage.
StageProgress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class TrainConfig:
    split: SplitConfig = field(default_factory=SplitConfig)
    costs: CostSetting = field(default_factory=CostSetting)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    #: The version label of the feature configuration file (fraudstream.features.load_feature_config).
    feature_config_version: str = DEFAULT_FEATURE_CONFIG_VERSION
    #: Partitions of the transactions topic the model will be served on: one feature state each. The
    #: caller passes the serving topic's count (``Settings.transactions_partitions``); None is refused.
    partitions: int | None = None
    max_rounds: int = 600
    early_stopping_rounds: int = 50
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 50
    threads: int = 2
    seed: int = 7


@dataclass
class TrainingResult:
    booster: lgb.Booster
    manifest: dict[str, Any]
    metrics: dict[str, dict[str, float]]
    thresholds: Thresholds
    replay: Replay
    seconds: dict[str, float]


def _window(event_time_us: np.ndarray, mask: np.ndarray) -> dict[str, str]:
    times = event_time_us[mask]
    return {"start": format_time_us(int(times.min())), "end": format_time_us(int(times.max()))}


def _lightgbm(x: dict[str, pd.DataFrame], y: dict[str, np.ndarray], config: TrainConfig) -> lgb.Booster:
    params = {
        "objective": "binary",
        "learning_rate": config.learning_rate,
        "num_leaves": config.num_leaves,
        "min_data_in_leaf": config.min_data_in_leaf,
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        "metric": "average_precision",
        "num_threads": config.threads,
        "deterministic": True,
        "force_row_wise": True,
        "seed": config.seed,
        "verbosity": -1,
    }
    train = lgb.Dataset(x["train"], y["train"], categorical_feature=list(CATEGORICAL_FEATURES), free_raw_data=False)
    valid = lgb.Dataset(x["validation"], y["validation"], reference=train)
    return lgb.train(
        params,
        train,
        num_boost_round=config.max_rounds,
        valid_sets=[valid],
        callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
    )


def _logistic_regression(names: list[str], config: TrainConfig) -> Any:
    numeric = [name for name in names if name not in CATEGORICAL_FEATURES]
    columns = ColumnTransformer(
        [
            ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL_FEATURES)),
        ]
    )
    model = LogisticRegression(max_iter=500, C=1.0, random_state=config.seed)
    return make_pipeline(columns, model)


def _seed_forest(config: TrainConfig) -> RandomForestClassifier:
    return RandomForestClassifier(
        n_estimators=100, max_depth=12, min_samples_leaf=20, n_jobs=config.threads, random_state=config.seed
    )


def train_model(
    history: LabeledHistory, config: TrainConfig | None = None, progress: StageProgress | None = None
) -> TrainingResult:
    """Replay, train LightGBM and both baselines on the same split, evaluate on test, pick thresholds."""
    config = config or TrainConfig()
    if config.partitions is None:
        raise ValueError("TrainConfig.partitions: pass the partition count of the transactions topic "
                         "the model will be served on")
    report = progress or (lambda stage, done, total: None)
    seconds: dict[str, float] = {}
    began = time.perf_counter()
    features = replay(
        history, config.partitions, config.features, progress=lambda done, total: report("replay", done, total)
    )
    seconds["replay"] = features.seconds
    names = list(features.features.columns.drop("is_late"))
    frame = features.features[names].reset_index(drop=True)
    target = history.targets()
    event_time = history.transactions["event_time_us"].to_numpy(dtype=np.int64)
    accounts = history.transactions["account_id"].to_numpy(dtype=object)
    known = history.known_mask()
    masks = {part: mask & known
             for part, mask in split_masks(event_time, config.split, history.matured_until_us,
                                                     history.span_us).items()}
    for part, mask in masks.items():
        if target[mask].sum() == 0:
            raise NotEnoughData(f"no fraud in the {part} period: simulate or import more days")
    x = {part: frame[mask] for part, mask in masks.items()}
    y = {part: target[mask] for part, mask in masks.items()}

    steps = len(MODEL_NAMES)
    report("train", 0, steps)
    clock = time.perf_counter()
    booster = _lightgbm(x, y, config)
    seconds["model"] = time.perf_counter() - clock
    report("train", 1, steps)
    clock = time.perf_counter()
    logistic = _logistic_regression(names, config).fit(x["train"], y["train"])
    seconds["logistic_regression"] = time.perf_counter() - clock
    report("train", 2, steps)
    clock = time.perf_counter()
    forest = _seed_forest(config).fit(x["train"][list(SEED_FEATURES)].fillna(0.0), y["train"])
    seconds["seed_random_forest"] = time.perf_counter() - clock
    report("train", 3, steps)

    predictors = {
        "model": lambda part: booster.predict(
            x[part], num_iteration=booster.best_iteration, num_threads=config.threads
        ),
        "logistic_regression": lambda part: logistic.predict_proba(x[part])[:, 1],
        "seed_random_forest": lambda part: forest.predict_proba(x[part][list(SEED_FEATURES)].fillna(0.0))[:, 1],
    }
    test = masks["test"]
    compromised = compromised_since(history.labels)
    metrics = {
        name: evaluate(y["test"], predict("test"), event_time[test], accounts[test], compromised)
        for name, predict in predictors.items()
    }
    thresholds = choose_thresholds(y["validation"], predictors["model"]("validation"), config.costs)
    test_decisions = predictors["model"]("test")
    metrics["model"]["review_rate"] = float((test_decisions >= thresholds.review).mean())
    metrics["model"]["block_rate"] = float((test_decisions >= thresholds.block).mean())
    # What live traffic is compared with (fraudstream.model.drift): numeric training features, test scores.
    reference = drift_reference({name: x["train"][name].to_numpy(dtype=np.float64, na_value=np.nan)
                                 for name in names if name not in CATEGORICAL_FEATURES}, test_decisions)
    # Keep only the rounds early stopping chose, so the saved model is the evaluated one.
    booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=booster.best_iteration))
    seconds["total"] = time.perf_counter() - began

    manifest = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "feature_names": names,
        "feature_code_version": FEATURE_CODE_VERSION,
        "feature_config": config.features.to_dict(),
        "feature_config_version": config.feature_config_version,
        "replay_partitions": features.partitions,
        "history": history.source,
        "training_window": {part: _window(event_time, mask) for part, mask in masks.items()},
        "rows": {part: int(mask.sum()) for part, mask in masks.items()},
        "fraud_rows": {part: int(target[mask].sum()) for part, mask in masks.items()},
        "metrics": metrics,
        "thresholds": thresholds.to_dict(),
        "drift_reference": reference,
        "training": {
            "library": f"lightgbm {lgb.__version__}",
            "rounds": booster.num_trees(),
            "split": config.split.to_dict(),
            "replay_events_per_second": features.events_per_second,
            "replay_events_per_cpu_second": features.cpu_events_per_second,
            "seconds": seconds,
        },
    }
    return TrainingResult(booster, manifest, metrics, thresholds, features, seconds)


def build(
    models_dir: Path,
    history: LabeledHistory,
    promote: bool = False,
    config: TrainConfig | None = None,
    progress: StageProgress | None = None,
) -> tuple[str, TrainingResult]:
    """Train on a history, publish the version, maybe promote it."""
    result = train_model(history, config, progress)
    registry = Registry(models_dir)
    version = registry.publish(result.booster, result.manifest)
    if promote:
        registry.promote(version)
    return version, result
