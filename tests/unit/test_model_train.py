"""Import format, time split and a small end-to-end build on simulated data."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from fraudstream.batch.scoring import Scorer
from fraudstream.features import CATEGORICAL_FEATURES
from fraudstream.history import write_history
from fraudstream.model.dataset import LabeledHistory, import_labeled, load_history, replay
from fraudstream.model.exceptions import ImportFormatError
from fraudstream.model.registry import Registry
from fraudstream.model.train import SplitConfig, TrainConfig, build
from fraudstream.simulate.backfill import simulate_history
from fraudstream.timeunits import MICROS_PER_DAY

pytestmark = pytest.mark.unit


def test_import_csv_with_required_columns_only(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    path.write_text(
        "transaction_id,timestamp,account_id,merchant_id,amount,is_fraud\n"
        "b,2026-01-01T00:10:00Z,acc1,shop,25.5,0\n"
        "a,2026-01-01T00:00:00Z,acc1,shop,10,1\n"
    )
    history = import_labeled(path, label_delay_days=2)
    assert history.transactions["transaction_id"].tolist() == ["a", "b"]  # sorted by time
    assert history.transactions["device_id"].tolist() == ["unknown", "unknown"]
    assert history.targets().tolist() == [True, False]
    delay = history.labels["labeled_at_us"] - history.transactions["event_time_us"]
    assert (delay == 2 * MICROS_PER_DAY).all()
    features = replay(history, partitions=2).features
    assert features["account_transaction_count_1h"].tolist() == [1, 2]


def test_import_rejects_missing_columns_and_bad_labels(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    path.write_text("transaction_id,timestamp,account_id,amount,is_fraud\nt,2026-01-01T00:00:00Z,a,1,0\n")
    with pytest.raises(ImportFormatError, match="merchant_id"):
        import_labeled(path)
    path.write_text("transaction_id,timestamp,account_id,merchant_id,amount,is_fraud\nt,2026-01-01T00:00:00Z,a,m,1,x\n")
    with pytest.raises(ImportFormatError, match="is_fraud"):
        import_labeled(path)


def test_build_on_a_small_simulation(tmp_path: Path) -> None:
    write_history(simulate_history(16, seed=3, accounts=300, merchants=200, fraud_share=0.03), tmp_path / "history")
    split = SplitConfig(burn_in_days=1, gap_days=1, validation_days=3, test_days=4)
    config = TrainConfig(split=split, max_rounds=30, partitions=4)
    version, result = build(tmp_path / "models", load_history(tmp_path / "history"), promote=True, config=config)
    assert Registry(tmp_path / "models").production_version() == version
    assert set(result.metrics) == {"model", "logistic_regression", "seed_random_forest"}
    assert 0.5 < result.metrics["model"]["roc_auc"] <= 1.0
    assert result.manifest["rows"]["test"] > 0 and result.replay.events_per_second > 0
    assert result.thresholds.review <= result.thresholds.block
    assert result.manifest["replay_partitions"] == result.replay.partitions == 4
    assert Scorer.from_registry(tmp_path / "models").replay_partitions == 4
    drift = result.manifest["drift_reference"]
    assert set(drift["features"]) == set(result.manifest["feature_names"]) - set(CATEGORICAL_FEATURES)
    assert sum(drift["score"]["shares"]) == pytest.approx(1.0)
    assert result.manifest["feature_config_version"] == "default-1"
    assert result.manifest["training"]["split"]["test_days"] == 4
    assert result.manifest["history"] == {"file": str(tmp_path / "history")}


def test_training_refuses_a_config_without_the_serving_partition_count(tmp_path: Path) -> None:
    empty = LabeledHistory(pd.DataFrame(), pd.DataFrame())
    with pytest.raises(ValueError, match="partitions"):
        build(tmp_path / "models", empty, config=TrainConfig())
