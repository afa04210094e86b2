"""`train --from-db` on real PostgreSQL: rows written by the store writer the engines use, read back,
replayed through the feature core, trained with label maturity."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import psycopg
import pytest
from stored_history import store_history

from fraudstream.backtest import backtest_metrics, load_scoring_history, score_history, window_bounds
from fraudstream.batch.scoring import Scorer
from fraudstream.config import Settings
from fraudstream.model.dataset import LabeledHistory, replay
from fraudstream.model.maturity import LabelMaturity
from fraudstream.model.metrics import METRIC_NAMES
from fraudstream.model.registry import Registry
from fraudstream.model.split import SplitConfig
from fraudstream.model.train import TrainConfig
from fraudstream.simulate.backfill import LabelDelays, simulate_history
from fraudstream.store import history as stored_history
from fraudstream.store.schema import migrate
from fraudstream.training import DatabaseSource, build

pytestmark = pytest.mark.integration
DAY_US = 86_400 * 1_000_000
#: Chargebacks within 3 days and "no dispute" labels after 5-8: a 16-day history has both kinds.
DELAYS = LabelDelays(fraud_s=(0.5 * 86_400, 3 * 86_400), legit_s=(5 * 86_400, 8 * 86_400))


def test_train_from_the_database_with_label_maturity(settings: Settings, scratch_url: str, tmp_path: Path) -> None:
    migrate(scratch_url)
    history = simulate_history(16, seed=5, accounts=400, merchants=200, fraud_share=0.04, label_delays=DELAYS)
    as_of = int(history.transactions["event_time_us"].max())
    arrived = history.labels[history.labels["labeled_at_us"] <= as_of]
    # Analysts' verdicts carry only the transaction id: the reader takes account and merchant from the row.
    verdicts = arrived.copy()
    verdicts.loc[verdicts.index[:5], ["account_id", "merchant_id"]] = None
    store_history(scratch_url, history.transactions, verdicts)

    with psycopg.connect(scratch_url) as connection:
        assert stored_history.latest_event_us(connection) == as_of
        read = stored_history.read_history(connection, as_of)
    pd.testing.assert_frame_equal(read.transactions, history.transactions)
    pd.testing.assert_frame_equal(read.labels, arrived.reset_index(drop=True))

    source = DatabaseSource(LabelMaturity(fraud_label_days=3, legitimate_label_days=8))
    config = TrainConfig(split=SplitConfig(burn_in_days=1, gap_days=1, validation_days=3, test_days=3),
                         max_rounds=30, partitions=3)
    stored_settings = settings.model_copy(update={"database_url": scratch_url})
    version, result = build(tmp_path / "models", config=config, settings=stored_settings, database=source)

    manifest = Registry(tmp_path / "models").manifest(version)
    recorded = manifest["history"]
    matured_until = as_of - 3 * DAY_US
    assert recorded["label_maturity"] == {"fraud_label_days": 3, "legitimate_label_days": 8}
    assert recorded["rows_without_known_label"] > 0  # the last 3 days' unlabeled rows
    assert recorded["rows_overdue_for_a_label"] == 0  # every row past 8 days has its label
    # Validation and test hold matured rows only: the test period ends where maturity does.
    test_end = pd.Timestamp(manifest["training_window"]["test"]["end"]).value // 1_000
    assert matured_until - DAY_US < test_end < matured_until
    assert manifest["rows"]["test"] > 0 and manifest["fraud_rows"]["train"] > 0
    # Features are the replay of the stored history: equal to replaying the simulated one.
    expected = replay(LabeledHistory(history.transactions, arrived.reset_index(drop=True)), partitions=3)
    pd.testing.assert_frame_equal(result.replay.features, expected.features)

    # `score --from-db` replays the same rows and reproduces the test metrics; unknown labels stay empty.
    scorer = Scorer(Registry(tmp_path / "models").load(version))
    scored = score_history(load_scoring_history(None, source, stored_settings), scorer)
    assert len(scored.scores) == len(history.transactions)
    assert int(scored.scores["is_fraud"].isna().sum()) == recorded["rows_without_known_label"]
    metrics = backtest_metrics(scored, scorer, window_bounds(manifest, "test"))
    assert metrics is not None and metrics["rows"] == manifest["rows"]["test"]
    for name in METRIC_NAMES:
        assert metrics[name] == pytest.approx(manifest["metrics"]["model"][name], abs=1e-9), name


def test_an_empty_database_says_what_to_do(settings: Settings, scratch_url: str, tmp_path: Path) -> None:
    migrate(scratch_url)
    with pytest.raises(ValueError, match="transactions table is empty"):
        build(tmp_path / "models", config=TrainConfig(partitions=2),
              settings=settings.model_copy(update={"database_url": scratch_url}), database=DatabaseSource())
